"""The generic REST adapter's v1 additions against the real simulator over HTTP, and the relay's per-order rules.

Delta sync: after one full fetch the store keeps a watermark, later rounds ask `?changed_since=` and get only what
changed, and a new process resumes from the stored watermark. Postings: one round sends the due entries as one
`POST /api/v1/postings`; an order whose posting fails for now holds only its own later postings; an answer
without a document number is retried and reported, never taken as a booking.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from qualitybridge.adapters.rest_erp import RestErpClient
from qualitybridge.domain.ids import new_result_id
from qualitybridge.domain.model import MeasurementReport, MeasurementResult, OutboxState
from qualitybridge.domain.ports import ErpUnavailable, PostingFailure, PostingOutcome, PostingReceipt
from qualitybridge.domain.postings import OutboxEntry
from qualitybridge.domain.records import AcceptedMeasurement
from qualitybridge.services.diagnostics import Diagnostics
from qualitybridge.services.erp_sync import ErpSync
from qualitybridge.services.master_data import MasterData
from qualitybridge.services.outbox_relay import OutboxRelay
from qualitybridge.store import Store, open_store


@dataclass
class Recorder(httpx.AsyncBaseTransport):
    """A real HTTP transport that remembers what was asked, so a test can show the query a sync sent."""

    inner: httpx.AsyncBaseTransport = field(default_factory=httpx.AsyncHTTPTransport)
    lines: list[str] = field(default_factory=list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        query = f"?{request.url.query.decode()}" if request.url.query else ""
        self.lines.append(f"{request.method} {request.url.path}{query}")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    yield opened
    await opened.aclose()


def _measurement(master: MasterData, order_no: str, value_offset: float = 0.0) -> AcceptedMeasurement:
    order = master.order(order_no)
    assert order is not None
    operation = order.operations[0]
    characteristic = operation.characteristics[0]
    value = characteristic.nominal + value_offset
    return AcceptedMeasurement(
        result=MeasurementResult(
            result_id=new_result_id(),
            report=MeasurementReport(
                order_no=order_no,
                operation_no=operation.operation_no,
                characteristic_id=characteristic.characteristic_id,
                value=value,
                equipment_id="GA-CMM-0001",
                part_serial="SN-1",
                measured_at=datetime.now(UTC),
            ),
            evaluation=characteristic.evaluate(value),
            plan_version=characteristic.plan_version,
            unit=characteristic.unit,
            reported_by="test",
            received_at=datetime.now(UTC),
        )
    )


async def test_delta_sync_asks_only_for_changes_and_resumes_after_a_restart(sqlite_store: Store, erp_url: str) -> None:
    recorder = Recorder()
    client = RestErpClient(erp_url, timeout_seconds=5, transport=recorder)
    master = MasterData()
    sync = ErpSync(client, sqlite_store, master, Diagnostics())
    first = await sync.run_once()
    assert len(first.released) == 4
    assert recorder.lines == ["GET /api/v1/orders", "GET /api/v1/equipment"], "no watermark yet: a full fetch"
    assert await sqlite_store.watermark("erp") == "1:1"

    async with httpx.AsyncClient(base_url=erp_url) as http:
        order = (await http.get("/api/v1/orders")).json()["orders"][1]
        order["operations"][0]["characteristics"][0]["upper_limit"] += 0.5
        (await http.put(f"/sim/orders/{order['order_no']}", json=order)).raise_for_status()
        (await http.delete("/sim/orders/1000421")).raise_for_status()
        patch = {"calibration_status": "LOCKED"}
        (await http.patch("/sim/equipment/GA-CAL-0101", json=patch)).raise_for_status()

    recorder.lines.clear()
    change = await sync.run_once()
    assert recorder.lines == ["GET /api/v1/orders?changed_since=1", "GET /api/v1/equipment?changed_since=1"]
    assert change.changed == (order["order_no"],)
    assert change.withdrawn == ("1000421",)
    assert change.equipment_changed == ("GA-CAL-0101",)
    changed = master.order(order["order_no"])
    assert changed is not None
    assert (
        changed.operations[0].characteristics[0].upper_limit
        == order["operations"][0]["characteristics"][0]["upper_limit"]
    )
    assert master.order("1000421") is None
    assert len(master.orders) == 3, "orders the delta did not name are kept"
    await client.aclose()

    # A new process: the watermark is in the store, so it resumes the delta instead of refetching everything.
    recorder = Recorder()
    client = RestErpClient(erp_url, timeout_seconds=5, transport=recorder)
    restarted = ErpSync(client, sqlite_store, MasterData(), Diagnostics())
    assert (await restarted.run_once()).is_empty
    assert recorder.lines == ["GET /api/v1/orders?changed_since=3", "GET /api/v1/equipment?changed_since=2"]
    restarted.request_full_resync()
    recorder.lines.clear()
    assert (await restarted.run_once()).is_empty, "a full resync of unchanged data changes nothing"
    assert recorder.lines == ["GET /api/v1/orders", "GET /api/v1/equipment"]
    await client.aclose()


async def test_relay_sends_one_batch_per_round(sqlite_store: Store, erp_url: str) -> None:
    recorder = Recorder()
    client = RestErpClient(erp_url, timeout_seconds=5, transport=recorder)
    master = MasterData()
    await ErpSync(client, sqlite_store, master, Diagnostics()).run_once()
    items = [_measurement(master, order_no) for order_no in ("1000417", "1000418", "1000417", "1000421")]
    await sqlite_store.record_measurements(items)
    recorder.lines.clear()
    assert (await OutboxRelay(sqlite_store, client, Diagnostics()).run_once()).sent == 4
    assert recorder.lines == ["POST /api/v1/postings"]
    async with httpx.AsyncClient(base_url=erp_url) as http:
        booked = (await http.get("/results")).json()
    assert [b["body"]["result_id"] for b in booked] == [item.result.result_id for item in items]
    assert [e.erp_document for e in await sqlite_store.outbox_entries()] == [
        "QR-000001",
        "QR-000002",
        "QR-000003",
        "QR-000004",
    ]
    await client.aclose()


@dataclass
class FlakyTarget:
    """A posting target failing every posting of one order for now, and answering one without a document number."""

    failing_order: str
    blank_seq: int | None = None
    batches: list[list[int]] = field(default_factory=list)

    async def post_batch(self, entries: Sequence[OutboxEntry]) -> Sequence[PostingOutcome]:
        self.batches.append([entry.seq for entry in entries])
        outcomes: list[PostingOutcome] = []
        for entry in entries:
            if entry.order_no == self.failing_order:
                outcomes.append(PostingFailure(entry.seq, ErpUnavailable("HTTP 503: lock on order")))
            elif entry.seq == self.blank_seq:
                outcomes.append(PostingReceipt(entry.seq, ""))
            else:
                outcomes.append(PostingReceipt(entry.seq, f"DOC-{entry.seq}"))
        return outcomes

    async def aclose(self) -> None:
        return None


async def test_one_orders_failures_never_delay_another_order(sqlite_store: Store, erp_url: str) -> None:
    client = RestErpClient(erp_url, timeout_seconds=5)
    master = MasterData()
    await ErpSync(client, sqlite_store, master, Diagnostics()).run_once()
    await client.aclose()
    order_of = ["1000417", "1000418", "1000417", "1000418", "1000421"]
    await sqlite_store.record_measurements([_measurement(master, no) for no in order_of])
    seqs = [entry.seq for entry in await sqlite_store.pending_outbox()]
    target = FlakyTarget(failing_order="1000417", blank_seq=seqs[4])
    relay = OutboxRelay(sqlite_store, target, Diagnostics())

    outcome = await relay.run_once()
    assert (outcome.sent, outcome.retried) == (2, 2), "1000418 went out; 1000417 and the blank answer wait"
    entries = {entry.seq: entry for entry in await sqlite_store.outbox_entries()}
    assert [entries[seq].state for seq in seqs] == [
        OutboxState.PENDING,
        OutboxState.SENT,
        OutboxState.PENDING,
        OutboxState.SENT,
        OutboxState.PENDING,
    ]
    assert entries[seqs[0]].attempts == 1
    assert entries[seqs[2]].attempts == 0, "held behind the order's first posting, not attempted"
    assert "contract violation" in (entries[seqs[4]].last_error or "")
    assert entries[seqs[4]].erp_document is None, "an answer without a document number is no booking"


async def test_a_target_without_batches_is_served_one_posting_at_a_time(sqlite_store: Store, erp_url: str) -> None:
    rest = RestErpClient(erp_url, timeout_seconds=5)
    master = MasterData()
    await ErpSync(rest, sqlite_store, master, Diagnostics()).run_once()

    @dataclass
    class SingleOnly:
        posted: list[str] = field(default_factory=list)

        async def fetch_snapshot(self) -> object:
            raise NotImplementedError

        async def post(self, entry: OutboxEntry) -> str:
            self.posted.append(entry.idempotency_key)
            return await rest.post(entry)

        async def aclose(self) -> None:
            return None

    single = SingleOnly()
    await sqlite_store.record_measurements([_measurement(master, "1000417"), _measurement(master, "1000418")])
    relay = OutboxRelay(sqlite_store, single, Diagnostics())  # type: ignore[arg-type]
    assert (await relay.run_once()).sent == 2
    assert len(single.posted) == 2
    await rest.aclose()


@dataclass
class BrokenOrderInFullPages(httpx.AsyncBaseTransport):
    """The ERP lists one broken order (crossed limits) in its full order page; its deltas never mention it."""

    inner: httpx.AsyncBaseTransport = field(default_factory=httpx.AsyncHTTPTransport)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path != "/api/v1/orders" or request.url.query:
            return response
        page = json.loads(await response.aread())
        broken = copy.deepcopy(page["orders"][0])
        broken["order_no"] = "7300001"
        broken["operations"][0]["characteristics"][0]["lower_limit"] = 1e6
        page["orders"].append(broken)
        return httpx.Response(200, json=page, request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_refused_order_stays_a_finding_across_deltas_and_a_restart(sqlite_store: Store, erp_url: str) -> None:
    diagnostics = Diagnostics()
    client = RestErpClient(erp_url, timeout_seconds=5, transport=BrokenOrderInFullPages())
    sync = ErpSync(client, sqlite_store, MasterData(), diagnostics)
    await sync.run_once()
    assert [finding.key for finding in diagnostics.sync_findings] == ["order 7300001"]
    await sync.run_once()  # a delta: the broken order is not listed again, its finding stands
    assert [finding.key for finding in diagnostics.sync_findings] == ["order 7300001"]
    await client.aclose()

    restarted_diagnostics = Diagnostics()
    client = RestErpClient(erp_url, timeout_seconds=5, transport=BrokenOrderInFullPages())
    restarted = ErpSync(client, sqlite_store, MasterData(), restarted_diagnostics)
    await restarted.load_from_store()
    await restarted.run_once()  # resumes the delta; the finding comes back from the store
    assert [finding.key for finding in restarted_diagnostics.sync_findings] == ["order 7300001"]
    await client.aclose()
