"""One flush writes what was recorded before it began: under a steady stream of calls the audit writer must not
follow every write with another (each a transaction and an fsync on the store's one SQLite connection, which the
report path's group commits then wait for)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from qualitybridge.domain.audit import AuditEntry, AuditKind
from qualitybridge.services.audit_trail import AuditTrail
from qualitybridge.store.audit_log import AuditLogStore


def entry(action: str) -> AuditEntry:
    return AuditEntry(
        at=datetime.now(UTC), kind=AuditKind.CALL, action=action, status_code=0, status_name="Good", user_name="m1"
    )


class SlowStore:
    """Each append waits until the test lets it finish, as a commit waits for its fsync."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.writing = asyncio.Event()
        self.release = asyncio.Event()

    async def append(self, entries: Sequence[AuditEntry]) -> None:
        self.writing.set()
        await self.release.wait()
        self.batches.append([e.action for e in entries])

    async def reachable(self) -> bool:
        return True


async def test_entries_recorded_during_a_flush_wait_for_the_next_one() -> None:
    store = SlowStore()
    writer = AuditTrail(cast(AuditLogStore, cast(Any, store)), batch_size=2)
    for action in ("a", "b", "c"):
        writer.record(entry(action))
    flushing = asyncio.create_task(writer.flush())
    await store.writing.wait()
    writer.record(entry("d"))  # arrives while the first batch is being written
    store.release.set()
    await flushing
    assert store.batches == [["a", "b"], ["c"]]  # batches of at most batch_size, only what was there at the start
    assert writer.pending == 1
    await writer.flush()
    assert store.batches[-1] == ["d"]
    assert writer.pending == 0


async def test_stop_writes_everything_including_what_came_during_its_last_flush() -> None:
    store = SlowStore()
    writer = AuditTrail(cast(AuditLogStore, cast(Any, store)), flush_interval=60)
    writer.start()
    writer.record(entry("first"))
    stopping = asyncio.create_task(writer.stop())
    await store.writing.wait()
    writer.record(entry("late"))
    store.release.set()
    await stopping
    assert [action for batch in store.batches for action in batch] == ["first", "late"]
    assert writer.pending == 0
