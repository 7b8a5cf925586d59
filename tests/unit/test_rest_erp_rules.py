"""How the REST adapter reads what an ERP answers: a record breaking the contract is a finding and the rest syncs;
a page that is not the contract's at all, a batch refused as a whole or answered without outcomes, is temporary
(the last good data is served, the postings are retried). The answers are built in the test (httpx's
MockTransport): these are the adapter's reading rules; its HTTP behaviour is tested against the simulator."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from qualitybridge.adapters.rest_erp import RestErpClient
from qualitybridge.domain.model import OutboxState
from qualitybridge.domain.ports import ErpUnavailable, PostingFailure, PostingReceipt
from qualitybridge.domain.postings import MeasurementPosting, OutboxEntry
from tests.builders import result

GAUGE = {"equipment_id": "G-1", "equipment_type": "CALIPER", "calibration_status": "VALID"}


def _client(answer: Callable[[httpx.Request], httpx.Response]) -> RestErpClient:
    return RestErpClient("http://erp.test", transport=httpx.MockTransport(answer))


def _pages(orders: list[Any], equipment: list[Any]) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/orders"):
            return httpx.Response(200, json={"revision": 7, "orders": orders})
        return httpx.Response(200, json={"revision": 3, "equipment": equipment})

    return answer


async def test_broken_and_repeated_gauges_are_findings_and_the_rest_syncs() -> None:
    client = _client(_pages([], [GAUGE, {"equipment_type": "CALIPER"}, GAUGE, {**GAUGE, "equipment_id": "G-2"}]))
    try:
        snapshot = await client.fetch_snapshot()
    finally:
        await client.aclose()
    assert [gauge.equipment_id for gauge in snapshot.equipment] == ["G-1", "G-2"]
    reasons = {finding.key: finding.reason for finding in snapshot.findings}
    assert "equipment id listed twice" in reasons["equipment G-1"]
    assert any(key.startswith("equipment ") and key != "equipment G-1" for key in reasons), reasons


async def test_a_page_that_is_not_the_contracts_is_temporary() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"orders": "none", "revision": "x"})

    client = _client(answer)
    try:
        with pytest.raises(ErpUnavailable, match="violates the contract"):
            await client.fetch_snapshot()
    finally:
        await client.aclose()


async def test_an_unreadable_watermark_fetches_everything_once() -> None:
    client = _client(_pages([], [GAUGE]))
    try:
        changes = await client.fetch_changes("not-a-watermark")
    finally:
        await client.aclose()
    assert changes.full
    assert changes.watermark == "7:3"


def _entry(seq: int = 1) -> OutboxEntry:
    measured = result()
    return OutboxEntry(
        seq=seq,
        idempotency_key=f"mr-{measured.result_id}",
        order_no=measured.report.order_no,
        posting=MeasurementPosting(result=measured),
        state=OutboxState.PENDING,
        attempts=0,
        next_attempt_at=datetime.now(UTC),
    )


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, {"error": {"code": "bad_batch", "message": "no"}}, "refused the batch as a whole"),
        (200, {"nothing": []}, "without a batch answer"),
    ],
)
async def test_a_batch_refused_as_a_whole_or_unanswered_is_retried(
    status: int, body: dict[str, Any], expected: str
) -> None:
    client = _client(lambda _request: httpx.Response(status, json=body))
    try:
        with pytest.raises(ErpUnavailable, match=expected):
            await client.post_batch([_entry()])
    finally:
        await client.aclose()


async def test_a_batch_answer_for_other_postings_books_nothing() -> None:
    def answer(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"outcomes": [{"idempotency_key": "someone-else", "status": 201}]})

    client = _client(answer)
    try:
        outcomes = await client.post_batch([_entry()])
    finally:
        await client.aclose()
    assert outcomes == [], "no outcome for this posting: the relay reports the contract violation and retries"


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        ({"status": 201, "document_no": "QR-1"}, PostingReceipt(1, "QR-1")),
        ({"status": 200, "document_no": "QR-1", "duplicate": True}, PostingReceipt(1, "QR-1")),
        ({"status": "201", "document_no": "QR-1"}, PostingReceipt(1, "QR-1")),  # converted by the model, as before
        ({"status": 201}, PostingReceipt(1, "")),  # no document: the relay names the contract violation
        ({"status": 201, "document_no": None, "error": None}, PostingReceipt(1, "")),
    ],
)
async def test_a_booked_outcome_is_read_as_the_contract_model_reads_it(
    outcome: dict[str, Any], expected: PostingReceipt
) -> None:
    entry = _entry()
    client = _client(
        lambda _request: httpx.Response(200, json={"outcomes": [{"idempotency_key": entry.idempotency_key, **outcome}]})
    )
    try:
        assert await client.post_batch([entry]) == [expected]
    finally:
        await client.aclose()


async def test_a_failed_outcome_beside_booked_ones_keeps_its_status_and_reason() -> None:
    entries = [_entry(1), _entry(2)]
    booked = {"idempotency_key": entries[0].idempotency_key, "status": 201, "document_no": "QR-1"}
    failed = {
        "idempotency_key": entries[1].idempotency_key,
        "status": 503,
        "error": {"code": "locked", "message": "order locked"},
    }
    client = _client(lambda _request: httpx.Response(200, json={"outcomes": [booked, failed]}))
    try:
        first, second = await client.post_batch(entries)
    finally:
        await client.aclose()
    assert first == PostingReceipt(1, "QR-1")
    assert isinstance(second, PostingFailure)
    assert second.seq == 2
    assert isinstance(second.error, ErpUnavailable)
    assert str(second.error) == "HTTP 503: locked: order locked"


def test_httpcore_finds_the_event_loop_without_a_failed_import() -> None:
    """httpcore asks sniffio which event loop runs, several times per request; without sniffio installed each ask is
    a failed import (a search of the path, ~50 µs), which cost the relay about a microsecond per posting."""
    from httpcore._synchronization import current_async_library

    assert importlib.util.find_spec("sniffio") is not None

    async def ask() -> str:
        return current_async_library()

    assert asyncio.run(ask()) == "asyncio"
