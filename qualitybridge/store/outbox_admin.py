"""Store operations behind `qualitybridge outbox list|retry|discard`: a person looks at postings and decides.

Mixed into `Store`. Nothing is ever deleted: `retry` puts a dead letter back in the queue with its attempts reset,
`discard` marks a posting as not to be delivered and records who decided it, when and why.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from qualitybridge.domain.model import OutboxState
from qualitybridge.store import tables

__all__ = ["DISCARDED", "OUTBOX_STATES", "OutboxAdministration", "OutboxRecord"]

# A state of the outbox column only: a discarded posting is no longer the relay's business, so it has no place in
# the domain's OutboxState (which the relay and Diagnostics work with).
DISCARDED = "discarded"
OUTBOX_STATES = (*(state.value for state in OutboxState), DISCARDED)


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything in the store is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _aware_or_none(moment: datetime | None) -> datetime | None:
    return None if moment is None else _aware(moment)


@dataclass(frozen=True)
class OutboxRecord:
    """One outbox row with everything a person needs to judge it."""

    seq: int
    idempotency_key: str
    kind: str
    order_no: str
    state: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
    last_error: str | None
    erp_document: str | None
    discard_reason: str | None
    discarded_by: str | None
    discarded_at: datetime | None
    payload: dict[str, Any]


class OutboxAdministration:
    engine: AsyncEngine

    async def outbox_records(
        self, states: Collection[str] = (), order_no: str | None = None, limit: int | None = None
    ) -> list[OutboxRecord]:
        """Outbox rows in acceptance order, optionally only some states (see OUTBOX_STATES) or one order."""
        query = select(tables.outbox).order_by(tables.outbox.c.seq)
        if states:
            query = query.where(tables.outbox.c.state.in_(list(states)))
        if order_no is not None:
            query = query.where(tables.outbox.c.order_no == order_no)
        if limit is not None:
            query = query.limit(limit)
        async with self.engine.connect() as conn:
            return [_record_from_row(row._mapping) for row in await conn.execute(query)]

    async def retry_dead(self, seqs: Collection[int] | None = None) -> list[int]:
        """Dead letters back to pending, attempts reset, due now; None = all dead letters. Answers the seqs moved."""
        outbox = tables.outbox
        condition = outbox.c.state == OutboxState.DEAD.value
        if seqs is not None:
            if not seqs:
                return []
            condition = condition & outbox.c.seq.in_(list(seqs))
        async with self.engine.begin() as conn:
            moved = [row.seq for row in await conn.execute(select(outbox.c.seq).where(condition).with_for_update())]
            if moved:
                await conn.execute(
                    update(outbox)
                    .where(outbox.c.seq.in_(moved), outbox.c.state == OutboxState.DEAD.value)
                    .values(state=OutboxState.PENDING.value, attempts=0, next_attempt_at=datetime.now(UTC))
                )
        return sorted(moved)

    async def discard(self, seq: int, reason: str, discarded_by: str) -> OutboxRecord:
        """Mark a pending or dead posting as not to be delivered.

        LookupError if there is no such entry; ValueError if it was sent or discarded already, or no reason given.
        """
        if not reason.strip():
            raise ValueError("a discard needs a reason, for whoever looks at the outbox next")
        outbox = tables.outbox
        discardable = (OutboxState.PENDING.value, OutboxState.DEAD.value)
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(outbox).where(outbox.c.seq == seq).with_for_update())).first()
            if row is None:
                raise LookupError(f"there is no outbox entry {seq}")
            if row.state not in discardable:
                raise ValueError(f"outbox entry {seq} is {row.state}; only pending or dead entries can be discarded")
            await conn.execute(
                update(outbox)
                .where(outbox.c.seq == seq, outbox.c.state.in_(discardable))
                .values(
                    state=DISCARDED,
                    discard_reason=reason.strip()[:2000],
                    discarded_by=discarded_by[:64],
                    discarded_at=datetime.now(UTC),
                )
            )
            updated = (await conn.execute(select(outbox).where(outbox.c.seq == seq))).one()
        return _record_from_row(updated._mapping)


def _record_from_row(row: Any) -> OutboxRecord:
    return OutboxRecord(
        seq=row["seq"],
        idempotency_key=row["idempotency_key"],
        kind=row["kind"],
        order_no=row["order_no"],
        state=row["state"],
        attempts=row["attempts"],
        created_at=_aware(row["created_at"]),
        next_attempt_at=_aware(row["next_attempt_at"]),
        sent_at=_aware_or_none(row["sent_at"]),
        last_error=row["last_error"],
        erp_document=row["erp_document"],
        discard_reason=row["discard_reason"],
        discarded_by=row["discarded_by"],
        discarded_at=_aware_or_none(row["discarded_at"]),
        payload=row["payload"],
    )
