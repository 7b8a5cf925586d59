"""QualityBridge.StartOrder, InterruptOrder, ResumeOrder, EndOrder, AbortOrder: the shop floor moves an order.

One handler class, one instance per command. Permission CONTROL_ORDERS for the order's work centre; a command the
order's current state does not allow is refused with BadInvalidState (domain.order_states has the table).
"""

from __future__ import annotations

from typing import Any

from asyncua import ua

from qualitybridge.domain.order_states import OrderCommand
from qualitybridge.server.methods.arguments import ArgumentSpec
from qualitybridge.server.methods.results import guarded_call
from qualitybridge.server.security.permissions import Permission
from qualitybridge.services.master_data import MasterData
from qualitybridge.services.order_control import OrderControl

__all__ = ["ORDER_COMMAND_ARGUMENTS", "ORDER_METHOD_NAMES", "OrderCommandMethod"]

ORDER_COMMAND_ARGUMENTS: tuple[ArgumentSpec, ...] = (
    ArgumentSpec("OrderNumber", (ua.VariantType.String,), max_length=32),
)

ORDER_METHOD_NAMES: dict[OrderCommand, str] = {
    OrderCommand.START: "StartOrder",
    OrderCommand.INTERRUPT: "InterruptOrder",
    OrderCommand.RESUME: "ResumeOrder",
    OrderCommand.END: "EndOrder",
    OrderCommand.ABORT: "AbortOrder",
}


class OrderCommandMethod:
    """Handler for one of the order methods; link `call`. Answers the order's new state (OrderStateEnum)."""

    def __init__(self, control: OrderControl, master_data: MasterData, command: OrderCommand) -> None:
        self._control = control
        self._master = master_data
        self._command = command
        self._name = ORDER_METHOD_NAMES[command]

    async def call(self, _parent: ua.NodeId, *arguments: ua.Variant) -> ua.CallMethodResult:
        return await guarded_call(
            self._name, Permission.CONTROL_ORDERS, ORDER_COMMAND_ARGUMENTS, arguments, self._work_centre, self._apply
        )

    def _work_centre(self, values: dict[str, Any]) -> str | None:
        order = self._master.order(values["OrderNumber"])
        return None if order is None else order.work_centre

    async def _apply(self, values: dict[str, Any], who: str) -> list[ua.Variant]:
        state = await self._control.apply(values["OrderNumber"], self._command, by=who)
        return [ua.Variant(int(state), ua.VariantType.Int32)]
