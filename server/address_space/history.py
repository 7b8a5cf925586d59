"""HistoryRead (raw) of every characteristic's LastValue, answered from the store's measurement_results: the
series the ERP gets is the series OPC UA clients read, with no second copy kept for history.

One answer holds at most `max_values` points (and at most NumValuesPerNode if the client asks for fewer); the
rest is behind a continuation point. The point is stateless: it carries the (measured_at, result_id) of the last
point returned, so the server holds nothing per client, a restart does not invalidate it, and
ReleaseContinuationPoints has nothing to free. Bounds follow OPC 10000-11 ReadRawModifiedDetails: StartTime is
included, EndTime is not; StartTime after EndTime (or only EndTime) reads backwards. ReturnBounds is not
supported (measurements are discrete samples; no bounding values are invented).

StatusCode of each value (docs/information-model.md#history): OK → Good; NotOK (outside the tolerance, i.e.
outside LastValue.EURange) → UncertainEngineeringUnitsExceeded; Undefined/NotDecidable → Uncertain.

HistoryRead of events (ReadEventDetails) at the QualityBridge object or the Server object answers the quality events
from the store: a MeasurementReportedEventType per accepted measurement (Time = arrival) and an SpcAlarmEventType
per SPC alarm, forwards from StartTime, with the EventFilter's select clauses and (asyncua's) where-clause evaluation.

asyncua internals: InternalServer.history_manager (HistoryManager.read_history, called by InternalSession)
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

from asyncua import Server, ua
from asyncua.common.events import get_event_obj_from_type_node
from asyncua.common.node import Node
from asyncua.server.history import HistoryManager
from asyncua.server.internal_server import InternalServer
from asyncua.server.monitored_item_service import WhereClauseEvaluator

from qualitybridge.domain.model import ResultEvaluation
from qualitybridge.server.address_space.measurement_reported import describe_result
from qualitybridge.server.address_space.notifiers import SERVER_OBJECT
from qualitybridge.server.address_space.spc_alarm_events import _FIELD_TYPES as _ALARM_FIELD_TYPES
from qualitybridge.server.address_space.spc_alarm_events import SPC_ALARM_EVENT_TYPE
from qualitybridge.server.methods.arguments import status_code
from qualitybridge.store.measurement_history import QualityEvent, SeriesPoint, SeriesQuery

__all__ = ["SeriesSource", "StoreHistoryManager", "install_store_history", "value_status"]

_log = logging.getLogger(__name__)

_SERIES_NODE = re.compile(r"^Order/(?P<order>[^/]+)/Op/(?P<operation>[^/]+)/Char/(?P<characteristic>.+)\.LastValue$")
_CONTINUATION_PREFIX = "qb1"
# OPC UA's "no time given": DateTime.MinValue (1601-01-01), which clients send for an open bound.
_NO_TIME = datetime(1601, 1, 2, tzinfo=UTC)

_STATUS_BY_EVALUATION = {
    ResultEvaluation.OK: ua.StatusCodes.Good,
    ResultEvaluation.NOT_OK: ua.StatusCodes.UncertainEngineeringUnitsExceeded,
    ResultEvaluation.NOT_DECIDABLE: ua.StatusCodes.Uncertain,
    ResultEvaluation.UNDEFINED: ua.StatusCodes.Uncertain,
}


MEASUREMENT_REPORTED_EVENT_TYPE = 1010  # ns=QualityBridge;i=1010 in the NodeSet
_MEASUREMENT_FIELD_TYPES = {
    "OrderNumber": ua.VariantType.String,
    "OperationNumber": ua.VariantType.String,
    "CharacteristicId": ua.VariantType.String,
    "ResultId": ua.VariantType.String,
    "Value": ua.VariantType.Double,
    "Evaluation": ua.VariantType.Int32,
}


class SeriesSource(Protocol):
    async def measurement_series(self, query: SeriesQuery) -> list[SeriesPoint]: ...

    async def quality_events(
        self, start: datetime, end: datetime | None, limit: int, after: tuple[datetime, str] | None = None
    ) -> list[QualityEvent]: ...


def value_status(evaluation: ResultEvaluation) -> ua.StatusCode:
    """The StatusCode a stored value carries in HistoryRead, from its evaluation against the tolerance."""
    return status_code(_STATUS_BY_EVALUATION[evaluation])


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None if aware < _NO_TIME else aware.astimezone(UTC)


def _encode_continuation(point: SeriesPoint) -> bytes:
    return _cursor(point.measured_at, point.result_id)


def _cursor(moment: datetime, key: str) -> bytes:
    return f"{_CONTINUATION_PREFIX}|{moment.astimezone(UTC).isoformat()}|{key}".encode()


def _decode_continuation(raw: bytes) -> tuple[datetime, str] | None:
    try:
        prefix, at, result_id = raw.decode().split("|", 2)
        moment = datetime.fromisoformat(at)
    except ValueError:
        return None
    if prefix != _CONTINUATION_PREFIX or not result_id or moment.tzinfo is None:
        return None
    return moment, result_id


@dataclass(frozen=True)
class _SeriesKey:
    order_no: str
    operation_no: str
    characteristic_id: str


def _failed(code: int) -> ua.HistoryReadResult:
    return ua.HistoryReadResult(StatusCode=status_code(code))


class StoreHistoryManager(HistoryManager):
    """asyncua's HistoryManager with raw reads of LastValue nodes served from the store."""

    def __init__(self, iserver: InternalServer, source: SeriesSource, namespace_index: int, max_values: int) -> None:
        super().__init__(iserver)
        self._source = source
        self._namespace_index = namespace_index
        self._max_values = max_values
        self._templates: dict[int, Any] = {}  # asyncua Events: fields are set as attributes

    def series_key(self, node_id: ua.NodeId) -> _SeriesKey | None:
        if node_id.NamespaceIndex != self._namespace_index or not isinstance(node_id.Identifier, str):
            return None
        match = _SERIES_NODE.match(node_id.Identifier)
        if match is None:
            return None
        return _SeriesKey(match["order"], match["operation"], match["characteristic"])

    async def read_history(self, params: ua.HistoryReadParameters) -> list[ua.HistoryReadResult]:
        details = params.HistoryReadDetails
        if params.ReleaseContinuationPoints:
            # Stateless points: nothing is held, so releasing always succeeds and returns no data.
            return [ua.HistoryReadResult() for _ in params.NodesToRead]
        if isinstance(details, ua.ReadEventDetails):
            return [await self._read_events(details, item) for item in params.NodesToRead]
        if not isinstance(details, ua.ReadRawModifiedDetails):
            return await super().read_history(params)
        results = []
        for item in params.NodesToRead:
            key = self.series_key(item.NodeId)
            if key is None or details.IsReadModified:
                results.append(_failed(ua.StatusCodes.BadHistoryOperationUnsupported))
            else:
                results.append(await self._read_raw(key, details, item, params.TimestampsToReturn))
        return results

    async def _read_raw(
        self, key: _SeriesKey, details: ua.ReadRawModifiedDetails, item: ua.HistoryReadValueId, timestamps: Any
    ) -> ua.HistoryReadResult:
        if timestamps == ua.TimestampsToReturn.Neither:
            return _failed(ua.StatusCodes.BadTimestampsToReturnInvalid)
        start, end = _utc(details.StartTime), _utc(details.EndTime)
        requested = int(details.NumValuesPerNode or 0)
        if start is None and end is None:
            return _failed(ua.StatusCodes.BadHistoryOperationInvalid)
        if (start is None or end is None) and requested == 0:
            # An open interval needs a count (OPC 10000-11 6.4.3.2), else the answer would be "everything".
            return _failed(ua.StatusCodes.BadHistoryOperationInvalid)
        backwards = start is None or (end is not None and start > end)
        if start is None and end is not None:
            # Only EndTime: the values before it, newest first; EndTime itself stays excluded (store precision: 1 µs).
            start, end = end - timedelta(microseconds=1), None
        after = None
        if item.ContinuationPoint:
            after = _decode_continuation(item.ContinuationPoint)
            if after is None:
                return _failed(ua.StatusCodes.BadContinuationPointInvalid)
        page_size = min(requested, self._max_values) if requested else self._max_values
        points = await self._source.measurement_series(
            SeriesQuery(
                order_no=key.order_no,
                operation_no=key.operation_no,
                characteristic_id=key.characteristic_id,
                start=start,
                end=end,
                limit=page_size + 1,
                backwards=backwards,
                after=after,
            )
        )
        more = len(points) > page_size
        points = points[:page_size]
        with_source = timestamps in (ua.TimestampsToReturn.Source, ua.TimestampsToReturn.Both)
        with_server = timestamps in (ua.TimestampsToReturn.Server, ua.TimestampsToReturn.Both)
        values = [
            ua.DataValue(
                Value=ua.Variant(point.value, ua.VariantType.Double),
                StatusCode=value_status(point.evaluation),
                SourceTimestamp=cast(ua.DateTime, point.measured_at) if with_source else None,
                ServerTimestamp=cast(ua.DateTime, point.received_at) if with_server else None,
            )
            for point in points
        ]
        return ua.HistoryReadResult(
            HistoryData=ua.HistoryData(DataValues=values),
            ContinuationPoint=_encode_continuation(points[-1]) if more and points else None,
        )

    async def _read_events(self, details: ua.ReadEventDetails, item: ua.HistoryReadValueId) -> ua.HistoryReadResult:
        if item.NodeId not in (SERVER_OBJECT, ua.NodeId(ua.String("QualityBridge"), ua.Int16(self._namespace_index))):
            return _failed(ua.StatusCodes.BadHistoryOperationUnsupported)
        start, end = _utc(details.StartTime), _utc(details.EndTime)
        if start is None or (end is not None and end < start):
            # Only forwards reading is offered for events.
            return _failed(ua.StatusCodes.BadHistoryOperationUnsupported)
        after = None
        if item.ContinuationPoint:
            after = _decode_continuation(item.ContinuationPoint)
            if after is None:
                return _failed(ua.StatusCodes.BadContinuationPointInvalid)
        requested = int(details.NumValuesPerNode or 0)
        page_size = min(requested, self._max_values) if requested else self._max_values
        stored = await self._source.quality_events(start, end, page_size + 1, after)
        more = len(stored) > page_size
        stored = stored[:page_size]
        where = WhereClauseEvaluator(_log, self.iserver.aspace, details.Filter.WhereClause)
        fields = []
        for record in stored:
            event = await self._event(record)
            if where.eval(event):
                fields.append(ua.HistoryEventFieldList(EventFields=event.to_event_fields(details.Filter.SelectClauses)))
        return ua.HistoryReadResult(
            HistoryData=ua.HistoryEvent(Events=fields),
            ContinuationPoint=_cursor(stored[-1].at, stored[-1].key) if more and stored else None,
        )

    async def _template(self, type_id: int, field_types: dict[str, ua.VariantType]) -> Any:
        template = self._templates.get(type_id)
        if template is None:
            template = await get_event_obj_from_type_node(
                Node(self.iserver.isession, ua.NodeId(ua.Int32(type_id), ua.Int16(self._namespace_index)))
            )
            for name, variant_type in field_types.items():
                template.add_property(name, None, variant_type)
            self._templates[type_id] = template
        event = copy.copy(template)
        event.data_types = dict(template.data_types)
        return event

    async def _event(self, record: QualityEvent) -> Any:
        root = ua.NodeId(ua.String("QualityBridge"), ua.Int16(self._namespace_index))
        if record.measurement is not None:
            event = await self._template(MEASUREMENT_REPORTED_EVENT_TYPE, _MEASUREMENT_FIELD_TYPES)
            message = describe_result(event, record.measurement.result)
            event.SourceNode = root
            event.SourceName = "QualityBridge"
            event.Message = ua.LocalizedText(message)
        elif record.alarm is not None:
            alarm = record.alarm.alarm
            event = await self._template(SPC_ALARM_EVENT_TYPE, _ALARM_FIELD_TYPES)
            event.OrderNumber = alarm.order_no
            event.OperationNumber = alarm.operation_no
            event.CharacteristicId = alarm.characteristic_id
            event.AlarmId = record.alarm.alarm_id
            event.Rule = alarm.rule
            event.RuleNumber = alarm.rule_number or 0
            event.ResultId = alarm.result_id or ""
            event.Value = alarm.value
            event.CenterLine = alarm.center_line
            event.UCL = alarm.upper_control_limit
            event.LCL = alarm.lower_control_limit
            event.Severity = alarm.severity
            event.SourceNode = ua.NodeId(
                ua.String(f"Order/{alarm.order_no}/Op/{alarm.operation_no}/Char/{alarm.characteristic_id}"),
                ua.Int16(self._namespace_index),
            )
            event.SourceName = alarm.characteristic_id
            event.Message = ua.LocalizedText(alarm.message)
        else:
            raise ValueError(f"quality event {record.key} has neither a measurement nor an alarm")
        event.EventId = record.key.encode()
        event.Time = record.at
        event.ReceiveTime = record.at
        return event


def install_store_history(server: Server, namespace_index: int, source: SeriesSource, *, max_values: int) -> None:
    """Make the server answer HistoryRead of LastValue nodes and of quality events from `source` (replaces asyncua's
    HistoryManager), and advertise event history on the QualityBridge and Server objects (EventNotifier bit 2)."""
    server.iserver.history_manager = StoreHistoryManager(server.iserver, source, namespace_index, max_values)
    for notifier in (SERVER_OBJECT, ua.NodeId(ua.String("QualityBridge"), ua.Int16(namespace_index))):
        node_data = server.iserver.aspace.get(notifier)
        if node_data is None:
            continue
        attribute = node_data.attributes[ua.AttributeIds.EventNotifier]
        current = int(attribute.value.Value.Value or 0) if attribute.value and attribute.value.Value else 0
        attribute.value = ua.DataValue(ua.Variant(current | ua.EventNotifier.HistoryRead.mask, ua.VariantType.Byte))
