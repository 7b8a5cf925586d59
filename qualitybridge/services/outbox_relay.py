"""Store → ERP: deliver the outbox, in acceptance order per order, retried until the ERP has it.

A posting is marked sent only after the ERP confirmed it with a document number; the idempotency key travels
with every attempt, so a delivery whose answer was lost is booked once at the ERP when it is repeated.

Each round reads up to `batches_per_round` batches of due postings and sends them one batch after the other when
the target has `post_batch` (else one at a time). Orders are independent: an order's temporary failure holds only
that order's later postings, never another order's, also those in the round's later batches. Only a batch that got
no answer at all ends the round (the ERP is struggling; the oldest posting carries the backoff).

Several batches per round, and the outbox counts read at most once a second while a backlog drains: every await of
a round waits behind whatever the event loop runs (report batches of a thousand measurements), so a round's
awaits, not its CPU, bounded the relay to a few hundred postings a second while machines reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from qualitybridge.domain.events import PostingAttempted, PostingDeadLettered
from qualitybridge.domain.ports import (
    ErpClient,
    ErpRejected,
    ErpUnavailable,
    PostingFailure,
    PostingOutcome,
    PostingReceipt,
    PostingTarget,
)
from qualitybridge.domain.postings import OutboxEntry
from qualitybridge.services.diagnostics import Diagnostics
from qualitybridge.services.event_bus import EventBus
from qualitybridge.store import Store

__all__ = ["OutboxRelay", "RelayRound"]

_log = logging.getLogger(__name__)

_COUNT_EVERY_SECONDS = 1.0
_HELD = ErpUnavailable("held behind an earlier posting of its order")


def _settled(outcome: PostingOutcome) -> bool:
    """Booked (with a document number), or refused for good: either way the order's later postings may follow."""
    if isinstance(outcome, PostingReceipt):
        return bool(outcome.document_no.strip())
    return outcome.attempted and isinstance(outcome.error, ErpRejected)


def _failed_for_a_while(outcome: PostingOutcome) -> bool:
    """Attempted by the target and failed temporarily (not refused for good, not held)."""
    return isinstance(outcome, PostingFailure) and outcome.attempted and isinstance(outcome.error, ErpUnavailable)


@dataclass(frozen=True)
class RelayRound:
    sent: int = 0
    retried: int = 0
    dead: int = 0


class OutboxRelay:
    def __init__(
        self,
        store: Store,
        erp: ErpClient | PostingTarget,
        diagnostics: Diagnostics,
        *,
        interval_seconds: float = 2.0,
        max_attempts: int = 20,
        backoff_base_seconds: float = 1.0,
        backoff_max_seconds: float = 300.0,
        batch_size: int = 500,
        batches_per_round: int = 4,
        gather_seconds: float = 0.1,
        busy_gather_seconds: float = 0.3,
        busy_round: int = 20,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        events: EventBus | None = None,
    ) -> None:
        self._events = events or EventBus()
        self._store = store
        self._erp = erp
        self._diagnostics = diagnostics
        self._interval = interval_seconds
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base_seconds
        self._backoff_max = backoff_max_seconds
        self._batch_size = batch_size  # per call of the target (the REST contract's batch holds at most 500)
        self._batches_per_round = batches_per_round
        self._page_size = batch_size * batches_per_round
        self._counted_at = -math.inf  # monotonic time of the last outbox count (the diagnostics' depth)
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._gather_seconds = gather_seconds
        self._busy_gather_seconds = max(busy_gather_seconds, gather_seconds)
        self._busy_round = busy_round
        self._events = events or EventBus()  # a PostingDeadLettered per posting given up
        self._wake = asyncio.Event()
        self._round_lock = asyncio.Lock()
        self._stopping = False
        # While `run_forever` runs, a round's deliveries are marked sent while the next round goes on (`_marking`);
        # until that commits, their seqs (`_marking_seqs`) are left out of the next page.
        self._pipelined = False
        self._marking: asyncio.Task[None] | None = None
        self._marking_seqs: frozenset[int] = frozenset()
        self._counting: asyncio.Task[None] | None = None  # the outbox counted beside the rounds of a backlog
        # While a backlog drains under `run_forever`, the next page is read while the round posts (`_next_page`). It
        # is used only if the round settled its whole page: an order the round left unsettled may have a later
        # posting on it, which must wait (a page read after the round holds it by the earlier one's due time).
        self._next_page: asyncio.Task[list[OutboxEntry]] | None = None

    def wake(self) -> None:
        """Deliver soon rather than at the next interval (called after a new result is stored)."""
        self._wake.set()

    def stop_soon(self) -> None:
        """Let `run_forever` return after the round under way (the app stops)."""
        self._stopping = True
        self._wake.set()

    def stop_requested(self) -> bool:
        return self._stopping

    def backoff(self, attempts: int) -> timedelta:
        """Exponential backoff with full jitter, capped: spreads retries after an ERP outage."""
        ceiling = min(self._backoff_max, self._backoff_base * 2 ** max(attempts - 1, 0))
        return timedelta(seconds=self._rng.uniform(ceiling / 2, ceiling))

    async def run_forever(self) -> None:
        self._pipelined = True
        try:
            await self._run_rounds()
        finally:
            self._pipelined = False
            try:
                await self._discard_next_page()
                await self._marked()  # what was delivered is recorded before the relay leaves
            finally:
                # Nothing of the relay's may run on once it has ended: the store is closed after it (App.stop).
                if self._counting is not None and not self._counting.done():
                    self._counting.cancel()
                    await asyncio.gather(self._counting, return_exceptions=True)

    async def _run_rounds(self) -> None:
        backlog = busy = False
        while not self.stop_requested():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            if self.stop_requested():
                return
            if not backlog:
                # Let the postings of a busy moment gather: one round per result cost the report path a third of
                # its database time, while a tenth of a second more latency is nothing against an ERP's. A backlog
                # goes on without this pause (it capped the relay at ten pages a second). While single calls
                # stream in (the last round carried `busy_round` postings or more, but less than a page), the
                # pause is longer: each round's own cost (page read, HTTP request, marking, outbox count) made the
                # relay 15 % of the server's samples with rounds of a few dozen postings, 7 % with 0.3 s pauses.
                await asyncio.sleep(self._busy_gather_seconds if busy else self._gather_seconds)
            self._wake.clear()
            try:
                outcome = await self.run_once()
            except Exception:  # the relay must outlive a store hiccup; the next round retries
                _log.exception("outbox relay round failed")
                backlog = busy = False
                continue
            backlog = outcome.sent >= self._batch_size
            busy = outcome.sent >= self._busy_round
            if backlog:
                self._wake.set()  # a full page went out: there is more backlog, go on without waiting

    async def run_once(self) -> RelayRound:
        async with self._round_lock:
            outcome = await self._deliver_due()
            draining = outcome.sent >= self._batch_size
            if draining and time.monotonic() - self._counted_at < _COUNT_EVERY_SECONDS:
                return outcome  # a backlog drains: the depth shown is at most a second old, and exact once it ends
            self._counted_at = time.monotonic()
            if draining and self._pipelined:
                # Counted beside the next round: the count waits for the marking and the database behind the report
                # batches under way, and the relay stood still for it once a second.
                if self._counting is None or self._counting.done():
                    self._counting = asyncio.create_task(self._count_beside(), name="outbox-relay-count")
                return outcome
            await self._count()
            return outcome

    async def _count_beside(self) -> None:
        try:
            await self._count()
        except Exception:  # as a failed round: logged, and the next count tries again
            _log.exception("counting the outbox failed")

    async def _count(self) -> None:
        await self._marked()  # the depth shown counts what was delivered as gone
        counts = await self._store.outbox_counts()
        self._diagnostics.outbox_depth = counts.pending
        self._diagnostics.outbox_dead_letters = counts.dead
        self._diagnostics.outbox_oldest_at = counts.oldest_pending_at
        await self._diagnostics.changed()

    async def _deliver_due(self) -> RelayRound:
        delivered: list[tuple[int, str]] = []
        try:
            return await self._deliver_page(delivered)
        finally:
            # Deliveries are recorded once per round: a commit per posting made the relay disk-bound.
            await self._mark_sent(delivered)

    async def _mark_sent(self, delivered: list[tuple[int, str]]) -> None:
        """Record a round's deliveries. Under `run_forever` the next round does not wait for it: the marking shares
        the group commit with the report batches under way, and waiting for it left the relay idle for a third of
        each round while machines reported. One marking at a time; its seqs are left out of the next page."""
        await self._marked()
        if not delivered:
            return
        if not self._pipelined:
            await self._store.mark_sent_many(delivered)
            return
        self._marking_seqs = frozenset(seq for seq, _document in delivered)
        self._marking = asyncio.create_task(self._store.mark_sent_many(delivered), name="outbox-relay-marking")

    async def _marked(self) -> None:
        """Wait for the marking under way, if any. A marking that failed is logged: its postings are pending again
        and delivered once more, which their idempotency keys make harmless (as after a crash before the mark)."""
        marking = self._marking
        if marking is None:
            return
        try:
            await asyncio.shield(marking)
        except asyncio.CancelledError:
            if not marking.done():
                # The relay itself is cancelled (the stop's grace ran out): its marking with it, or it would run on
                # under a store that is closed next. What it did not commit is delivered again (idempotency key).
                marking.cancel()
                raise
            _log.error("marking delivered postings as sent was cancelled; they are delivered again")
        except Exception:
            _log.exception("marking delivered postings as sent failed; they are delivered again")
        if self._marking is marking:  # not a later one, started while this wait (the count's) went on
            self._marking = None
            self._marking_seqs = frozenset()

    async def _page(self) -> list[OutboxEntry]:
        """The round's page: read beside the previous round, or now."""
        prefetched, self._next_page = self._next_page, None
        if prefetched is not None:
            try:
                page = await prefetched
            except Exception:  # read again below, as without the prefetch
                _log.exception("reading the relay's next page beside the round failed")
            else:
                # Read before the round before posted: a person may have discarded some of it meanwhile.
                discarded = await self._store.discarded_among([entry.seq for entry in page])
                return [entry for entry in page if entry.seq not in discarded] if discarded else page
        return await self._store.pending_outbox(self._page_size, excluding=self._marking_seqs)

    def _read_next_page(self, page: list[OutboxEntry]) -> None:
        """Under `run_forever`, after a full page: read the next one while this round posts, leaving out this page
        and the marking under way (so nothing is posted twice)."""
        if not self._pipelined or len(page) < self._page_size or self.stop_requested():
            return
        excluding = self._marking_seqs.union(entry.seq for entry in page)
        self._next_page = asyncio.create_task(
            self._store.pending_outbox(self._page_size, excluding=excluding), name="outbox-relay-next-page"
        )

    async def _discard_next_page(self) -> None:
        """A round that ended otherwise than by its answers (the ERP silent, an error) leaves the next page unread
        by the relay: the next round reads a page after it."""
        prefetched, self._next_page = self._next_page, None
        if prefetched is None:
            return
        prefetched.cancel()
        await asyncio.gather(prefetched, return_exceptions=True)

    async def _deliver_page(self, delivered: list[tuple[int, str]]) -> RelayRound:
        now = self._clock()
        runs: dict[str, list[OutboxEntry]] = {}  # per order: its due postings, in acceptance order
        held: set[str] = set()  # an order with an undelivered earlier posting holds its later ones
        page = await self._page()
        for entry in page:
            if entry.order_no in held:
                continue
            if entry.next_attempt_at > now:
                held.add(entry.order_no)
                continue
            runs.setdefault(entry.order_no, []).append(entry)
        due = sorted((entry for run in runs.values() for entry in run), key=lambda entry: entry.seq)
        if not due:
            return RelayRound()
        self._read_next_page(page)
        try:
            return await self._deliver(page, runs, due, delivered, now)
        except BaseException:
            await self._discard_next_page()
            raise

    async def _deliver(
        self,
        page: list[OutboxEntry],
        runs: dict[str, list[OutboxEntry]],
        due: list[OutboxEntry],
        delivered: list[tuple[int, str]],
        now: datetime,
    ) -> RelayRound:
        outcomes: list[PostingOutcome] = []  # filled as the target answers, batch by batch
        try:
            await self._post(due, outcomes)
        except ErpUnavailable as exc:
            # The batch got no answer at all: the ERP is struggling. The oldest posting carries the attempt and
            # its backoff; the rest wait for the next round instead of hammering the ERP.
            await self._discard_next_page()
            retried, dead = await self._failed(due[0], exc, now)
            return self._logged(RelayRound(retried=retried, dead=dead))
        except BaseException:
            # A later batch was interrupted (the relay cancelled at the end of the stop's grace, an unexpected
            # error): what the earlier batches booked is recorded (`_deliver_due` marks `delivered`), or it would
            # be posted again by the next round.
            delivered.extend(
                (outcome.seq, outcome.document_no)
                for outcome in outcomes
                if isinstance(outcome, PostingReceipt) and outcome.document_no.strip()
            )
            raise
        by_seq = {outcome.seq: outcome for outcome in outcomes}
        retried = dead = 0
        settled: set[int] = set()  # delivered, or refused for good
        sent_per_kind: Counter[str] = Counter()
        for run in runs.values():
            stopped = False  # the order's first temporary failure holds its later postings
            for entry in run:
                outcome = self._checked(entry, by_seq.get(entry.seq))
                if isinstance(outcome, PostingReceipt):
                    if stopped:
                        _log.warning("posting %s was booked after an earlier one of its order failed", entry.seq)
                    delivered.append((entry.seq, outcome.document_no))
                    settled.add(entry.seq)
                    sent_per_kind[entry.kind] += 1
                    continue
                if stopped or not outcome.attempted:
                    stopped = True
                    continue  # not attempted by the target: it waits for the earlier one, uncounted
                failed_retried, failed_dead = await self._failed(entry, outcome.error, now)
                retried += failed_retried
                dead += failed_dead
                stopped = bool(failed_retried)
                if failed_dead:
                    settled.add(entry.seq)
        if any(entry.seq not in settled for entry in page):
            # An order left unsettled may have later postings on the page read ahead, which must wait for it: the
            # next page is read after this round instead, and holds them by the earlier posting's due time.
            await self._discard_next_page()
        # One event per kind a round sent: an event per posting was a tenth of the relay's CPU (metrics per event).
        await self._events.publish_burst(
            [PostingAttempted(kind, "sent", count) for kind, count in sent_per_kind.items()]
        )
        return self._logged(RelayRound(sent=len(delivered), retried=retried, dead=dead))

    async def _post(self, due: list[OutboxEntry], outcomes: list[PostingOutcome]) -> None:
        """Through the target's batch call when it has one, else one posting at a time with the same rules; each
        answer goes into `outcomes` as soon as it is in."""
        if isinstance(self._erp, PostingTarget):
            await self._post_batches(self._erp, due, outcomes)
            return
        stopped: set[str] = set()
        for entry in due:
            if entry.order_no in stopped:
                outcomes.append(PostingFailure(entry.seq, _HELD, attempted=False))
                continue
            try:
                outcomes.append(PostingReceipt(entry.seq, await self._erp.post(entry)))
            except ErpUnavailable as exc:
                outcomes.append(PostingFailure(entry.seq, exc))
                stopped.add(entry.order_no)
            except ErpRejected as exc:
                outcomes.append(PostingFailure(entry.seq, exc))

    async def _post_batches(
        self, target: PostingTarget, due: list[OutboxEntry], outcomes: list[PostingOutcome]
    ) -> None:
        """The round's due postings in batches of `batch_size`, one batch after the other. An order that was not
        booked in one batch (other than refused for good) has its postings in the later batches held, as a target
        holds them within one batch. Raises ErpUnavailable when the first batch got no answer. The rest of the
        round waits for the next one (what was booked before stands) when a later batch got no answer, when a batch
        booked nothing and its first posting failed for a while (a target that answers per posting, as SAP's
        adapter does, reports an ERP that does not answer that way: each further batch would wait out its
        timeouts and count attempts against more orders), or when the relay is stopping."""
        stopped: set[str] = set()
        for start in range(0, len(due), self._batch_size):
            if start and self.stop_requested():
                outcomes.extend(PostingFailure(entry.seq, _HELD, attempted=False) for entry in due[start:])
                return
            batch = [entry for entry in due[start : start + self._batch_size] if entry.order_no not in stopped]
            outcomes.extend(
                PostingFailure(entry.seq, _HELD, attempted=False)
                for entry in due[start : start + self._batch_size]
                if entry.order_no in stopped
            )
            if not batch:
                continue
            try:
                answered = await target.post_batch(batch)
            except ErpUnavailable:
                if start == 0:
                    raise
                outcomes.extend(PostingFailure(entry.seq, _HELD, attempted=False) for entry in due[start:])
                return
            outcomes.extend(answered)
            booked = {outcome.seq for outcome in answered if _settled(outcome)}
            stopped.update(entry.order_no for entry in batch if entry.seq not in booked)
            if not booked and answered and _failed_for_a_while(answered[0]):
                rest = due[start + self._batch_size :]
                outcomes.extend(PostingFailure(entry.seq, _HELD, attempted=False) for entry in rest)
                return

    @staticmethod
    def _checked(entry: OutboxEntry, outcome: PostingOutcome | None) -> PostingOutcome:
        """An answer without a document number (or no answer for an entry) breaks the contract: not a booking."""
        if outcome is None:
            problem = "contract violation: the ERP's batch answer has no outcome for this posting"
        elif isinstance(outcome, PostingReceipt) and not outcome.document_no.strip():
            problem = "contract violation: the ERP answered success without a document number"
        else:
            return outcome
        _log.error("posting %s: %s; it is retried", entry.idempotency_key, problem)
        return PostingFailure(entry.seq, ErpUnavailable(problem))

    async def _failed(self, entry: OutboxEntry, error: ErpUnavailable | ErpRejected, now: datetime) -> tuple[int, int]:
        """Record one failed delivery; answers (retried, dead) counts."""
        keys = {"idempotency_key": entry.idempotency_key, "order_no": entry.order_no}
        attempts = entry.attempts + 1
        if isinstance(error, ErpRejected):
            await self._store.mark_failed(entry.seq, str(error), now, dead=True)
            await self._events.publish(PostingAttempted(entry.kind, "dead"))
            _log.error("posting %s refused by the ERP, dead-lettered: %s", entry.idempotency_key, error, extra=keys)
            await self._dead_lettered(entry, attempts, str(error))
            return 0, 1
        give_up = attempts >= self._max_attempts
        await self._store.mark_failed(entry.seq, str(error), now + self.backoff(attempts), dead=give_up)
        await self._events.publish(PostingAttempted(entry.kind, "dead" if give_up else "retry"))
        if give_up:
            _log.error(
                "posting %s dead-lettered after %d attempts: %s", entry.idempotency_key, attempts, error, extra=keys
            )
            await self._dead_lettered(entry, attempts, str(error))
            return 0, 1
        _log.warning(
            "posting %s failed (attempt %d), will retry: %s", entry.idempotency_key, attempts, error, extra=keys
        )
        return 1, 0

    @staticmethod
    def _logged(outcome: RelayRound) -> RelayRound:
        if outcome.sent or outcome.retried or outcome.dead:
            _log.info(
                "outbox relay: %d sent, %d to retry, %d dead-lettered", outcome.sent, outcome.retried, outcome.dead
            )
        return outcome

    async def _dead_lettered(self, entry: OutboxEntry, attempts: int, error: str) -> None:
        await self._events.publish(
            PostingDeadLettered(entry.idempotency_key, entry.kind, entry.order_no, attempts, error)
        )
