"""A chart resumed from its stream's first and latest values is the chart a replay of every value gives."""

from __future__ import annotations

import random

import pytest

from qualitybridge.domain.spc import ControlLimits, RuleViolation, SpcChart, SpcSettings


def new_chart(sample_size: int, *, plan: bool) -> SpcChart:
    half_width = 3.0 / sample_size**0.5  # of the subgroup mean, σ 1 per value
    plan_limits = ControlLimits(10.0, 10.0 + half_width, 10.0 - half_width) if plan else None
    return SpcChart(sample_size, 4.0, 16.0, plan_limits=plan_limits, settings=SpcSettings())


def stream(seed: int, length: int) -> list[float]:
    """In control around 10 (σ 1), with drifts and shifts that make runs and trends fire the rules now and then."""
    rng = random.Random(seed)
    values, shift = [], 0.0
    for i in range(length):
        if i % 397 == 0:
            shift = rng.choice([0.0, 0.0, 0.0, 1.0, -0.5])
        values.append(10.0 + shift + rng.gauss(0, 1))
    return values


def fired(violations: tuple[RuleViolation, ...]) -> list[tuple[int, str | None]]:
    return [(v.rule, v.sample_id) for v in violations]


def replayed(chart: SpcChart, values: list[float]) -> list[tuple[int, str | None]]:
    out: list[tuple[int, str | None]] = []
    for i, value in enumerate(values):
        out.extend(fired(chart.add(value, f"r{i}")))
    return out


@pytest.mark.parametrize("sample_size", [1, 5, 12])
@pytest.mark.parametrize("plan", [True, False])
def test_a_resumed_chart_shows_and_judges_as_the_full_replay(sample_size: int, plan: bool) -> None:
    resumed_streams = 0
    for seed in range(8):
        resumed_streams += compare_resumed_with_replayed(sample_size, plan, seed)
    assert resumed_streams >= 4  # at least half resume; the others are replayed in full by the monitor


def compare_resumed_with_replayed(sample_size: int, plan: bool, seed: int) -> bool:
    values = stream(seed, 3000 + seed * 37)
    later = stream(seed + 100, 400)
    full = new_chart(sample_size, plan=plan)
    all_fired = replayed(full, values)
    resumed = new_chart(sample_size, plan=plan)
    keep = resumed.resume_values()
    assert keep < len(values) // 4  # the point: far fewer values than the history
    first = values[: resumed.settings.baseline_subgroups * sample_size]
    latest = [(v, f"r{i}") for i, v in enumerate(values)][-keep:]
    last_rule = all_fired[-1][0] if all_fired else None  # as the stored alarms tell it
    judge_last = 100 + seed * 10  # e.g. the values within the catch-up horizon
    got = resumed.resume(len(values), first, latest, last_rule, judge_last=judge_last)
    if got is None:
        return False  # a run straddles the start of the judged values
    # Every rule the replay fired among the judged values is answered, in order, and nothing it did not fire.
    judged_from = len(values) - judge_last
    answered = fired(got)
    assert [f for f in answered if int(str(f[1])[1:]) >= judged_from] == [
        f for f in all_fired if int(str(f[1])[1:]) >= judged_from
    ]
    assert set(answered) <= set(all_fired)
    assert resumed.status() == full.status()
    # And from here on both judge every further value alike, baseline recomputation included.
    assert replayed(resumed, later) == replayed(full, later)
    assert resumed.status() == full.status()
    assert resumed.recompute_limits() == full.recompute_limits()
    assert replayed(resumed, later) == replayed(full, later)
    assert resumed.status() == full.status()
    return True


def test_a_long_run_across_the_start_of_the_latest_values_asks_for_a_full_replay() -> None:
    values = [11.5] * 2000  # every point above the centre line: rule 2 fires every ninth point forever
    chart = new_chart(1, plan=True)
    keep = chart.resume_values()
    latest = [(v, None) for v in values[-keep:]]
    assert chart.resume(len(values), [], latest) is None


def test_a_short_stream_is_simply_replayed() -> None:
    values = stream(7, 50)
    full = new_chart(1, plan=True)
    replayed(full, values)
    resumed = new_chart(1, plan=True)
    assert resumed.resume(len(values), [], [(v, f"r{i}") for i, v in enumerate(values)]) is not None
    assert resumed.status() == full.status()
