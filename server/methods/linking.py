"""Links every shop-floor method to its node on the QualityBridge object: the one place a handler is bound.

ReportMeasurement, ReportMeasurements, ReportConfirmation, ReportSpcAlarm and the five order methods are declared
in the NodeSet (`QualityBridge.<Name>`); here each gets its handler's bound coroutine `call` (asyncua runs any
other callable in a thread pool, where the caller context is lost).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from asyncua import Server, ua

from qualitybridge.domain.events import MethodCallAnswered
from qualitybridge.domain.order_states import OrderCommand
from qualitybridge.server.address_space.namespace import QualityBridgeNamespace
from qualitybridge.server.methods.measurements import ReportMeasurementMethod, ReportMeasurementsMethod
from qualitybridge.server.methods.orders import ORDER_METHOD_NAMES, OrderCommandMethod
from qualitybridge.server.methods.production_reports import ReportConfirmationMethod, ReportSpcAlarmMethod
from qualitybridge.services.confirmations import ConfirmationService
from qualitybridge.services.event_bus import EventBus
from qualitybridge.services.order_control import OrderControl
from qualitybridge.services.reporting import ReportingService
from qualitybridge.services.spc_alarms import SpcAlarmService

__all__ = ["ShopFloorServices", "link_shop_floor_methods"]


@dataclass(frozen=True)
class ShopFloorServices:
    reporting: ReportingService
    confirmations: ConfirmationService
    spc_alarms: SpcAlarmService
    orders: OrderControl
    max_batch_size: int


Handler = Callable[..., Awaitable[ua.CallMethodResult]]


def _announced(method: str, handler: Handler, events: EventBus) -> Handler:
    """The handler, raising MethodCallAnswered (name, StatusCode, duration) on the bus after every answer."""

    async def call(parent: ua.NodeId, *arguments: ua.Variant) -> ua.CallMethodResult:
        started = time.perf_counter()
        status = "BadInternalError"
        try:
            result = await handler(parent, *arguments)
            status = result.StatusCode.name
            return result
        finally:
            await events.publish(MethodCallAnswered(method, status, time.perf_counter() - started))

    return call


def link_shop_floor_methods(
    server: Server, namespace: QualityBridgeNamespace, services: ShopFloorServices, events: EventBus | None = None
) -> None:
    master = services.reporting.master_data
    handlers = {
        "ReportMeasurement": ReportMeasurementMethod(services.reporting).call,
        "ReportMeasurements": ReportMeasurementsMethod(services.reporting, max_batch_size=services.max_batch_size).call,
        "ReportConfirmation": ReportConfirmationMethod(services.confirmations, master).call,
        "ReportSpcAlarm": ReportSpcAlarmMethod(services.spc_alarms, master).call,
    }
    for command in OrderCommand:
        handlers[ORDER_METHOD_NAMES[command]] = OrderCommandMethod(services.orders, master, command).call
    for name, handler in handlers.items():
        linked = handler if events is None else _announced(name, handler, events)
        server.link_method(server.get_node(namespace.root_child(name)), linked)
