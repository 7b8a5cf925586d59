"""The OPC UA view as a publisher on the event bus: each domain event becomes what a client of the address space
sees (nodes added or changed, a MeasurementReported, SpcAlarm or quality event, the diagnostics values).

A second publisher (MQTT, a status page) is one more class of this shape, added to the bus in the composition root.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence

from asyncua import Server

from qualitybridge.domain.events import (
    DiagnosticsChanged,
    DomainEvent,
    ErpSyncFinished,
    GaugeCalibrationReminder,
    KpiReportQueued,
    MasterDataChanged,
    MeasurementAccepted,
    OrderStateChanged,
    PlanVersionChanged,
    PostingDeadLettered,
    SpcAlarmRaised,
    SpcStatusChanged,
)
from qualitybridge.domain.model import MeasurementResult, ResultEvaluation, SyncFinding
from qualitybridge.domain.publication import PublicationScope
from qualitybridge.server.address_space.kpi_nodes import KpiNodes
from qualitybridge.server.address_space.namespace import QualityBridgeNamespace
from qualitybridge.server.address_space.quality_events import QualityEvents
from qualitybridge.server.address_space.spc_alarm_events import SpcAlarmEvents
from qualitybridge.server.address_space.spc_conditions import SpcConditions
from qualitybridge.server.address_space.view import AddressSpaceView
from qualitybridge.services.diagnostics import Diagnostics
from qualitybridge.services.master_data import MasterData

__all__ = ["OpcUaPublisher"]

_log = logging.getLogger(__name__)


class OpcUaPublisher:
    """Implements the domain's `Publisher` port for the address space."""

    def __init__(
        self,
        server: Server,
        namespace: QualityBridgeNamespace,
        master_data: MasterData,
        diagnostics: Diagnostics | None = None,
        scope: PublicationScope | None = None,
    ) -> None:
        self.view = AddressSpaceView(server, namespace, scope=scope)
        self._spc_alarms = SpcAlarmEvents(server, namespace)
        self.spc_conditions = SpcConditions(server, namespace)
        self.quality_events = QualityEvents(server, namespace, master_data)
        self.kpis = KpiNodes(server, namespace)
        self._master = master_data
        self._diagnostics = diagnostics

    async def start(self) -> None:
        """Create the event generators; call once the server has started."""
        await self.view.start()
        await self._spc_alarms.start()
        await self.spc_conditions.start()
        await self.quality_events.start()
        await self.kpis.start()

    async def show_master_data(self) -> None:
        """Publish the released orders and gauges as the in-memory master data has them now."""
        await self.view.show(self._master.orders, self._master.equipment)
        if self._diagnostics is None:
            return
        unshown = tuple(
            SyncFinding(key=f"order {order_no}", reason=f"not shown in the address space: {reason}")
            for order_no, reason in sorted(self.view.unshown.items())
        )
        if unshown != self._diagnostics.view_findings:
            self._diagnostics.view_findings = unshown
            await self._diagnostics.changed()

    async def publish_burst(self, events: Sequence[DomainEvent]) -> None:
        """The events of one call: a report batch's measurements are shown together (each characteristic's values
        once, per result its events); any other event as `publish` shows it, in order. A failing part is logged
        and stops none of the others (the bus's policy, per event)."""
        if len(events) == 1 and type(events[0]) is SpcStatusChanged:
            # Every report call's second event (its characteristic's chart state): shown without the walk below.
            await _guarded("SpcStatusChanged", self.view.show_spc(events[0]))
            return
        measured: list[MeasurementResult] = []
        for event in events:
            if isinstance(event, MeasurementAccepted):
                measured.append(event.result)
                continue
            if not isinstance(event, _SHOWN):
                continue  # e.g. every call's MethodCallAnswered, which is the metrics' to show
            if measured:
                await self._show_measured(measured)
                measured = []
            await _guarded(type(event).__name__, self.publish(event))
        if measured:
            await self._show_measured(measured)

    async def _show_measured(self, results: list[MeasurementResult]) -> None:
        await _guarded(f"{len(results)} results", self.view.show_results(results))
        for result in results:
            if result.evaluation is not ResultEvaluation.OK:  # only those raise a quality event
                await _guarded(f"result {result.result_id}", self.quality_events.measurement_accepted(result))

    async def publish(self, event: DomainEvent) -> None:
        match event:
            case MasterDataChanged():
                await self.show_master_data()
                await self.quality_events.gauges_synced(self._master.equipment)
            case OrderStateChanged(order=order):
                await self.show_master_data()
                await self.quality_events.order_state_changed(order)
            case MeasurementAccepted(result=result):
                await self.view.show_result(result)
                await self.quality_events.measurement_accepted(result)
            case PostingDeadLettered():
                await self.quality_events.posting_dead_lettered(event)
            case PlanVersionChanged():
                await self.quality_events.plan_version_changed(event)
            case GaugeCalibrationReminder(gauges=gauges):
                await self.quality_events.calibration_reminder(gauges)
            case SpcAlarmRaised(record=record):
                await self._spc_alarms.raise_alarm(record)
                await self.spc_conditions.raise_alarm(record)
            case SpcStatusChanged():
                await self.view.show_spc(event)
            case KpiReportQueued(report=report):
                await self.kpis.show(report)
            case DiagnosticsChanged():
                await self.view.show_diagnostics(event)
            case ErpSyncFinished() if self.view.scope.depends_on_time:
                await self.show_master_data()  # orders enter and leave a window of planned dates as days pass
            case _:
                pass


# The events `publish` shows something for; the bus hands this publisher every event, most of them not its own.
_SHOWN = (
    MasterDataChanged,
    OrderStateChanged,
    MeasurementAccepted,
    PostingDeadLettered,
    PlanVersionChanged,
    GaugeCalibrationReminder,
    SpcAlarmRaised,
    SpcStatusChanged,
    KpiReportQueued,
    DiagnosticsChanged,
    ErpSyncFinished,
)


async def _guarded(what: str, publication: Awaitable[None]) -> None:
    try:
        await publication
    except Exception:
        _log.exception("publishing %s failed", what)
