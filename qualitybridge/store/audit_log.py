"""The audit_log table: append in batches, read back filtered, purge what is past retention.

Kept apart from `Store` because the audit trail has its own writer (batched, off the report path) and its own
reader (the `qualitybridge audit-log` command), and neither needs the domain model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from qualitybridge.domain.audit import AuditEntry, AuditKind
from qualitybridge.store import tables
from qualitybridge.store.bulk_rows import BulkInsert, stored_moment

__all__ = ["AuditLogStore"]

# Column widths of audit_log; longer text is cut with an ellipsis rather than refused.
_WIDTHS = {"action": 64, "user_name": 64, "remote_address": 64, "node": 256, "arguments": 512, "status_name": 64}


def _fit(text: str | None, width: int) -> str | None:
    if text is None or len(text) <= width:
        return text
    return text[: width - 1] + "…"


# The columns an entry fills, in this order (the id is the table's own).
_COLUMNS = (
    "at",
    "kind",
    "action",
    "user_name",
    "client_thumbprint",
    "remote_address",
    "node",
    "arguments",
    "status_code",
    "status_name",
)
# Rows as plain tuples, bound by the driver: SQLAlchemy's insert of dicts processed every value of every entry (a
# flush of 700 entries took 4.8 ms of the event loop).
_INSERT = BulkInsert(tables.audit_log, _COLUMNS)


def _row(entry: AuditEntry, moment: Callable[[datetime], Any]) -> tuple[Any, ...]:
    return (
        moment(entry.at),
        entry.kind.value,
        _fit(entry.action, _WIDTHS["action"]),
        _fit(entry.user_name, _WIDTHS["user_name"]),
        entry.client_thumbprint,
        _fit(entry.remote_address, _WIDTHS["remote_address"]),
        _fit(entry.node, _WIDTHS["node"]),
        _fit(entry.arguments, _WIDTHS["arguments"]),
        entry.status_code,
        _fit(entry.status_name, _WIDTHS["status_name"]),
    )


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; the audit log is UTC throughout."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class AuditLogStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def append(self, entries: Sequence[AuditEntry]) -> None:
        """Write a batch in one transaction (one fsync for many entries keeps the report path fast)."""
        if not entries:
            return
        async with self._engine.begin() as conn:
            moment = stored_moment(conn.dialect)
            await _INSERT.execute(conn, [_row(entry, moment) for entry in entries])

    async def reachable(self) -> bool:
        """Whether the database answers at all (to tell an outage from an entry it cannot take)."""
        try:
            async with self._engine.connect() as conn:
                await conn.execute(select(1))
        except Exception:
            return False
        return True

    async def entries(
        self, *, since: datetime | None = None, user_name: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        """The newest `limit` entries matching the filters, oldest first (reads like a log)."""
        audit = tables.audit_log
        query = select(audit).order_by(audit.c.id.desc()).limit(limit)
        if since is not None:
            query = query.where(audit.c.at >= since)
        if user_name is not None:
            query = query.where(audit.c.user_name == user_name)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            AuditEntry(
                at=_aware(row.at),
                kind=AuditKind(row.kind),
                action=row.action,
                status_code=int(row.status_code),
                status_name=row.status_name,
                user_name=row.user_name,
                client_thumbprint=row.client_thumbprint,
                remote_address=row.remote_address,
                node=row.node,
                arguments=row.arguments,
                id=int(row.id),
            )
            for row in reversed(rows)
        ]

    async def purge(self, older_than: datetime) -> int:
        """Delete entries from before `older_than`; returns how many went."""
        async with self._engine.begin() as conn:
            deleted = await conn.execute(delete(tables.audit_log).where(tables.audit_log.c.at < older_than))
        return int(deleted.rowcount)
