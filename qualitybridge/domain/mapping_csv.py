"""The CSV form of a mapping table, as `qualitybridge mapping import|export` reads and writes it.

One file holds one table (the command's `--kind` says which). The header names two columns, in any order:

    source_key,target_key
    4711-000,P-100-A

`source_key` is the first system's key, `target_key` the second's (`MappingKind.source_name`/`target_name`: ERP
material number → MES part number, and so on). Reading reports every bad row with its line number; a file with any
problem yields no entries at all, so an import is all or nothing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass

from qualitybridge.domain.mapping import MappingEntry, MappingKind, entry_problems

__all__ = ["COLUMNS", "MappingFile", "read_mapping_csv", "write_mapping_csv"]

COLUMNS = ("source_key", "target_key")


@dataclass(frozen=True)
class MappingFile:
    """What a CSV file says: its entries when it is sound, else every problem as "line N: …"."""

    entries: tuple[MappingEntry, ...]
    problems: tuple[str, ...]


def read_mapping_csv(text: str, kind: MappingKind, *, changed_by: str = "") -> MappingFile:
    """Parse a table of `kind`; blank lines are skipped, a byte-order mark (as Excel writes it) is ignored."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    header = next(reader, None)
    if header is None:
        return MappingFile((), (f"line 1: the file is empty: its first line must be {','.join(COLUMNS)}",))
    problems = _header_problems([name.strip() for name in header])
    if problems:
        return MappingFile((), tuple(problems))
    position = {name.strip(): index for index, name in enumerate(header)}
    entries: list[MappingEntry] = []
    first_line: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            problems.append(f"line {line}: {len(row)} values for {len(header)} columns: quote values with commas")
            continue
        entry = MappingEntry(
            kind, row[position["source_key"]], row[position["target_key"]], changed_at=None, changed_by=changed_by
        )
        problems.extend(f"line {line}: {problem}" for problem in entry_problems(entry))
        if entry.source_key in first_line:
            problems.append(
                f"line {line}: {kind.source_name} {entry.source_key!r} is mapped already on line "
                f"{first_line[entry.source_key]}: keep one of the two lines"
            )
        else:
            first_line[entry.source_key] = line
        entries.append(entry)
    if problems:
        return MappingFile((), tuple(problems))
    return MappingFile(tuple(entries), ())


def _header_problems(header: list[str]) -> list[str]:
    if len(header) == 1 and ";" in header[0]:
        return [f"line 1: the columns are separated by ';': save the file with ',' between {' and '.join(COLUMNS)}"]
    problems = [
        f"line 1: unknown column {name!r}: the columns are {' and '.join(COLUMNS)}"
        for name in header
        if name not in COLUMNS
    ]
    problems += [f"line 1: column {name!r} is named twice" for name in COLUMNS if header.count(name) > 1]
    problems += [f"line 1: column {name!r} is missing: add it to the header" for name in COLUMNS if name not in header]
    return problems


def write_mapping_csv(entries: Iterable[MappingEntry]) -> str:
    """The file `read_mapping_csv` reads back to the same entries."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for entry in entries:
        writer.writerow((entry.source_key, entry.target_key))
    return out.getvalue()
