"""Accepting production confirmations (yield, scrap, rework of an operation) and queueing them for the ERP.

A confirmation is checked against the released order and against what was confirmed before: the quantities must
be finite, not negative and not all zero; scrap and rework need a reason code; the operation's confirmed quantity
(yield + scrap; rework comes back later as yield or scrap) may exceed the planned quantity only by a tolerance.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from qualitybridge.domain.errors import (
    ClientIdReused,
    InconsistentReport,
    InvalidValue,
    UnknownReference,
    WrongOrderState,
)
from qualitybridge.domain.events import ConfirmationAccepted
from qualitybridge.domain.ids import new_record_id
from qualitybridge.domain.model import Confirmation, OrderState, ProductionOrder
from qualitybridge.domain.order_states import accepts_confirmation, state_name
from qualitybridge.domain.records import ConfirmationRecord
from qualitybridge.services.event_bus import EventBus
from qualitybridge.services.master_data import MasterData
from qualitybridge.store import Store

__all__ = ["ConfirmationRequest", "ConfirmationService"]

_log = logging.getLogger(__name__)

_UNECE_CODE = re.compile(r"^[A-Z0-9]{1,3}$")
# Confirmed quantities are sums of doubles; a hair above the limit from rounding is not an over-confirmation.
_EPSILON = 1e-9


@dataclass(frozen=True)
class ConfirmationRequest:
    """A confirmation as the shop floor sent it, not yet checked (numbers may be anything)."""

    order_no: str
    operation_no: str
    yield_quantity: float
    scrap_quantity: float
    rework_quantity: float
    unit: str = ""  # empty: the order's quantity unit
    reason_code: str = ""
    final: bool = False
    client_confirmation_id: str | None = None


class ConfirmationService:
    def __init__(
        self,
        store: Store,
        master_data: MasterData,
        *,
        events: EventBus | None = None,
        tolerance_percent: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._master = master_data
        self._tolerance = tolerance_percent / 100
        self._clock = clock
        self._events = events or EventBus()
        # Checking the running total and storing must not interleave between two calls for the same operation.
        self._lock = asyncio.Lock()

    async def report_confirmation(self, request: ConfirmationRequest, reported_by: str) -> ConfirmationRecord:
        """Validate and store one confirmation; raises a ReportRefused subclass when refused.

        A repeated client id answers the stored confirmation: checked before anything else (a retry of a stored
        confirmation is answered even if the order moved on since), and again as the first thing inside the lock,
        because a concurrent call with the same id may have stored it in between; only then are the totals
        checked, which the first call's quantities are already part of.
        """
        if (first := await self._repeat(request, reported_by)) is not None:
            return first
        order = self._order(request)
        unit = self._check_quantities(request, order)
        async with self._lock:
            if (first := await self._repeat(request, reported_by)) is not None:
                return first
            await self._check_totals(request, order)
            record = ConfirmationRecord(
                confirmation_id=new_record_id(),
                confirmation=Confirmation(
                    order_no=request.order_no,
                    operation_no=request.operation_no,
                    yield_quantity=request.yield_quantity,
                    scrap_quantity=request.scrap_quantity,
                    rework_quantity=request.rework_quantity,
                    unit=unit,
                    reason_code=request.reason_code,
                    final=request.final,
                ),
                client_confirmation_id=request.client_confirmation_id or None,
                reported_by=reported_by,
                received_at=self._clock(),
            )
            stored, created = await self._store.record_confirmation(record)
        if created:
            _log.info(
                "confirmation %s of %s/%s by %s: yield %g, scrap %g, rework %g %s%s",
                stored.confirmation_id,
                request.order_no,
                request.operation_no,
                reported_by,
                request.yield_quantity,
                request.scrap_quantity,
                request.rework_quantity,
                unit,
                " (final)" if request.final else "",
            )
            await self._events.publish(ConfirmationAccepted(stored))
        return stored

    async def _repeat(self, request: ConfirmationRequest, reported_by: str) -> ConfirmationRecord | None:
        """The confirmation this caller stored under the request's client id; ClientIdReused if it differs."""
        if not request.client_confirmation_id:
            return None
        first = await self._store.confirmation_by_client_id(request.client_confirmation_id, reported_by)
        if first is None:
            return None
        stored = first.confirmation
        asked = (
            request.order_no,
            request.operation_no,
            request.yield_quantity,
            request.scrap_quantity,
            request.rework_quantity,
            request.unit or stored.unit,
            request.reason_code,
            request.final,
        )
        kept = (
            stored.order_no,
            stored.operation_no,
            stored.yield_quantity,
            stored.scrap_quantity,
            stored.rework_quantity,
            stored.unit,
            stored.reason_code,
            stored.final,
        )
        if asked != kept:
            raise ClientIdReused(
                "ClientConfirmationId",
                f"ClientConfirmationId {request.client_confirmation_id!r} was used before for another confirmation "
                f"({first.confirmation_id}); a retry repeats it unchanged, a new confirmation needs a new id",
            )
        return first

    def _order(self, request: ConfirmationRequest) -> ProductionOrder:
        order = self._master.order(request.order_no)
        if order is None:
            raise UnknownReference("OrderNumber", f"order {request.order_no!r} is not released to the shop floor")
        if order.operation(request.operation_no) is None:
            raise UnknownReference(
                "OperationNumber", f"order {request.order_no} has no operation {request.operation_no!r}"
            )
        return order

    def _check_quantities(self, request: ConfirmationRequest, order: ProductionOrder) -> str:
        """Checks that need nothing but the request and the order; answers the unit to book."""
        quantities = (
            ("YieldQuantity", request.yield_quantity),
            ("ScrapQuantity", request.scrap_quantity),
            ("ReworkQuantity", request.rework_quantity),
        )
        for name, quantity in quantities:
            if not math.isfinite(quantity):
                raise InvalidValue(name, f"{name} {quantity} is not a finite number")
            if quantity < 0:
                raise InvalidValue(name, f"{name} must not be negative, got {quantity:g}")
        if all(quantity == 0 for _name, quantity in quantities):
            raise InconsistentReport("YieldQuantity", "nothing to confirm: yield, scrap and rework are all zero")
        if (request.scrap_quantity > 0 or request.rework_quantity > 0) and not request.reason_code:
            raise InconsistentReport("ReasonCode", "scrap or rework needs a reason code")
        unit = request.unit or order.quantity_unit
        if not _UNECE_CODE.match(unit):
            raise InconsistentReport("Unit", f"unit {unit!r} is not a UNECE Rec. 20 common code such as C62")
        if unit != order.quantity_unit:
            raise InconsistentReport(
                "Unit", f"order {order.order_no} is planned in {order.quantity_unit}; confirm in that unit, not {unit}"
            )
        if not accepts_confirmation(order.state, final=request.final):
            needs = "a final confirmation only" if order.state is OrderState.ENDED else "none"
            raise WrongOrderState(
                "OrderNumber",
                f"order {order.order_no} is {state_name(order.state)} and takes {needs}; "
                "confirmations are accepted while it is Running or Interrupted, and a final one after End",
            )
        return unit

    async def _check_totals(self, request: ConfirmationRequest, order: ProductionOrder) -> None:
        totals = await self._store.confirmation_totals(request.order_no, request.operation_no)
        if totals.finally_confirmed:
            raise WrongOrderState(
                "OperationNumber",
                f"operation {request.order_no}/{request.operation_no} is finally confirmed; nothing more can be added",
            )
        confirmed = totals.yield_quantity + totals.scrap_quantity + request.yield_quantity + request.scrap_quantity
        limit = order.planned_quantity * (1 + self._tolerance)
        if confirmed > limit + _EPSILON:
            raise InvalidValue(
                "YieldQuantity",
                f"operation {request.order_no}/{request.operation_no} would have {confirmed:g} {order.quantity_unit} "
                f"confirmed (yield + scrap), more than the planned {order.planned_quantity:g} plus "
                f"{self._tolerance * 100:g} % tolerance ({limit:g})",
            )
