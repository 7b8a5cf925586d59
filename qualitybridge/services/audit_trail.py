"""The audit trail's writer: takes entries from anywhere without waiting, writes them to the store in batches.

The OPC UA hooks record from synchronous code (asyncua's user manager) and from the report path; neither may
wait for a database. `AuditTrail.record` only appends to a bounded buffer; one task writes whatever has
gathered every `flush_interval` seconds (or sooner when a batch is full) in one transaction. OPC UA
AuditEvents get every entry from the security layer's fan-out, not from here: audit entries are recorded from
synchronous asyncua hooks, so they do not travel on the (async) event bus.

No entry can stall the writer: texts that are not valid Unicode are escaped when recorded, and an entry the
store still refuses while it takes others is set aside, counted (`set_aside`) and replaced in the trail by a
note saying so. While the store is unreachable, entries are kept and retried (one WARNING per outage, not a
traceback per attempt). `stop` (the server's SIGTERM path) writes whatever is queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from datetime import UTC, datetime, timedelta

from qualitybridge.domain.audit import AuditEntry, AuditKind, escaped
from qualitybridge.store.audit_log import AuditLogStore

__all__ = ["AuditTrail"]

_log = logging.getLogger(__name__)

# A flood of requests must not grow memory without bound; past this many unwritten entries the oldest go,
# and the loss itself is written to the trail.
DEFAULT_MAX_PENDING = 50_000
DEFAULT_BATCH_SIZE = 500
_RETRY_PAUSE_SECONDS = 2.0


class AuditTrail:
    def __init__(
        self,
        store: AuditLogStore,
        *,
        flush_interval: float = 0.5,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self._store = store
        self._flush_interval = flush_interval
        self._batch_size = batch_size
        self._pending: deque[AuditEntry] = deque(maxlen=max_pending)
        self._dropped = 0
        self._wake = asyncio.Event()
        self._writing = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failing = False
        self.written = 0
        self.set_aside = 0

    def record(self, entry: AuditEntry) -> None:
        """Queue an entry; never blocks and never raises into the caller's request."""
        if len(self._pending) == self._pending.maxlen:
            self._dropped += 1
        self._pending.append(entry.escaped())
        if len(self._pending) >= self._batch_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def stop(self) -> None:
        """Write what is pending, then end the writer (never cancelled mid-write: that would leave the store
        locked by a transaction nobody finishes and lose the batch)."""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            with contextlib.suppress(Exception):
                await self._task
            self._task = None
        while self._pending or self._dropped:  # including what was recorded while the last flush wrote
            await self.flush()

    async def flush(self) -> None:
        """Write everything recorded so far (in batches); returns once it is committed.

        Entries recorded while the flush writes wait for the next one: under a steady stream of calls, a flush that
        drained until nothing was pending wrote a small transaction (and an fsync) after every other one, holding
        the store's connection from the report path's group commits more than half of the time.
        """
        # The lock makes a flush wait for a batch the writer task has taken but not yet committed.
        async with self._writing:
            due = len(self._pending)
            while (due > 0 and self._pending) or self._dropped:
                due -= await self._write_batch(min(due, self._batch_size))

    def _take_batch(self, limit: int) -> list[AuditEntry]:
        batch: list[AuditEntry] = []
        if self._dropped:
            batch.append(
                AuditEntry(
                    at=datetime.now(UTC),
                    kind=AuditKind.ADMIN,
                    action="audit overflow",
                    status_code=0x80040000,  # BadResourceUnavailable
                    status_name="BadResourceUnavailable",
                    arguments=f"{self._dropped} entries dropped: the store could not keep up",
                )
            )
            self._dropped = 0
        for _ in range(min(limit, len(self._pending))):
            batch.append(self._pending.popleft())
        return batch

    async def _write_batch(self, limit: int) -> int:
        """Write up to `limit` pending entries (and the note of any dropped); answers how many were taken."""
        pending_before = len(self._pending)
        batch = self._take_batch(limit)
        taken = pending_before - len(self._pending)
        try:
            await self._store.append(batch)
        except Exception as exc:
            if not await self._store.reachable():
                # An outage: put them back in front (newer ones stay behind them); the buffer bound still applies.
                self._pending.extendleft(reversed(batch))
                raise
            await self._write_one_by_one(batch, exc)
        except BaseException:
            self._pending.extendleft(reversed(batch))
            raise
        self.written += len(batch)
        if self._failing:
            self._failing = False
            _log.info("audit log writes again; %d entries pending", len(self._pending))
        return taken

    async def _write_one_by_one(self, batch: list[AuditEntry], batch_error: Exception) -> None:
        """The store answers but refused the batch: write each entry alone, setting aside those it refuses."""
        for entry in batch:
            try:
                await self._store.append([entry])
                continue
            except Exception as exc:
                if not await self._store.reachable():
                    raise
                reason = escaped(f"{type(exc).__name__}: {exc}")[:300]
            self.set_aside += 1
            _log.warning(
                "audit entry set aside (%d so far), the store refuses it: %s; entry: %s",
                self.set_aside,
                reason,
                escaped(repr(entry))[:500],
            )
            note = AuditEntry(
                at=entry.at,
                kind=entry.kind,
                action="audit entry set aside",
                status_code=entry.status_code,
                status_name=entry.status_name[:64],
                arguments=f"{entry.action} by {entry.user_name!r} could not be stored: {reason}",
            )
            try:
                await self._store.append([note.escaped()])
            except Exception:
                _log.warning("audit note for a set-aside entry could not be written either: %s", reason)
        del batch_error  # each entry was decided on its own

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._flush_interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception as exc:
                if not self._failing:
                    self._failing = True
                    _log.warning(
                        "audit log write failed (%s: %s); %d entries kept and retried every %g s",
                        type(exc).__name__,
                        escaped(str(exc))[:300],
                        len(self._pending),
                        _RETRY_PAUSE_SECONDS,
                    )
                if not self._stopping:
                    await asyncio.sleep(_RETRY_PAUSE_SECONDS)

    async def purge(self, retention: timedelta) -> int:
        cutoff = datetime.now(UTC) - retention
        removed = await self._store.purge(cutoff)
        if removed:
            _log.info("audit log: removed %d entries older than %s", removed, f"{cutoff:%Y-%m-%d %H:%M}")
        return removed
