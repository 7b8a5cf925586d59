"""The relay's batch items are built without the contract's models (a page has 500 of them); they must be exactly
what the models would send, for every shape a result can take."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from qualitybridge.adapters.rest_contract import ResultPosting, result_posting_wire, result_to_dto
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
