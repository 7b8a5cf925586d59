"""The relay's read-ahead page (read while a round posts, during a backlog): a posting discarded by a person
(qualitybridge outbox discard) meanwhile is not delivered by the next round and stays discarded; an order split
over two pages is not held by the page read ahead; a relay cancelled while its marking commits leaves nothing
running under the store that is closed next."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from qualitybridge.adapters.rest_erp import RestErpClient
from qualitybridge.domain.ports import ErpUnavailable, PostingFailure, PostingOutcome
from qualitybridge.domain.postings import OutboxEntry
from qualitybridge.services.diagnostics import Diagnostics
from qualitybridge.services.outbox_relay import OutboxRelay
from qualitybridge.store import Store
from tests.integration.test_relay_order_and_kinds import _booked, _master, _recorded, _TargetFailing


async def _run_until(relay: OutboxRelay, done: Callable[[], Awaitable[bool]], tries: int, settle: float = 0.0) -> None:
    """Run the relay as the server does (`run_forever`) until `done` (polled every 20 ms, `tries` times at most),
    `settle` seconds more, then stop it as App.stop does."""
    relay.wake()
    running = asyncio.create_task(relay.run_forever())
    try:
        for _ in range(tries):
            if await done():
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(settle)
    finally:
        relay.stop_soon()
        await asyncio.wait_for(running, 10)


async def _drained(store: Store) -> bool:
    return not await store.pending_outbox()


class _DiscardingWhilePosting:
    """The real client; while its first batch is posted, a person discards a posting of the next page."""

    def __init__(self, client: RestErpClient, store: Store, seq_to_discard: int) -> None:
        self._client = client
        self._store = store
        self._seq = seq_to_discard
        self.batches: list[list[str]] = []

    async def post_batch(self, entries: Sequence[OutboxEntry]) -> Sequence[PostingOutcome]:
        self.batches.append([entry.idempotency_key for entry in entries])
        if len(self.batches) == 1:
            await asyncio.sleep(0.05)  # the read-ahead page is read meanwhile, as while a real round posts
            await self._store.discard(self._seq, "wrong order, booked by hand", "qa-lead")
        return await self._client.post_batch(entries)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


async def test_a_posting_discarded_while_the_round_before_it_posts_is_not_delivered(store: Store, erp_url: str) -> None:
    client = RestErpClient(erp_url, timeout_seconds=2)
    master = await _master(store, client)
    orders = [order.order_no for order in master.orders[:4]]
    keys = await _recorded(store, master, orders)
    seqs = {entry.idempotency_key: entry.seq for entry in await store.pending_outbox()}
    target = _DiscardingWhilePosting(client, store, seqs[keys[2]])
    relay = OutboxRelay(store, target, Diagnostics(), batch_size=2, batches_per_round=1)  # type: ignore[arg-type]
    await _run_until(relay, lambda: _drained(store), tries=200)
    (record,) = [r for r in await store.outbox_records() if r.seq == seqs[keys[2]]]
    # docs/operations.md accepts that such a posting "can still be delivered once"; the operator's decision must
    # not vanish, though: the marking overwrites the discarded state with "sent" (no `state = 'pending'` guard).
    assert record.state == "discarded", f"the discard was overwritten: {record.state}"
    booked = {f"mr-{b['body']['result_id']}" for b in await _booked(erp_url, "/results")}
    assert keys[2] not in booked, "the discarded posting was delivered from the page read ahead"
    await client.aclose()


class _DiscardingThenFailingIt(_DiscardingWhilePosting):
    """As above, and the ERP fails the discarded posting for a while when it is posted."""

    async def post_batch(self, entries: Sequence[OutboxEntry]) -> Sequence[PostingOutcome]:
        answered = list(await super().post_batch([entry for entry in entries if entry.seq != self._seq]))
        if any(entry.seq == self._seq for entry in entries):
            answered.append(PostingFailure(self._seq, ErpUnavailable("HTTP 503")))
        return answered


async def test_a_posting_discarded_while_on_the_read_ahead_page_is_not_put_back_in_the_queue_by_a_failure(
    store: Store, erp_url: str
) -> None:
    client = RestErpClient(erp_url, timeout_seconds=2)
    master = await _master(store, client)
    orders = [order.order_no for order in master.orders[:4]]
    keys = await _recorded(store, master, orders)
    seqs = {entry.idempotency_key: entry.seq for entry in await store.pending_outbox()}
    target = _DiscardingThenFailingIt(client, store, seqs[keys[2]])
    relay = OutboxRelay(store, target, Diagnostics(), batch_size=2, batches_per_round=1)  # type: ignore[arg-type]

    async def posted_twice() -> bool:
        return len(target.batches) >= 2

    await _run_until(relay, posted_twice, tries=50, settle=0.1)
    (record,) = [r for r in await store.outbox_records() if r.seq == seqs[keys[2]]]
    assert record.state == "discarded", f"the discarded posting is back in the queue: {record.state}"
    await client.aclose()


async def test_an_order_that_spans_two_pages_is_not_held_for_as_long_as_the_backlog_lasts(
    store: Store, erp_url: str
) -> None:
    """a1 fails once (due again at once). Its order's a2 is on the page read ahead, so that page holds the order;
    the page after it holds a1 again because a2 went unsettled, and so on: the order alternates between pages,
    each held by the other, until the backlog is shorter than a page. A page read after the round (as before the
    read-ahead) has a1 and a2 both and delivers them in the next round."""
    client = RestErpClient(erp_url, timeout_seconds=2)
    master = await _master(store, client)
    names = [order.order_no for order in master.orders]
    a, others = names[0], names[1:]
    layout = [a, others[0], a, others[1]] + [others[2 + position % (len(others) - 2)] for position in range(16)]
    keys = await _recorded(store, master, layout)
    a1 = keys[0]  # a2 is keys[2], on the next page
    failing = {a1}

    def recover_after_first_batch() -> None:
        if len(target.batches) == 2:
            failing.discard(a1)

    target = _TargetFailing(client, failing=failing, on_batch=recover_after_first_batch)
    relay = OutboxRelay(
        store,
        target,  # type: ignore[arg-type]
        Diagnostics(),
        batch_size=2,
        batches_per_round=1,
        backoff_base_seconds=0.0,
        backoff_max_seconds=0.0,
        interval_seconds=0.05,
    )
    await _run_until(relay, lambda: _drained(store), tries=300)
    second_try = next(n for n, batch in enumerate(target.batches) if n > 0 and a1 in batch)
    assert second_try <= 3, f"a1 was tried again only in batch {second_try} of {len(target.batches)}: {target.batches}"
    await client.aclose()


async def test_a_relay_cancelled_while_its_marking_commits_leaves_no_marking_running(
    store: Store, erp_url: str
) -> None:
    """App.stop: stop_soon, 5 s of grace, then cancel, 2 s more, then the store is closed. A marking that outlasts
    the grace (the group commit behind a large report batch) must not be left running when the relay task ends:
    the store is closed under it and its failure is an unretrieved task exception at shutdown."""
    from tests.integration.test_relay_order_and_kinds import _MarkingHeld

    client = RestErpClient(erp_url, timeout_seconds=2)
    master = await _master(store, client)
    await _recorded(store, master, [order.order_no for order in master.orders[:2]])
    held = _MarkingHeld(store)
    relay = OutboxRelay(held, client, Diagnostics(), batch_size=2, batches_per_round=1)  # type: ignore[arg-type]
    relay.wake()
    running = asyncio.create_task(relay.run_forever())
    for _ in range(200):
        if len(await _booked(erp_url, "/results")) >= 2:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)
    relay.stop_soon()
    await asyncio.wait({running}, timeout=0.2)  # the grace (5 s in App.stop)
    running.cancel()
    await asyncio.wait({running}, timeout=0.2)
    markings = [task for task in asyncio.all_tasks() if task.get_name() == "outbox-relay-marking" and not task.done()]
    held.release.set()
    await asyncio.sleep(0.05)
    assert running.done()
    assert not markings, "the relay task ended with its marking still running: App.stop closes the store under it"
    await client.aclose()
