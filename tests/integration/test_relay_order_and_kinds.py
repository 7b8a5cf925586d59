"""The relay keeps each order's postings in order, delivers confirmations and SPC alarms to their ERP paths, and
delivers a dead letter a person put back into the queue: real simulator over HTTP, real store, no mocks."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import update

from qualitybridge.adapters.rest_erp import RestErpClient
from qualitybridge.domain.build import installed_build
from qualitybridge.domain.events import PostingAttempted
from qualitybridge.domain.ids import new_record_id, new_result_id
from qualitybridge.domain.model import (
    Confirmation,
    MeasurementReport,
    MeasurementResult,
    OutboxState,
    SpcAlarm,
)
from qualitybridge.domain.ports import ErpUnavailable, PostingFailure, PostingOutcome
from qualitybridge.domain.postings import OutboxEntry
from qualitybridge.domain.records import AcceptedMeasurement, ConfirmationRecord, SpcAlarmRecord
from qualitybridge.services.diagnostics import Diagnostics
from qualitybridge.services.erp_sync import ErpSync
from qualitybridge.services.event_bus import EventBus
from qualitybridge.services.master_data import MasterData
from qualitybridge.services.metrics import OperationsMetrics
from qualitybridge.services.outbox_relay import OutboxRelay
from qualitybridge.store import Store, tables


async def _booked(erp_url: str, path: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=erp_url, timeout=10) as http:
        answer: list[dict[str, Any]] = (await http.get(path)).json()
        return answer


async def _sim(erp_url: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=erp_url, timeout=10) as http:
        response = await http.request(method, path, **kwargs)
        response.raise_for_status()
        return response


async def _master(store: Store, client: RestErpClient) -> MasterData:
    master = MasterData()
    await ErpSync(client, store, master, Diagnostics()).run_once()
    return master


def _measurement(master: MasterData, order_no: str) -> AcceptedMeasurement:
    order = master.order(order_no)
    assert order is not None
    operation = order.operations[0]
    characteristic = operation.characteristics[0]
    return AcceptedMeasurement(
        result=MeasurementResult(
            result_id=new_result_id(),
            report=MeasurementReport(
                order_no=order_no,
                operation_no=operation.operation_no,
                characteristic_id=characteristic.characteristic_id,
                value=characteristic.nominal,
                equipment_id="GA-CMM-0001",
                part_serial="SN-1",
                measured_at=datetime.now(UTC),
            ),
            evaluation=characteristic.evaluate(characteristic.nominal),
            plan_version=characteristic.plan_version,
            unit=characteristic.unit,
            reported_by="test",
            received_at=datetime.now(UTC),
        )
    )


async def test_later_postings_of_an_order_wait_for_its_earlier_one(store: Store, erp_url: str) -> None:
    client = RestErpClient(erp_url, timeout_seconds=2)
    master = await _master(store, client)
    first_a, first_b, second_a = (_measurement(master, no) for no in ("1000417", "1000418", "1000417"))
    for item in (first_a, first_b, second_a):
        await store.record_measurements([item])
    now = [datetime.now(UTC)]
    relay = OutboxRelay(store, client, Diagnostics(), clock=lambda: now[0], rng=random.Random(4))

    await _sim(erp_url, "PUT", "/sim/faults", json={"rate": 1.0, "kinds": ["error"]})
    assert (await relay.run_once()).retried == 1, "the first posting of 1000417 failed and waits for its backoff"
    await _sim(erp_url, "DELETE", "/sim/faults")

    held = await relay.run_once()
    booked = [b["body"]["result_id"] for b in await _booked(erp_url, "/results")]
    assert booked == [first_b.result.result_id], "1000418 goes ahead; 1000417's second posting waits for its first"
    assert held.sent == 1

    waiting = next(e for e in await store.pending_outbox() if e.idempotency_key == f"mr-{first_a.result.result_id}")
    now[0] = waiting.next_attempt_at + timedelta(milliseconds=1)
    assert (await relay.run_once()).sent == 2
    booked = [b["body"]["result_id"] for b in await _booked(erp_url, "/results")]
    assert booked == [first_b.result.result_id, first_a.result.result_id, second_a.result.result_id]
    await client.aclose()


async def test_confirmations_and_spc_alarms_reach_their_erp_paths_once(store: Store, erp_url: str) -> None:
    client = RestErpClient(erp_url, timeout_seconds=2)
    master = await _master(store, client)
    operation = master.orders[0].operations[0]
    now = datetime.now(UTC)
    confirmation = ConfirmationRecord(
        confirmation_id=new_record_id(),
        confirmation=Confirmation(
            order_no=master.orders[0].order_no,
            operation_no=operation.operation_no,
            yield_quantity=9,
            scrap_quantity=1,
            reason_code="S01",
            final=True,
        ),
        reported_by="machine1",
        received_at=now,
    )
    alarm = SpcAlarmRecord(
        alarm_id=new_record_id(),
        alarm=SpcAlarm(
            order_no=master.orders[0].order_no,
            operation_no=operation.operation_no,
            characteristic_id=operation.characteristics[0].characteristic_id,
            rule="WE2",
            severity=650,
            message="9 points on one side of the centre line",
            raised_at=now,
        ),
        reported_by="machine1",
    )
    await store.record_confirmation(confirmation)
    await store.record_spc_alarm(alarm)
    await _sim(erp_url, "PUT", "/sim/faults", json={"rate": 0.5, "kinds": ["lost_response"], "seed": 3})
    relay = OutboxRelay(store, client, Diagnostics(), backoff_base_seconds=0.01, backoff_max_seconds=0.02)
    for _ in range(50):
        await relay.run_once()
        if not await store.pending_outbox():
            break
        await asyncio.sleep(0.03)

    (booked_confirmation,) = await _booked(erp_url, "/confirmations")
    assert booked_confirmation["idempotency_key"] == f"cf-{confirmation.confirmation_id}"
    assert booked_confirmation["body"] == {**confirmation.confirmation.model_dump(mode="json")}
    (booked_alarm,) = await _booked(erp_url, "/spc-alarms")
    assert booked_alarm["idempotency_key"] == f"sa-{alarm.alarm_id}"
    assert booked_alarm["body"]["rule"] == "WE2"
    assert booked_alarm["body"]["severity"] == 650
    assert {e.state for e in await store.outbox_entries()} == {OutboxState.SENT}
    stats = (await _sim(erp_url, "GET", "/stats")).json()
    assert stats["faults_injected"]["lost_response"] > 0, "some answers were lost, and the repeats booked nothing"
    await client.aclose()


async def test_a_retried_dead_letter_is_delivered(store: Store, erp_url: str) -> None:
    client = RestErpClient(erp_url, timeout_seconds=2)
    master = await _master(store, client)
    item = _measurement(master, "1000421")
    order_document = (await _sim(erp_url, "GET", "/api/v1/orders")).json()["orders"]
    withdrawn = next(o for o in order_document if o["order_no"] == "1000421")
    await _sim(erp_url, "DELETE", "/sim/orders/1000421")
    await store.record_measurements([item])
    diagnostics = Diagnostics()
    relay = OutboxRelay(store, client, diagnostics)
    assert (await relay.run_once()).dead == 1, "the ERP no longer knows the order: 422, dead letter"
    assert diagnostics.outbox_dead_letters == 1

    await _sim(erp_url, "POST", "/sim/orders", json=withdrawn)  # the planner releases it again
    (dead,) = await store.outbox_records([OutboxState.DEAD.value])
    assert await store.retry_dead([dead.seq]) == [dead.seq]
    assert (await relay.run_once()).sent == 1
    assert diagnostics.outbox_dead_letters == 0
    booked = await _booked(erp_url, "/results")
    assert [(b["body"]["result_id"], b["deliveries"]) for b in booked] == [(item.result.result_id, 1)]
    await client.aclose()


class _TargetFailing:
    """The real client behind a target that fails chosen postings temporarily (as a target answers one posting's
    failure) and, from its call `silent_from` on, gets no answer at all, or from its call `hanging_from` on waits
    for ever (`hanging` is set then); it records the keys of every batch and calls `on_batch` before each."""

    def __init__(
        self,
        client: RestErpClient,
        failing: set[str],
        silent_from: int | None = None,
        hanging_from: int | None = None,
        on_batch: Callable[[], None] = lambda: None,
    ) -> None:
        self._client = client
        self._failing = failing
        self._silent_from = silent_from
        self._hanging_from = hanging_from
        self._on_batch = on_batch
        self.hanging = asyncio.Event()
        self.batches: list[list[str]] = []

    async def post_batch(self, entries: Sequence[OutboxEntry]) -> Sequence[PostingOutcome]:
        self.batches.append([entry.idempotency_key for entry in entries])
        self._on_batch()
        if self._silent_from is not None and len(self.batches) > self._silent_from:
            raise ErpUnavailable("no answer")
        if self._hanging_from is not None and len(self.batches) > self._hanging_from:
            self.hanging.set()
            await asyncio.Event().wait()
        failed = [entry for entry in entries if entry.idempotency_key in self._failing]
        stopped = {entry.order_no for entry in failed}
        outcomes: list[PostingOutcome] = [PostingFailure(entry.seq, ErpUnavailable("down")) for entry in failed]
        passed = [entry for entry in entries if entry.order_no not in stopped]
        outcomes += [
            PostingFailure(entry.seq, ErpUnavailable("held"), attempted=False)
            for entry in entries
            if entry.order_no in stopped and entry not in failed
        ]
        return [*outcomes, *(await self._client.post_batch(passed) if passed else [])]


async def _recorded(store: Store, master: MasterData, orders: Sequence[str]) -> list[str]:
    """One measurement per order number given, stored in that order; their idempotency keys."""
    keys = []
    for order_no in orders:
        item = _measurement(master, order_no)
        await store.record_measurements([item])
        keys.append(f"mr-{item.result.result_id}")
    return keys


async def test_an_order_failed_in_a_rounds_batch_is_held_in_its_later_batches(store: Store, erp_url: str) -> None:
    client = RestErpClient(erp_url, timeout_seconds=2)
    master = await _master(store, client)
    a, b, c = (order.order_no for order in master.orders[:3])
    a1, b1, a2, b2, a3, c1 = await _recorded(store, master, [a, b, a, b, a, c])
    target = _TargetFailing(client, failing={a1})
    relay = OutboxRelay(store, target, Diagnostics(), batch_size=2, batches_per_round=3)

    outcome = await relay.run_once()
    assert target.batches == [[a1, b1], [b2], [c1]], "a's later postings held in the round's later batches"
    assert (outcome.sent, outcome.retried) == (3, 1)
    pending = {entry.idempotency_key: entry.attempts for entry in await store.pending_outbox()}
    assert pending == {a1: 1, a2: 0, a3: 0}, "only a's first posting counts an attempt"
    await client.aclose()


async def test_a_later_batch_without_an_answer_keeps_what_the_round_booked(store: Store, erp_url: str) -> None:
    client = RestErpClient(erp_url, timeout_seconds=2)
    master = await _master(store, client)
    a, b, c = (order.order_no for order in master.orders[:3])
    keys = await _recorded(store, master, [a, b, c, a])
    target = _TargetFailing(client, failing=set(), silent_from=1)
    relay = OutboxRelay(store, target, Diagnostics(), batch_size=2, batches_per_round=2)

    outcome = await relay.run_once()
    assert (outcome.sent, outcome.retried, outcome.dead) == (2, 0, 0)
    booked = [f"mr-{b['body']['result_id']}" for b in await _booked(erp_url, "/results")]
    assert booked == keys[:2]
    pending = {entry.idempotency_key: entry.attempts for entry in await store.pending_outbox()}
    assert pending == {keys[2]: 0, keys[3]: 0}, "the unanswered batch waits for the next round, uncounted"
    await client.aclose()


async def test_a_round_cancelled_in_a_later_batch_records_what_the_earlier_ones_booked(
    store: Store, erp_url: str
) -> None:
    """The app cancels the relay after the stop's grace; a batch answered before that is booked, and must not be
    posted again by the next round (the ERP's idempotency key would hide it; the outbox must not need it)."""
    client = RestErpClient(erp_url, timeout_seconds=2)
    master = await _master(store, client)
    a, b, c = (order.order_no for order in master.orders[:3])
    keys = await _recorded(store, master, [a, b, c])
    target = _TargetFailing(client, failing=set(), hanging_from=1)
    relay = OutboxRelay(store, target, Diagnostics(), batch_size=2, batches_per_round=2)

    round_under_way = asyncio.create_task(relay.run_once())
    await asyncio.wait_for(target.hanging.wait(), 10)
    round_under_way.cancel()
    await asyncio.gather(round_under_way, return_exceptions=True)
    assert round_under_way.cancelled()
    pending = {entry.idempotency_key: entry.attempts for entry in await store.pending_outbox()}
    assert pending == {keys[2]: 0}, "the first batch's bookings are recorded as sent"

    relay = OutboxRelay(store, client, Diagnostics(), batch_size=2, batches_per_round=2)
    assert (await relay.run_once()).sent == 1
    booked = {f"mr-{b['body']['result_id']}": b["deliveries"] for b in await _booked(erp_url, "/results")}
    assert booked == dict.fromkeys(keys, 1), "each posted once"
    await client.aclose()


async def test_a_batch_that_booked_nothing_for_a_failure_ends_the_round(store: Store, erp_url: str) -> None:
    """A target that answers per posting (SAP's adapter) reports an ERP that does not answer as a temporary failure
    of the first posting: the round's further batches would wait out their timeouts and count more attempts."""
    client = RestErpClient(erp_url, timeout_seconds=2)
    master = await _master(store, client)
    a, b, c, d = (order.order_no for order in master.orders[:4])
    a1, b1, c1, d1 = await _recorded(store, master, [a, b, c, d])
    target = _TargetFailing(client, failing={a1, b1})
    relay = OutboxRelay(store, target, Diagnostics(), batch_size=2, batches_per_round=2)

    outcome = await relay.run_once()
    assert target.batches == [[a1, b1]], "the second batch waits for the next round"
    assert (outcome.sent, outcome.retried) == (0, 2)
    pending = {entry.idempotency_key: entry.attempts for entry in await store.pending_outbox()}
    assert pending == {a1: 1, b1: 1, c1: 0, d1: 0}
    await client.aclose()


async def test_a_stopping_relay_starts_no_further_batch(store: Store, erp_url: str) -> None:
    client = RestErpClient(erp_url, timeout_seconds=2)
    master = await _master(store, client)
    a, b, c = (order.order_no for order in master.orders[:3])
    keys = await _recorded(store, master, [a, b, c])
    relay: OutboxRelay
    target = _TargetFailing(client, failing=set(), on_batch=lambda: relay.stop_soon())
    relay = OutboxRelay(store, target, Diagnostics(), batch_size=2, batches_per_round=2)

    outcome = await relay.run_once()
    assert target.batches == [keys[:2]]
    assert outcome.sent == 2
    pending = {entry.idempotency_key: entry.attempts for entry in await store.pending_outbox()}
    assert pending == {keys[2]: 0}
    await client.aclose()


async def test_rows_of_an_earlier_release_are_delivered_and_a_damaged_one_is_dead_lettered_with_its_reason(
    store: Store, erp_url: str
) -> None:
    """The relay sends a page's results from their stored JSON without decoding them; a row in another form (an
    earlier release's, without the later fields) is decoded and delivered as before, a damaged one is refused for
    good, naming the field, and the rest of its order goes on."""
    client = RestErpClient(erp_url, timeout_seconds=2)
    master = await _master(store, client)
    earlier, damaged, current = (_measurement(master, "1000417") for _ in range(3))
    for item in (earlier, damaged, current):
        await store.record_measurements([item])
    earlier_payload = earlier.result.model_dump(mode="json", exclude={"routing_version", "plan_version_superseded"})
    damaged_payload = damaged.result.model_dump(mode="json")
    damaged_payload["report"]["value"] = "twelve"
    async with store.engine.begin() as conn:
        for item, payload in ((earlier, earlier_payload), (damaged, damaged_payload)):
            await conn.execute(
                update(tables.outbox)
                .where(tables.outbox.c.idempotency_key == f"mr-{item.result.result_id}")
                .values(payload=payload)
            )

    outcome = await OutboxRelay(store, client, Diagnostics()).run_once()

    assert (outcome.sent, outcome.dead) == (2, 1)
    booked = {b["body"]["result_id"]: b["body"] for b in await _booked(erp_url, "/results")}
    assert set(booked) == {earlier.result.result_id, current.result.result_id}
    assert booked[earlier.result.result_id]["routing_version"] is None
    assert booked[current.result.result_id]["value"] == current.result.report.value
    (dead,) = await store.outbox_entries([OutboxState.DEAD])
    assert dead.idempotency_key == f"mr-{damaged.result.result_id}"
    assert dead.last_error is not None
    assert "unreadable payload" in dead.last_error
    assert "'report', 'value'" in dead.last_error
    await client.aclose()


class _MarkingHeld:
    """The store, but marking deliveries as sent waits until `release` is set (the group commit behind report
    batches); the pages the relay reads are kept."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.release = asyncio.Event()
        self.pages: list[list[str]] = []
        self._page_read = asyncio.Condition()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def pending_outbox(self, limit: int = 200, *, excluding: Collection[int] = ()) -> list[OutboxEntry]:
        page = await self._store.pending_outbox(limit, excluding=excluding)
        self.pages.append([entry.idempotency_key for entry in page])
        async with self._page_read:
            self._page_read.notify_all()
        return page

    async def pages_read(self, count: int) -> None:
        """Until the relay has read `count` pages."""
        async with self._page_read:
            await self._page_read.wait_for(lambda: len(self.pages) >= count)

    async def mark_sent_many(self, deliveries: Sequence[tuple[int, str]]) -> None:
        await self.release.wait()
        await self._store.mark_sent_many(deliveries)


class _AnsweringAfterPages:
    """A target whose first batch is answered only once the relay has read `pages` pages: the page read beside a
    round is then in before the round ends, however busy the machine (else the relay drops the read under way and
    reads after the round, as it should, but then there is no page read beside the round to look at)."""

    def __init__(self, target: Any, held: _MarkingHeld, pages: int) -> None:
        self._target, self._held, self._pages = target, held, pages
        self._answered = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)

    async def post_batch(self, entries: Sequence[OutboxEntry]) -> Sequence[PostingOutcome]:
        if self._answered == 0:
            try:
                await asyncio.wait_for(self._held.pages_read(self._pages), 10)
            except TimeoutError:
                raise AssertionError(f"the relay read {len(self._held.pages)} pages, not {self._pages}") from None
        self._answered += 1
        return await self._target.post_batch(entries)


async def test_a_running_relay_goes_on_while_a_round_is_marked_sent_and_never_posts_it_again(
    store: Store, erp_url: str
) -> None:
    """Under run_forever the next round does not wait for the previous one's marking (it shares the group commit
    with the report batches); what that marking holds is left out of the next page, and is marked before the relay
    leaves."""
    client = RestErpClient(erp_url, timeout_seconds=2)
    master = await _master(store, client)
    orders = [order.order_no for order in master.orders[:3]]
    keys = await _recorded(store, master, [orders[position % 3] for position in range(6)])
    held = _MarkingHeld(store)
    relay = OutboxRelay(held, client, Diagnostics(), batch_size=2, batches_per_round=1)  # type: ignore[arg-type]
    relay.wake()
    running = asyncio.create_task(relay.run_forever())
    try:
        for _ in range(200):
            if len(await _booked(erp_url, "/results")) >= 4:
                break
            await asyncio.sleep(0.02)
        assert held.pages[:2] == [keys[0:2], keys[2:4]], "the second page leaves out the first, still being marked"
    finally:
        held.release.set()
    for _ in range(200):
        if not await store.pending_outbox():
            break
        await asyncio.sleep(0.02)
    relay.stop_soon()
    await asyncio.wait_for(running, 10)
    booked = {f"mr-{b['body']['result_id']}": b["deliveries"] for b in await _booked(erp_url, "/results")}
    assert booked == dict.fromkeys(keys, 1), "each posted once"
    assert {entry.state for entry in await store.outbox_entries()} == {OutboxState.SENT}
    await client.aclose()


async def test_a_round_raises_one_event_per_kind_it_sent_and_the_metrics_count_every_posting(
    store: Store, erp_url: str
) -> None:
    client = RestErpClient(erp_url, timeout_seconds=2)
    master = await _master(store, client)
    await _recorded(store, master, [order.order_no for order in master.orders[:3]])
    events = EventBus()
    attempts: list[PostingAttempted] = []

    async def seen(event: PostingAttempted) -> None:
        attempts.append(event)

    events.subscribe(PostingAttempted, seen)
    metrics = OperationsMetrics(installed_build())
    events.add_publisher(metrics)

    assert (await OutboxRelay(store, client, Diagnostics(), events=events).run_once()).sent == 3
    assert attempts == [PostingAttempted("measurement", "sent", 3)]
    total = metrics.registry.get_sample_value(
        "qualitybridge_relay_postings_total", {"target": "measurement", "outcome": "sent"}
    )
    assert total == 3
    assert metrics.health.postings == {("measurement", "sent"): 3}
    await client.aclose()


async def test_a_page_read_beside_a_round_is_read_again_when_that_round_left_an_order_unsettled(
    store: Store, erp_url: str
) -> None:
    """While a backlog drains, the next page is read while the round posts (leaving out the round's page); when an
    order's posting failed in the round, that page is dropped and the next is read after the round, which holds the
    order's later postings behind the failed one's backoff (a page read ahead could not: test_relay_read_ahead)."""
    client = RestErpClient(erp_url, timeout_seconds=2)
    master = await _master(store, client)
    a, b, c, d = (order.order_no for order in master.orders[:4])
    a1, b1, a2, c1, d1, b2 = await _recorded(store, master, [a, b, a, c, d, b])
    failing = {a1}

    def recover_after_first_batch() -> None:
        if len(target.batches) == 2:
            failing.discard(a1)

    target = _TargetFailing(client, failing=failing, on_batch=recover_after_first_batch)
    held = _MarkingHeld(store)
    held.release.set()
    relay = OutboxRelay(
        held,  # type: ignore[arg-type]
        _AnsweringAfterPages(target, held, pages=2),  # type: ignore[arg-type]
        Diagnostics(),
        batch_size=2,
        batches_per_round=1,
        backoff_base_seconds=0.05,
        backoff_max_seconds=0.1,
        interval_seconds=0.05,
    )
    relay.wake()
    running = asyncio.create_task(relay.run_forever())
    try:
        for _ in range(300):
            if not await store.pending_outbox():
                break
            await asyncio.sleep(0.02)
    finally:
        relay.stop_soon()
        await asyncio.wait_for(running, 10)
    assert held.pages[1] == [a2, c1], "read while the first round posted, leaving out its page"
    assert held.pages[2][0] == a1, "the page read ahead is dropped; the next one is read after the round"
    a1_again = next(n for n, batch in enumerate(target.batches) if n > 0 and a1 in batch)
    assert all(a2 not in batch for batch in target.batches[:a1_again]), "a2 waits for a1, failed in the round before"
    booked = [f"mr-{b['body']['result_id']}" for b in await _booked(erp_url, "/results")]
    assert sorted(booked) == sorted([a1, b1, a2, c1, d1, b2]), "each posted once"
    assert booked.index(a1) < booked.index(a2)
    assert {entry.state for entry in await store.outbox_entries()} == {OutboxState.SENT}
    await client.aclose()
