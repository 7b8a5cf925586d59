"""Domain events: what happened, in the past tense, after it is stored. Services raise them on one bus.

Publishers (the OPC UA view today; MQTT or a status page later) and the relay react to them; none of them can
undo the fact: an event is raised only once its data is on disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from qualitybridge.domain.kpis import KpiReport
from qualitybridge.domain.model import (
    InspectionCharacteristic,
    MeasurementResult,
    ProductionOrder,
    SnapshotChange,
    TestEquipment,
)
from qualitybridge.domain.records import ConfirmationRecord, SpcAlarmRecord
from qualitybridge.domain.spc import SpcStatus

__all__ = [
    "ConfirmationAccepted",
    "DiagnosticsChanged",
    "DomainEvent",
    "ErpSyncFinished",
    "GaugeCalibrationReminder",
    "KpiReportQueued",
    "MasterDataChanged",
    "MeasurementAccepted",
    "MethodCallAnswered",
    "OrderStateChanged",
    "PlanVersionChanged",
    "PostingAttempted",
    "PostingDeadLettered",
    "SpcAlarmRaised",
    "SpcRuleViolated",
    "SpcStatusChanged",
]


@dataclass(frozen=True)
class DomainEvent:
    """Base of every event on the bus."""


@dataclass(frozen=True)
class MasterDataChanged(DomainEvent):
    """An ERP sync changed released orders or gauges; the in-memory master data is already current."""

    change: SnapshotChange


@dataclass(frozen=True)
class GaugeCalibrationReminder(DomainEvent):
    """The daily reminder: these gauges are still due soon or expired (a gauge's status change raises its own
    event at the sync; this one repeats the watch each day so nobody forgets a gauge that stays due)."""

    gauges: tuple[TestEquipment, ...]


@dataclass(frozen=True)
class PlanVersionChanged(DomainEvent):
    """An ERP sync brought a new plan version of a characteristic (raised after MasterDataChanged, so the views
    already show the new limits). `previous` is kept in the plan history, in force until `changed_at`; a late
    measurement taken before then is judged against it. Not raised when only the routing version changed."""

    order_no: str
    operation_no: str
    previous: InspectionCharacteristic
    current: InspectionCharacteristic
    changed_at: datetime


@dataclass(frozen=True)
class MeasurementAccepted(DomainEvent):
    """A new measurement result is stored with its posting (not raised for a repeated client result id)."""

    result: MeasurementResult


@dataclass(frozen=True)
class ConfirmationAccepted(DomainEvent):
    """A new production confirmation is stored with its posting."""

    record: ConfirmationRecord


@dataclass(frozen=True)
class SpcAlarmRaised(DomainEvent):
    """An SPC alarm is stored with its posting to the QMS."""

    record: SpcAlarmRecord


@dataclass(frozen=True)
class SpcRuleViolated(SpcAlarmRaised):
    """The SPC engine found a Nelson rule violated; stored as an SPC alarm with its posting to the QMS.

    A subclass of SpcAlarmRaised: whatever reacts to alarms (the relay, the OPC UA events) reacts to this too.
    """


@dataclass(frozen=True)
class SpcStatusChanged(DomainEvent):
    """A characteristic's control chart took a value: its limits, capability and sample count as they are now."""

    order_no: str
    operation_no: str
    characteristic_id: str
    status: SpcStatus


@dataclass(frozen=True)
class OrderStateChanged(DomainEvent):
    """The shop floor moved an order to a new ISA-95 state; `order` is the order as it is now."""

    order: ProductionOrder


@dataclass(frozen=True)
class PostingDeadLettered(DomainEvent):
    """The relay gave up on a posting (refused by the ERP, or out of attempts); it waits in the dead letters."""

    idempotency_key: str
    kind: str
    order_no: str
    attempts: int
    last_error: str


@dataclass(frozen=True)
class KpiReportQueued(DomainEvent):
    """The KPIs of a period were computed and queued for the QMS (once per period)."""

    report: KpiReport


@dataclass(frozen=True)
class DiagnosticsChanged(DomainEvent):
    """The bridge's health figures as they are now: sync freshness and the outbox backlog."""

    last_sync_time: datetime | None
    last_sync_succeeded: bool
    sync_error_count: int
    last_sync_error: str
    outbox_depth: int
    outbox_dead_letters: int
    sync_findings: tuple[str, ...] = ()  # "<key>: <reason>" of each record refused by sync or view
    outbox_oldest_at: datetime | None = None
    master_data_gaps: tuple[str, ...] = ()  # "<table>, <key>, since <UTC>: holds back order …" per missing mapping
    held_back_orders: int = 0  # released orders waiting for a mapping of a table in force


# Operational events: how the bridge is doing rather than what the plant did. Metrics and status pages show them.


@dataclass(frozen=True)
class MethodCallAnswered(DomainEvent):
    """A shop-floor method (ReportMeasurement, StartOrder, …) answered a client; `status` is the StatusCode's name."""

    method: str
    status: str
    seconds: float


@dataclass(frozen=True)
class ErpSyncFinished(DomainEvent):
    """One ERP sync round ended; `error` is empty when it succeeded."""

    seconds: float
    error: str = ""


@dataclass(frozen=True)
class PostingAttempted(DomainEvent):
    """The relay tried to deliver `count` postings of one kind (`target`) with the same `outcome`: "sent", "retry"
    (ERP unavailable) or "dead". One event per kind and outcome of a round, not one per posting."""

    target: str
    outcome: str
    count: int = 1
