"""The mapping tables (domain/mapping.py) in the store: listed, set one entry at a time, or replaced whole.

Mixed into `Store`. Every write checks its entries first (`InvalidMapping` names every problem) and runs in one
transaction, so an import either lands complete or leaves the table as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from qualitybridge.domain.mapping import (
    InvalidMapping,
    MappingEntry,
    MappingKind,
    MappingTables,
    entry_problems,
    table_problems,
)
from qualitybridge.store import tables

__all__ = ["MappingTableStore"]


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything in the store is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _row(entry: MappingEntry, now: datetime) -> dict[str, object]:
    return {
        "kind": entry.kind.value,
        "source_key": entry.source_key,
        "target_key": entry.target_key,
        "changed_at": entry.changed_at or now,
        "changed_by": entry.changed_by,
    }


class MappingTableStore:
    engine: AsyncEngine

    async def list_mappings(self, kind: MappingKind | None = None) -> list[MappingEntry]:
        """The entries of one table (or all four), ordered by table and source key (code-point order, the same on
        every backend whatever the database's collation)."""
        query = select(tables.mappings)
        if kind is not None:
            query = query.where(tables.mappings.c.kind == kind.value)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query)
            entries = [
                MappingEntry(
                    kind=MappingKind(row.kind),
                    source_key=row.source_key,
                    target_key=row.target_key,
                    changed_at=_aware(row.changed_at),
                    changed_by=row.changed_by,
                )
                for row in rows
            ]
        return sorted(entries, key=lambda entry: (entry.kind.value, entry.source_key))

    async def set_mapping(self, entry: MappingEntry) -> None:
        """Add an entry, or give its source key a new target; `changed_at` is now unless the entry says when."""
        problems = entry_problems(entry)
        if problems:
            raise InvalidMapping(problems)
        async with self.engine.begin() as conn:
            await self._delete(conn, entry.kind, entry.source_key)
            await conn.execute(tables.mappings.insert().values(_row(entry, datetime.now(UTC))))

    async def remove_mapping(self, kind: MappingKind, source_key: str) -> bool:
        """Delete one entry; False when the table had none for that key."""
        async with self.engine.begin() as conn:
            return await self._delete(conn, kind, source_key)

    async def replace_mappings(self, kind: MappingKind, entries: Sequence[MappingEntry]) -> None:
        """Make table `kind` exactly `entries`, all or nothing: any problem raises `InvalidMapping` (naming every
        one) before anything is written."""
        problems = table_problems(kind, entries)
        if problems:
            raise InvalidMapping(problems)
        now = datetime.now(UTC)
        async with self.engine.begin() as conn:
            await conn.execute(tables.mappings.delete().where(tables.mappings.c.kind == kind.value))
            if entries:
                await conn.execute(tables.mappings.insert(), [_row(entry, now) for entry in entries])

    async def mapping_tables(self) -> MappingTables:
        """All four tables in one read, for the sync to look keys up in."""
        return MappingTables.of(await self.list_mappings())

    @staticmethod
    async def _delete(conn: AsyncConnection, kind: MappingKind, source_key: str) -> bool:
        deleted = await conn.execute(
            tables.mappings.delete().where(
                (tables.mappings.c.kind == kind.value) & (tables.mappings.c.source_key == source_key)
            )
        )
        return bool(deleted.rowcount)
