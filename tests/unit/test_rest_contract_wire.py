"""The relay's batch items are built without the contract's models (a page has 500 of them); they must be exactly
what the models would send, for every shape a result can take. Read from a result's stored JSON, an item is what
the decoded result would send, or None (the caller decodes it) when the JSON is not in the form the store writes."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pydantic_core
import pytest

from qualitybridge.adapters.rest_contract import (
    ResultPosting,
    result_posting_wire,
    result_posting_wire_from_json,
    result_to_dto,
)
from qualitybridge.domain.model import MeasurementResult, ResultEvaluation
from tests.builders import measurement_report, result

EAST = timezone(timedelta(hours=5, minutes=30))


def _variants() -> list[MeasurementResult]:
    plain = result()
    return [
        plain,
        result(client_result_id="plc-7", value=-0.000123),
        plain.model_copy(update={"report": measurement_report(value=float("nan")), "evaluation": ResultEvaluation(3)}),
        plain.model_copy(update={"report": measurement_report(value=float("inf"))}),
        plain.model_copy(
            update={
                "report": measurement_report(measured_at=datetime(2026, 11, 30, 1, 2, 3, tzinfo=UTC)),
                "received_at": datetime(2026, 11, 30, 1, 2, 3, 400, tzinfo=UTC),
                "routing_version": "R7",
                "plan_version_superseded": True,
            }
        ),
        plain.model_copy(
            update={
                "report": measurement_report(measured_at=datetime(2026, 11, 30, 6, 32, 3, 5, tzinfo=EAST)),
                "evaluation": ResultEvaluation.NOT_OK,
            }
        ),
        plain.model_copy(update={"report": measurement_report(value=1e300)}),
    ]


@pytest.mark.parametrize("measured", _variants())
def test_a_result_item_is_what_the_models_would_send(measured: MeasurementResult) -> None:
    by_models = ResultPosting(idempotency_key=f"mr-{measured.result_id}", body=result_to_dto(measured))
    built = result_posting_wire(f"mr-{measured.result_id}", measured)
    assert built == by_models.model_dump(mode="json")
    assert json.loads(json.dumps(built)) == json.loads(by_models.model_dump_json())
    assert ResultPosting.model_validate(built) == by_models


def _from_model(key: str, stored: str) -> dict[str, Any]:
    return result_posting_wire(key, MeasurementResult.model_validate_json(stored))


@pytest.mark.parametrize("measured", [item for item in _variants() if math.isfinite(item.report.value)])
def test_a_result_item_read_from_the_stored_json_is_what_the_decoded_result_would_send(
    measured: MeasurementResult,
) -> None:
    stored = measured.model_dump_json()  # as the store keeps it
    built = result_posting_wire_from_json("mr-1", stored)
    assert built == _from_model("mr-1", stored)
    assert pydantic_core.to_json(built) == pydantic_core.to_json(_from_model("mr-1", stored))


def _stored(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(result(client_result_id="plc-1").model_dump_json())
    for path, value in changes.items():
        holder, _, key = path.rpartition("__")
        target = payload["report"] if holder == "report" else payload
        if value is _ABSENT:
            del target[key]
        else:
            target[key] = value
    return payload


_ABSENT = object()


def test_an_integer_value_is_sent_as_the_float_the_model_makes_of_it() -> None:
    stored = json.dumps(_stored(report__value=12))
    built = result_posting_wire_from_json("mr-1", stored)
    assert built is not None
    assert built["body"]["value"] == 12.0
    assert pydantic_core.to_json(built) == pydantic_core.to_json(_from_model("mr-1", stored))


@pytest.mark.parametrize(
    "payload",
    [
        _stored(routing_version=_ABSENT, plan_version_superseded=_ABSENT),  # a row of an earlier release
        _stored(report__client_result_id=_ABSENT),
        _stored(received_at="2026-11-25T12:00:00+00:00"),  # a time not as pydantic writes it
        _stored(report__measured_at="2026-11-25T13:00:00.5+01:00"),
        _stored(evaluation=True),
    ],
)
def test_a_stored_result_in_another_form_is_left_to_the_model_which_reads_it(payload: dict[str, Any]) -> None:
    stored = json.dumps(payload)
    assert result_posting_wire_from_json("mr-1", stored) is None
    assert _from_model("mr-1", stored)["body"]["result_id"] == payload["result_id"]


@pytest.mark.parametrize(
    "stored",
    [
        json.dumps(_stored(extra_field="x")),
        json.dumps(_stored(report__value="12.01")),
        json.dumps(_stored(report__value=None)),
        json.dumps(_stored(report__order_no=1000)),
        json.dumps(_stored(evaluation=7)),
        json.dumps(_stored(evaluation="OK")),
        json.dumps(_stored(received_at="yesterday")),
        json.dumps(_stored(received_at="2026-02-30T12:00:00Z")),
        json.dumps(_stored(report__measured_at=_ABSENT)),
        json.dumps(_stored(plan_version_superseded="no")),
        json.dumps(_stored(routing_version=3)),
        json.dumps(_stored(report="broken")),
        '{"result_id": "r-1"',
        "[]",
    ],
)
def test_a_stored_result_the_model_would_not_read_as_it_is_is_never_sent_from_its_json(stored: str) -> None:
    assert result_posting_wire_from_json("mr-1", stored) is None
