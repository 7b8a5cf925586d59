"""A batch's entries are checked column by column (ReportMeasurementsMethod), each distinct value once; each entry
must still get exactly the value it sent, also where two values compare equal but differ (0.0 and -0.0), and a
refused entry the refusal of its first refused argument, as a single call would."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from asyncua import ua

from qualitybridge.server.methods.arguments import ArgumentError, parse_arguments
from qualitybridge.server.methods.measurements import REPORT_MEASUREMENT_ARGUMENTS, _checked_entries

AT = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)


def _columns(values: list[Any], **changed: list[Any]) -> list[list[Any]]:
    entries = len(values)
    columns: dict[str, list[Any]] = {
        "order": ["1000"] * entries,
        "operation": ["0010"] * entries,
        "characteristic": ["C010"] * entries,
        "value": values,
        "gauge": ["G-1"] * entries,
        "serial": ["S-1"] * entries,
        "at": [AT] * entries,
        "client_id": [""] * entries,
    }
    columns.update(changed)
    return list(columns.values())


# All finite floats (checked as a whole), and with a non-finite one among them (checked value by value).
@pytest.mark.parametrize("values", [[0.0, -0.0, -0.0, 0.0], [0.0, -0.0, float("nan"), -0.0, 0.0]])
def test_each_entry_keeps_its_own_value_where_values_compare_equal(values: list[float]) -> None:
    rows, refusals = _checked_entries(_columns(values))
    kept = [entry for entry in range(len(values)) if entry not in refusals]
    assert [math.copysign(1.0, rows[entry][3]) for entry in kept] == [
        math.copysign(1.0, values[entry]) for entry in kept
    ]
    assert set(refusals) == {entry for entry, value in enumerate(values) if not math.isfinite(value)}


def test_a_refused_entry_gets_its_first_refused_argument_and_the_others_pass() -> None:
    rows, refusals = _checked_entries(
        _columns([1.0, float("inf"), 3.0, float("nan")], characteristic=["C010", "C010", " ", ""])
    )
    assert sorted(refusals) == [1, 2, 3]
    assert refusals[1].status == ua.StatusCodes.BadOutOfRange  # the value: the only refused argument
    assert refusals[2].message == "CharacteristicId must not be empty"  # stripped to empty, before the value
    assert refusals[3].message == "CharacteristicId must not be empty"  # the characteristic comes before the value
    assert rows[0][:4] == ("1000", "0010", "C010", 1.0)


_V = ua.VariantType
_SCALAR_TYPES = (_V.String, _V.String, _V.String, _V.Double, _V.String, _V.String, _V.DateTime, _V.String)
_GOOD_ROW = ("1000", "0010", "C010", 1.5, "G-1", "S-1", AT, "")


@pytest.mark.parametrize(
    ("position", "bad"),
    [
        (3, float("nan")),
        (3, float("inf")),
        (3, float("-inf")),
        (0, "1" * 33),
        (2, "  "),
        (5, ""),
        (4, "G-\udcff"),
        (6, datetime(1601, 1, 1, tzinfo=UTC)),
    ],
)
def test_a_refused_entry_between_good_ones_is_refused_as_the_single_call_is(position: int, bad: Any) -> None:
    """The batch's entry gets the StatusCode and message ReportMeasurement answers for the same values; the good
    entries around it stay good, each with its own values."""
    row = list(_GOOD_ROW)
    row[position] = bad
    variants = [ua.Variant(value, kind) for value, kind in zip(row, _SCALAR_TYPES, strict=True)]
    with pytest.raises(ArgumentError) as single:
        parse_arguments(REPORT_MEASUREMENT_ARGUMENTS, variants)
    entries = [_GOOD_ROW, tuple(row), (*_GOOD_ROW[:3], -0.0, *_GOOD_ROW[4:])]
    rows, refusals = _checked_entries([list(column) for column in zip(*entries, strict=True)])
    assert list(refusals) == [1]
    assert (refusals[1].status, refusals[1].message) == (single.value.status, single.value.message)
    assert rows[0] == _GOOD_ROW
    assert rows[2][:3] == _GOOD_ROW[:3]
    assert math.copysign(1.0, rows[2][3]) == -1.0
