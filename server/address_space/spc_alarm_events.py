"""SPC alarms as OPC UA events (SpcAlarmEventType), emitted from the QualityBridge object.

An HMI or MES subscribed to events on QualityBridge sees an alarm the moment it is stored: one a machine reported,
with the severity it gave, or a Nelson rule violation found by the SPC engine, with the rule number, the result
that completed the pattern, its value and the limits. The QMS gets both through the outbox.
"""

from __future__ import annotations

from typing import Any

from asyncua import Server, ua

from qualitybridge.domain.records import SpcAlarmRecord
from qualitybridge.server.address_space.namespace import QualityBridgeNamespace
from qualitybridge.server.address_space.notifiers import SERVER_OBJECT, trigger_along

__all__ = ["SPC_ALARM_EVENT_TYPE", "SpcAlarmEvents"]

SPC_ALARM_EVENT_TYPE = 1011  # ns=QualityBridge;i=1011 in the NodeSet

_FIELD_TYPES = {
    "OrderNumber": ua.VariantType.String,
    "OperationNumber": ua.VariantType.String,
    "CharacteristicId": ua.VariantType.String,
    "AlarmId": ua.VariantType.String,
    "Rule": ua.VariantType.String,
    "RuleNumber": ua.VariantType.Byte,
    "ResultId": ua.VariantType.String,
    "Value": ua.VariantType.Double,
    "CenterLine": ua.VariantType.Double,
    "UCL": ua.VariantType.Double,
    "LCL": ua.VariantType.Double,
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
        event.RuleNumber = alarm.rule_number or 0
        event.ResultId = alarm.result_id or ""
        # Null (not 0) when the machine's alarm gave no value or limits.
        event.Value = alarm.value
        event.CenterLine = alarm.center_line
        event.UCL = alarm.upper_control_limit
        event.LCL = alarm.lower_control_limit
        event.Severity = alarm.severity
        # The source is the characteristic whose process the alarm concerns (its node may be gone: only an id).
        event.SourceNode = self._namespace.characteristic(alarm.order_no, alarm.operation_no, alarm.characteristic_id)
        event.SourceName = alarm.characteristic_id
        text = f"{alarm.order_no}/{alarm.operation_no}/{alarm.characteristic_id}: SPC rule {alarm.rule}"
        await trigger_along(
            self._server,
            self._generator,
            [SERVER_OBJECT],
            time_attr=alarm.raised_at,
            message=f"{text}: {alarm.message}" if alarm.message else text,
        )
