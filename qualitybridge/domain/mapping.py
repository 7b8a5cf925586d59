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

from qualitybridge.domain.errors import QualityBridgeError
from qualitybridge.domain.units import UNECE_UNITS

__all__ = [
    "CHANGED_BY_LENGTH",
    "KEY_LENGTH",
    "InvalidMapping",
    "MappingEntry",
    "MappingKind",
    "MappingTables",
    "entry_problems",
    "table_problems",
]

# The store's column widths: a longer key is refused with this number in the message, never cut.
KEY_LENGTH = 128
CHANGED_BY_LENGTH = 64


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


class InvalidMapping(QualityBridgeError, ValueError):
    """Mapping entries that cannot be stored; `problems` lists every one in words (nothing was written)."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


def entry_problems(entry: MappingEntry) -> list[str]:
    """What is wrong with one entry on its own, each as a sentence that names the key and the fix."""
    problems: list[str] = []
    kind = entry.kind
    for side, key in ((kind.source_name, entry.source_key), (kind.target_name, entry.target_key)):
        if not key.strip():
            problems.append(f"the {side} is empty: give the key")
        elif key != key.strip():
            problems.append(f"the {side} {key!r} has leading or trailing spaces: remove them")
        elif any(ord(char) < 32 or ord(char) == 127 for char in key):
            problems.append(f"the {side} {key!r} contains a line break or control character: remove it")
        elif len(key) > KEY_LENGTH:
            problems.append(f"the {side} {key[:20]!r}… is {len(key)} characters long: at most {KEY_LENGTH} fit")
    if kind is MappingKind.UNIT and entry.target_key.strip() and entry.target_key not in UNECE_UNITS:
        problems.append(
            f"{entry.target_key!r} (for ERP unit {entry.source_key!r}) is not a UNECE code QualityBridge knows: "
            f"use one of {', '.join(sorted(UNECE_UNITS))}"
        )
    if len(entry.changed_by) > CHANGED_BY_LENGTH:
        problems.append(f"the user name {entry.changed_by[:20]!r}… is longer than {CHANGED_BY_LENGTH} characters")
    return problems


def table_problems(kind: MappingKind, entries: Iterable[MappingEntry]) -> list[str]:
    """What is wrong with a whole table about to replace `kind`: every entry's problems, entries of another kind,
    and a source key given twice (each named with the entry's position, counting from 1)."""
    problems: list[str] = []
    first_seen: dict[str, int] = {}
    for position, entry in enumerate(entries, start=1):
        if entry.kind is not kind:
            problems.append(f"entry {position} belongs to the {entry.kind} table, not to {kind}")
        problems.extend(f"entry {position}: {problem}" for problem in entry_problems(entry))
        if entry.source_key in first_seen:
            problems.append(
                f"entry {position}: {kind.source_name} {entry.source_key!r} is mapped already by entry "
                f"{first_seen[entry.source_key]}: keep one of them"
            )
        else:
            first_seen[entry.source_key] = position
    return problems
