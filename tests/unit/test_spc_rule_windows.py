"""The chart judges each Nelson rule on its look-back newest point first, stopping at the first point that breaks
the pattern (`_NEWEST_FIRST`); the rules as written (`_PATTERNS`, over the window's points oldest first) are the
specification. Both must give the same verdict on every look-back, including ties, zero steps, zones exactly on a
boundary and points that are not numbers."""

from __future__ import annotations

import math
import random
from collections import deque

import pytest

from qualitybridge.domain.spc import _HISTORY, _NEWEST_FIRST, _PATTERNS, _WINDOW

# Zones a chart gives: mostly near the centre, some exactly on the rules' boundaries (1, 2, 3 σ), signed zeros, far
# out, and NaN (a zone is a number the rules compare; none of them may treat NaN differently).
_BOUNDARY_ZONES = (0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 3.0, -3.0, 1.5, -1.5, 2.5, -2.5, 4.0, -4.0)


def _zone(rng: random.Random) -> float:
    pick = rng.random()
    if pick < 0.55:
        return rng.gauss(0.0, 1.0)
    if pick < 0.75:
        return rng.choice(_BOUNDARY_ZONES)
    if pick < 0.98:
        return rng.uniform(0.5, 3.5) * rng.choice((1.0, -1.0))  # runs on one side
    return math.nan


def _walk(rng: random.Random, length: int) -> list[tuple[float, float]]:
    """A plotted series with rising, falling and alternating stretches, repeated values (zero steps), calm stretches
    within 1 σ, stretches beyond 1 σ on one side, and NaN."""
    points: list[tuple[float, float]] = []
    x = 10.0
    mode = "noise"
    side = 1.0
    for _ in range(length):
        if rng.random() < 0.15:
            mode = rng.choice(("noise", "rising", "falling", "alternating", "flat", "calm", "one side"))
            side = rng.choice((1.0, -1.0))
        if mode == "rising":
            x += rng.choice((0.1, 0.2, 0.0))
        elif mode == "falling":
            x -= rng.choice((0.1, 0.2, 0.0))
        elif mode == "alternating":
            x += rng.choice((0.3, 0.5)) * (1 if len(points) % 2 else -1)
        elif mode == "noise":
            x += rng.gauss(0.0, 0.2)
        if rng.random() < 0.01:
            x = math.nan
        elif math.isnan(x):
            x = 10.0
        if mode == "flat":
            zone = rng.choice((0.5, -0.5, 1.5, -1.5))
        elif mode == "calm":  # within 1 σ, now and then exactly on it
            zone = rng.choice((1.0, -1.0)) if rng.random() < 0.02 else rng.uniform(-0.99, 0.99)
        elif mode == "one side":  # beyond 1 σ on one side, now and then on the other
            beyond = rng.choice((1.0, 2.0, 3.0)) if rng.random() < 0.15 else rng.uniform(1.01, 3.5)
            zone = side * beyond * (-1.0 if rng.random() < 0.1 else 1.0)
        else:
            zone = _zone(rng)
        points.append((x, zone))
    return points


@pytest.mark.parametrize("rule", sorted(_PATTERNS))
def test_each_rule_newest_first_agrees_with_the_rule_as_written(rule: int) -> None:
    window = _WINDOW[rule]
    rng = random.Random(2026 * 100 + rule)
    fired = 0
    for _series in range(300):
        recent: deque[tuple[float, float]] = deque(maxlen=_HISTORY)
        for point in _walk(rng, 120):
            recent.append(point)
            if len(recent) < window:
                continue
            expected = _PATTERNS[rule](list(recent)[-window:])
            assert _NEWEST_FIRST[rule](recent, window) == expected, (rule, list(recent)[-window:])
            fired += expected
    # The series must exercise both verdicts, or agreeing proves little.
    assert fired > 20, f"rule {rule} fired only {fired} times in the generated series"
