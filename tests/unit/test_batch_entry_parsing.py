"""A batch's entries are parsed with each distinct value checked once (ReportMeasurementsMethod); each entry must
still get exactly the value it sent, also where two values compare equal but differ (0.0 and -0.0)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from qualitybridge.server.methods.measurements import ReportMeasurementsMethod


def test_each_entry_keeps_its_own_value_where_values_compare_equal() -> None:
    at = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
    values = [0.0, -0.0, -0.0, 0.0]
    entries = len(values)
    columns: list[list[Any]] = [
        ["1000"] * entries,
        ["0010"] * entries,
        ["C010"] * entries,
        values,
        ["G-1"] * entries,
        ["S-1"] * entries,
        [at] * entries,
        [""] * entries,
    ]
    checked: list[dict[Any, Any]] = [{} for _ in columns]
    parsed = [ReportMeasurementsMethod._entry(columns, entry, checked).value for entry in range(entries)]
    assert [math.copysign(1.0, value) for value in parsed] == [math.copysign(1.0, value) for value in values]
