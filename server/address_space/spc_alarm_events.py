"""SPC alarms as OPC UA events (SpcAlarmEventType), emitted from the QualityBridge object.

An HMI or MES subscribed to events on QualityBridge sees an alarm the moment it is stored, with the severity the
machine gave it and the characteristic it concerns; the QMS gets it through the outbox.
"""

from __future__ import annotations

from typing import Any

from asyncua import Server, ua

from qualitybridge.domain.records import SpcAlarmRecord
from qualitybridge.server.address_space.namespace import QualityBridgeNamespace

__all__ = ["SPC_ALARM_EVENT_TYPE", "SpcAlarmEvents"]

SPC_ALARM_EVENT_TYPE = 1011  # ns=QualityBridge;i=1011 in the NodeSet

_FIELD_TYPES = {
    "OrderNumber": ua.VariantType.String,
    "OperationNumber": ua.VariantType.String,
    "CharacteristicId": ua.VariantType.String,
    "AlarmId": ua.VariantType.String,
    "Rule": ua.VariantType.String,
}


class SpcAlarmEvents:
    def __init__(self, server: Server, namespace: QualityBridgeNamespace) -> None:
        self._server = server
        self._namespace = namespace
        self._generator: Any = None

    async def start(self) -> None:
        self._generator = await self._server.get_event_generator(
            self._namespace.node_id(SPC_ALARM_EVENT_TYPE), self._namespace.root
        )
        # asyncua takes an event field's Variant type from the declaration's default value; these have none.
        for name, variant_type in _FIELD_TYPES.items():
            self._generator.event.add_property(name, None, variant_type)

    async def raise_alarm(self, record: SpcAlarmRecord) -> None:
        if self._generator is None:
            return
        alarm = record.alarm
        event = self._generator.event
        event.OrderNumber = alarm.order_no
        event.OperationNumber = alarm.operation_no
        event.CharacteristicId = alarm.characteristic_id
        event.AlarmId = record.alarm_id
        event.Rule = alarm.rule
        event.Severity = alarm.severity
        text = f"{alarm.order_no}/{alarm.operation_no}/{alarm.characteristic_id}: SPC rule {alarm.rule}"
        await self._generator.trigger(
            time_attr=alarm.raised_at, message=f"{text}: {alarm.message}" if alarm.message else text
        )
