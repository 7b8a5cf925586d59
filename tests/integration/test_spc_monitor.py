"""The SPC monitor on the event bus with a real store: alarms stored and queued once, state rebuilt at restart."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from qualitybridge.domain.events import DomainEvent, MeasurementAccepted, SpcRuleViolated, SpcStatusChanged
from qualitybridge.domain.model import (
    Classification,
    ErpSnapshot,
    InspectionCharacteristic,
    MeasurementReport,
    MeasurementResult,
    Operation,
    OrderState,
    ProductionOrder,
    ResultEvaluation,
    TestEquipment,
)
from qualitybridge.domain.postings import SpcAlarmPosting
from qualitybridge.domain.records import AcceptedMeasurement, SpcAlarmRecord
from qualitybridge.domain.spc import SpcPolicy
from qualitybridge.services.event_bus import EventBus
from qualitybridge.services.master_data import MasterData
from qualitybridge.services.reporting import ReportingService
from qualitybridge.services.spc_monitor import SPC_ENGINE_USER, SpcMonitor, spc_alarm_id
from qualitybridge.store import Store, tables

ORDER, OPERATION = "4711", "0010"
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
# In σ units around CL 10 (σ = 1): quiet, then one point beyond 3σ (rule 1), quiet, then 2 of 3 beyond 2σ (rule 5).
QUIET = [0.5, 1.5, -0.5, -0.2, -1.5, -0.3]
STREAM = QUIET * 2 + [4.0] + QUIET * 2 + [2.5, 2.6] + QUIET


def characteristic(
    char_id: str = "C1", plan_version: str = "1", *, plan_limits: bool = True
) -> InspectionCharacteristic:
    limits = {"center_line": 10.0, "upper_control_limit": 13.0, "lower_control_limit": 7.0} if plan_limits else {}
    return InspectionCharacteristic(
        characteristic_id=char_id,
        name=f"Diameter {char_id}",
        nominal=10.0,
        lower_limit=4.0,
        upper_limit=16.0,
        unit="MMT",
        classification=Classification.CRITICAL,
        plan_version=plan_version,
        **limits,
    )


def snapshot(*characteristics: InspectionCharacteristic) -> ErpSnapshot:
    order = ProductionOrder(
        order_no=ORDER,
        material_no="M-1",
        planned_quantity=100,
        state=OrderState.RUNNING,
        operations=(Operation(operation_no=OPERATION, characteristics=characteristics),),
    )
    return ErpSnapshot(orders=(order,), equipment=(TestEquipment(equipment_id="G1"),))


class Recorder:
    def __init__(self) -> None:
        self.events: list[DomainEvent] = []

    async def publish(self, event: DomainEvent) -> None:
        self.events.append(event)

    def violations(self) -> list[SpcRuleViolated]:
        return [e for e in self.events if isinstance(e, SpcRuleViolated)]


class Bridge:
    """Store, master data, reporting and the SPC monitor as the composition root wires them."""

    def __init__(self, store: Store, *characteristics: InspectionCharacteristic, now: datetime = NOW) -> None:
        self.store = store
        self.now = now
        self.characteristics = characteristics or (characteristic(),)
        self.master = MasterData()
        self.events = EventBus()
        self.recorder = Recorder()
        self.events.add_publisher(self.recorder)
        self.reporting = ReportingService(store, self.master, events=self.events, clock=lambda: self.now)
        self.spc = SpcMonitor(store, self.master, SpcPolicy(), events=self.events, clock=lambda: self.now)
        self.spc.subscribe()

    async def start(self) -> int:
        await self.store.apply_snapshot(snapshot(*self.characteristics))
        self.master.replace(await self.store.released_orders(), await self.store.equipment())
        return await self.spc.rebuild()

    async def measure(self, values: list[float], char_id: str = "C1") -> list[str]:
        ids = []
        for value in values:
            self.now += timedelta(seconds=1)
            result = await self.reporting.report_measurement(report(value, char_id, self.now), "machine-1")
            ids.append(result.result_id)
        return ids


def report(value: float, char_id: str, at: datetime) -> MeasurementReport:
    return MeasurementReport(
        order_no=ORDER,
        operation_no=OPERATION,
        characteristic_id=char_id,
        value=value,
        equipment_id="G1",
        part_serial=f"P-{at.timestamp():.0f}",
        measured_at=at,
    )


async def stored_without_alarm(bridge: Bridge, value: float) -> MeasurementResult:
    """A result stored as the report path stores it, without its MeasurementAccepted event (the process died)."""
    bridge.now += timedelta(seconds=1)
    result = MeasurementResult(
        result_id=str(uuid.uuid4()),
        report=report(value, "C1", bridge.now),
        evaluation=ResultEvaluation.OK,
        plan_version="1",
        unit="MMT",
        reported_by="machine-1",
        received_at=bridge.now,
    )
    await bridge.store.record_measurements([AcceptedMeasurement(result=result)])
    return result


async def spc_postings(store: Store) -> list[SpcAlarmPosting]:
    return [e.posting for e in await store.outbox_entries() if isinstance(e.posting, SpcAlarmPosting)]


async def test_violations_are_stored_queued_and_raised_once_each(store: Store) -> None:
    bridge = Bridge(store)
    await bridge.start()
    ids = await bridge.measure([10.0 + z for z in STREAM])
    raised = [(e.record.alarm.rule_number, e.record.alarm.result_id) for e in bridge.recorder.violations()]
    assert raised == [(1, ids[12]), (5, ids[26])]
    first = bridge.recorder.violations()[0].record
    assert first.alarm_id == spc_alarm_id(ids[12], 1)
    assert first.reported_by == SPC_ENGINE_USER
    assert (first.alarm.value, first.alarm.center_line, first.alarm.upper_control_limit) == (14.0, 10.0, 13.0)
    assert (first.alarm.lower_control_limit, first.alarm.severity) == (7.0, 900)
    postings = await spc_postings(store)
    assert [(p.record.alarm.rule_number, p.record.alarm.result_id) for p in postings] == raised
    stored = await store.spc_alarms(ORDER)
    assert [a.alarm.rule_number for a in stored] == [1, 5]
    status = bridge.spc.status(ORDER, OPERATION, "C1")
    assert status is not None
    assert status.sample_count == len(STREAM)
    assert status.last_violated_rule == 5
    last_status = [e for e in bridge.recorder.events if isinstance(e, SpcStatusChanged)][-1]
    assert last_status.status == status


async def test_a_restart_rebuilds_the_charts_without_raising_again(store: Store) -> None:
    first = Bridge(store)
    await first.start()
    await first.measure([10.0 + z for z in STREAM])
    before = bridge_state(first)

    second = Bridge(store, now=first.now + timedelta(seconds=5))
    assert await second.start() == 0
    assert bridge_state(second) == before
    assert second.recorder.violations() == []
    assert len(await spc_postings(store)) == 2
    # The rebuilt chart goes on where the first one stopped: one more point beyond 3σ is rule 1 again.
    await second.measure([20.0])
    assert [e.record.alarm.rule_number for e in second.recorder.violations()] == [1]


def bridge_state(bridge: Bridge) -> tuple[object, ...]:
    status = bridge.spc.status(ORDER, OPERATION, "C1")
    assert status is not None
    return status.sample_count, status.limits, status.last_violated_rule, status.capability


async def test_a_violation_whose_alarm_was_lost_in_a_crash_is_raised_at_the_restart_exactly_once(store: Store) -> None:
    bridge = Bridge(store)
    await bridge.start()
    await bridge.measure([10.0 + z for z in QUIET])
    # The process stores a result beyond 3σ and dies before the SPC monitor stores its alarm.
    judged = await stored_without_alarm(bridge, 14.5)
    assert await store.spc_alarms(ORDER) == []

    restarted = Bridge(store, now=bridge.now + timedelta(seconds=30))
    assert await restarted.start() == 1
    (alarm,) = await store.spc_alarms(ORDER)
    assert (alarm.alarm.rule_number, alarm.alarm.result_id) == (1, judged.result_id)
    assert [e.record.alarm_id for e in restarted.recorder.violations()] == [alarm.alarm_id]
    again = Bridge(store, now=restarted.now + timedelta(seconds=30))
    assert await again.start() == 0
    assert len(await spc_postings(store)) == 1


async def test_old_violations_are_not_raised_after_the_catch_up_horizon(store: Store) -> None:
    bridge = Bridge(store)
    await bridge.start()
    await stored_without_alarm(bridge, 14.5)
    late = Bridge(store, now=bridge.now + timedelta(hours=1))
    assert await late.start() == 0
    assert await store.spc_alarms(ORDER) == []


async def test_without_plan_limits_the_baseline_sets_them_and_no_data_says_so(store: Store) -> None:
    bridge = Bridge(store, characteristic("C1", plan_limits=False), characteristic("C2"))
    await bridge.start()
    assert bridge.spc.status(ORDER, OPERATION, "C1") is None  # no value yet: no chart, not zeros
    await bridge.measure([10.0, 12.0] * 12)
    status = bridge.spc.status(ORDER, OPERATION, "C1")
    assert status is not None
    assert status.limits is None
    assert status.baseline_missing == 1
    await bridge.measure([10.0])
    status = bridge.spc.status(ORDER, OPERATION, "C1")
    assert status is not None
    assert status.limits is not None
    assert status.limits.center == (10.0 * 13 + 12.0 * 12) / 25
    assert bridge.spc.status(ORDER, OPERATION, "C2") is None


async def test_a_new_plan_version_starts_a_new_chart(store: Store) -> None:
    bridge = Bridge(store)
    await bridge.start()
    await bridge.measure([10.0 + z for z in QUIET])
    bridge.characteristics = (characteristic(plan_version="2"),)
    await bridge.store.apply_snapshot(snapshot(*bridge.characteristics))
    bridge.master.replace(await store.released_orders(), await store.equipment())
    await bridge.measure([10.5])
    status = bridge.spc.status(ORDER, OPERATION, "C1")
    assert status is not None
    assert status.sample_count == 1
    # A restart charts only the results of the current plan version.
    restarted = Bridge(store, characteristic(plan_version="2"), now=bridge.now)
    await restarted.start()
    rebuilt = restarted.spc.status(ORDER, OPERATION, "C1")
    assert rebuilt is not None
    assert rebuilt.sample_count == 1


async def test_a_burst_charts_the_values_of_the_plan_in_force_and_of_released_characteristics_only(
    store: Store,
) -> None:
    """A batch's burst looks each characteristic's chart up once per plan version: a value judged under the earlier
    plan (a late measurement) leaves the current plan's chart alone wherever it stands in the burst, and a value of a
    characteristic no longer released is not charted."""
    bridge = Bridge(store)
    await bridge.start()
    await bridge.measure([10.0, 10.2])
    bridge.characteristics = (characteristic(plan_version="2"),)
    await bridge.store.apply_snapshot(snapshot(*bridge.characteristics))
    bridge.master.replace(await store.released_orders(), await store.equipment())

    def judged(value: float, plan_version: str, char_id: str = "C1") -> MeasurementAccepted:
        bridge.now += timedelta(seconds=1)
        return MeasurementAccepted(
            MeasurementResult(
                result_id=str(uuid.uuid4()),
                report=report(value, char_id, bridge.now),
                evaluation=ResultEvaluation.OK,
                plan_version=plan_version,
                unit="MMT",
                reported_by="machine-1",
                received_at=bridge.now,
            )
        )

    burst = [judged(10.1, "2"), judged(10.3, "1"), judged(10.0, "2", "C9"), judged(9.9, "2"), judged(10.4, "1")]
    await bridge.spc.on_measurements(burst)
    status = bridge.spc.status(ORDER, OPERATION, "C1")
    assert status is not None
    assert status.sample_count == 2, "the two values of plan 2, on a chart of its own"
    assert bridge.spc.status(ORDER, OPERATION, "C9") is None


async def test_limits_are_recomputed_on_request_and_shown(store: Store) -> None:
    bridge = Bridge(store, characteristic("C1", plan_limits=False))
    await bridge.start()
    assert await bridge.spc.recompute_limits(ORDER, OPERATION, "C1") is None  # no chart yet
    await bridge.measure([10.0, 10.5] * 13)
    await bridge.measure([12.0, 12.5] * 13)  # the process moved; the limits stay where the baseline put them
    before = bridge.spc.status(ORDER, OPERATION, "C1")
    assert before is not None
    assert before.limits is not None
    assert before.limits.center == pytest.approx((13 * 10.0 + 12 * 10.5) / 25)  # the first 25 values
    after = await bridge.spc.recompute_limits(ORDER, OPERATION, "C1")
    assert after is not None
    assert after.limits is not None
    assert after.limits.center == pytest.approx((12 * 12.0 + 13 * 12.5) / 25)  # the latest 25 values
    shown = [e for e in bridge.recorder.events if isinstance(e, SpcStatusChanged)][-1]
    assert shown.status == after


async def test_the_alarms_of_one_report_batch_are_stored_with_one_store_call(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    bridge = Bridge(store)
    await bridge.start()
    batches: list[int] = []
    batch_write = store.record_spc_alarms_once

    async def counted(records: Sequence[SpcAlarmRecord]) -> list[bool]:
        batches.append(len(records))
        return await batch_write(records)

    monkeypatch.setattr(store, "record_spc_alarms_once", counted)
    bridge.now += timedelta(seconds=1)
    reports = [report(10.0 + z, "C1", bridge.now + timedelta(milliseconds=n)) for n, z in enumerate(STREAM)]
    outcomes = await bridge.reporting.report_measurements(reports, "machine-1")
    ids = [outcome.stored.result.result_id for outcome in outcomes if outcome.stored is not None]
    assert batches == [2], "one store call (one transaction) for both violations of the batch"
    raised = [(e.record.alarm.rule_number, e.record.alarm.result_id) for e in bridge.recorder.violations()]
    assert raised == [(1, ids[12]), (5, ids[26])]
    postings = await spc_postings(store)
    assert [(p.record.alarm.rule_number, p.record.alarm.result_id) for p in postings] == raised
    statuses = [e for e in bridge.recorder.events if isinstance(e, SpcStatusChanged)]
    assert len(statuses) == 1, "the chart's state once after the batch, not once per value"
    assert statuses[0].status.sample_count == len(STREAM)


async def test_concurrent_single_reports_are_published_together_each_charted_once_and_stored_first(
    store: Store,
) -> None:
    # Machines reporting one value per call at the same time: the calls one group commit answers publish one burst.
    bridge = Bridge(store)
    await bridge.start()

    class BurstCounter:
        """A burst publisher that checks each burst's results are in the store when they are shown."""

        def __init__(self) -> None:
            self.bursts: list[list[str]] = []

        async def publish(self, event: DomainEvent) -> None:
            await self.publish_burst([event])

        async def publish_burst(self, events: Sequence[DomainEvent]) -> None:
            ids = [event.result.result_id for event in events if isinstance(event, MeasurementAccepted)]
            if ids:
                self.bursts.append(ids)
                async with store.engine.connect() as conn:
                    column = tables.measurement_results.c.result_id
                    stored = set((await conn.execute(select(column).where(column.in_(ids)))).scalars())
                assert stored == set(ids), "shown before it was stored"

    shown = BurstCounter()
    bridge.events.add_publisher(shown)
    calls = 24
    results = await asyncio.gather(
        *(
            bridge.reporting.report_measurement(report(10.0 + (n % 3) / 10, "C1", NOW + timedelta(seconds=n)), "m")
            for n in range(calls)
        )
    )
    answered = [result.result_id for result in results]
    published = [result_id for burst in shown.bursts for result_id in burst]
    assert sorted(published) == sorted(answered), "every accepted call's event published exactly once"
    assert len(shown.bursts) < calls, f"{calls} concurrent calls made {len(shown.bursts)} bursts: none together"
    status = bridge.spc.status(ORDER, OPERATION, "C1")
    assert status is not None
    assert status.sample_count == calls  # SPC charted each value once
