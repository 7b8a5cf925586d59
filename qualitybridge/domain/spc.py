"""Statistical process control on one characteristic's measurement stream: control charts, Nelson rules, capability.

Pure computation, no I/O: `SpcChart` takes values in arrival order and answers, per value, the rule violations the
value completed. The service (`qualitybridge.services.spc_monitor`) keeps one chart per order, operation and
characteristic and rebuilds them from the store at start; docs/spc.md explains the rules and limits to users.

- Sample size 1: individuals chart (the moving range of two estimates σ). Sample size n > 1: consecutive values
  form subgroups of n in arrival order; the plotted point is the subgroup mean, σ is estimated from the mean range
  (X̄/R, n ≤ 10) or the mean standard deviation (X̄/S, n > 10).
- Control limits come from the ERP plan when it gives them; otherwise from the first `baseline_subgroups` points
  (a baseline window). They never drift with the process: they are recomputed only by `recompute_limits()` or by a
  new chart (the service starts one when the plan version changes). No limits yet means no rule is judged.
- Nelson rules 1-8 on the plotted points, judged in σ-zones of the limits (asymmetric limits give asymmetric
  zones). After a rule fires, it looks only at points after the one that fired it, so one long run raises the rule
  once per full pattern rather than at every further point.
- Cp/Cpk (within-subgroup σ) and Pp/Ppk (overall σ) over the last `capability_window` values.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "ALL_RULES",
    "DEFAULT_RULES",
    "DEFAULT_SEVERITY",
    "RULE_DESCRIPTIONS",
    "Capability",
    "ChartType",
    "ControlLimits",
    "LimitSource",
    "RuleViolation",
    "SpcChart",
    "SpcOverride",
    "SpcPolicy",
    "SpcSettings",
    "SpcStatus",
    "c4",
    "chart_type_for",
    "d2",
]

ALL_RULES: frozenset[int] = frozenset(range(1, 9))

RULE_DESCRIPTIONS: dict[int, str] = {
    1: "one point beyond 3σ (outside the control limits)",
    2: "nine points in a row on the same side of the centre line",
    3: "six points in a row steadily rising or falling",
    4: "fourteen points in a row alternating up and down",
    5: "two of three points in a row beyond 2σ on the same side",
    6: "four of five points in a row beyond 1σ on the same side",
    7: "fifteen points in a row within 1σ of the centre line",
    8: "eight points in a row outside 1σ, on both sides of the centre line",
}

# Points a rule looks at: it fires when the last WINDOW points (all after its previous firing) show the pattern.
_WINDOW: dict[int, int] = {1: 1, 2: 9, 3: 6, 4: 14, 5: 3, 6: 5, 7: 15, 8: 8}
_HISTORY = max(_WINDOW.values())

# d2(n): expected range of n normal values in σ (ASTM E2587 / Montgomery table VI), n = 2..25.
_D2 = (
    1.128, 1.693, 2.059, 2.326, 2.534, 2.704, 2.847, 2.970, 3.078, 3.173, 3.258, 3.336,
    3.407, 3.472, 3.532, 3.588, 3.640, 3.689, 3.735, 3.778, 3.819, 3.858, 3.895, 3.931,
)  # fmt: skip
_MAX_XBAR_R = 10


def d2(n: int) -> float:
    if not 2 <= n <= len(_D2) + 1:
        raise ValueError(f"d2 is tabulated for subgroup sizes 2..{len(_D2) + 1}, not {n}")
    return _D2[n - 2]


def c4(n: int) -> float:
    """Bias of the sample standard deviation of n normal values: E[s] = c4(n)·σ."""
    if n < 2:
        raise ValueError("c4 needs a subgroup size of at least 2")
    return math.sqrt(2.0 / (n - 1)) * math.exp(math.lgamma(n / 2) - math.lgamma((n - 1) / 2))


class ChartType(StrEnum):
    INDIVIDUALS = "I-MR"
    XBAR_R = "Xbar-R"
    XBAR_S = "Xbar-S"


def chart_type_for(sample_size: int) -> ChartType:
    if sample_size <= 1:
        return ChartType.INDIVIDUALS
    return ChartType.XBAR_R if sample_size <= _MAX_XBAR_R else ChartType.XBAR_S


class LimitSource(StrEnum):
    PLAN = "plan"
    BASELINE = "baseline"


@dataclass(frozen=True, slots=True)
class ControlLimits:
    """Centre line and 3σ control limits of the plotted statistic (individual value or subgroup mean)."""

    center: float
    ucl: float
    lcl: float
    source: LimitSource = LimitSource.PLAN

    def __post_init__(self) -> None:
        if not all(math.isfinite(v) for v in (self.center, self.ucl, self.lcl)):
            raise ValueError("control limits must be finite numbers")
        if not self.lcl <= self.center <= self.ucl:
            raise ValueError(f"control limits need LCL ≤ centre ≤ UCL, got {self.lcl}, {self.center}, {self.ucl}")

    def zone(self, x: float) -> float:
        """Signed distance from the centre line in σ of the plotted statistic (σ = a third of the limit's span)."""
        span = self.ucl - self.center if x >= self.center else self.center - self.lcl
        if x == self.center:
            return 0.0
        if span <= 0:
            return math.copysign(math.inf, x - self.center)
        return 3.0 * (x - self.center) / span


@dataclass(frozen=True)
class SpcSettings:
    """What is judged for one characteristic: the rules (1-8), the baseline and the capability window."""

    rules: frozenset[int] = ALL_RULES
    baseline_subgroups: int = 25
    capability_window: int = 125

    def __post_init__(self) -> None:
        if not self.rules <= ALL_RULES:
            raise ValueError(f"Nelson rules are numbered 1..8, got {sorted(self.rules - ALL_RULES)}")
        if self.baseline_subgroups < 2:
            raise ValueError("a baseline needs at least 2 subgroups")
        if self.capability_window < 2:
            raise ValueError("the capability window needs at least 2 values")


@dataclass(frozen=True)
class SpcOverride:
    """Per-characteristic deviations from the classification's defaults; None keeps the default."""

    rules: frozenset[int] | None = None
    baseline_subgroups: int | None = None


DEFAULT_RULES: Mapping[str, frozenset[int]] = {
    "critical": ALL_RULES,
    "major": frozenset({1, 2, 5, 6}),  # the Western Electric rules
    "minor": frozenset({1}),
}
DEFAULT_SEVERITY: Mapping[str, int] = {"critical": 900, "major": 700, "minor": 400}


@dataclass(frozen=True)
class SpcPolicy:
    """Which rules apply to which characteristic (by classification, overridden per characteristic id), the
    baseline and capability windows, and the OPC UA severity (1..1000) of a violation by classification."""

    rules_by_classification: Mapping[str, frozenset[int]] = field(default_factory=lambda: dict(DEFAULT_RULES))
    baseline_subgroups: int = 25
    capability_window: int = 125
    severity_by_classification: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_SEVERITY))
    overrides: Mapping[str, SpcOverride] = field(default_factory=dict)

    def settings_for(self, characteristic_id: str, classification: str) -> SpcSettings:
        override = self.overrides.get(characteristic_id, SpcOverride())
        rules = override.rules
        if rules is None:
            rules = self.rules_by_classification.get(classification, ALL_RULES)
        return SpcSettings(
            rules=rules,
            baseline_subgroups=override.baseline_subgroups or self.baseline_subgroups,
            capability_window=self.capability_window,
        )

    def severity_for(self, classification: str) -> int:
        return self.severity_by_classification.get(classification, 500)


@dataclass(frozen=True, slots=True)
class RuleViolation:
    """Rule `rule` fired at the `point`-th plotted point, completed by the sample `sample_id` (the last value)."""

    rule: int
    point: int
    value: float
    sample_id: str | None
    limits: ControlLimits

    @property
    def description(self) -> str:
        return RULE_DESCRIPTIONS[self.rule]


@dataclass(frozen=True, slots=True)
class Capability:
    """Process capability over the window; a figure is None where it is undefined (too few values, no spread)."""

    values: int
    mean: float
    sigma_within: float | None
    sigma_overall: float | None
    cp: float | None
    cpk: float | None
    pp: float | None
    ppk: float | None


@dataclass(frozen=True, slots=True)
class SpcStatus:
    """What a chart shows now. `limits` None: not yet known (baseline still filling); `capability` None: no data."""

    chart_type: ChartType
    sample_count: int
    point_count: int
    limits: ControlLimits | None
    baseline_missing: int
    capability: Capability | None
    last_violated_rule: int | None

    @property
    def has_data(self) -> bool:
        return self.sample_count > 0


class _Rolling:
    """The latest `size` numbers with their mean and sample standard deviation, kept up to date in O(1) per value.

    Sums run about a shift (near the mean) so that squares do not cancel; every `size` values they are recomputed
    exactly, which also bounds the rounding drift of adding and removing.
    """

    __slots__ = ("_items", "_s1", "_s2", "_shift", "_updates")

    def __init__(self, size: int) -> None:
        self._items: deque[float] = deque(maxlen=max(size, 1))
        self._shift: float | None = None
        self._s1 = 0.0
        self._s2 = 0.0
        self._updates = 0

    def __len__(self) -> int:
        return len(self._items)

    def append(self, x: float) -> None:
        if self._shift is None:
            self._shift = x
        items = self._items
        if len(items) == items.maxlen:
            old = items[0] - self._shift
            self._s1 -= old
            self._s2 -= old * old
        items.append(x)
        d = x - self._shift
        self._s1 += d
        self._s2 += d * d
        self._updates += 1
        if self._updates >= (items.maxlen or 1):
            self._recompute()

    def _recompute(self) -> None:
        items = self._items
        shift = math.fsum(items) / len(items)
        self._shift = shift
        self._s1 = math.fsum(x - shift for x in items)
        self._s2 = math.fsum((x - shift) ** 2 for x in items)
        self._updates = 0

    @classmethod
    def resumed(cls, size: int, latest: Sequence[float], total: int) -> _Rolling | None:
        """The state after `total` appends of which `latest` are the last: exactly as if all had been appended.

        The sums are recomputed from the items every `size` appends, so the state depends only on the items at the
        last recompute and the appends since. None if `latest` does not reach back that far.
        """
        rolling = cls(size)
        if len(latest) >= total:
            for x in latest[len(latest) - total :]:
                rolling.append(x)
            return rolling
        window = rolling._items.maxlen or 1
        needed = window + total % window
        if total < window or len(latest) < needed:
            return None
        kept = latest[len(latest) - needed :]
        rolling._items.extend(kept[:window])
        rolling._recompute()
        for x in kept[window:]:
            rolling.append(x)
        return rolling

    @property
    def mean(self) -> float:
        return (self._shift or 0.0) + self._s1 / len(self._items)

    @property
    def sample_std(self) -> float | None:
        n = len(self._items)
        if n < 2:
            return None
        return math.sqrt(max(self._s2 - self._s1 * self._s1 / n, 0.0) / (n - 1))


@dataclass(slots=True)
class _Point:
    mean: float
    spread: float  # subgroup range (X̄/R) or standard deviation (X̄/S); 0 for individuals


@dataclass
class SpcChart:
    """One characteristic's control chart; feed it values with `add` in arrival order."""

    sample_size: int
    lower_spec: float
    upper_spec: float
    plan_limits: ControlLimits | None = None
    settings: SpcSettings = field(default_factory=SpcSettings)

    def __post_init__(self) -> None:
        if self.sample_size < 1:
            raise ValueError("sample size must be at least 1")
        self.chart_type = chart_type_for(self.sample_size)
        self.limits: ControlLimits | None = self.plan_limits
        self._subgroup: list[float] = []
        self._sample_count = 0
        self._point_count = 0
        keep = max(self.settings.baseline_subgroups, math.ceil(self.settings.capability_window / self.sample_size))
        self._points: deque[_Point] = deque(maxlen=keep + 1)
        window = self.settings.capability_window
        self._values = _Rolling(window)  # capability: the latest values …
        # … and the within-subgroup spreads over them: moving ranges of two, or subgroup ranges / deviations.
        self._spreads = _Rolling(window - 1 if self.sample_size == 1 else math.ceil(window / self.sample_size))
        self._previous: float | None = None
        self._recent: deque[tuple[float, float]] = deque(maxlen=_HISTORY)  # (plotted value, zone) since limits
        self._rules = sorted(self.settings.rules)
        self._since_fired: dict[int, int] = dict.fromkeys(self._rules, 0)
        self.last_violated_rule: int | None = None

    def add(self, value: float, sample_id: str | None = None) -> tuple[RuleViolation, ...]:
        """Take one measured value; answers the rules this value completed (none while a subgroup is filling)."""
        if not math.isfinite(value):
            return ()
        point = self._take(value)
        if point is None:
            return ()
        if self.limits is None:
            if len(self._points) >= self.settings.baseline_subgroups:
                self.limits = self._limits_from(list(self._points)[-self.settings.baseline_subgroups :])
            return ()
        return self._judge(point.mean, sample_id, self.limits)

    def _take(self, value: float) -> _Point | None:
        """Count a value; answers the plotted point it closes (None while its subgroup is filling)."""
        self._sample_count += 1
        self._values.append(value)
        self._subgroup.append(value)
        if len(self._subgroup) < self.sample_size:
            return None
        point = self._close_subgroup()
        if self.sample_size > 1:
            self._spreads.append(point.spread)
        elif self._previous is not None:
            self._spreads.append(abs(value - self._previous))
        self._previous = value
        self._point_count += 1
        self._points.append(point)
        return point

    # ---- resuming from the latest values --------------------------------------------------------------

    def resume_values(self) -> int:
        """How many of the latest values `resume` needs at most to reach the state of a replay of all of them."""
        n = self.sample_size
        window = self.settings.capability_window
        spreads = 2 * window if n == 1 else 2 * math.ceil(window / n) * n
        points = (len_points := (self._points.maxlen or 1)) * n
        rules = 2 * _HISTORY * n  # the rules' look-back, then as many points again to find where they stand
        return max(2 * window, spreads, points + len_points, rules) + 2 * n

    def resume(
        self,
        total: int,
        first: Sequence[float],
        latest: Sequence[tuple[float, str | None]],
        last_violated_rule: int | None = None,
        *,
        judge_last: int = 0,
    ) -> tuple[RuleViolation, ...] | None:
        """Bring a new chart to the state it would have after taking all `total` values of its stream in order,
        given only the `first` ones (the baseline) and the `latest` ones with their sample ids; answers the rules
        the latest values completed.

        Only the last `judge_last` values (and the rules' look-back before them) are judged again; the others only
        fill the windows. `last_violated_rule` is the stream's last violated rule as stored, used if no rule fires
        among the judged values.
        None when `latest` does not decide the state exactly: too few values, or a rule whose pattern shows before
        it is known whether the rule fired shortly before the first of `latest` (a long run): replay them all.
        """
        if len(latest) >= total:
            fired: list[RuleViolation] = []
            for value, sample_id in latest[len(latest) - total :]:
                fired.extend(self.add(value, sample_id))
            return tuple(fired)
        n = self.sample_size
        start = total - len(latest)
        skip = -start % n  # the latest values begin mid-subgroup: start at the next whole one
        start += skip
        latest = latest[skip:]
        if len(latest) < self.resume_values() - 2 * n:
            return None
        limits = self.limits
        if limits is None:
            baseline = self.settings.baseline_subgroups
            if start // n < baseline or len(first) < baseline * n:
                return None  # the baseline is not complete before the latest values: replay them all
            points = [self._point_of(first[i * n : (i + 1) * n]) for i in range(baseline)]
            limits = self.limits = self._limits_from(points)
        self._sample_count = start
        self._point_count = start // n
        values = [v for v, _ in latest]
        # Values before the judged ones only fill the subgroups, windows and baseline points: whole subgroups.
        fill = max(len(latest) - judge_last - 2 * _HISTORY * n - n, 0) // n * n
        filled_points = [point for value in values[:fill] if (point := self._take(value)) is not None]
        judged = self._judge_resuming(values[fill:], [i for _, i in latest[fill:]], limits)
        if judged is None:
            return None
        fired_now, tail_points = judged
        if n == 1:
            spreads = [abs(b - a) for a, b in itertools.pairwise(values)]
            spread_total = total - 1
        else:
            spreads = [p.spread for p in filled_points + tail_points]
            spread_total = total // n
        resumed_values = _Rolling.resumed(self.settings.capability_window, values, total)
        spread_size = self._spreads._items.maxlen or 1
        resumed_spreads = _Rolling.resumed(spread_size, spreads, spread_total)
        if resumed_values is None or resumed_spreads is None:
            return None
        self._values, self._spreads = resumed_values, resumed_spreads
        if not fired_now:
            self.last_violated_rule = last_violated_rule
        return fired_now

    def _point_of(self, values: Sequence[float]) -> _Point:
        self._subgroup = list(values)
        return self._close_subgroup()

    def _judge_resuming(
        self, values: list[float], sample_ids: list[str | None], limits: ControlLimits
    ) -> tuple[tuple[RuleViolation, ...], list[_Point]] | None:
        """Take the latest values: the first _HISTORY points only fill the rules' look-back; after them a rule is
        judged as a replay would once it has had WINDOW points without its pattern (then it cannot have fired
        within its window before), or when its pattern shows after WINDOW points. None if it shows earlier."""
        points: list[_Point] = []
        unsure = set(self._rules)
        judged = 0
        fired: list[RuleViolation] = []
        for value, sample_id in zip(values, sample_ids, strict=True):
            point = self._take(value)
            if point is None:
                continue
            points.append(point)
            x = point.mean
            if len(self._recent) < _HISTORY:
                self._recent.append((x, limits.zone(x)))
                continue
            if not unsure:
                fired.extend(self._judge(x, sample_id, limits))
                continue
            judged += 1
            self._recent.append((x, limits.zone(x)))
            recent = list(self._recent)
            now: list[RuleViolation] = []
            for rule in self._rules:
                window = _WINDOW[rule]
                if rule not in unsure:
                    self._since_fired[rule] += 1
                    if self._since_fired[rule] < window:
                        continue
                    if _PATTERNS[rule](recent[-window:]):
                        self._since_fired[rule] = 0
                        now.append(RuleViolation(rule, self._point_count, x, sample_id, limits))
                    continue
                if _PATTERNS[rule](recent[-window:]):
                    if judged < window:
                        return None  # it fired here unless it fired within the window before: unknown
                    unsure.discard(rule)
                    self._since_fired[rule] = 0
                    now.append(RuleViolation(rule, self._point_count, x, sample_id, limits))
                elif judged >= window - 1:
                    unsure.discard(rule)  # no firing in the last window-1 points: from here as a replay
                    self._since_fired[rule] = judged
            if now:
                self.last_violated_rule = now[-1].rule
            fired.extend(now)
        if unsure:
            return None
        return tuple(fired), points

    def recompute_limits(self) -> ControlLimits | None:
        """New baseline limits from the latest points (on request); plan limits stay as the ERP gave them."""
        if self.plan_limits is not None:
            return self.limits
        baseline = list(self._points)[-self.settings.baseline_subgroups :]
        if len(baseline) < self.settings.baseline_subgroups:
            self.limits = None  # the baseline goes on filling from where it is
        else:
            self.limits = self._limits_from(baseline)
        self._recent.clear()
        self._since_fired = dict.fromkeys(self.settings.rules, 0)
        return self.limits

    def status(self) -> SpcStatus:
        missing = 0 if self.limits is not None else self.settings.baseline_subgroups - len(self._points)
        return SpcStatus(
            chart_type=self.chart_type,
            sample_count=self._sample_count,
            point_count=self._point_count,
            limits=self.limits,
            baseline_missing=max(missing, 0),
            capability=self.capability(),
            last_violated_rule=self.last_violated_rule,
        )

    # ---- limits and capability ------------------------------------------------------------------

    def _close_subgroup(self) -> _Point:
        values = self._subgroup
        self._subgroup = []
        n = len(values)
        if n == 1:
            return _Point(values[0], 0.0)
        mean = math.fsum(values) / n
        if self.chart_type is ChartType.XBAR_S:
            return _Point(mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)))
        return _Point(mean, max(values) - min(values))

    def _sigma_of_points(self, points: list[_Point]) -> float | None:
        """σ of the individual values, estimated within subgroups (or from moving ranges for individuals)."""
        n = self.sample_size
        if n == 1:
            if len(points) < 2:
                return None
            moving = [abs(b.mean - a.mean) for a, b in itertools.pairwise(points)]
            return (math.fsum(moving) / len(moving)) / d2(2)
        if not points:
            return None
        spread = math.fsum(p.spread for p in points) / len(points)
        return spread / (c4(n) if self.chart_type is ChartType.XBAR_S else d2(n))

    def _limits_from(self, points: list[_Point]) -> ControlLimits:
        center = math.fsum(p.mean for p in points) / len(points)
        sigma = self._sigma_of_points(points) or 0.0
        half_width = 3.0 * sigma / math.sqrt(self.sample_size)
        return ControlLimits(center, center + half_width, center - half_width, LimitSource.BASELINE)

    def capability(self) -> Capability | None:
        values = self._values
        if not values:
            return None
        mean = values.mean
        sigma_within: float | None = None
        if self._spreads:
            n = self.sample_size
            divisor = d2(2) if n == 1 else (c4(n) if self.chart_type is ChartType.XBAR_S else d2(n))
            sigma_within = self._spreads.mean / divisor
        sigma_overall = values.sample_std
        cp, cpk = self._indices(mean, sigma_within)
        pp, ppk = self._indices(mean, sigma_overall)
        return Capability(len(values), mean, sigma_within, sigma_overall, cp, cpk, pp, ppk)

    def _indices(self, mean: float, sigma: float | None) -> tuple[float | None, float | None]:
        if sigma is None or sigma <= 0:
            return None, None
        potential = (self.upper_spec - self.lower_spec) / (6 * sigma)
        actual = min(self.upper_spec - mean, mean - self.lower_spec) / (3 * sigma)
        return potential, actual

    # ---- Nelson rules -----------------------------------------------------------------------------

    def _judge(self, x: float, sample_id: str | None, limits: ControlLimits) -> tuple[RuleViolation, ...]:
        recent = self._recent
        recent.append((x, limits.zone(x)))
        points = len(recent)
        fired: list[RuleViolation] = []
        for rule in self._rules:
            self._since_fired[rule] += 1
            window = _WINDOW[rule]
            if self._since_fired[rule] < window or points < window:
                continue
            if _NEWEST_FIRST[rule](recent, window):
                self._since_fired[rule] = 0
                fired.append(RuleViolation(rule, self._point_count, x, sample_id, limits))
        if fired:
            self.last_violated_rule = fired[-1].rule
        return tuple(fired)


Points = list[tuple[float, float]]  # (plotted value, zone in σ), oldest first; the last one is the new point


def _rule1(w: Points) -> bool:
    return abs(w[-1][1]) > 3


def _rule2(w: Points) -> bool:
    return all(z > 0 for _, z in w) or all(z < 0 for _, z in w)


def _rule3(w: Points) -> bool:
    steps = [b[0] - a[0] for a, b in itertools.pairwise(w)]
    return all(s > 0 for s in steps) or all(s < 0 for s in steps)


def _rule4(w: Points) -> bool:
    steps = [b[0] - a[0] for a, b in itertools.pairwise(w)]
    return all(s != 0 for s in steps) and all(a * b < 0 for a, b in itertools.pairwise(steps))


def _k_of_n_beyond(w: Points, k: int, sigmas: float) -> bool:
    """At least k points beyond `sigmas` on one side, the new point among them."""
    last = w[-1][1]
    if abs(last) <= sigmas:
        return False
    side = 1.0 if last > 0 else -1.0
    return sum(1 for _, z in w if z * side > sigmas) >= k


def _rule5(w: Points) -> bool:
    return _k_of_n_beyond(w, 2, 2.0)


def _rule6(w: Points) -> bool:
    return _k_of_n_beyond(w, 4, 1.0)


def _rule7(w: Points) -> bool:
    return all(abs(z) < 1 for _, z in w)


def _rule8(w: Points) -> bool:
    return all(abs(z) > 1 for _, z in w) and any(z > 0 for _, z in w) and any(z < 0 for _, z in w)


_PATTERNS = {1: _rule1, 2: _rule2, 3: _rule3, 4: _rule4, 5: _rule5, 6: _rule6, 7: _rule7, 8: _rule8}


# The same patterns judged on the chart's look-back itself, newest point first, stopping at the first point that
# breaks the pattern: `_NEWEST_FIRST[rule](recent, window) == _PATTERNS[rule](list(recent)[-window:])` whenever
# `recent` holds `window` points or more (tests/unit/test_spc_rule_windows.py holds the two equal). A point of a
# stable process breaks most patterns within a point or two; the window's copy and a full scan of it per rule were
# about half of the SPC engine's CPU per value (docs/performance.md, "eighth session").
_Recent = deque[tuple[float, float]]


def _newest(recent: _Recent, window: int) -> Iterator[tuple[float, float]]:
    return itertools.islice(reversed(recent), window)


def _rule1_newest(recent: _Recent, _window: int) -> bool:
    return abs(recent[-1][1]) > 3


def _rule2_newest(recent: _Recent, window: int) -> bool:
    last = recent[-1][1]
    if last > 0:
        return all(z > 0 for _, z in _newest(recent, window))
    if last < 0:
        return all(z < 0 for _, z in _newest(recent, window))
    return False


def _rule3_newest(recent: _Recent, window: int) -> bool:
    points = _newest(recent, window)
    newer = next(points)[0]
    direction = 0  # of the steps seen so far: 1 rising, -1 falling
    for older, _zone in points:
        step = newer - older
        if step > 0 and direction >= 0:
            direction = 1
        elif step < 0 and direction <= 0:
            direction = -1
        else:
            return False
        newer = older
    return True


def _rule4_newest(recent: _Recent, window: int) -> bool:
    points = _newest(recent, window)
    newer = next(points)[0]
    later_step: float | None = None
    for older, _zone in points:
        step = newer - older
        if later_step is not None and not step * later_step < 0:  # a zero step makes the product 0
            return False
        later_step = step
        newer = older
    return True


def _k_of_n_beyond_newest(recent: _Recent, window: int, k: int, sigmas: float) -> bool:
    last = recent[-1][1]
    if abs(last) <= sigmas:
        return False
    side = 1.0 if last > 0 else -1.0
    beyond = 0
    for _, z in _newest(recent, window):
        if z * side > sigmas:
            beyond += 1
            if beyond >= k:
                return True
    return False


def _rule5_newest(recent: _Recent, window: int) -> bool:
    return _k_of_n_beyond_newest(recent, window, 2, 2.0)


def _rule6_newest(recent: _Recent, window: int) -> bool:
    return _k_of_n_beyond_newest(recent, window, 4, 1.0)


def _rule7_newest(recent: _Recent, window: int) -> bool:
    return all(abs(z) < 1 for _, z in _newest(recent, window))


def _rule8_newest(recent: _Recent, window: int) -> bool:
    above = below = False
    for _, z in _newest(recent, window):
        if not abs(z) > 1:
            return False
        if z > 0:
            above = True
        elif z < 0:
            below = True
    return above and below


_NEWEST_FIRST = {
    1: _rule1_newest,
    2: _rule2_newest,
    3: _rule3_newest,
    4: _rule4_newest,
    5: _rule5_newest,
    6: _rule6_newest,
    7: _rule7_newest,
    8: _rule8_newest,
}
