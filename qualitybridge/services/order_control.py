"""Moving production orders through their ISA-95 states on the shop floor's command (start, interrupt, ...).

The transition table is the domain's (`domain.order_states`); this service checks a command against the order's
current state, stores the new state (compare-and-set, so two operators pressing Start at once cannot both win),
keeps the in-memory master data current and tells the address space.
"""

from __future__ import annotations

import logging

from qualitybridge.domain.errors import UnknownReference, WrongOrderState
from qualitybridge.domain.events import OrderStateChanged
from qualitybridge.domain.model import OrderState
from qualitybridge.domain.order_states import OrderCommand, next_state, state_name
from qualitybridge.services.event_bus import EventBus
from qualitybridge.services.master_data import MasterData
from qualitybridge.store import Store

__all__ = ["OrderControl"]

_log = logging.getLogger(__name__)


class OrderControl:
    def __init__(self, store: Store, master_data: MasterData, *, events: EventBus | None = None) -> None:
        self._store = store
        self._master = master_data
        self._events = events or EventBus()

    async def apply(self, order_no: str, command: OrderCommand, by: str) -> OrderState:
        """Carry out `command` on a released order and answer its new state; WrongOrderState if not allowed now."""
        order = self._master.order(order_no)
        if order is None:
            raise UnknownReference("OrderNumber", f"order {order_no!r} is not released to the shop floor")
        target = next_state(order.state, command)
        if not await self._store.change_order_state(order_no, order.state, target):
            raise WrongOrderState(
                "OrderNumber", f"order {order_no} changed state meanwhile; read its State and decide again"
            )
        changed = self._master.set_order_state(order_no, target)
        _log.info(
            "order %s: %s by %s, %s -> %s", order_no, command.value, by, state_name(order.state), state_name(target)
        )
        if changed is not None:
            await self._events.publish(OrderStateChanged(changed))
        return target
