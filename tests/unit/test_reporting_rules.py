"""ReportingService's rules for measurements (docs/report-methods.md, ReportMeasurement and the gauge rules).

Against the in-memory FakeStore and real MasterData: each refusal names its argument, stores nothing (a blocked
gauge's attempt excepted) and raises no event; an accepted report is judged, stored and announced once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

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
from qualitybridge.domain.model import CalibrationStatus, OrderState, ResultEvaluation
from qualitybridge.domain.order_states import state_name
from qualitybridge.domain.records import RefusedMeasurement
from qualitybridge.services.event_bus import EventBus
from qualitybridge.services.master_data import MasterData
from qualitybridge.services.reporting import ReportingService
from tests.builders import NOW, gauge, measurement_report, order
from tests.fakes import FakeStore, FixedClock, RecordingPublisher

RUNNING = "1000"  # Running; C010 12.0 .. 12.018 mm, to be measured with a BORE_GAUGE
UNTYPED = "2000"  # Running; C010 names no gauge type
GAUGES = (
    gauge(equipment_id="G-1", equipment_type="BORE_GAUGE"),
    gauge(CalibrationStatus.DUE_SOON, equipment_id="G-DUE", equipment_type="BORE_GAUGE"),
    gauge(CalibrationStatus.EXPIRED, equipment_id="G-EXPIRED", equipment_type="BORE_GAUGE"),
    gauge(CalibrationStatus.LOCKED, equipment_id="G-LOCKED", equipment_type="BORE_GAUGE"),
    gauge(equipment_id="G-CALIPER", equipment_type="CALIPER"),
    gauge(equipment_id="G-UNTYPED"),
)


@dataclass
class Reporting:
    service: ReportingService
    store: FakeStore
    master: MasterData
    published: RecordingPublisher
    clock: FixedClock

    def nothing_stored(self) -> bool:
        return not self.store.measurements and not self.store.refused and not self.published.events


@pytest.fixture
def reporting(bus: EventBus, published: RecordingPublisher, clock: FixedClock) -> Reporting:
    orders = [
        order(RUNNING, state=OrderState.RUNNING, gauge_type="BORE_GAUGE"),
        order(UNTYPED, state=OrderState.RUNNING),
    ]
    master = MasterData()
    master.replace(orders, GAUGES)
    store = FakeStore(orders)
    service = ReportingService(store.as_store(), master, events=bus, clock=clock)
    return Reporting(service, store, master, published, clock)


async def test_an_accepted_measurement_is_judged_stored_and_announced_once(reporting: Reporting) -> None:
    report = measurement_report(RUNNING, value=12.01)
    result = await reporting.service.report_measurement(report, "machine1")
    assert result.report == report
    assert result.evaluation is ResultEvaluation.OK
    assert (result.plan_version, result.unit, result.reported_by) == ("3", "MMT", "machine1")
    assert result.received_at == reporting.clock.now
    assert [item.result for item in reporting.store.measurements] == [result]
    assert len(reporting.store.called("record_measurements")) == 1
    assert reporting.published.events == [MeasurementAccepted(result)]


@pytest.mark.parametrize(
    ("value", "evaluation"),
    [
        (12.0, ResultEvaluation.OK),
        (12.018, ResultEvaluation.OK),
        (11.999, ResultEvaluation.NOT_OK),
        (12.0181, ResultEvaluation.NOT_OK),
    ],
)
async def test_limits_are_inclusive_and_a_bad_part_is_still_stored(
    reporting: Reporting, value: float, evaluation: ResultEvaluation
) -> None:
    result = await reporting.service.report_measurement(measurement_report(RUNNING, value=value), "machine1")
    assert result.evaluation is evaluation
    assert [item.result for item in reporting.store.measurements] == [result]


@pytest.mark.parametrize(
    ("wrong", "field"),
    [
        ({"order_no": "9999"}, "OrderNumber"),
        ({"operation_no": "0990"}, "OperationNumber"),
        ({"characteristic_id": "C999"}, "CharacteristicId"),
        ({"equipment_id": "G-NONE"}, "EquipmentId"),
    ],
)
async def test_an_unknown_reference_names_its_argument(reporting: Reporting, wrong: dict[str, Any], field: str) -> None:
    report = measurement_report(**{"order_no": RUNNING, "equipment_id": "G-1", **wrong})
    with pytest.raises(UnknownReference) as refused:
        await reporting.service.report_measurement(report, "machine1")
    assert refused.value.field == field
    assert next(iter(wrong.values())) in refused.value.message
    assert reporting.nothing_stored()
    assert reporting.store.called("record_measurements") == [], "a call refused as a whole writes nothing"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
async def test_a_value_must_be_finite(reporting: Reporting, value: float) -> None:
    with pytest.raises(InvalidValue) as refused:
        await reporting.service.report_measurement(measurement_report(RUNNING, value=value), "machine1")
    assert refused.value.field == "Value"
    assert reporting.nothing_stored()


@pytest.mark.parametrize(
    ("ahead", "accepted"),
    [
        (timedelta(days=-1), True),
        (timedelta(minutes=5), True),  # the tolerance itself
        (timedelta(minutes=5, seconds=1), False),
        (timedelta(days=1), False),
    ],
)
async def test_measured_at_may_lie_at_most_the_tolerance_ahead_of_the_server_clock(
    reporting: Reporting, ahead: timedelta, accepted: bool
) -> None:
    report = measurement_report(RUNNING, measured_at=reporting.clock.now + ahead)
    if accepted:
        result = await reporting.service.report_measurement(report, "machine1")
        assert result.report.measured_at == reporting.clock.now + ahead
        return
    with pytest.raises(InvalidValue) as refused:
        await reporting.service.report_measurement(report, "machine1")
    assert refused.value.field == "MeasuredAt"
    assert "future" in refused.value.message
    assert reporting.nothing_stored()


async def test_the_future_tolerance_is_a_setting(reporting: Reporting, bus: EventBus) -> None:
    strict = ReportingService(
        reporting.store.as_store(), reporting.master, events=bus, future_tolerance=timedelta(0), clock=reporting.clock
    )
    with pytest.raises(InvalidValue):
        await strict.report_measurement(
            measurement_report(RUNNING, measured_at=reporting.clock.now + timedelta(seconds=1)), "machine1"
        )
    on_time = await strict.report_measurement(measurement_report(RUNNING, measured_at=reporting.clock.now), "machine1")
    assert on_time.report.measured_at == reporting.clock.now


@pytest.mark.parametrize(
    ("equipment_id", "status", "word"),
    [("G-EXPIRED", CalibrationStatus.EXPIRED, "expired"), ("G-LOCKED", CalibrationStatus.LOCKED, "locked")],
)
async def test_a_blocked_gauge_is_refused_and_its_attempt_kept(
    reporting: Reporting, equipment_id: str, status: CalibrationStatus, word: str
) -> None:
    report = measurement_report(RUNNING, equipment_id=equipment_id)
    with pytest.raises(GaugeBlocked) as refused:
        await reporting.service.report_measurement(report, "machine1")
    assert refused.value.field == "EquipmentId"
    assert word in refused.value.message
    assert reporting.store.refused == [
        RefusedMeasurement(
            report=report,
            calibration_status=status,
            reason=refused.value.message,
            reported_by="machine1",
            refused_at=reporting.clock.now,
        )
    ]
    assert reporting.store.measurements == []
    assert reporting.published.events == [], "a refused attempt is kept on record, never announced"


@pytest.mark.parametrize(("equipment_id", "due_soon"), [("G-DUE", True), ("G-1", False)])
async def test_a_gauge_due_soon_is_accepted_and_flagged(
    reporting: Reporting, equipment_id: str, due_soon: bool
) -> None:
    (outcome,) = await reporting.service.report_measurements(
        [measurement_report(RUNNING, equipment_id=equipment_id)], "machine1"
    )
    assert outcome.refusal is None
    assert outcome.stored is not None
    assert outcome.stored.gauge_due_soon is due_soon
    assert [item.gauge_due_soon for item in reporting.store.measurements] == [due_soon]


async def test_a_gauge_of_another_type_is_refused(reporting: Reporting) -> None:
    with pytest.raises(InconsistentReport) as refused:
        await reporting.service.report_measurement(measurement_report(RUNNING, equipment_id="G-CALIPER"), "m")
    assert refused.value.field == "EquipmentId"
    assert "CALIPER" in refused.value.message
    assert "BORE_GAUGE" in refused.value.message
    assert reporting.nothing_stored(), "a gauge of the wrong type is no blocked gauge: no attempt is kept"


@pytest.mark.parametrize(("order_no", "equipment_id"), [(RUNNING, "G-UNTYPED"), (UNTYPED, "G-CALIPER")])
async def test_the_gauge_type_is_checked_only_when_both_sides_name_one(
    reporting: Reporting, order_no: str, equipment_id: str
) -> None:
    await reporting.service.report_measurement(measurement_report(order_no, equipment_id=equipment_id), "machine1")
    assert len(reporting.store.measurements) == 1


@pytest.mark.parametrize("state", list(OrderState), ids=state_name)
async def test_measurements_are_accepted_only_while_the_order_runs_or_is_interrupted(
    reporting: Reporting, state: OrderState
) -> None:
    reporting.master.set_order_state(RUNNING, state)
    report = measurement_report(RUNNING)
    if state in (OrderState.RUNNING, OrderState.INTERRUPTED):
        await reporting.service.report_measurement(report, "machine1")
        assert len(reporting.store.measurements) == 1
        return
    with pytest.raises(WrongOrderState) as refused:
        await reporting.service.report_measurement(report, "machine1")
    assert refused.value.field == "OrderNumber"
    assert state_name(state) in refused.value.message
    assert reporting.nothing_stored()


@pytest.mark.parametrize(
    ("wrong", "state", "error", "field"),
    [
        # references before values: an unknown characteristic wins over NaN and an unknown gauge
        (
            {"characteristic_id": "C999", "value": float("nan"), "equipment_id": "G-NONE"},
            None,
            UnknownReference,
            "CharacteristicId",
        ),
        # values before the gauge: NaN with an expired gauge is a bad value, and no attempt is kept
        ({"value": float("nan"), "equipment_id": "G-EXPIRED"}, None, InvalidValue, "Value"),
        # the gauge before the order state: an expired gauge on an order not yet started is a blocked gauge
        ({"equipment_id": "G-EXPIRED"}, OrderState.ALLOWED_TO_START, GaugeBlocked, "EquipmentId"),
        ({"equipment_id": "G-CALIPER"}, OrderState.ALLOWED_TO_START, InconsistentReport, "EquipmentId"),
    ],
)
async def test_the_first_failing_check_answers(
    reporting: Reporting,
    wrong: dict[str, Any],
    state: OrderState | None,
    error: type[ReportRefused],
    field: str,
) -> None:
    if state is not None:
        reporting.master.set_order_state(RUNNING, state)
    with pytest.raises(ReportRefused) as refused:
        await reporting.service.report_measurement(measurement_report(RUNNING, **wrong), "machine1")
    assert type(refused.value) is error
    assert refused.value.field == field
    assert len(reporting.store.refused) == (1 if error is GaugeBlocked else 0)


async def test_a_repeated_client_result_id_returns_the_first_result(reporting: Reporting) -> None:
    report = measurement_report(RUNNING, value=12.01, client_result_id="plc-7/000123")
    first = await reporting.service.report_measurement(report, "machine1")
    again = await reporting.service.report_measurement(report, "machine1")
    assert again == first
    assert [item.result for item in reporting.store.measurements] == [first]
    assert reporting.published.events == [MeasurementAccepted(first)], "only the new record is announced"


async def test_a_client_result_id_reused_for_another_value_is_refused(reporting: Reporting) -> None:
    first = await reporting.service.report_measurement(
        measurement_report(RUNNING, value=12.01, client_result_id="plc-7/000123"), "machine1"
    )
    with pytest.raises(ClientIdReused):
        await reporting.service.report_measurement(
            measurement_report(RUNNING, value=99.0, client_result_id="plc-7/000123"), "machine1"
        )
    assert [item.result for item in reporting.store.measurements] == [first]


async def test_client_result_ids_are_scoped_to_the_reporting_user(reporting: Reporting) -> None:
    report = measurement_report(RUNNING, value=12.01, client_result_id="plc-7/000123")
    mine = await reporting.service.report_measurement(report, "machine1")
    theirs = await reporting.service.report_measurement(report, "machine2")
    assert theirs.result_id != mine.result_id
    assert len(reporting.store.measurements) == 2


async def test_a_repeat_is_answered_even_when_the_report_would_be_refused_now(reporting: Reporting) -> None:
    first = await reporting.service.report_measurement(measurement_report(RUNNING, client_result_id="plc-7/1"), "m")
    reporting.master.set_order_state(RUNNING, OrderState.ENDED)
    with pytest.raises(WrongOrderState):
        await reporting.service.report_measurement(measurement_report(RUNNING, client_result_id="plc-7/2"), "m")
    again = await reporting.service.report_measurement(measurement_report(RUNNING, client_result_id="plc-7/1"), "m")
    assert again == first
    assert len(reporting.published.events) == 1


async def test_a_repeat_within_one_batch_gets_the_batchs_first(reporting: Reporting) -> None:
    outcomes = await reporting.service.report_measurements(
        [
            measurement_report(RUNNING, value=12.01, client_result_id="plc-8"),
            measurement_report(RUNNING, value=12.01, client_result_id="plc-8"),
        ],
        "machine1",
    )
    assert [outcome.created for outcome in outcomes] == [True, False]
    assert outcomes[1].stored == outcomes[0].stored
    assert len(reporting.store.measurements) == 1
    assert outcomes[0].stored is not None
    assert reporting.published.events == [MeasurementAccepted(outcomes[0].stored.result)]


async def test_a_batch_judges_each_entry_and_stores_the_good_ones_in_one_call(reporting: Reporting) -> None:
    reports = [
        measurement_report(RUNNING, value=12.01),
        measurement_report(RUNNING, value=float("nan")),
        measurement_report(RUNNING, equipment_id="G-EXPIRED"),
        measurement_report(RUNNING, value=12.5, equipment_id="G-DUE"),
        measurement_report(RUNNING, characteristic_id="C999"),
    ]
    outcomes = await reporting.service.report_measurements(reports, "machine1")
    refusals = [type(outcome.refusal) if outcome.refusal else None for outcome in outcomes]
    assert refusals == [None, InvalidValue, GaugeBlocked, None, UnknownReference]
    assert [outcome.created for outcome in outcomes] == [True, False, False, True, False]
    ((accepted, refused),) = reporting.store.called("record_measurements")
    assert [item.result.report for item in accepted] == [reports[0], reports[3]]
    assert [item.report for item in refused] == [reports[2]]
    stored = [outcome.stored.result for outcome in outcomes if outcome.stored is not None]
    assert [item.result for item in accepted] == stored
    assert reporting.published.events == [MeasurementAccepted(result) for result in stored]


async def test_a_batch_refused_entry_by_entry_writes_nothing(reporting: Reporting) -> None:
    outcomes = await reporting.service.report_measurements(
        [measurement_report(RUNNING, value=float("inf")), measurement_report("9999")], "machine1"
    )
    assert all(outcome.refusal is not None for outcome in outcomes)
    assert reporting.store.called("record_measurements") == []
    assert reporting.nothing_stored()


async def test_the_measurement_time_is_the_reports_and_the_receipt_time_the_servers(reporting: Reporting) -> None:
    reporting.clock.advance(timedelta(hours=1))
    result = await reporting.service.report_measurement(measurement_report(RUNNING, measured_at=NOW), "machine1")
    assert result.report.measured_at == NOW
    assert result.received_at == NOW + timedelta(hours=1, minutes=1)
