"""The ERP/QMS simulator over real HTTP: contract v1, idempotent bookings, fault injection, and the DTO mapping."""

from __future__ import annotations

import asyncio
import json
import math
import socket
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from qualitybridge.adapters.rest_contract import (
    IDEMPOTENCY_HEADER,
    BatchAnswer,
    OrderDTO,
    ResultDTO,
    equipment_from_dto,
    equipment_to_dto,
    order_from_dto,
    order_to_dto,
    result_from_dto,
    result_to_dto,
)
from qualitybridge.domain.model import (
    MeasurementReport,
    MeasurementResult,
    ResultEvaluation,
)
from qualitybridge.simulator import SimulatorState, seed_equipment, seed_orders, serve
from qualitybridge.simulator.app import TITLE, openapi_document

pytestmark = pytest.mark.asyncio

OPENAPI_FILE = Path(__file__).resolve().parents[2] / "docs" / "erp-rest-contract.openapi.json"
REGENERATE = "python -m qualitybridge.simulator.app --write-openapi docs/erp-rest-contract.openapi.json"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
async def erp() -> AsyncIterator[httpx.AsyncClient]:
    port = _free_port()
    started = asyncio.Event()
    server = asyncio.create_task(serve("127.0.0.1", port, state=SimulatorState(), started=started))
    await asyncio.wait_for(started.wait(), timeout=5)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        yield client
    server.cancel()
    with pytest.raises(asyncio.CancelledError):
        await server


def _result_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "result_id": "r-1",
        "client_result_id": "machine-7/4711",
        "order_no": "1000417",
        "operation_no": "0010",
        "characteristic_id": "C0020",
        "value": 62.012,
        "unit": "MMT",
        "evaluation": "OK",
        "plan_version": "P03",
        "equipment_id": "GA-BOR-0312",
        "part_serial": "SN-000123",
        "measured_at": "2026-03-02T07:15:00Z",
        "received_at": "2026-03-02T07:15:01Z",
        "reported_by": "opcua:machine-7",
    }
    body.update(overrides)
    return body


async def _post_result(erp: httpx.AsyncClient, key: str, body: dict[str, Any]) -> httpx.Response:
    return await erp.post("/api/v1/results", json=body, headers={IDEMPOTENCY_HEADER: key})


async def test_seed_publishes_realistic_orders_and_gauges(erp: httpx.AsyncClient) -> None:
    orders = (await erp.get("/api/v1/orders")).json()["orders"]
    equipment = (await erp.get("/api/v1/equipment")).json()["equipment"]

    assert len(orders) >= 3
    units = set()
    for order in orders:
        characteristics = [c for operation in order["operations"] for c in operation["characteristics"]]
        assert 5 <= len(characteristics) <= 30, order["order_no"]
        assert 1 <= len(order["operations"]) <= 3
        assert order["plant"] == "1010"
        assert order["material_no"].startswith("MAT-")
        for characteristic in characteristics:
            assert characteristic["lower_limit"] <= characteristic["nominal"] <= characteristic["upper_limit"]
            units.add(characteristic["unit"])
    assert {"MMT", "4H", "NU", "CEL"} <= units
    statuses = [item["calibration_status"] for item in equipment]
    assert 6 <= len(equipment) <= 10
    assert statuses.count("EXPIRED") == 1
    assert statuses.count("DUE_SOON") == 1
    assert statuses.count("VALID") == len(equipment) - 2


async def test_seed_is_deterministic_and_dates_agree_with_status() -> None:
    today = date(2026, 3, 2)
    assert seed_orders(today) == seed_orders(today)
    assert seed_equipment(today) == seed_equipment(today)
    for gauge in seed_equipment(today):
        assert gauge.next_due is not None
        assert (gauge.next_due < today) == (gauge.calibration_status.name == "EXPIRED")


async def test_release_change_withdraw_are_published_with_new_revisions(erp: httpx.AsyncClient) -> None:
    first = (await erp.get("/api/v1/orders")).json()
    template = first["orders"][0]
    new_order = {**template, "order_no": "1000499", "planned_quantity": 7}

    released = await erp.post("/sim/orders", json=new_order)
    assert released.status_code == 201
    after_release = (await erp.get("/api/v1/orders")).json()
    assert after_release["revision"] > first["revision"]
    assert "1000499" in [order["order_no"] for order in after_release["orders"]]
    assert (await erp.post("/sim/orders", json=new_order)).status_code == 409

    changed = await erp.put("/sim/orders/1000499", json={**new_order, "planned_quantity": 9})
    assert changed.status_code == 200
    after_change = (await erp.get("/api/v1/orders")).json()
    assert after_change["revision"] > after_release["revision"]
    assert [o["planned_quantity"] for o in after_change["orders"] if o["order_no"] == "1000499"] == [9]

    assert (await erp.delete("/sim/orders/1000499")).status_code == 200
    after_withdraw = (await erp.get("/api/v1/orders")).json()
    assert after_withdraw["revision"] > after_change["revision"]
    assert "1000499" not in [order["order_no"] for order in after_withdraw["orders"]]
    missing = await erp.delete("/sim/orders/1000499")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "unknown_order"


async def test_recalibration_changes_equipment_and_revision(erp: httpx.AsyncClient) -> None:
    before = (await erp.get("/api/v1/equipment")).json()
    expired = next(item for item in before["equipment"] if item["calibration_status"] == "EXPIRED")
    answer = await erp.patch(
        f"/sim/equipment/{expired['equipment_id']}",
        json={"calibration_status": "VALID", "next_due": "2027-12-01", "last_calibration": "2026-12-01"},
    )
    assert answer.status_code == 200
    assert answer.json()["calibration_status"] == "VALID"
    after = (await erp.get("/api/v1/equipment")).json()
    assert after["revision"] == before["revision"] + 1
    assert [i["calibration_status"] for i in after["equipment"]].count("EXPIRED") == 0


async def test_result_is_booked_once_and_a_retry_gets_the_same_receipt(erp: httpx.AsyncClient) -> None:
    first = await _post_result(erp, "key-1", _result_body())
    assert first.status_code == 201
    assert first.json()["duplicate"] is False
    assert first.json()["document_no"] == "QR-000001"

    again = await _post_result(erp, "key-1", _result_body())
    assert again.status_code == 200
    assert again.json() == {"document_no": "QR-000001", "duplicate": True}

    booked = (await erp.get("/results")).json()
    assert len(booked) == 1
    assert booked[0]["idempotency_key"] == "key-1"
    assert booked[0]["deliveries"] == 2
    assert booked[0]["body"]["value"] == 62.012
    stats = (await erp.get("/stats")).json()
    assert stats["booked"]["results"] == 1
    assert stats["duplicates_suppressed"]["results"] == 1


async def test_reusing_a_key_for_another_body_is_refused(erp: httpx.AsyncClient) -> None:
    assert (await _post_result(erp, "key-2", _result_body())).status_code == 201
    conflict = await _post_result(erp, "key-2", _result_body(value=62.029))
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_key_reused"
    assert len((await erp.get("/results")).json()) == 1


async def test_posting_without_idempotency_key_is_a_bad_request(erp: httpx.AsyncClient) -> None:
    answer = await erp.post("/api/v1/results", json=_result_body())
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "missing_idempotency_key"
    assert (await erp.get("/results")).json() == []


async def test_unknown_order_or_characteristic_is_unprocessable(erp: httpx.AsyncClient) -> None:
    unknown_order = await _post_result(erp, "key-3", _result_body(order_no="9999999"))
    assert unknown_order.status_code == 422
    assert unknown_order.json()["error"]["code"] == "unknown_order"
    unknown_characteristic = await _post_result(erp, "key-4", _result_body(characteristic_id="C9990"))
    assert unknown_characteristic.status_code == 422
    assert unknown_characteristic.json()["error"]["code"] == "unknown_characteristic"
    assert (await erp.get("/results")).json() == []


async def test_confirmations_and_spc_alarms_are_booked(erp: httpx.AsyncClient) -> None:
    confirmation = {"order_no": "1000417", "operation_no": "0010", "yield_quantity": 12, "scrap_quantity": 1}
    answer = await erp.post("/api/v1/confirmations", json=confirmation, headers={IDEMPOTENCY_HEADER: "c-1"})
    assert answer.status_code == 201
    assert answer.json()["document_no"] == "QC-000001"
    alarm = {
        "order_no": "1000417",
        "operation_no": "0010",
        "characteristic_id": "C0020",
        "rule": "WE1",
        "severity": 700,
        "raised_at": "2026-03-02T08:00:00Z",
    }
    answer = await erp.post("/api/v1/spc-alarms", json=alarm, headers={IDEMPOTENCY_HEADER: "a-1"})
    assert answer.status_code == 201
    assert answer.json()["document_no"] == "QA-000001"
    assert [c["body"]["yield_quantity"] for c in (await erp.get("/confirmations")).json()] == [12]
    assert [a["body"]["rule"] for a in (await erp.get("/spc-alarms")).json()] == ["WE1"]


async def test_a_batch_books_each_posting_as_its_single_path_would_and_answers_in_the_contract_form(
    erp: httpx.AsyncClient,
) -> None:
    """The batch answer is built without models (hundreds per request): it must be what BatchAnswer writes, and a
    posting in a batch books the same body as on its single path (a repeat of either is a duplicate, not a
    conflict)."""
    assert (await _post_result(erp, "key-s", _result_body(result_id="r-s"))).status_code == 201
    confirmation = {"order_no": "1000417", "operation_no": "0010", "yield_quantity": 12}
    alarm = {
        "order_no": "1000417",
        "operation_no": "0010",
        "characteristic_id": "C0020",
        "rule": "WE1",
        "severity": 700,
        "raised_at": "2026-03-02T08:00:00Z",
    }
    postings = [
        {"kind": "result", "idempotency_key": "key-b", "body": _result_body(result_id="r-b")},
        {"kind": "result", "idempotency_key": "key-s", "body": _result_body(result_id="r-s")},
        {"kind": "result", "idempotency_key": "key-u", "body": _result_body(order_no="9999999")},
        {"kind": "confirmation", "idempotency_key": "c-b", "body": confirmation},
        {"kind": "spc_alarm", "idempotency_key": "a-b", "body": alarm},
        {"kind": "result", "idempotency_key": "key-x", "body": _result_body(result_id="r-b", value=1.0)},
        {"kind": "result", "idempotency_key": "key-b", "body": _result_body(result_id="r-b", value=2.0)},
    ]
    answer = await erp.post("/api/v1/postings", json={"postings": postings})
    assert answer.status_code == 200
    assert answer.content == BatchAnswer.model_validate_json(answer.content).model_dump_json().encode()
    outcomes = answer.json()["outcomes"]
    assert [(o["idempotency_key"], o["status"], o["duplicate"]) for o in outcomes] == [
        ("key-b", 201, False),
        ("key-s", 200, True),
        ("key-u", 422, False),
        ("c-b", 201, False),
        ("a-b", 201, False),
        ("key-x", 201, False),
        ("key-b", 409, False),  # the first posting's key, with another body
    ]
    assert outcomes[6]["error"]["code"] == "idempotency_key_reused"
    assert outcomes[2]["error"] == {"code": "unknown_order", "message": "order 9999999 is not released"}
    assert [o["document_no"] for o in outcomes] == [
        "QR-000002",
        "QR-000001",
        None,
        "QC-000001",
        "QA-000001",
        "QR-000003",
        None,
    ]
    again = await _post_result(erp, "key-b", _result_body(result_id="r-b"))
    assert again.json() == {"document_no": "QR-000002", "duplicate": True}
    booked = {b["idempotency_key"]: b["body"] for b in (await erp.get("/results")).json()}
    assert booked["key-b"] == ResultDTO.model_validate(_result_body(result_id="r-b")).model_dump(mode="json")
    assert (await erp.get("/confirmations")).json()[0]["body"]["yield_quantity"] == 12
    assert (await erp.get("/spc-alarms")).json()[0]["body"]["rule"] == "WE1"


async def test_a_batch_that_breaks_the_contract_is_refused_naming_where(erp: httpx.AsyncClient) -> None:
    """The batch body is validated from its JSON text (not by FastAPI's parse): refused as FastAPI refuses a body."""
    posting = {"kind": "result", "idempotency_key": "k-1", "body": _result_body(value="twelve")}
    answer = await erp.post("/api/v1/postings", json={"postings": [posting]})
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_request"
    assert answer.json()["error"]["message"].startswith("body.postings.0.result.body.value: ")
    broken = await erp.post("/api/v1/postings", content=b"{", headers={"Content-Type": "application/json"})
    assert (broken.status_code, broken.json()["error"]["code"]) == (422, "invalid_request")
    assert (await erp.get("/results")).json() == []


async def test_error_fault_refuses_before_booking(erp: httpx.AsyncClient) -> None:
    assert (await erp.put("/sim/faults", json={"rate": 1.0, "kinds": ["error"]})).status_code == 200
    answer = await _post_result(erp, "key-5", _result_body())
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "unavailable"
    # control and observation paths stay reliable, so the test can look while the ERP face is failing
    assert (await erp.get("/results")).json() == []
    assert (await erp.get("/stats")).json()["faults_injected"]["error"] == 1

    assert (await erp.delete("/sim/faults")).status_code == 204
    assert (await _post_result(erp, "key-5", _result_body())).status_code == 201


async def test_lost_response_books_without_a_success_answer(erp: httpx.AsyncClient) -> None:
    await erp.put("/sim/faults", json={"rate": 1.0, "kinds": ["lost_response"]})
    lost = await _post_result(erp, "key-6", _result_body())
    assert not lost.is_success
    booked = (await erp.get("/results")).json()
    assert [item["idempotency_key"] for item in booked] == ["key-6"]

    await erp.delete("/sim/faults")
    retry = await _post_result(erp, "key-6", _result_body())
    assert retry.status_code == 200
    assert retry.json() == {"document_no": booked[0]["document_no"], "duplicate": True}


async def test_timeout_fault_delays_the_answer(erp: httpx.AsyncClient) -> None:
    await erp.put("/sim/faults", json={"rate": 1.0, "kinds": ["timeout"], "timeout_seconds": 0.5})
    with pytest.raises(httpx.ReadTimeout):
        await erp.get("/api/v1/orders", timeout=0.1)
    assert (await erp.get("/stats")).json()["faults_injected"]["timeout"] == 1


async def test_reset_restores_seed_and_forgets_bookings(erp: httpx.AsyncClient) -> None:
    await _post_result(erp, "key-7", _result_body())
    await erp.delete("/sim/orders/1000417")
    assert (await erp.post("/sim/reset")).status_code == 204
    assert (await erp.get("/results")).json() == []
    assert "1000417" in [o["order_no"] for o in (await erp.get("/api/v1/orders")).json()["orders"]]
    assert (await _post_result(erp, "key-7", _result_body())).json()["document_no"] == "QR-000001"


async def test_dto_mapping_round_trips_the_domain_model() -> None:
    for order in seed_orders():
        wire = json.loads(order_to_dto(order).model_dump_json())
        assert order_from_dto(OrderDTO.model_validate(wire)) == order
    for gauge in seed_equipment():
        assert equipment_from_dto(equipment_to_dto(gauge)) == gauge

    report = MeasurementReport(
        order_no="1000417",
        operation_no="0010",
        characteristic_id="C0020",
        value=62.041,
        equipment_id="GA-BOR-0312",
        part_serial="SN-1",
        measured_at=datetime(2026, 3, 2, 7, tzinfo=UTC),
    )
    result = MeasurementResult(
        result_id="r-9",
        report=report,
        evaluation=ResultEvaluation.NOT_OK,
        plan_version="P03",
        unit="MMT",
        reported_by="opcua:machine-7",
        received_at=datetime(2026, 3, 2, 7, 0, 1, tzinfo=UTC),
    )
    dto = result_to_dto(result)
    assert dto.evaluation == "NOT_OK"
    assert dto.value == 62.041
    assert result_from_dto(dto) == result

    undecidable = result.model_copy(update={"report": report.model_copy(update={"value": math.nan})})
    assert result_to_dto(undecidable).value is None
    assert math.isnan(result_from_dto(result_to_dto(undecidable)).report.value)


async def test_openapi_document_in_docs_is_current() -> None:
    document = openapi_document()
    assert document["info"]["title"] == TITLE
    assert document["info"]["version"] == "1"
    assert OPENAPI_FILE.exists(), f"missing {OPENAPI_FILE}; regenerate with: {REGENERATE}"
    stored = json.loads(OPENAPI_FILE.read_text(encoding="utf-8"))
    assert stored == document, f"{OPENAPI_FILE.name} is stale; regenerate with: {REGENERATE}"
