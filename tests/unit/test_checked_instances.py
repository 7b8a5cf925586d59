"""`checked_instance` builds the report path's models without pydantic validating values checked already (a batch's
columns, the master data, the clock). Pinned here: pydantic lays instances out as it assumes (a pydantic that changes
`model_construct` fails here, not in production), the report path's models qualify, an instance built so is
indistinguishable from a validated one, and a model or a call it does not fit is validated as before. That the
column checks leave nothing for validation to refuse is tested against pydantic itself: every row they accept
makes the same report through validation."""

from __future__ import annotations

import copy
import inspect
import math
import pickle
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from qualitybridge.domain import model as domain_model
from qualitybridge.domain.model import (
    InspectionCharacteristic,
    MeasurementReport,
    MeasurementResult,
    ResultEvaluation,
    checked_instance,
)
from qualitybridge.domain.records import AcceptedMeasurement
from qualitybridge.server.methods.measurements import _checked_entries, report_from_row

AT = datetime(2026, 11, 30, 6, 0, 0, 123456, tzinfo=UTC)

# pydantic 2.14's `model_construct`: the instance state it sets, in this order (whitespace aside).
_PYDANTIC_LINES = (
    "m = cls.__new__(cls)",
    "_object_setattr(m, '__dict__', fields_values)",
    "_object_setattr(m, '__pydantic_fields_set__', _fields_set)",
    "if not cls.__pydantic_root_model__:",
    "_object_setattr(m, '__pydantic_extra__', _extra)",
    "_object_setattr(m, '__pydantic_private__', None)",
    "if cls.__pydantic_post_init__:",
)


def test_pydantic_builds_instances_as_checked_instance_does() -> None:
    lines = [line.strip() for line in inspect.getsource(BaseModel.model_construct).splitlines()]
    position = 0
    for expected in _PYDANTIC_LINES:
        assert expected in lines[position:], f"pydantic's model_construct changed: {expected!r} not found in order"
        position = lines.index(expected, position) + 1
    assert BaseModel.__slots__ == domain_model._INSTANCE_STATE


@pytest.mark.parametrize("model", [MeasurementReport, MeasurementResult, AcceptedMeasurement])
def test_the_report_paths_models_are_built_without_validation(model: type[BaseModel]) -> None:
    assert domain_model._plain(model)


def _report_fields(**changed: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "order_no": "1000417",
        "operation_no": "0010",
        "characteristic_id": "C0010",
        "value": 20.125,
        "equipment_id": "GA-TMP-0603",
        "part_serial": "SN-1",
        "measured_at": AT,
        "client_result_id": "plc-1",
    }
    return {**fields, **changed}


def _result_fields(report: MeasurementReport, **changed: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "result_id": "01a22b36-d3ac-74a3-8350-28b0d148e7a4",
        "report": report,
        "evaluation": ResultEvaluation.NOT_OK,
        "plan_version": "3",
        "unit": "CEL",
        "reported_by": "machine",
        "received_at": AT + timedelta(seconds=1),
        "routing_version": None,
        "plan_version_superseded": True,
    }
    return {**fields, **changed}


def _same(built: BaseModel, validated: BaseModel) -> None:
    assert type(built) is type(validated)
    assert built == validated
    assert hash(built) == hash(validated)
    assert repr(built) == repr(validated)
    assert built.model_dump_json() == validated.model_dump_json()
    assert built.model_dump() == validated.model_dump()
    assert built.model_fields_set == validated.model_fields_set
    assert pickle.loads(pickle.dumps(built)) == validated  # noqa: S301 - our own bytes
    assert copy.deepcopy(built) == validated
    assert built.model_copy(update={}) == validated
    assert type(validated).model_validate_json(built.model_dump_json()) == validated
    with pytest.raises(ValidationError):
        built.__setattr__(next(iter(type(built).model_fields)), "x")  # frozen as a validated one


@pytest.mark.parametrize(
    "changed",
    [
        {},
        {"value": -0.0},
        {"value": float("nan")},  # the service judges (and refuses) it; the model holds it, as a validated one does
        {"client_result_id": None},
        {"measured_at": datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2)))},
        {"part_serial": 'äöü € 😀 "quoted" \\'},
    ],
)
def test_an_instance_built_so_is_one_pydantic_validated(changed: dict[str, Any]) -> None:
    report = checked_instance(MeasurementReport, _report_fields(**changed))
    validated_report = MeasurementReport(**_report_fields(**changed))
    if not math.isnan(report.value):
        _same(report, validated_report)
    result = checked_instance(MeasurementResult, _result_fields(report))
    validated_result = MeasurementResult(**_result_fields(validated_report))
    accepted = checked_instance(AcceptedMeasurement, {"result": result, "gauge_due_soon": True})
    validated_accepted = AcceptedMeasurement(result=validated_result, gauge_due_soon=True)
    if not math.isnan(report.value):  # nan != nan: a validated one does not equal itself either
        _same(result, validated_result)
        _same(accepted, validated_accepted)
    assert accepted.result.report.model_dump_json() == validated_report.model_dump_json()


def test_a_model_with_validators_or_a_call_without_every_field_is_validated() -> None:
    characteristic = {
        "characteristic_id": "C1",
        "name": "Diameter",
        "nominal": 20.0,
        "lower_limit": 22.0,  # above the upper limit: the model's validator refuses it
        "upper_limit": 18.0,
        "unit": "MMT",
        "plan_version": "1",
    }
    with pytest.raises(ValidationError, match="lower_limit must not exceed upper_limit"):
        checked_instance(InspectionCharacteristic, characteristic)
    without_client_id = _report_fields()
    del without_client_id["client_result_id"]  # a default left out: validation fills it in
    assert checked_instance(MeasurementReport, without_client_id) == MeasurementReport(**without_client_id)
    with pytest.raises(ValidationError):
        checked_instance(MeasurementReport, {**_report_fields(), "value": "not a number", "extra": 1})


_GOOD = ("1000", "0010", "C010", 1.5, "G-1", "S-1", AT, "")
_ACCEPTED_ELEMENTS: list[tuple[int, Any]] = [
    (0, "  1000  "),  # stripped
    (0, "1" * 32),
    (2, "C\u00e9\u20ac\U0001f600"),
    (3, -0.0),
    (3, 1e308),
    (3, 5e-324),
    (4, "\ttab\t"),
    (5, "x" * 128),
    (6, datetime(2026, 11, 30)),  # noqa: DTZ001 - naive on purpose: taken as UTC
    (6, datetime(2026, 11, 30, 3, tzinfo=timezone(timedelta(hours=3)))),
    (6, datetime(1601, 1, 1, 0, 0, 0, 1, tzinfo=UTC)),  # just after the null DateTime
    (7, "plc-7/000123"),
    (7, " "),  # a blank client id: no client id
]


def test_every_row_the_column_checks_accept_makes_the_report_validation_makes() -> None:
    """What the checks hand on is of the report's types: pydantic, given the same row, answers the same report and
    refuses nothing; so leaving validation out refuses and accepts exactly as before."""
    entries = [_GOOD]
    for position, element in _ACCEPTED_ELEMENTS:
        row = list(_GOOD)
        row[position] = element
        entries.append(tuple(row))
    rows, refusals = _checked_entries([list(column) for column in zip(*entries, strict=True)])
    assert refusals == {}
    for row in rows:
        built = report_from_row(row)
        names = list(MeasurementReport.model_fields)
        validated = MeasurementReport(**dict(zip(names, [*row[:7], row[7] or None], strict=True)))
        _same(built, validated)
        assert MeasurementReport.model_validate(built.model_dump()) == built
