"""Store → ERP: deliver the outbox, in acceptance order per order, retried until the ERP has it.

A posting is marked sent only after the ERP confirmed it; the idempotency key travels with every attempt,
so a delivery whose answer was lost is booked once at the ERP when it is repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from qualitybridge.domain.events import PostingAttempted
from qualitybridge.domain.ports import ErpClient, ErpRejected, ErpUnavailable
from qualitybridge.services.diagnostics import Diagnostics
from qualitybridge.services.event_bus import EventBus
from qualitybridge.store import Store

__all__ = ["OutboxRelay", "RelayRound"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RelayRound:
    sent: int = 0
    retried: int = 0
    dead: int = 0


class OutboxRelay:
    def __init__(
        self,
        store: Store,
        erp: ErpClient,
        diagnostics: Diagnostics,
        *,
        interval_seconds: float = 2.0,
        max_attempts: int = 20,
        backoff_base_seconds: float = 1.0,
        backoff_max_seconds: float = 300.0,
        batch_size: int = 200,
        gather_seconds: float = 0.1,
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
        self._batch_size = batch_size
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._gather_seconds = gather_seconds
        self._wake = asyncio.Event()
        self._round_lock = asyncio.Lock()
        self._stopping = False

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
        while not self.stop_requested():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            if self.stop_requested():
                return
            # Let the postings of a busy moment gather: one round per result cost the report path a third of
            # its database time, while a tenth of a second more latency is nothing against an ERP's.
            await asyncio.sleep(self._gather_seconds)
            self._wake.clear()
            try:
                outcome = await self.run_once()
            except Exception:  # the relay must outlive a store hiccup; the next round retries
                _log.exception("outbox relay round failed")
                continue
            if outcome.sent >= self._batch_size:
                self._wake.set()  # a full page went out: there is more backlog, go on without waiting

    async def run_once(self) -> RelayRound:
        async with self._round_lock:
            outcome = await self._deliver_due()
            counts = await self._store.outbox_counts()
            self._diagnostics.outbox_depth = counts.pending
            self._diagnostics.outbox_dead_letters = counts.dead
            self._diagnostics.outbox_oldest_at = counts.oldest_pending_at
            await self._diagnostics.changed()
            return outcome

    async def _deliver_due(self) -> RelayRound:
        delivered: list[tuple[int, str]] = []
        try:
            return await self._deliver_page(delivered)
        finally:
            # Deliveries are recorded once per round: a commit per posting made the relay disk-bound.
            await self._store.mark_sent_many(delivered)

    async def _deliver_page(self, delivered: list[tuple[int, str]]) -> RelayRound:
        retried = dead = 0
        waiting_orders: set[str] = set()  # an order with an undelivered earlier posting holds its later ones
        now = self._clock()
        for entry in await self._store.pending_outbox(self._batch_size):
            if entry.order_no in waiting_orders:
                continue
            if entry.next_attempt_at > now:
                waiting_orders.add(entry.order_no)
                continue
            try:
                document = await self._erp.post(entry)
            except ErpUnavailable as exc:
                attempts = entry.attempts + 1
                give_up = attempts >= self._max_attempts
                await self._store.mark_failed(entry.seq, str(exc), now + self.backoff(attempts), dead=give_up)
                await self._events.publish(PostingAttempted(entry.kind, "dead" if give_up else "retry"))
                if give_up:
                    dead += 1
                    _log.error(
                        "posting %s dead-lettered after %d attempts: %s",
                        entry.idempotency_key,
                        attempts,
                        exc,
                        extra={"idempotency_key": entry.idempotency_key, "order_no": entry.order_no},
                    )
                else:
                    retried += 1
                    _log.warning(
                        "posting %s failed (attempt %d), will retry: %s",
                        entry.idempotency_key,
                        attempts,
                        exc,
                        extra={"idempotency_key": entry.idempotency_key, "order_no": entry.order_no},
                    )
                waiting_orders.add(entry.order_no)
                # The ERP is struggling: stop this round instead of hammering it with the rest.
                break
            except ErpRejected as exc:
                await self._store.mark_failed(entry.seq, str(exc), now, dead=True)
                await self._events.publish(PostingAttempted(entry.kind, "dead"))
                dead += 1
                _log.error(
                    "posting %s refused by the ERP, dead-lettered: %s",
                    entry.idempotency_key,
                    exc,
                    extra={"idempotency_key": entry.idempotency_key, "order_no": entry.order_no},
                )
            else:
                delivered.append((entry.seq, document))
                await self._events.publish(PostingAttempted(entry.kind, "sent"))
        sent = len(delivered)
        if sent or retried or dead:
            _log.info("outbox relay: %d sent, %d to retry, %d dead-lettered", sent, retried, dead)
        return RelayRound(sent=sent, retried=retried, dead=dead)
