"""Quality events (QualityEventType and its subtypes in the NodeSet), raised on QualityBridge, on the source node and
on the Server object, so that an HMI, an MES or UaExpert's Event View sees them wherever it subscribed.

| event type                          | from the bus                                      | source node     |
| ----------------------------------- | ------------------------------------------------- | --------------- |
| MeasurementOutOfToleranceEventType  | MeasurementAccepted whose evaluation is not OK    | characteristic  |
| GaugeCalibrationEventType           | MasterDataChanged that moved a gauge's status      | gauge           |
|                                     | GaugeCalibrationReminder (daily, still due)        | gauge           |
| OrderStateChangedEventType          | OrderStateChanged                                 | order           |
| PostingDeadLetteredEventType        | PostingDeadLettered (the outbox relay gave up)    | order           |
| PlanVersionChangedEventType         | PlanVersionChanged (a sync brought a new version) | characteristic  |

Every business key is an event field of its own, selectable with an EventFilter. A gauge event is raised when a
sync changes the status to Expired or DueSoon, or from one of them back to Valid; the statuses seen at start raise
nothing (they are the state, not a change).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, time
from typing import Any

from asyncua import Server, ua

from qualitybridge.domain.errors import UnknownReference
from qualitybridge.domain.events import PlanVersionChanged, PostingDeadLettered
from qualitybridge.domain.model import (
    CalibrationStatus,
    MeasurementResult,
    ProductionOrder,
    ResultEvaluation,
    TestEquipment,
)
from qualitybridge.domain.order_states import state_name
from qualitybridge.server.address_space.namespace import QualityBridgeNamespace
from qualitybridge.server.address_space.notifiers import SERVER_OBJECT, trigger_along
from qualitybridge.services.master_data import MasterData

__all__ = [
    "GAUGE_CALIBRATION_EVENT_TYPE",
    "MEASUREMENT_OUT_OF_TOLERANCE_EVENT_TYPE",
    "ORDER_STATE_CHANGED_EVENT_TYPE",
    "PLAN_VERSION_CHANGED_EVENT_TYPE",
    "POSTING_DEAD_LETTERED_EVENT_TYPE",
    "QUALITY_EVENT_TYPE",
    "QualityEvents",
]

QUALITY_EVENT_TYPE = 1014  # abstract: filter OfType(QualityEventType) for all of them
MEASUREMENT_OUT_OF_TOLERANCE_EVENT_TYPE = 1015
GAUGE_CALIBRATION_EVENT_TYPE = 1016
ORDER_STATE_CHANGED_EVENT_TYPE = 1017
POSTING_DEAD_LETTERED_EVENT_TYPE = 1018
PLAN_VERSION_CHANGED_EVENT_TYPE = 1020

_V = ua.VariantType
# asyncua takes an event field's Variant type from the declaration's default value; these have none.
_FIELDS: dict[int, dict[str, ua.VariantType]] = {
    MEASUREMENT_OUT_OF_TOLERANCE_EVENT_TYPE: {
        "OrderNumber": _V.String,
        "OperationNumber": _V.String,
        "CharacteristicId": _V.String,
        "ResultId": _V.String,
        "Value": _V.Double,
        "LowerLimit": _V.Double,
        "UpperLimit": _V.Double,
        "Evaluation": _V.Int32,
        "EquipmentId": _V.String,
        "PartSerial": _V.String,
    },
    GAUGE_CALIBRATION_EVENT_TYPE: {
        "EquipmentId": _V.String,
        "CalibrationStatus": _V.Int32,
        "PreviousCalibrationStatus": _V.Int32,
        "NextDue": _V.DateTime,
    },
    ORDER_STATE_CHANGED_EVENT_TYPE: {"OrderNumber": _V.String, "State": _V.Int32, "MaterialNumber": _V.String},
    POSTING_DEAD_LETTERED_EVENT_TYPE: {
        "IdempotencyKey": _V.String,
        "PostingKind": _V.String,
        "OrderNumber": _V.String,
        "Attempts": _V.UInt32,
        "LastError": _V.String,
    },
    PLAN_VERSION_CHANGED_EVENT_TYPE: {
        "OrderNumber": _V.String,
        "OperationNumber": _V.String,
        "CharacteristicId": _V.String,
        "PreviousPlanVersion": _V.String,
        "PlanVersion": _V.String,
        "PreviousNominal": _V.Double,
        "Nominal": _V.Double,
        "PreviousLowerLimit": _V.Double,
        "LowerLimit": _V.Double,
        "PreviousUpperLimit": _V.Double,
        "UpperLimit": _V.Double,
    },
}
_GAUGE_SEVERITY = {CalibrationStatus.EXPIRED: 800, CalibrationStatus.DUE_SOON: 500}  # back to Valid: 100


class QualityEvents:
    def __init__(self, server: Server, namespace: QualityBridgeNamespace, master_data: MasterData) -> None:
        self._server = server
        self._ns = namespace
        self._master = master_data
        self._generators: dict[int, Any] = {}
        self._gauge_status: dict[str, CalibrationStatus] = {}

    async def start(self) -> None:
        for type_id, fields in _FIELDS.items():
            generator = await self._server.get_event_generator(self._ns.node_id(type_id), self._ns.root)
            for name, variant_type in fields.items():
                generator.event.add_property(name, None, variant_type)
            self._generators[type_id] = generator
        self._gauge_status = {gauge.equipment_id: gauge.calibration_status for gauge in self._master.equipment}

    async def measurement_accepted(self, result: MeasurementResult) -> None:
        if result.evaluation is ResultEvaluation.OK:
            return
        report = result.report
        try:
            # The limits it was judged against: for a late measurement, those of the plan version then in force.
            characteristic = self._master.version_in_force(report).characteristic
            limits: tuple[float | None, float | None] = (characteristic.lower_limit, characteristic.upper_limit)
        except UnknownReference:  # withdrawn since: the event still goes out, without limits
            limits = (None, None)
        key = f"{report.order_no}/{report.operation_no}/{report.characteristic_id}"
        await self._fire(
            MEASUREMENT_OUT_OF_TOLERANCE_EVENT_TYPE,
            source=self._ns.characteristic(report.order_no, report.operation_no, report.characteristic_id),
            source_name=report.characteristic_id,
            severity=700,
            message=f"{key} = {report.value} {result.unit} out of tolerance ({result.evaluation.name})",
            OrderNumber=report.order_no,
            OperationNumber=report.operation_no,
            CharacteristicId=report.characteristic_id,
            ResultId=result.result_id,
            Value=report.value,
            LowerLimit=limits[0],
            UpperLimit=limits[1],
            Evaluation=int(result.evaluation),
            EquipmentId=report.equipment_id,
            PartSerial=report.part_serial,
        )

    async def gauges_synced(self, equipment: Iterable[TestEquipment]) -> None:
        """Compare the gauges' statuses with those seen before; an event for each move into or out of a watch."""
        for gauge in equipment:
            previous = self._gauge_status.get(gauge.equipment_id)
            now = gauge.calibration_status
            self._gauge_status[gauge.equipment_id] = now
            if previous is None or previous is now or not (previous.needs_calibration or now.needs_calibration):
                continue
            await self._fire_gauge(gauge, previous, f"calibration {previous.name} -> {now.name}")

    async def calibration_reminder(self, gauges: Iterable[TestEquipment]) -> None:
        """The daily reminder: one event per gauge still due soon or expired, its status unchanged (Previous = now).
        It changes nothing the sync compares against: a reminder is not a status change."""
        for gauge in gauges:
            status = gauge.calibration_status
            when = f", next due {gauge.next_due.isoformat()}" if gauge.next_due else ""
            await self._fire_gauge(gauge, status, f"calibration still {status.name} (daily reminder{when})")

    async def _fire_gauge(self, gauge: TestEquipment, previous: CalibrationStatus, what: str) -> None:
        now = gauge.calibration_status
        await self._fire(
            GAUGE_CALIBRATION_EVENT_TYPE,
            source=self._ns.equipment(gauge.equipment_id),
            source_name=gauge.equipment_id,
            severity=_GAUGE_SEVERITY.get(now, 100),
            message=f"test equipment {gauge.equipment_id}: {what}",
            EquipmentId=gauge.equipment_id,
            CalibrationStatus=int(now),
            PreviousCalibrationStatus=int(previous),
            NextDue=datetime.combine(gauge.next_due, time(), tzinfo=UTC) if gauge.next_due else None,
        )

    async def order_state_changed(self, order: ProductionOrder) -> None:
        await self._fire(
            ORDER_STATE_CHANGED_EVENT_TYPE,
            source=self._ns.order(order.order_no),
            source_name=order.order_no,
            severity=200,
            message=f"order {order.order_no} is {state_name(order.state)}",
            OrderNumber=order.order_no,
            State=int(order.state),
            MaterialNumber=order.material_no,
        )

    async def plan_version_changed(self, event: PlanVersionChanged) -> None:
        previous, current = event.previous, event.current
        key = f"{event.order_no}/{event.operation_no}/{current.characteristic_id}"
        await self._fire(
            PLAN_VERSION_CHANGED_EVENT_TYPE,
            source=self._ns.characteristic(event.order_no, event.operation_no, current.characteristic_id),
            source_name=current.characteristic_id,
            severity=300,
            message=f"{key}: plan version {previous.plan_version} -> {current.plan_version}, limits "
            f"[{previous.lower_limit}, {previous.upper_limit}] -> [{current.lower_limit}, {current.upper_limit}] "
            f"{current.unit}",
            OrderNumber=event.order_no,
            OperationNumber=event.operation_no,
            CharacteristicId=current.characteristic_id,
            PreviousPlanVersion=previous.plan_version,
            PlanVersion=current.plan_version,
            PreviousNominal=previous.nominal,
            Nominal=current.nominal,
            PreviousLowerLimit=previous.lower_limit,
            LowerLimit=current.lower_limit,
            PreviousUpperLimit=previous.upper_limit,
            UpperLimit=current.upper_limit,
        )

    async def posting_dead_lettered(self, event: PostingDeadLettered) -> None:
        source = self._ns.order(event.order_no) if event.order_no else self._ns.root
        await self._fire(
            POSTING_DEAD_LETTERED_EVENT_TYPE,
            source=source,
            source_name=event.order_no or "QualityBridge",
            severity=800,
            message=f"posting {event.idempotency_key} ({event.kind}) dead-lettered after {event.attempts} "
            f"attempt(s): {event.last_error}",
            IdempotencyKey=event.idempotency_key,
            PostingKind=event.kind,
            OrderNumber=event.order_no,
            Attempts=event.attempts,
            LastError=event.last_error,
        )

    async def _fire(
        self, type_id: int, *, source: ua.NodeId, source_name: str, severity: int, message: str, **fields: Any
    ) -> None:
        generator = self._generators.get(type_id)
        if generator is None:
            return  # not started (no server yet)
        event = generator.event
        for name, value in fields.items():
            setattr(event, name, value)
        event.Severity = severity
        event.SourceNode = source
        event.SourceName = source_name
        # At QualityBridge (the generator's node), at the source node, and up to the Server object.
        notifiers = [SERVER_OBJECT] if source == self._ns.root else [source, SERVER_OBJECT]
        await trigger_along(self._server, generator, notifiers, message=message)
