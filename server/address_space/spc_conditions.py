"""SPC alarms as OPC UA Alarms & Conditions: one SpcAlarmType condition per characteristic.

A stored SPC alarm (a Nelson rule violation the SPC engine found, or one a machine reported with ReportSpcAlarm)
makes its characteristic's condition Active, unacknowledged and unconfirmed, and fires an event of the condition
with the alarm's business keys, also when the condition is still active from an earlier alarm. A quality engineer
acknowledges it (AcknowledgeableConditionType.Acknowledge) and confirms it (Confirm): each changes the state for
every subscriber, and a confirmed condition becomes inactive and is no longer retained. Machines and observers get
BadUserAccessDenied. ConditionRefresh answers with the retained conditions, at QualityBridge and at the Server object.

The condition object (`<characteristic>.SpcAlarm`, HasCondition from the characteristic) is created on the first
alarm, without the state variables of the type: the events carry the state, and clients acknowledge through the
type's methods with the ConditionId as ObjectId, as the standard has them do. Condition states live in memory.
"""

from __future__ import annotations

import copy
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asyncua import Server, ua
from asyncua.common.methods import uamethod
from asyncua.server.event_generator import EventGenerator

from qualitybridge.domain.records import SpcAlarmRecord
from qualitybridge.server.address_space.namespace import QualityBridgeNamespace
from qualitybridge.server.address_space.notifiers import SERVER_OBJECT
from qualitybridge.server.methods.arguments import status_code
from qualitybridge.server.methods.results import caller_name
from qualitybridge.server.security.permissions import METHOD_PERMISSIONS, AccessDenied, authorize

__all__ = ["SPC_ALARM_TYPE", "SpcConditions"]

_log = logging.getLogger(__name__)

SPC_ALARM_TYPE = 1013  # ns=QualityBridge;i=1013 in the NodeSet
_V = ua.VariantType
_FIELD_TYPES = {
    "OrderNumber": _V.String,
    "OperationNumber": _V.String,
    "CharacteristicId": _V.String,
    "Rule": _V.String,
    "RuleNumber": _V.Byte,
    "ResultId": _V.String,
    "Value": _V.Double,
    "CenterLine": _V.Double,
    "UCL": _V.Double,
    "LCL": _V.Double,
}
_BUILT_IN = {
    ua.ObjectIds.UtcTime: _V.DateTime,
    ua.ObjectIds.Duration: _V.Double,
    ua.ObjectIds.AudioDataType: _V.ByteString,
}
_ACKNOWLEDGE = ua.NodeId(ua.Int32(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge))
_CONFIRM = ua.NodeId(ua.Int32(ua.ObjectIds.AcknowledgeableConditionType_Confirm))
_REFRESH = ua.NodeId(ua.Int32(ua.ObjectIds.ConditionType_ConditionRefresh))
_REFRESH2 = ua.NodeId(ua.Int32(ua.ObjectIds.ConditionType_ConditionRefresh2))
_STATISTICAL = ua.NodeId(ua.Int32(ua.ObjectIds.StatisticalConditionClassType))


@dataclass
class _Condition:
    node_id: ua.NodeId
    event: Any
    event_ids: set[bytes] = field(default_factory=set)  # events fired since it last became active

    @property
    def acked(self) -> bool:
        return bool(getattr(self.event, "AckedState/Id"))

    @property
    def confirmed(self) -> bool:
        return bool(getattr(self.event, "ConfirmedState/Id"))


def _state(event: Any, name: str, value: bool, true_text: str, false_text: str, now: datetime) -> None:
    setattr(event, f"{name}/Id", value)
    setattr(event, name, ua.LocalizedText(true_text if value else false_text))
    setattr(event, f"{name}/TransitionTime", now)


class SpcConditions:
    def __init__(self, server: Server, namespace: QualityBridgeNamespace) -> None:
        self._server = server
        self._ns = namespace
        self._prototype: Any = None
        self._conditions: dict[ua.NodeId, _Condition] = {}

    async def start(self) -> None:
        generator = EventGenerator(self._server.iserver.isession)
        await generator.init(self._ns.node_id(SPC_ALARM_TYPE), emitting_node=self._ns.root)
        event = generator.event
        for name, variant_type in _FIELD_TYPES.items():
            event.add_property(name, None, variant_type)
        # asyncua 2.1 keeps the DataType NodeId of fields whose type is a subtype (UtcTime, Duration, AudioDataType)
        # and then fails to build their Variant; name the built-in type they encode as.
        for name, data_type in list(event.data_types.items()):
            if isinstance(data_type, ua.NodeId):
                identifier = data_type.Identifier
                event.data_types[name] = (
                    _BUILT_IN.get(identifier, _V.Variant) if isinstance(identifier, int) else _V.Variant
                )
        event.ConditionClassId = _STATISTICAL
        event.ConditionClassName = ua.LocalizedText("Statistical")
        event.ConditionName = "SpcAlarm"
        event.Quality = status_code(ua.StatusCodes.Good)
        now = datetime.now(UTC)
        _state(event, "EnabledState", True, "Enabled", "Disabled", now)
        self._prototype = event
        session = self._server.iserver.isession
        session.add_method_callback(_ACKNOWLEDGE, self.acknowledge)
        session.add_method_callback(_CONFIRM, self.confirm)
        session.add_method_callback(_REFRESH, self._refresh)
        session.add_method_callback(_REFRESH2, self._refresh)

    # ---- raising ----------------------------------------------------------------------------------

    async def raise_alarm(self, record: SpcAlarmRecord) -> None:
        if self._prototype is None:
            return
        alarm = record.alarm
        source = self._ns.characteristic(alarm.order_no, alarm.operation_no, alarm.characteristic_id)
        condition = await self._condition(source, alarm.characteristic_id)
        event = condition.event
        now = datetime.now(UTC)
        if condition.confirmed or not getattr(event, "ActiveState/Id"):
            condition.event_ids.clear()  # a new activation: earlier events can no longer be acknowledged
        event.OrderNumber = alarm.order_no
        event.OperationNumber = alarm.operation_no
        event.CharacteristicId = alarm.characteristic_id
        event.Rule = alarm.rule
        event.RuleNumber = alarm.rule_number or 0
        event.ResultId = alarm.result_id or ""
        event.Value = alarm.value
        event.CenterLine = alarm.center_line
        event.UCL = alarm.upper_control_limit
        event.LCL = alarm.lower_control_limit
        event.LastSeverity = event.Severity or alarm.severity
        event.Severity = alarm.severity
        event.Comment = ua.LocalizedText("")
        event.ClientUserId = ""
        _state(event, "ActiveState", True, "Active", "Inactive", now)
        _state(event, "AckedState", False, "Acknowledged", "Unacknowledged", now)
        _state(event, "ConfirmedState", False, "Confirmed", "Unconfirmed", now)
        event.Retain = True
        text = f"{alarm.order_no}/{alarm.operation_no}/{alarm.characteristic_id}: SPC rule {alarm.rule}"
        await self._fire(condition, f"{text}: {alarm.message}" if alarm.message else text, alarm.raised_at)

    async def _condition(self, source: ua.NodeId, source_name: str) -> _Condition:
        node_id = self._ns.member(source, "SpcAlarm")
        condition = self._conditions.get(node_id)
        if condition is None:
            event = copy.deepcopy(self._prototype)
            event.NodeId = node_id
            event.SourceNode = source
            event.SourceName = source_name
            condition = _Condition(node_id, event)
            self._conditions[node_id] = condition
        if node_id not in self._server.iserver.aspace and source in self._server.iserver.aspace:
            await self._add_node(source, node_id)
        return condition

    async def _add_node(self, source: ua.NodeId, node_id: ua.NodeId) -> None:
        item = ua.AddNodesItem()
        item.RequestedNewNodeId = node_id
        item.BrowseName = ua.QualifiedName("SpcAlarm", self._ns.index)
        item.NodeClass = ua.NodeClass.Object
        item.ParentNodeId = source
        item.ReferenceTypeId = ua.NodeId(ua.Int32(ua.ObjectIds.HasComponent))
        item.TypeDefinition = self._ns.node_id(SPC_ALARM_TYPE)
        attributes = ua.ObjectAttributes()
        attributes.DisplayName = ua.LocalizedText("SpcAlarm")
        attributes.EventNotifier = 0
        item.NodeAttributes = attributes
        session = self._server.iserver.isession
        (result,) = await session.add_nodes([item])
        result.StatusCode.check()
        reference = ua.AddReferencesItem()
        reference.SourceNodeId = source
        reference.ReferenceTypeId = ua.NodeId(ua.Int32(ua.ObjectIds.HasCondition))
        reference.IsForward = True
        reference.TargetNodeId = node_id
        reference.TargetNodeClass = ua.NodeClass.Object
        await session.add_references([reference])

    async def _fire(self, condition: _Condition, message: str | None, when: datetime | None = None) -> None:
        event = condition.event
        now = datetime.now(UTC)
        event.EventId = ua.Variant(uuid.uuid4().bytes, _V.ByteString)
        condition.event_ids.add(event.EventId.Value)
        event.Time = when or now
        event.ReceiveTime = now
        if message is not None:
            event.Message = ua.LocalizedText(message)
        subscriptions = self._server.iserver.subscription_service
        try:
            for notifier in (self._ns.root, SERVER_OBJECT):
                event.emitting_node = notifier
                await subscriptions.trigger_event(event)  # keeps it for ConditionRefresh while Retain is set
        finally:
            event.emitting_node = self._ns.root

    # ---- methods ----------------------------------------------------------------------------------

    async def acknowledge(self, condition_id: ua.NodeId, *arguments: ua.Variant) -> ua.CallMethodResult:
        return await self._transition(condition_id, arguments, "Acknowledge", self._acknowledge)

    async def confirm(self, condition_id: ua.NodeId, *arguments: ua.Variant) -> ua.CallMethodResult:
        return await self._transition(condition_id, arguments, "Confirm", self._confirm)

    async def _transition(
        self, condition_id: ua.NodeId, arguments: tuple[ua.Variant, ...], method: str, change: Any
    ) -> ua.CallMethodResult:
        try:
            user = authorize(METHOD_PERMISSIONS[method])
        except AccessDenied as exc:
            _log.warning("%s refused (BadUserAccessDenied): %s", method, exc)
            return ua.CallMethodResult(StatusCode=status_code(ua.StatusCodes.BadUserAccessDenied))
        condition = self._conditions.get(condition_id)
        if condition is None:
            return ua.CallMethodResult(StatusCode=status_code(ua.StatusCodes.BadNodeIdUnknown))
        if len(arguments) < 2:
            return ua.CallMethodResult(StatusCode=status_code(ua.StatusCodes.BadArgumentsMissing))
        event_id, comment = arguments[0].Value, arguments[1].Value
        if not isinstance(event_id, bytes) or event_id not in condition.event_ids:
            return ua.CallMethodResult(StatusCode=status_code(ua.StatusCodes.BadEventIdUnknown))
        text = comment.Text if isinstance(comment, ua.LocalizedText) else ""
        status: int = await change(condition, caller_name(user), text or "")
        return ua.CallMethodResult(StatusCode=status_code(status))

    async def _acknowledge(self, condition: _Condition, who: str, comment: str) -> int:
        if condition.acked:
            return ua.StatusCodes.BadConditionBranchAlreadyAcked
        event = condition.event
        _state(event, "AckedState", True, "Acknowledged", "Unacknowledged", datetime.now(UTC))
        self._comment(event, who, comment)
        event.Retain = True  # acknowledged, but not yet confirmed
        await self._fire(condition, f"{event.Message.Text} — acknowledged by {who}")
        _log.info("SPC condition %s acknowledged by %s", condition.node_id.Identifier, who)
        return ua.StatusCodes.Good

    async def _confirm(self, condition: _Condition, who: str, comment: str) -> int:
        if not condition.acked:
            return ua.StatusCodes.BadInvalidState  # confirmed only once acknowledged
        if condition.confirmed:
            return ua.StatusCodes.BadConditionBranchAlreadyConfirmed
        event = condition.event
        now = datetime.now(UTC)
        _state(event, "ConfirmedState", True, "Confirmed", "Unconfirmed", now)
        _state(event, "ActiveState", False, "Active", "Inactive", now)
        self._comment(event, who, comment)
        event.Retain = False  # dealt with: no longer part of ConditionRefresh
        await self._fire(condition, f"{event.Message.Text} — confirmed by {who}")
        _log.info("SPC condition %s confirmed by %s", condition.node_id.Identifier, who)
        return ua.StatusCodes.Good

    @staticmethod
    def _comment(event: Any, who: str, comment: str) -> None:
        event.ClientUserId = who
        if comment:
            event.Comment = ua.LocalizedText(comment)
            setattr(event, "Comment/SourceTimestamp", datetime.now(UTC))

    @uamethod
    async def _refresh(self, _parent: ua.NodeId, subscription_id: int, mid: int | None = None) -> None:
        """ConditionRefresh(2): the retained conditions again, to subscribers at QualityBridge and at Server."""
        service = self._server.iserver.subscription_service
        subscription = service.subscriptions.get(subscription_id)
        if subscription is None:
            raise ua.UaStatusCodeError(ua.StatusCodes.BadSubscriptionIdInvalid)  # type: ignore[no-untyped-call]
        items = subscription.monitored_item_srv
        if mid is not None and mid not in items._monitored_items:
            raise ua.UaStatusCodeError(ua.StatusCodes.BadMonitoredItemIdInvalid)  # type: ignore[no-untyped-call]
        start = service.standard_events.get(ua.ObjectIds.RefreshStartEventType)
        end = service.standard_events.get(ua.ObjectIds.RefreshEndEventType)
        if start is not None:
            await start.trigger(subscription_id=subscription_id)
        for condition in self._conditions.values():
            event = condition.event
            if not event.Retain:
                continue
            try:
                for notifier in (self._ns.root, SERVER_OBJECT):
                    event.emitting_node = notifier
                    delivered = await items.trigger_event(event, mid)
                    if delivered and mid is not None:
                        break  # that one monitored item has it
            finally:
                event.emitting_node = self._ns.root
        if end is not None:
            await end.trigger(subscription_id=subscription_id)
