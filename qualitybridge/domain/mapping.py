"""Mapping tables: how one system's key names the same thing in another (ERP material ↔ MES part, …).

Master data rarely lines up between ERP, QMS and MES. A mapping says so explicitly; a key without one is held back
by the sync and reported as a gap, never guessed. The tables live in the store; this module is the pure part that
the sync, the audit and the CLI share.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

__all__ = ["MappingEntry", "MappingKind", "MappingTables"]


class MappingKind(StrEnum):
    """The tables, named as on the command line (`--kind`). Source side first, target side second."""

    MATERIAL = "material"  # ERP material number -> MES part number
    CHARACTERISTIC = "characteristic"  # ERP characteristic id -> QMS/MES characteristic name
    WORK_CENTRE = "work-centre"  # ERP work centre -> cost centre
    UNIT = "unit"  # ERP unit of measure -> UNECE Rec. 20 common code

    @property
    def source_name(self) -> str:
        return _SIDES[self][0]

    @property
    def target_name(self) -> str:
        return _SIDES[self][1]


_SIDES: dict[MappingKind, tuple[str, str]] = {
    MappingKind.MATERIAL: ("ERP material number", "MES part number"),
    MappingKind.CHARACTERISTIC: ("ERP characteristic id", "QMS characteristic name"),
    MappingKind.WORK_CENTRE: ("ERP work centre", "cost centre"),
    MappingKind.UNIT: ("ERP unit", "UNECE code"),
}


@dataclass(frozen=True)
class MappingEntry:
    kind: MappingKind
    source_key: str
    target_key: str
    changed_at: datetime | None = None
    changed_by: str = ""


@dataclass(frozen=True)
class MappingTables:
    """All four tables, as read from the store in one go. Lookups answer None for a key without a mapping."""

    entries: Mapping[MappingKind, Mapping[str, str]] = field(default_factory=dict)

    @classmethod
    def of(cls, entries: Iterable[MappingEntry]) -> MappingTables:
        tables: dict[MappingKind, dict[str, str]] = {kind: {} for kind in MappingKind}
        for entry in entries:
            tables[entry.kind][entry.source_key] = entry.target_key
        return cls(tables)

    def table(self, kind: MappingKind) -> Mapping[str, str]:
        return self.entries.get(kind, {})

    def lookup(self, kind: MappingKind, source_key: str) -> str | None:
        return self.table(kind).get(source_key)

    def reverse(self, kind: MappingKind) -> dict[str, str]:
        return {target: source for source, target in self.table(kind).items()}

    def is_empty(self, kind: MappingKind) -> bool:
        return not self.table(kind)
