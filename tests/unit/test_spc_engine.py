"""The SPC engine against hand-computed values and a stream with one planted pattern per Nelson rule."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from qualitybridge.domain.spc import (
    ALL_RULES,
    ChartType,
    ControlLimits,
    LimitSource,
    SpcChart,
    SpcSettings,
    c4,
    chart_type_for,
    d2,
)
from tests.builders import PLANTED, QUIET

PLAN = ControlLimits(center=10.0, ucl=13.0, lcl=7.0)  # σ of the plotted value = 1


def planted_stream(rules: list[int], seed: int = 14) -> tuple[list[float], list[tuple[int, int]]]:
    """Background, then each planted pattern followed by background; a seeded shuffle picks the order."""
    order = list(rules)
    random.Random(seed).shuffle(order)
    zones = QUIET * 3
    expected = []
    for rule in order:
        zones += PLANTED[rule]
        expected.append((rule, len(zones)))
        zones += QUIET * 3
    return [PLAN.center + z for z in zones], expected


def fired(chart: SpcChart, values: list[float]) -> list[tuple[int, int]]:
    """(rule, 1-based sample number) of every violation, checking each carries the completing sample's id."""
    found = []
    for number, value in enumerate(values, start=1):
        for violation in chart.add(value, sample_id=f"r{number}"):
            assert violation.sample_id == f"r{number}"
            assert violation.value == value
            found.append((violation.rule, number))
    return found


def test_background_alone_raises_nothing() -> None:
    chart = SpcChart(1, 0.0, 20.0, PLAN)
    assert fired(chart, [PLAN.center + z for z in QUIET * 20]) == []


@pytest.mark.parametrize("seed", [14, 1, 2026])
def test_each_planted_pattern_raises_exactly_its_rule_at_the_completing_sample(seed: int) -> None:
    values, expected = planted_stream(sorted(ALL_RULES), seed)
    chart = SpcChart(1, 0.0, 20.0, PLAN)
    found = fired(chart, values)
    assert sorted(found, key=lambda f: f[1]) == sorted(expected, key=lambda e: e[1])
    assert chart.status().last_violated_rule == max(expected, key=lambda e: e[1])[0]


@pytest.mark.parametrize("rule", sorted(ALL_RULES))
def test_a_pattern_alone_raises_only_its_rule(rule: int) -> None:
    values, expected = planted_stream([rule])
    assert fired(SpcChart(1, 0.0, 20.0, PLAN), values) == expected


def test_disabled_rules_stay_silent() -> None:
    values, expected = planted_stream(sorted(ALL_RULES))
    chart = SpcChart(1, 0.0, 20.0, PLAN, SpcSettings(rules=frozenset({1, 5})))
    assert sorted(fired(chart, values)) == sorted(e for e in expected if e[0] in (1, 5))


def test_a_long_run_raises_its_rule_once_per_full_pattern() -> None:
    chart = SpcChart(1, 0.0, 20.0, PLAN, SpcSettings(rules=frozenset({2})))
    found = fired(chart, [10.0 - 0.5] + [10.5] * 20)
    assert found == [(2, 10), (2, 19)]


def test_rule_1_fires_at_every_point_beyond_the_limits() -> None:
    chart = SpcChart(1, 0.0, 20.0, PLAN, SpcSettings(rules=frozenset({1})))
    assert fired(chart, [10.0, 13.5, 6.0, 13.0]) == [(1, 2), (1, 3)]  # 13.0 is on the limit, not beyond


def test_asymmetric_plan_limits_give_asymmetric_zones() -> None:
    limits = ControlLimits(center=10.0, ucl=16.0, lcl=7.0)  # σ above 2, below 1
    assert limits.zone(14.0) == pytest.approx(2.0)
    assert limits.zone(8.0) == pytest.approx(-2.0)
    chart = SpcChart(1, 0.0, 20.0, limits, SpcSettings(rules=frozenset({1})))
    assert fired(chart, [15.9, 6.9]) == [(1, 2)]


def test_individuals_limits_from_the_baseline_are_hand_computed_and_then_fixed() -> None:
    chart = SpcChart(1, 0.0, 20.0, settings=SpcSettings(baseline_subgroups=5))
    baseline = [10.0, 12.0, 11.0, 13.0, 9.0]
    assert fired(chart, baseline[:4]) == []
    assert chart.status().limits is None
    assert chart.status().baseline_missing == 1
    chart.add(baseline[4])
    # mean 11; moving ranges 2, 1, 2, 4 → MR̄ 2.25; σ = 2.25 / 1.128 = 1.99468; 3σ = 5.98404
    limits = chart.status().limits
    assert limits is not None
    assert limits.source is LimitSource.BASELINE
    assert limits.center == pytest.approx(11.0)
    assert limits.ucl == pytest.approx(16.98404, abs=1e-5)
    assert limits.lcl == pytest.approx(5.01596, abs=1e-5)
    for value in [11.0, 15.0, 7.0] * 10:  # the process moves; the limits do not drift with it
        chart.add(value)
    assert chart.status().limits == limits


def test_recompute_on_request_takes_the_latest_baseline() -> None:
    chart = SpcChart(1, 0.0, 40.0, settings=SpcSettings(baseline_subgroups=4))
    for value in [10.0, 11.0, 10.0, 11.0, 20.0, 21.0, 20.0, 21.0]:
        chart.add(value)
    assert chart.limits is not None
    assert chart.limits.center == pytest.approx(10.5)
    recomputed = chart.recompute_limits()
    assert recomputed is not None
    assert recomputed.center == pytest.approx(20.5)
    # MR̄ = 1 → σ = 1 / 1.128
    assert recomputed.ucl - recomputed.center == pytest.approx(3 / 1.128)


def test_recompute_keeps_plan_limits() -> None:
    chart = SpcChart(1, 0.0, 20.0, PLAN)
    chart.add(12.0)
    assert chart.recompute_limits() == PLAN


def test_xbar_r_limits_from_the_baseline() -> None:
    chart = SpcChart(3, 0.0, 20.0, settings=SpcSettings(baseline_subgroups=3))
    assert chart.chart_type is ChartType.XBAR_R
    for value in [9.0, 10.0, 11.0, 10.0, 12.0, 11.0, 8.0, 10.0, 9.0]:
        assert chart.add(value) == ()
    # means 10, 11, 9 → X̄̄ = 10; ranges 2, 2, 2 → R̄ = 2; A2(3) = 1.023 (textbook table)
    limits = chart.status().limits
    assert limits is not None
    assert limits.center == pytest.approx(10.0)
    assert limits.ucl == pytest.approx(10.0 + 1.023 * 2, abs=1e-3)
    assert limits.lcl == pytest.approx(10.0 - 1.023 * 2, abs=1e-3)
    assert chart.status().sample_count == 9
    assert chart.status().point_count == 3


def test_xbar_s_limits_from_the_baseline() -> None:
    n = 12
    chart = SpcChart(n, 0.0, 100.0, settings=SpcSettings(baseline_subgroups=2))
    assert chart.chart_type is ChartType.XBAR_S
    group_a = [float(v) for v in range(1, 13)]  # mean 6.5, s = sqrt(13) = 3.60555
    group_b = [v + 1.0 for v in group_a]  # mean 7.5, same s
    for value in group_a + group_b:
        chart.add(value)
    limits = chart.status().limits
    assert limits is not None
    # A3(12) = 0.886 (textbook); S̄ = 3.60555
    assert limits.center == pytest.approx(7.0)
    assert limits.ucl == pytest.approx(7.0 + 0.886 * math.sqrt(13), abs=2e-3)


def test_subgroup_rules_judge_the_mean_and_name_the_completing_sample() -> None:
    chart = SpcChart(2, 0.0, 20.0, ControlLimits(10.0, 11.5, 8.5), SpcSettings(rules=frozenset({1})))
    assert chart.add(12.0, "a") == ()  # subgroup not complete yet
    (violation,) = chart.add(12.0, "b")
    assert (violation.rule, violation.point, violation.sample_id, violation.value) == (1, 1, "b", 12.0)


def test_capability_is_hand_computed() -> None:
    chart = SpcChart(1, 4.0, 16.0, PLAN)
    for value in [10.0, 12.0, 11.0, 13.0, 9.0]:
        chart.add(value)
    cap = chart.status().capability
    assert cap is not None
    # mean 11; σ_within = MR̄/d2 = 2.25/1.128 = 1.99468; σ_overall = sqrt(10/4) = 1.58114
    assert cap.cp == pytest.approx(12 / (6 * 1.99468), abs=1e-5)  # 1.00267
    assert cap.cpk == pytest.approx(5 / (3 * 1.99468), abs=1e-5)  # 0.83556
    assert cap.pp == pytest.approx(1.26491, abs=1e-5)
    assert cap.ppk == pytest.approx(1.05409, abs=1e-5)


def test_capability_uses_a_rolling_window() -> None:
    chart = SpcChart(1, 4.0, 16.0, PLAN, SpcSettings(capability_window=5))
    for value in [0.0, 100.0, -50.0, 10.0, 12.0, 11.0, 13.0, 9.0]:
        chart.add(value)
    cap = chart.status().capability
    assert cap is not None
    assert cap.values == 5
    assert cap.cpk == pytest.approx(0.83556, abs=1e-5)


def test_no_data_is_explicit_not_zero() -> None:
    status = SpcChart(1, 4.0, 16.0).status()
    assert not status.has_data
    assert status.sample_count == 0
    assert status.limits is None
    assert status.capability is None
    assert status.last_violated_rule is None
    one = SpcChart(1, 4.0, 16.0)
    one.add(10.0)
    cap = one.status().capability
    assert cap is not None
    assert cap.cp is None
    assert cap.pp is None


def test_constants_match_the_tables() -> None:
    assert d2(2) == pytest.approx(1.128)
    assert d2(5) == pytest.approx(2.326)
    assert c4(5) == pytest.approx(0.9400, abs=1e-4)
    assert c4(25) == pytest.approx(0.9896, abs=1e-4)
    assert chart_type_for(1) is ChartType.INDIVIDUALS
    assert chart_type_for(10) is ChartType.XBAR_R
    assert chart_type_for(11) is ChartType.XBAR_S


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match=r"1\.\.8"):
        SpcSettings(rules=frozenset({9}))
    with pytest.raises(ValueError, match="LCL"):
        ControlLimits(center=10.0, ucl=9.0, lcl=8.0)


def test_a_value_that_is_not_finite_is_not_plotted() -> None:
    chart = SpcChart(1, 4.0, 16.0, PLAN)
    assert chart.add(math.nan) == ()
    assert chart.status().sample_count == 0


@pytest.mark.parametrize("sample_size", [1, 5, 12])
def test_rolling_capability_matches_a_direct_computation_over_the_window(sample_size: int) -> None:
    rng = random.Random(7)
    window = 60
    chart = SpcChart(sample_size, 1000.0, 1012.0, settings=SpcSettings(capability_window=window))
    values = [1006.0 + rng.gauss(0.0, 1.0) + (3.0 if 400 < i < 500 else 0.0) for i in range(1000)]
    for value in values:
        chart.add(value)
    cap = chart.status().capability
    assert cap is not None
    last = values[-window:]
    mean = sum(last) / window
    overall = math.sqrt(sum((v - mean) ** 2 for v in last) / (window - 1))
    assert cap.mean == pytest.approx(mean, rel=1e-12)
    assert cap.ppk == pytest.approx(min(1012.0 - mean, mean - 1000.0) / (3 * overall), rel=1e-9)
    if sample_size == 1:
        moving = [abs(b - a) for a, b in itertools.pairwise(last)]
        within = sum(moving) / len(moving) / d2(2)
    else:
        complete = len(values) // sample_size * sample_size  # a subgroup still filling has no spread yet
        groups = [values[i : i + sample_size] for i in range(0, complete, sample_size)][-window // sample_size :]
        if sample_size <= 10:
            within = sum(max(g) - min(g) for g in groups) / len(groups) / d2(sample_size)
        else:
            spreads = [math.sqrt(sum((v - sum(g) / len(g)) ** 2 for v in g) / (len(g) - 1)) for g in groups]
            within = sum(spreads) / len(spreads) / c4(sample_size)
    assert cap.cp == pytest.approx(12.0 / (6 * within), rel=1e-9)
