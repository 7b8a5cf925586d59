"""In-memory state of the ERP/QMS simulator: published master data, bookings with their idempotency keys, faults.

Every public method takes the one lock, so concurrent requests (and a test poking the state directly) see
consistent data. Methods are short and never await, so a plain threading.Lock serves both the event loop and
threads without blocking either noticeably.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel

from qualitybridge.adapters.rest_contract import BookingReceipt
from qualitybridge.domain.model import CalibrationStatus, ProductionOrder, TestEquipment
from qualitybridge.simulator.seed import seed_equipment, seed_orders

BookingKind = Literal["results", "confirmations", "spc_alarms", "kpis"]
BOOKING_KINDS: tuple[BookingKind, ...] = get_args(BookingKind)
FaultKind = Literal["error", "timeout", "lost_response"]
FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)

_DOCUMENT_PREFIX: dict[BookingKind, str] = {"results": "QR", "confirmations": "QC", "spc_alarms": "QA", "kpis": "QK"}


class SimulatorError(Exception):
    """A request the simulated ERP refuses; code and message become the contract's error body."""

    status_code = 400

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class NotFound(SimulatorError):
    status_code = 404


class AlreadyExists(SimulatorError):
    status_code = 409


class IdempotencyConflict(SimulatorError):
    status_code = 409


class UnknownReference(SimulatorError):
    status_code = 422


@dataclass
class Booking:
    """One posting as the ERP booked it; repeated deliveries under the same key only raise `deliveries`.

    `body` is the posting in the contract's JSON form. Inside the state a batch's posting keeps its validated model
    until someone reads it (`bookings`): dumping every posting as it was booked was a fifth of the simulator's CPU
    per booked posting, and most are only counted."""

    idempotency_key: str
    document_no: str
    received_at: datetime
    body: dict[str, Any]
    deliveries: int = 1


def _json_form(body: dict[str, Any] | BaseModel) -> dict[str, Any]:
    """The body in the contract's JSON form, a copy (callers may change it; the state's stays as booked)."""
    return body.model_dump(mode="json") if isinstance(body, BaseModel) else dict(body)


@dataclass(frozen=True)
class FaultPlan:
    rate: float = 0.0
    kinds: tuple[FaultKind, ...] = ()
    timeout_seconds: float = 5.0
    seed: int | None = None


@dataclass
class _Counters:
    booked: dict[BookingKind, int] = field(default_factory=lambda: dict.fromkeys(BOOKING_KINDS, 0))
    duplicates_suppressed: dict[BookingKind, int] = field(default_factory=lambda: dict.fromkeys(BOOKING_KINDS, 0))
    conflicts: dict[BookingKind, int] = field(default_factory=lambda: dict.fromkeys(BOOKING_KINDS, 0))
    rejected: dict[BookingKind, int] = field(default_factory=lambda: dict.fromkeys(BOOKING_KINDS, 0))
    faults_injected: dict[FaultKind, int] = field(default_factory=lambda: dict.fromkeys(FAULT_KINDS, 0))


class SimulatorState:
    """What the simulated ERP knows. Defaults to the seed data of `qualitybridge.simulator.seed`."""

    def __init__(
        self,
        orders: Iterable[ProductionOrder] | None = None,
        equipment: Iterable[TestEquipment] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._initial_orders = tuple(seed_orders() if orders is None else orders)
        self._initial_equipment = tuple(seed_equipment() if equipment is None else equipment)
        self._load_initial()

    def _load_initial(self) -> None:
        self._orders: dict[str, ProductionOrder] = {order.order_no: order for order in self._initial_orders}
        self._equipment: dict[str, TestEquipment] = {item.equipment_id: item for item in self._initial_equipment}
        self._orders_revision = 1
        self._equipment_revision = 1
        # For changed-since queries: the revision and time each order or gauge last changed; withdrawn orders stay
        # known (an SAP order is closed, not deleted) with the revision and time of their withdrawal.
        started = datetime.now(UTC)
        self._order_changes: dict[str, tuple[int, datetime]] = dict.fromkeys(self._orders, (1, started))
        self._withdrawn: dict[str, tuple[int, datetime, ProductionOrder]] = {}
        self._equipment_changes: dict[str, int] = dict.fromkeys(self._equipment, 1)
        self._requests: list[str] = []
        self._bookings: dict[BookingKind, dict[str, Booking]] = {kind: {} for kind in BOOKING_KINDS}
        self._document_counter: dict[BookingKind, int] = dict.fromkeys(BOOKING_KINDS, 0)
        self._counters = _Counters()
        self._faults = FaultPlan()
        self._rng = random.Random()  # noqa: S311 - fault dice, not secrets

    def reset(self) -> None:
        """Back to the initial master data, no bookings, no faults, counters at zero."""
        with self._lock:
            self._load_initial()

    # master data the ERP publishes

    def orders(self) -> tuple[int, list[ProductionOrder]]:
        with self._lock:
            return self._orders_revision, list(self._orders.values())

    def equipment(self) -> tuple[int, list[TestEquipment]]:
        with self._lock:
            return self._equipment_revision, list(self._equipment.values())

    def orders_changed_since(self, revision: int) -> tuple[int, list[ProductionOrder], list[str]]:
        """Released orders added or changed after `revision`, and the orders withdrawn after it."""
        with self._lock:
            changed = [order for no, order in self._orders.items() if self._order_changes[no][0] > revision]
            withdrawn = [no for no, (at, _time, _order) in self._withdrawn.items() if at > revision]
            return self._orders_revision, changed, withdrawn

    def equipment_changed_since(self, revision: int) -> tuple[int, list[TestEquipment]]:
        with self._lock:
            changed = [item for no, item in self._equipment.items() if self._equipment_changes[no] > revision]
            return self._equipment_revision, changed

    def order_history(self) -> list[tuple[ProductionOrder, bool, datetime]]:
        """Every order the ERP knows, released or withdrawn, with the time of its last change (the SAP face)."""
        with self._lock:
            known = [(order, True, self._order_changes[no][1]) for no, order in self._orders.items()]
            known += [(order, False, at) for _rev, at, order in self._withdrawn.values()]
            return known

    def _order_changed(self, order_no: str) -> None:
        self._orders_revision += 1
        self._order_changes[order_no] = (self._orders_revision, datetime.now(UTC))

    def release_order(self, order: ProductionOrder) -> int:
        with self._lock:
            if order.order_no in self._orders:
                raise AlreadyExists("order_exists", f"order {order.order_no} is already released")
            self._orders[order.order_no] = order
            self._withdrawn.pop(order.order_no, None)
            self._order_changed(order.order_no)
            return self._orders_revision

    def change_order(self, order: ProductionOrder) -> int:
        with self._lock:
            if order.order_no not in self._orders:
                raise NotFound("unknown_order", f"order {order.order_no} is not released")
            self._orders[order.order_no] = order
            self._order_changed(order.order_no)
            return self._orders_revision

    def withdraw_order(self, order_no: str) -> int:
        with self._lock:
            order = self._orders.pop(order_no, None)
            if order is None:
                raise NotFound("unknown_order", f"order {order_no} is not released")
            self._orders_revision += 1
            self._order_changes.pop(order_no, None)
            self._withdrawn[order_no] = (self._orders_revision, datetime.now(UTC), order)
            return self._orders_revision

    # requests seen (the SAP face records its queries, so a test can show what a sync asked for)

    def record_request(self, line: str) -> None:
        with self._lock:
            self._requests.append(line)

    def requests(self) -> list[str]:
        with self._lock:
            return list(self._requests)

    def update_equipment(
        self,
        equipment_id: str,
        *,
        calibration_status: CalibrationStatus | None = None,
        next_due: date | None = None,
        last_calibration: date | None = None,
        certificate_no: str | None = None,
    ) -> TestEquipment:
        changes: dict[str, object] = {
            name: value
            for name, value in (
                ("calibration_status", calibration_status),
                ("next_due", next_due),
                ("last_calibration", last_calibration),
                ("certificate_no", certificate_no),
            )
            if value is not None
        }
        with self._lock:
            current = self._equipment.get(equipment_id)
            if current is None:
                raise NotFound("unknown_equipment", f"equipment {equipment_id} does not exist")
            # model_validate rather than model_copy(update=...) so that the domain's validation still applies.
            updated = TestEquipment.model_validate({**current.model_dump(), **changes})
            if updated != current:
                self._equipment[equipment_id] = updated
                self._equipment_revision += 1
                self._equipment_changes[equipment_id] = self._equipment_revision
            return updated

    # postings from QualityBridge

    def book(
        self,
        kind: BookingKind,
        idempotency_key: str,
        body: dict[str, Any],
        *,
        order_no: str | None,
        operation_no: str | None,
        characteristic_id: str | None = None,
    ) -> BookingReceipt:
        """Book a posting once per idempotency key.

        A repeated key with an equal body is a redelivery: it gets the original receipt marked duplicate. A
        repeated key with another body is a client bug and is refused, because booking it would lose data silently.
        """
        document_no, duplicate = self.book_plain(
            kind,
            idempotency_key,
            body,
            order_no=order_no,
            operation_no=operation_no,
            characteristic_id=characteristic_id,
        )
        return BookingReceipt(document_no=document_no, duplicate=duplicate)

    def book_plain(
        self,
        kind: BookingKind,
        idempotency_key: str,
        body: dict[str, Any] | BaseModel,
        *,
        order_no: str | None,
        operation_no: str | None,
        characteristic_id: str | None = None,
    ) -> tuple[str, bool]:
        """`book`, answering (document number, duplicate) without a receipt model: a batch books hundreds. `body` is
        the posting's JSON form, or its validated contract model (dumped to that form when it is read)."""
        with self._lock:
            earlier = self._bookings[kind].get(idempotency_key)
            if earlier is not None:
                # Compared in the JSON form whichever way each came (a single path's dict, a batch's model).
                if _json_form(earlier.body) != _json_form(body):
                    self._counters.conflicts[kind] += 1
                    raise IdempotencyConflict(
                        "idempotency_key_reused",
                        f"Idempotency-Key {idempotency_key!r} was already used for a different {kind} posting "
                        f"({earlier.document_no})",
                    )
                earlier.deliveries += 1
                self._counters.duplicates_suppressed[kind] += 1
                return earlier.document_no, True
            try:
                if order_no is not None and operation_no is not None:
                    self._check_references(order_no, operation_no, characteristic_id)
            except UnknownReference:
                self._counters.rejected[kind] += 1
                raise
            self._document_counter[kind] += 1
            document_no = f"{_DOCUMENT_PREFIX[kind]}-{self._document_counter[kind]:06d}"
            self._bookings[kind][idempotency_key] = Booking(
                idempotency_key=idempotency_key,
                document_no=document_no,
                received_at=datetime.now(UTC),
                body=body,  # type: ignore[arg-type]  # a model until read (see Booking)
            )
            self._counters.booked[kind] += 1
            return document_no, False

    def _check_references(self, order_no: str, operation_no: str, characteristic_id: str | None) -> None:
        order = self._orders.get(order_no)
        if order is None:
            raise UnknownReference("unknown_order", f"order {order_no} is not released")
        operation = order.operation(operation_no)
        if operation is None:
            raise UnknownReference("unknown_operation", f"order {order_no} has no operation {operation_no}")
        if characteristic_id is not None and operation.characteristic(characteristic_id) is None:
            raise UnknownReference(
                "unknown_characteristic",
                f"operation {operation_no} of order {order_no} has no characteristic {characteristic_id}",
            )

    def bookings(self, kind: BookingKind) -> list[Booking]:
        """Booked postings of one kind, each once, in booking order (copies: callers may not change the state)."""
        with self._lock:
            return [
                Booking(
                    item.idempotency_key,
                    item.document_no,
                    item.received_at,
                    _json_form(item.body),
                    item.deliveries,
                )
                for item in self._bookings[kind].values()
            ]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counters = self._counters
            return {
                "booked": dict(counters.booked),
                "duplicates_suppressed": dict(counters.duplicates_suppressed),
                "duplicates_suppressed_total": sum(counters.duplicates_suppressed.values()),
                "conflicts": dict(counters.conflicts),
                "rejected": dict(counters.rejected),
                "faults_injected": dict(counters.faults_injected),
                "orders_revision": self._orders_revision,
                "equipment_revision": self._equipment_revision,
            }

    # fault injection

    def set_faults(self, plan: FaultPlan) -> None:
        with self._lock:
            self._faults = plan
            self._rng = random.Random(plan.seed)  # noqa: S311 - fault dice, not secrets

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = FaultPlan()

    def faults(self) -> FaultPlan:
        with self._lock:
            return self._faults

    def draw_fault(self) -> tuple[FaultKind, float] | None:
        """Decide whether this ERP request fails and how; returns the fault and the timeout to apply."""
        with self._lock:
            plan = self._faults
            if not plan.kinds or plan.rate <= 0 or self._rng.random() >= plan.rate:
                return None
            kind = self._rng.choice(plan.kinds)
            self._counters.faults_injected[kind] += 1
            return kind, plan.timeout_seconds
