"""A restart resumes each SPC chart from a bounded tail of its stored stream, and ends in the state a replay of the
whole stream gives: limits, counts, capability, the last violated rule, the alarms a crash left missing, and the
judgement of every further value."""

from __future__ import annotations

import logging
import random
import uuid
from datetime import timedelta

import pytest

from qualitybridge.domain.model import InspectionCharacteristic, MeasurementResult, ResultEvaluation
from qualitybridge.domain.records import AcceptedMeasurement
from qualitybridge.domain.spc import SpcChart, SpcPolicy
from qualitybridge.services.spc_monitor import SpcMonitor, plan_limits, spc_alarm_id
from qualitybridge.store import Store
from tests.builders import planted_stream
from tests.integration.test_spc_monitor import NOW, OPERATION, ORDER, Bridge, characteristic, report

HISTORY = 3000  # values per characteristic before the catch-up horizon: far more than a chart resumes from
CATCH_UP = timedelta(minutes=10)


def in_control(seed: int, length: int) -> list[float]:
    rng = random.Random(seed)
    return [10.0 + rng.gauss(0, 0.8) for _ in range(length)]


def reference_chart(char: InspectionCharacteristic) -> SpcChart:
    policy = SpcPolicy()
    return SpcChart(
        sample_size=char.sample_size,
        lower_spec=char.lower_limit,
        upper_spec=char.upper_limit,
        plan_limits=plan_limits(char),
        settings=policy.settings_for(char.characteristic_id, char.classification),
    )


def result_of(char_id: str, value: float, seconds_before_now: int) -> MeasurementResult:
    at = NOW - timedelta(seconds=seconds_before_now)
    return MeasurementResult(
        result_id=str(uuid.uuid4()),
        report=report(value, char_id, at),
        evaluation=ResultEvaluation.OK,
        plan_version="1",
        unit="MMT",
        reported_by="machine-1",
        received_at=at,
    )


async def test_a_restart_from_the_tail_equals_a_replay_of_everything(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    planted, _ = planted_stream(center=10.0, sigma=1.0)
    chars = (characteristic("C1"), characteristic("C2", plan_limits=False))
    streams = {
        "C1": in_control(1, HISTORY) + in_control(2, 200) + planted,  # the planted rules fire within the horizon
        "C2": in_control(3, HISTORY) + in_control(4, 300),  # baseline limits; its violations are old or chance
    }
    results = {
        char_id: [result_of(char_id, v, len(values) - i) for i, v in enumerate(values)]
        for char_id, values in streams.items()
    }
    horizon = NOW - CATCH_UP
    old = [r for rs in results.values() for r in rs if r.received_at < horizon]
    new = [r for rs in results.values() for r in rs if r.received_at >= horizon]
    assert len(new) < len(old) / 4

    # A first run charted the old values and stored their alarms; then the process died with the new values stored
    # but not charted (their alarms missing).
    bridge = Bridge(store, *chars)
    await store.record_measurements([AcceptedMeasurement(result=r) for r in old])
    bridge.spc = SpcMonitor(store, bridge.master, SpcPolicy(), events=bridge.events, catch_up=timedelta(days=1))
    bridge.now = horizon
    await bridge.start()
    await store.record_measurements([AcceptedMeasurement(result=r) for r in new])

    # What a replay of every value gives.
    expected_missing: set[str] = set()
    reference = {}
    for char in chars:
        chart = reference_chart(char)
        for result in results[char.characteristic_id]:
            for violation in chart.add(result.report.value, result.result_id):
                if result.received_at >= horizon:
                    expected_missing.add(spc_alarm_id(result.result_id, violation.rule))
        reference[char.characteristic_id] = chart
    assert len(expected_missing) >= 8  # the planted rules, at least

    restarted = Bridge(store, *chars)
    restarted.spc = SpcMonitor(
        store, restarted.master, SpcPolicy(), events=restarted.events, catch_up=CATCH_UP, clock=lambda: NOW
    )
    restarted.spc.subscribe()
    with caplog.at_level(logging.INFO, logger="qualitybridge.services.spc_monitor"):
        caught_up = await restarted.start()
    assert "2 characteristic stream(s) rebuilt from the store (0 from their first value)" in caplog.text
    raised = {v.record.alarm_id for v in restarted.recorder.violations()}
    assert raised == expected_missing
    assert caught_up == len(expected_missing)
    for char_id, chart in reference.items():
        assert restarted.spc.status(ORDER, OPERATION, char_id) == chart.status()

    # Further values are judged alike: the rules' look-back and the capability windows resumed too.
    later, _ = planted_stream(center=10.0, sigma=1.0)
    before = len(restarted.recorder.violations())
    ids = await restarted.measure(later, "C1")
    expected = [
        (result_id, v.rule)
        for result_id, value in zip(ids, later, strict=True)
        for v in reference["C1"].add(value, result_id)
    ]
    live = [(e.record.alarm.result_id, e.record.alarm.rule_number) for e in restarted.recorder.violations()[before:]]
    assert live == expected
    assert len(expected) >= 8
    assert restarted.spc.status(ORDER, OPERATION, "C1") == reference["C1"].status()


async def test_a_stream_whose_tail_cannot_decide_its_rules_is_replayed_from_its_first_value(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    # Every point above the centre line: rule 2 fires every ninth point, and where in that cycle the tail starts
    # only the whole stream tells.
    values = [10.5 + 0.1 * (i % 3) for i in range(HISTORY)]
    results = [result_of("C1", v, len(values) - i) for i, v in enumerate(values)]
    await store.record_measurements([AcceptedMeasurement(result=r) for r in results])
    chart = reference_chart(characteristic("C1"))
    missing = {
        spc_alarm_id(r.result_id, v.rule)
        for r in results
        for v in chart.add(r.report.value, r.result_id)
        if r.received_at >= NOW - CATCH_UP
    }
    restarted = Bridge(store, characteristic("C1"))
    restarted.spc = SpcMonitor(
        store, restarted.master, SpcPolicy(), events=restarted.events, catch_up=CATCH_UP, clock=lambda: NOW
    )
    with caplog.at_level(logging.INFO, logger="qualitybridge.services.spc_monitor"):
        await restarted.start()
    assert "1 characteristic stream(s) rebuilt from the store (1 from their first value)" in caplog.text
    assert restarted.spc.status(ORDER, OPERATION, "C1") == chart.status()
    assert {v.record.alarm_id for v in restarted.recorder.violations()} == missing
    assert missing
