"""ERP sync and outbox relay against the real simulator over HTTP, with a real store."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from qualitybridge.adapters.rest_erp import RestErpClient
from qualitybridge.domain.events import PostingDeadLettered
from qualitybridge.domain.ids import new_result_id
from qualitybridge.domain.model import MeasurementReport, MeasurementResult, OutboxState, ResultEvaluation
from qualitybridge.services.diagnostics import Diagnostics
from qualitybridge.services.erp_sync import ErpSync
from qualitybridge.services.event_bus import EventBus
from qualitybridge.services.master_data import MasterData
from qualitybridge.services.outbox_relay import OutboxRelay
from qualitybridge.store import Store


@dataclass
class Erp:
    url: str
    http: httpx.AsyncClient

    async def faults(self, rate: float, kinds: list[str], timeout_seconds: float = 0.5) -> None:
        answer = await self.http.put(
            "/sim/faults", json={"rate": rate, "kinds": kinds, "timeout_seconds": timeout_seconds, "seed": 7}
        )
        answer.raise_for_status()

    async def booked(self) -> list[dict[str, object]]:
        answer: list[dict[str, object]] = (await self.http.get("/results")).json()
        return answer


@pytest.fixture
async def erp(erp_url: str) -> AsyncIterator[Erp]:
    async with httpx.AsyncClient(base_url=erp_url, timeout=10) as http:
        yield Erp(erp_url, http)


async def _synced(store: Store, erp: Erp) -> tuple[ErpSync, MasterData, Diagnostics, RestErpClient]:
    client = RestErpClient(erp.url, timeout_seconds=2)
    master, diagnostics = MasterData(), Diagnostics()
    sync = ErpSync(client, store, master, diagnostics)
    await sync.run_once()
    return sync, master, diagnostics, client


def _result(master: MasterData, order_index: int = 0, value: float | None = None) -> MeasurementResult:
    order = master.orders[order_index]
    operation = order.operations[0]
    characteristic = operation.characteristics[0]
    measured = characteristic.nominal if value is None else value
    return MeasurementResult(
        result_id=new_result_id(),
        report=MeasurementReport(
            order_no=order.order_no,
            operation_no=operation.operation_no,
            characteristic_id=characteristic.characteristic_id,
            value=measured,
            equipment_id="GA-CMM-0001",
            part_serial="SN-1",
            measured_at=datetime.now(UTC),
        ),
        evaluation=characteristic.evaluate(measured),
        plan_version=characteristic.plan_version,
        unit=characteristic.unit,
        reported_by="test",
        received_at=datetime.now(UTC),
    )


async def test_sync_fills_store_and_master_data_and_survives_an_outage(store: Store, erp: Erp) -> None:
    sync, master, diagnostics, client = await _synced(store, erp)
    assert len(master.orders) >= 3
    assert diagnostics.last_sync_succeeded
    await erp.faults(1.0, ["error"])
    change = await sync.run_once()
    assert change.is_empty
    assert not diagnostics.last_sync_succeeded
    assert diagnostics.sync_error_count == 1
    assert "503" in diagnostics.last_sync_error
    restarted = MasterData()
    await ErpSync(client, store, restarted, Diagnostics()).load_from_store()
    assert [o.order_no for o in restarted.orders] == [o.order_no for o in master.orders]
    await client.aclose()


async def test_relay_delivers_in_acceptance_order_once(store: Store, erp: Erp) -> None:
    _sync, master, diagnostics, client = await _synced(store, erp)
    results = [_result(master, index % 2) for index in range(6)]
    for result in results:
        await store.record_measurement(result)
    relay = OutboxRelay(store, client, diagnostics)
    outcome = await relay.run_once()
    assert outcome.sent == 6
    booked = await erp.booked()
    assert [b["body"]["result_id"] for b in booked] == [r.result_id for r in results]  # type: ignore[index]
    assert diagnostics.outbox_depth == 0
    assert (await relay.run_once()).sent == 0
    await client.aclose()


async def test_relay_retries_with_backoff_then_dead_letters(store: Store, erp: Erp) -> None:
    _sync, master, diagnostics, client = await _synced(store, erp)
    stored, _created = await store.record_measurement(_result(master))
    await erp.faults(1.0, ["error"])
    now = [datetime.now(UTC)]
    relay = OutboxRelay(store, client, diagnostics, max_attempts=3, clock=lambda: now[0], rng=random.Random(1))
    for attempt in (1, 2):
        outcome = await relay.run_once()
        assert (outcome.retried, outcome.dead) == (1, 0)
        entry = (await store.outbox_entries())[0]
        assert entry.attempts == attempt
        assert entry.state is OutboxState.PENDING
        assert entry.next_attempt_at > now[0]
        assert (await relay.run_once()).retried == 0, "not due again before its backoff has passed"
        now[0] = entry.next_attempt_at + timedelta(milliseconds=1)
    assert (await relay.run_once()).dead == 1
    entry = (await store.outbox_entries())[0]
    assert entry.state is OutboxState.DEAD
    assert "503" in (entry.last_error or "")
    assert diagnostics.outbox_dead_letters == 1
    assert stored.result_id not in [b["body"]["result_id"] for b in await erp.booked()]  # type: ignore[index]
    await client.aclose()


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    relay = OutboxRelay(
        None,  # type: ignore[arg-type]  # backoff needs neither store nor ERP
        None,  # type: ignore[arg-type]
        Diagnostics(),
        backoff_base_seconds=1,
        backoff_max_seconds=30,
        rng=random.Random(3),
    )
    for attempts, ceiling in ((1, 1), (2, 2), (3, 4), (5, 16), (6, 30), (12, 30)):
        delays = {relay.backoff(attempts).total_seconds() for _ in range(20)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1, "jitter spreads retries"


async def test_lost_answers_are_repeated_with_the_same_key_and_booked_once(store: Store, erp: Erp) -> None:
    _sync, master, diagnostics, client = await _synced(store, erp)
    results = [_result(master) for _ in range(8)]
    for result in results:
        await store.record_measurement(result)
    await erp.faults(0.5, ["lost_response"])
    relay = OutboxRelay(store, client, diagnostics, backoff_base_seconds=0.01, backoff_max_seconds=0.02)
    for _ in range(60):
        await relay.run_once()
        if diagnostics.outbox_depth == 0:
            break
        await asyncio.sleep(0.03)
    assert diagnostics.outbox_depth == 0
    booked = [b["body"]["result_id"] for b in await erp.booked()]  # type: ignore[index]
    assert sorted(booked) == sorted(r.result_id for r in results)
    stats = (await erp.http.get("/stats")).json()
    assert stats["faults_injected"]["lost_response"] > 0
    assert stats["duplicates_suppressed"]["results"] > 0, "lost answers were repeated, and absorbed by the key"
    await client.aclose()


async def test_erp_refusal_dead_letters_at_once(store: Store, erp: Erp) -> None:
    _sync, master, diagnostics, client = await _synced(store, erp)
    result = _result(master)
    await erp.http.delete(f"/sim/orders/{result.report.order_no}")  # the ERP no longer knows the order
    await store.record_measurement(result)
    outcome = await OutboxRelay(store, client, diagnostics).run_once()
    assert outcome.dead == 1
    entry = (await store.outbox_entries())[0]
    assert entry.state is OutboxState.DEAD
    assert "422" in (entry.last_error or "")
    await client.aclose()


async def test_evaluation_is_carried_to_the_erp(store: Store, erp: Erp) -> None:
    _sync, master, diagnostics, client = await _synced(store, erp)
    characteristic = master.orders[0].operations[0].characteristics[0]
    bad = _result(master, value=characteristic.upper_limit + 1)
    assert bad.evaluation is ResultEvaluation.NOT_OK
    await store.record_measurement(bad)
    await OutboxRelay(store, client, diagnostics).run_once()
    booked = await erp.booked()
    assert booked[-1]["body"]["evaluation"] == "NOT_OK"  # type: ignore[index]
    await client.aclose()


async def test_a_dead_lettered_posting_is_raised_on_the_bus(store: Store, erp: Erp) -> None:
    _sync, master, diagnostics, client = await _synced(store, erp)
    result = _result(master)
    await erp.http.delete(f"/sim/orders/{result.report.order_no}")  # the ERP no longer knows the order
    await store.record_measurement(result)
    events = EventBus()
    raised: list[PostingDeadLettered] = []

    async def seen(event: PostingDeadLettered) -> None:
        raised.append(event)

    events.subscribe(PostingDeadLettered, seen)
    assert (await OutboxRelay(store, client, diagnostics, events=events).run_once()).dead == 1
    (event,) = raised
    entry = (await store.outbox_entries())[0]
    assert (event.idempotency_key, event.kind, event.order_no) == (
        f"mr-{result.result_id}",
        "measurement",
        entry.order_no,
    )
    assert event.attempts == entry.attempts == 1
    assert event.last_error == entry.last_error
    await client.aclose()
