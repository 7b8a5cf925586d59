"""The mapping tables (domain/mapping.py) in the store: listed, set one entry at a time, or replaced whole; and
the gaps the sync found in them (keys a table in force lacks), with since when.

Mixed into `Store`. Every write checks its entries first (`InvalidMapping` names every problem) and runs in one
transaction, so an import either lands complete or leaves the table as it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
from qualitybridge.domain.mapping_gaps import MappingGap, MissingMapping
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

    async def mapping_gaps(self) -> list[MappingGap]:
        """The gaps the last sync round recorded, by table and key."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(tables.mapping_gaps))).all()
        gaps = [MappingGap(MappingKind(row.kind), row.source_key, _aware(row.since), tuple(row.orders)) for row in rows]
        return sorted(gaps, key=lambda gap: (gap.kind.value, gap.source_key))

    async def record_mapping_gaps(self, waiting: Mapping[MissingMapping, Sequence[str]]) -> list[MappingGap]:
        """Make the recorded gaps these (each missing key with the orders waiting for it): a gap already recorded
        keeps its `since`, a new one is stamped now, one no longer listed is closed. Answers the gaps as recorded."""
        now = datetime.now(UTC)
        gap_table = tables.mapping_gaps
        async with self.engine.begin() as conn:
            recorded = {
                MissingMapping(MappingKind(row.kind), row.source_key): row
                for row in await conn.execute(select(gap_table))
            }
            for key, row in recorded.items():
                if key not in waiting:
                    await conn.execute(gap_table.delete().where(gap_table.c.id == row.id))
                elif list(row.orders) != list(waiting[key]):
                    await conn.execute(
                        gap_table.update().where(gap_table.c.id == row.id).values(orders=list(waiting[key]))
                    )
            fresh = [
                {"kind": key.kind.value, "source_key": key.source_key, "since": now, "orders": list(orders)}
                for key, orders in waiting.items()
                if key not in recorded
            ]
            if fresh:
                await conn.execute(gap_table.insert(), fresh)
        gaps = [
            MappingGap(
                key.kind,
                key.source_key,
                _aware(recorded[key].since) if key in recorded else now,
                tuple(orders),
            )
            for key, orders in waiting.items()
        ]
        return sorted(gaps, key=lambda gap: (gap.kind.value, gap.source_key))

    @staticmethod
    async def _delete(conn: AsyncConnection, kind: MappingKind, source_key: str) -> bool:
        deleted = await conn.execute(
            tables.mappings.delete().where(
                (tables.mappings.c.kind == kind.value) & (tables.mappings.c.source_key == source_key)
            )
        )
        return bool(deleted.rowcount)
