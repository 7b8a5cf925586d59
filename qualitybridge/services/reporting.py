"""Accepting measurements: check them against the released master data, judge them, store them durably.

The master data is held in memory (`MasterData`), refreshed from the store after every ERP sync, so the
report path reads no database row to validate; it writes one transaction (results + outbox rows), however many
measurements a call brings. A measurement is accepted only for a Running or Interrupted order, with a gauge that
is known, not blocked and of the type the characteristic asks for; a blocked gauge's attempt is kept on record.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from qualitybridge.domain.errors import (
    ClientIdReused,
    GaugeBlocked,
    InconsistentReport,
    InvalidValue,
    ReportRefused,
    UnknownReference,
    WrongOrderState,
)
from qualitybridge.domain.events import MeasurementAccepted
from qualitybridge.domain.ids import new_result_ids
from qualitybridge.domain.model import (
    CalibrationStatus,
    InspectionCharacteristic,
    MeasurementReport,
    MeasurementResult,
    TestEquipment,
    checked_instance,
)
from qualitybridge.domain.order_states import accepts_measurements, state_name
from qualitybridge.domain.plan_versions import VersionInForce
from qualitybridge.domain.records import AcceptedMeasurement, RefusedMeasurement
from qualitybridge.services.event_bus import EventBus
from qualitybridge.services.master_data import MasterData
from qualitybridge.store import Store

__all__ = ["MeasurementOutcome", "ReportingService"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MeasurementOutcome:
    """One report's answer: the stored measurement (for a repeated client result id: the first one), or why not."""

    stored: AcceptedMeasurement | None = None
    refusal: ReportRefused | None = None
    created: bool = False


class ReportingService:
    def __init__(
        self,
        store: Store,
        master_data: MasterData,
        *,
        events: EventBus | None = None,
        future_tolerance: timedelta = timedelta(minutes=5),
        measured_at_margin: timedelta = timedelta(days=30),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._master = master_data
        self._future_tolerance = future_tolerance
        self._measured_at_margin = measured_at_margin
        self._clock = clock
        self._events = events or EventBus()

    @property
    def master_data(self) -> MasterData:
        return self._master

    async def report_measurement(self, report: MeasurementReport, reported_by: str) -> MeasurementResult:
        """Validate, judge and store one measurement; raises a ReportRefused subclass when refused."""
        (outcome,) = await self.report_measurements([report], reported_by)
        if outcome.refusal is not None:
            raise outcome.refusal
        if outcome.stored is None:  # pragma: no cover - an outcome is either stored or refused
            raise RuntimeError("measurement neither stored nor refused")
        return outcome.stored.result

    async def report_measurements(
        self, reports: Sequence[MeasurementReport], reported_by: str
    ) -> list[MeasurementOutcome]:
        """Judge every report on its own and store all accepted ones (and blocked-gauge attempts) in one commit.

        A report repeating a client result id the same user stored before gets that first measurement back, even
        if it would no longer be accepted now: the machine is retrying a call whose answer it lost. Client ids are
        the caller's own (another user's id is another report); an id used before for a report of other content
        is refused (ClientIdReused), not answered with the other report's result.
        """
        now = self._clock()
        outcomes: list[MeasurementOutcome] = []
        accepted: list[AcceptedMeasurement] = []
        accepted_at: list[int] = []
        refused: list[tuple[int, MeasurementReport, ReportRefused]] = []
        # One pass over the batch: what its entries share (the characteristic in force, the gauge's verdict) is
        # looked up once per batch, not once per value.
        verdicts = _BatchVerdicts()
        # The batch's ids at once (a refused entry's goes unused): one clock reading and one draw of randomness.
        for report, result_id in zip(reports, new_result_ids(len(reports)), strict=True):
            try:
                judged = self._judge(report, result_id, reported_by, now, verdicts)
            except ReportRefused as exc:
                refused.append((len(outcomes), report, exc))
                outcomes.append(MeasurementOutcome(refusal=exc))
                continue
            accepted_at.append(len(outcomes))
            outcomes.append(MeasurementOutcome(stored=judged, created=True))
            accepted.append(judged)
        # Repeats of stored reports are found by the store inside the write; only a refused report needs a look
        # now (a retry is answered with its first result even if it would no longer be accepted). Most calls are
        # accepted, so most calls read nothing before their write.
        refused_attempts = await self._refusals(refused, outcomes, reported_by, now) if refused else []
        if accepted or refused_attempts:
            stored = await self._store.record_measurements(accepted, refused_attempts)
            for position, submitted, (item, created) in zip(accepted_at, accepted, stored, strict=True):
                if created and item is submitted:
                    continue  # stored as judged: its outcome stands
                outcome = MeasurementOutcome(stored=item, created=created)
                # A repeat within the batch, or an id a concurrent call stored first: the same content or refused.
                outcomes[position] = outcome if created else _repeat_outcome(item, submitted.result.report)
        # One burst, together with the calls committed in the same group: the SPC monitor judges them all and
        # stores their alarms in one commit, each characteristic's values are shown once.
        await self._events.publish_together(
            [
                MeasurementAccepted(outcome.stored.result)
                for outcome in outcomes
                if outcome.created and outcome.stored is not None
            ]
        )
        return outcomes

    async def _refusals(
        self,
        refused: list[tuple[int, MeasurementReport, ReportRefused]],
        outcomes: list[MeasurementOutcome],
        reported_by: str,
        now: datetime,
    ) -> list[RefusedMeasurement]:
        """Settle the refused reports in `outcomes` (a retry of a stored report gets that one back); answers the
        blocked-gauge attempts to keep on record."""
        client_ids = {report.client_result_id for _at, report, _exc in refused if report.client_result_id}
        stored_before = await self._store.measurements_by_client_ids(client_ids, reported_by) if client_ids else {}
        attempts: list[RefusedMeasurement] = []
        for position, report, refusal in refused:
            first = stored_before.get(report.client_result_id) if report.client_result_id else None
            if first is not None:
                outcomes[position] = _repeat_outcome(first, report)
            elif isinstance(refusal, GaugeBlocked):
                attempts.append(self._refused_attempt(report, refusal, reported_by, now))
        return attempts

    def _judge(
        self, report: MeasurementReport, result_id: str, reported_by: str, now: datetime, verdicts: _BatchVerdicts
    ) -> AcceptedMeasurement:
        key = (report.order_no, report.operation_no, report.characteristic_id, report.measured_at)
        shared = verdicts.by_characteristic.get(key)
        if shared is None:
            shared = verdicts.by_characteristic[key] = self._characteristic_verdict(report, now)
        if isinstance(shared, ReportRefused):
            raise shared.with_traceback(None)  # shared by the batch's entries: no traceback grown by each
        in_force, time_refusal, order_refusal = shared
        if not math.isfinite(report.value):
            raise InvalidValue("Value", f"value {report.value} is not a finite number")
        if time_refusal is not None:
            raise time_refusal.with_traceback(None)
        gauge_key = (report.equipment_id, in_force.characteristic.characteristic_id, in_force.characteristic.gauge_type)
        gauge = verdicts.by_gauge.get(gauge_key)
        if gauge is None:
            try:
                gauge = self._check_gauge(report.equipment_id, in_force.characteristic)
            except ReportRefused as exc:
                gauge = exc
            verdicts.by_gauge[gauge_key] = gauge
        if isinstance(gauge, ReportRefused):
            raise gauge.with_traceback(None)
        if order_refusal is not None:
            raise order_refusal.with_traceback(None)
        characteristic = in_force.characteristic
        # Every value is of its field's type by where it comes from (the report, the validated master data, the
        # clock, the caller's name): built without validating them again, a third of validation's CPU.
        result = checked_instance(
            MeasurementResult,
            {
                "result_id": result_id,
                "report": report,
                "evaluation": characteristic.evaluate(report.value),
                "plan_version": characteristic.plan_version,
                "unit": characteristic.unit,
                "reported_by": reported_by,
                "received_at": now,
                "routing_version": in_force.routing_version,
                "plan_version_superseded": in_force.superseded,
            },
        )
        due_soon = gauge.calibration_status is CalibrationStatus.DUE_SOON
        return checked_instance(AcceptedMeasurement, {"result": result, "gauge_due_soon": due_soon})

    def _characteristic_verdict(
        self, report: MeasurementReport, now: datetime
    ) -> _CharacteristicVerdict | ReportRefused:
        """What every report of this characteristic and MeasuredAt shares: the version in force, the refusal of its
        MeasuredAt, and the order state's refusal (None: accepted); or the refusal of its keys."""
        # A late measurement is judged against the plan version in force at its MeasuredAt, and marked so.
        try:
            in_force = self._master.version_in_force(report)
        except ReportRefused as exc:
            return exc
        order = self._master.order(report.order_no)
        refusal: ReportRefused | None = None
        if order is not None and not accepts_measurements(order.state):
            refusal = WrongOrderState(
                "OrderNumber",
                f"order {order.order_no} is {state_name(order.state)}; "
                "measurements are accepted while it is Running or Interrupted",
            )
        planned_start = order.planned_start if order is not None else None
        return in_force, self._time_refusal(report.measured_at, now, planned_start), refusal

    def _refused_attempt(
        self, report: MeasurementReport, refusal: GaugeBlocked, reported_by: str, now: datetime
    ) -> RefusedMeasurement:
        gauge = self._master.gauge(report.equipment_id)
        status = gauge.calibration_status if gauge is not None else CalibrationStatus.LOCKED
        _log.warning("refused measurement with blocked test equipment by %s: %s", reported_by, refusal.message)
        return RefusedMeasurement(
            report=report, calibration_status=status, reason=refusal.message, reported_by=reported_by, refused_at=now
        )

    def _time_refusal(
        self, measured_at: datetime, now: datetime, planned_start: datetime | None
    ) -> InvalidValue | None:
        start = now if planned_start is None else min(planned_start, now)
        earliest = start - self._measured_at_margin
        if measured_at < earliest:
            return InvalidValue(
                "MeasuredAt",
                f"measurement time {measured_at.isoformat()} lies before {earliest.isoformat()}: "
                f"more than {self._measured_at_margin.days} days before the order's planned start (or now)",
            )
        if measured_at > now + self._future_tolerance:
            return InvalidValue(
                "MeasuredAt",
                f"measurement time {measured_at.isoformat()} lies in the future "
                f"(more than {self._future_tolerance} ahead of the server clock)",
            )
        return None

    def _check_gauge(self, equipment_id: str, characteristic: InspectionCharacteristic) -> TestEquipment:
        gauge = self._master.gauge(equipment_id)
        if gauge is None:
            raise UnknownReference("EquipmentId", f"test equipment {equipment_id!r} is not known")
        if gauge.calibration_status.blocks_measuring:
            raise GaugeBlocked(
                "EquipmentId",
                f"test equipment {equipment_id} may not be used: calibration {gauge.calibration_status.name.lower()}",
            )
        if characteristic.gauge_type and gauge.equipment_type and gauge.equipment_type != characteristic.gauge_type:
            raise InconsistentReport(
                "EquipmentId",
                f"test equipment {equipment_id} is a {gauge.equipment_type}; characteristic "
                f"{characteristic.characteristic_id} must be measured with a {characteristic.gauge_type}",
            )
        return gauge


_CharacteristicVerdict = tuple[VersionInForce, InvalidValue | None, ReportRefused | None]


@dataclass
class _BatchVerdicts:
    """The lookups one batch's entries share, each made once per batch (keyed by what decides it)."""

    by_characteristic: dict[tuple[str, str, str, datetime], _CharacteristicVerdict | ReportRefused] = field(
        default_factory=dict
    )
    by_gauge: dict[tuple[str, str, str | None], TestEquipment | ReportRefused] = field(default_factory=dict)


def _repeat_outcome(first: AcceptedMeasurement, report: MeasurementReport) -> MeasurementOutcome:
    """A report under a client id its caller used before: the first result if it is the same report, else refused."""
    if first.result.report == report:
        return MeasurementOutcome(stored=first)
    return MeasurementOutcome(
        refusal=ClientIdReused(
            "ClientResultId",
            f"ClientResultId {report.client_result_id!r} was used before for another measurement "
            f"(result {first.result.result_id}); a retry repeats the report unchanged, a new report needs a new id",
        )
    )
