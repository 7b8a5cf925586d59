"""The audit writer is never stalled by one entry (issue 9, finding 2): the set-aside path, with a store that
refuses one particular entry, and the outage path, with a store that answers nothing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from qualitybridge.domain.audit import AuditEntry, AuditKind, escaped
from qualitybridge.services.audit_trail import AuditTrail
from qualitybridge.store.audit_log import AuditLogStore


def entry(action: str, user: str | None = "machine1") -> AuditEntry:
    return AuditEntry(
        at=datetime.now(UTC), kind=AuditKind.CALL, action=action, status_code=0, status_name="Good", user_name=user
    )


class RefusingStore:
    def __init__(self, *, up: bool = True) -> None:
        self.up = up
        self.rows: list[AuditEntry] = []

    async def append(self, entries: Sequence[AuditEntry]) -> None:
        if not self.up or any(e.action == "poison" for e in entries):
            raise ValueError("refused")
        self.rows.extend(entries)

    async def reachable(self) -> bool:
        return self.up


def trail(store: RefusingStore) -> AuditTrail:
    return AuditTrail(cast(AuditLogStore, cast(Any, store)))


async def test_an_entry_the_store_refuses_is_set_aside_counted_and_noted() -> None:
    store = RefusingStore()
    writer = trail(store)
    for action in ("before", "poison", "after"):
        writer.record(entry(action))
    await writer.flush()
    assert [row.action for row in store.rows] == ["before", "audit entry set aside", "after"]
    assert writer.set_aside == 1
    assert writer.pending == 0


async def test_an_outage_keeps_the_entries_for_the_next_attempt() -> None:
    store = RefusingStore(up=False)
    writer = trail(store)
    writer.record(entry("kept"))
    with pytest.raises(ValueError, match="refused"):
        await writer.flush()
    assert writer.pending == 1
    assert writer.set_aside == 0
    store.up = True
    await writer.flush()
    assert [row.action for row in store.rows] == ["kept"]


def test_texts_that_are_not_valid_unicode_are_recorded_escaped() -> None:
    assert escaped("op\udcffx") == "op\\udcffx"
    assert escaped("Prüfer") == "Prüfer"
    assert entry("login", "op\udcff").escaped().user_name == "op\\udcff"
