"""The export files the master-data audit reads (and the demo writes): CSV with a header row, one format each.

| file (default name)       | columns                                                                          |
| ------------------------- | -------------------------------------------------------------------------------- |
| `mes-parts.csv`           | part_no, description                                                             |
| `mes-routings.csv`        | order_no, routing_version, plan_version                                          |
| `qms-characteristics.csv` | material_no, operation_no, characteristic_id, name, unit, lower_limit,           |
|                           | upper_limit, decimal_places                                                      |
| `cost-centres.csv`        | work_centre, cost_centre                                                         |
| `mappings.csv`            | kind, source_key, target_key (the `qualitybridge mapping` format)                |

Exports come from spreadsheets as often as from systems: the separator may be `,` or `;` (told from the header),
a UTF-8 byte-order mark is ignored, columns not named here are ignored, and with `;` a decimal comma is read. A
bad row is an `ExportFileError` naming the file, line and column and saying how to fix it; nothing of the file is
used then. Readers take the file's lines, so they stay free of I/O.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from qualitybridge.domain.mapping import MappingEntry, MappingKind
from qualitybridge.domain.master_data_audit import (
    CostCentreAssignment,
    MesPart,
    QmsCharacteristic,
    ShopFloorRouting,
)

__all__ = [
    "COST_CENTRES_FILE",
    "MAPPINGS_FILE",
    "MES_PARTS_FILE",
    "MES_ROUTINGS_FILE",
    "QMS_CATALOGUE_FILE",
    "ExportFileError",
    "cost_centres_csv",
    "mes_parts_csv",
    "qms_catalogue_csv",
    "read_cost_centres",
    "read_mappings",
    "read_mes_parts",
    "read_qms_catalogue",
    "read_shop_floor_routings",
    "shop_floor_routings_csv",
]

MES_PARTS_FILE = "mes-parts.csv"
MES_ROUTINGS_FILE = "mes-routings.csv"
QMS_CATALOGUE_FILE = "qms-characteristics.csv"
COST_CENTRES_FILE = "cost-centres.csv"
MAPPINGS_FILE = "mappings.csv"

# Progress is reported once per this many rows of one file.
PROGRESS_EVERY_ROWS = 50_000

Progress = Callable[[str], None]


class ExportFileError(ValueError):
    """A file the audit cannot use: which file, which line and column, and what to do."""

    def __init__(self, source: str, line: int, column: str, message: str) -> None:
        self.source, self.line, self.column, self.message = source, line, column, message
        where = f"{source}, line {line}" + (f", column {column}" if column else "")
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class _Row:
    source: str
    line: int
    values: dict[str, str]
    positions: dict[str, int]

    def text(self, column: str, *, required: bool = True) -> str:
        value = self.values.get(column, "").strip()
        if required and not value:
            raise self.error(column, f"{column} is empty — every row needs one")
        return value

    def number(self, column: str, decimal_comma: bool) -> float:
        raw = self.text(column)
        text = raw.replace(",", ".") if decimal_comma else raw
        try:
            value = float(text)
        except ValueError:
            raise self.error(column, f"{column} {raw!r} is not a number — write it like 62.03") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise self.error(column, f"{column} {raw!r} is not a finite number")
        return value

    def whole_number(self, column: str) -> int | None:
        raw = self.text(column, required=False)
        if not raw:
            return None
        if not raw.isdigit():
            raise self.error(column, f"{column} {raw!r} is not a whole number ≥ 0 — write it like 3, or leave it empty")
        return int(raw)

    def error(self, column: str, message: str) -> ExportFileError:
        position = self.positions.get(column)
        return ExportFileError(self.source, self.line, f"{position} ({column})" if position else column, message)


def _separator(header: str) -> str:
    return ";" if header.count(";") > header.count(",") else ","


def _rows(
    lines: Iterable[str], source: str, columns: Sequence[str], required: Sequence[str], progress: Progress | None
) -> Iterator[tuple[_Row, bool]]:
    """Each data row with its line number, and whether numbers use a decimal comma (`;`-separated files)."""
    iterator = iter(lines)
    header_line = next(iterator, "")
    header_line = header_line.removeprefix("\ufeff")
    separator = _separator(header_line)
    header = [name.strip().lower() for name in next(csv.reader([header_line], delimiter=separator), [])]
    missing = [name for name in required if name not in header]
    if missing:
        raise ExportFileError(
            source,
            1,
            "",
            f"the header lacks {', '.join(missing)} — the first line must name the columns: {','.join(columns)}",
        )
    positions = {name: header.index(name) + 1 for name in columns if name in header}
    reader = csv.reader(iterator, delimiter=separator)
    count = 0
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue
        line = reader.line_num + 1  # the header was line 1
        if len(cells) > len(header):
            raise ExportFileError(
                source, line, str(len(header) + 1), f"{len(cells)} cells but the header names {len(header)} columns"
            )
        values = {name: cells[position - 1] for name, position in positions.items() if position <= len(cells)}
        yield _Row(source, line, values, positions), separator == ";"
        count += 1
        if progress is not None and count % PROGRESS_EVERY_ROWS == 0:
            progress(f"{source}: {count} rows read")


def read_mes_parts(lines: Iterable[str], source: str, progress: Progress | None = None) -> list[MesPart]:
    parts: dict[str, MesPart] = {}
    for row, _comma in _rows(lines, source, ("part_no", "description"), ("part_no",), progress):
        part_no = row.text("part_no")
        parts.setdefault(part_no, MesPart(part_no, row.text("description", required=False)))
    return list(parts.values())


def read_shop_floor_routings(
    lines: Iterable[str], source: str, progress: Progress | None = None
) -> list[ShopFloorRouting]:
    columns = ("order_no", "routing_version", "plan_version")
    routings: dict[str, tuple[int, ShopFloorRouting]] = {}
    for row, _comma in _rows(lines, source, columns, columns, progress):
        routing = ShopFloorRouting(
            row.text("order_no"),
            row.text("routing_version", required=False),
            row.text("plan_version", required=False),
        )
        earlier = routings.setdefault(routing.order_no, (row.line, routing))
        if earlier[1] != routing:
            raise row.error(
                "order_no",
                f"order {routing.order_no} is listed again with other versions (first on line {earlier[0]}) — "
                "keep one row per order",
            )
    return [routing for _line, routing in routings.values()]


_CATALOGUE_COLUMNS = (
    "material_no",
    "operation_no",
    "characteristic_id",
    "name",
    "unit",
    "lower_limit",
    "upper_limit",
    "decimal_places",
)


def read_qms_catalogue(lines: Iterable[str], source: str, progress: Progress | None = None) -> list[QmsCharacteristic]:
    required = ("characteristic_id", "name", "unit", "lower_limit", "upper_limit")
    entries: dict[tuple[str, str, str], tuple[int, QmsCharacteristic]] = {}
    for row, decimal_comma in _rows(lines, source, _CATALOGUE_COLUMNS, required, progress):
        entry = QmsCharacteristic(
            material_no=row.text("material_no", required=False),
            operation_no=row.text("operation_no", required=False),
            characteristic_id=row.text("characteristic_id"),
            name=row.text("name"),
            unit=row.text("unit"),
            lower_limit=row.number("lower_limit", decimal_comma),
            upper_limit=row.number("upper_limit", decimal_comma),
            decimal_places=row.whole_number("decimal_places"),
        )
        if entry.lower_limit > entry.upper_limit:
            raise row.error("lower_limit", "lower_limit exceeds upper_limit — swap them")
        key = (entry.material_no, entry.operation_no, entry.characteristic_id)
        earlier = entries.setdefault(key, (row.line, entry))
        if earlier[1] != entry:
            raise row.error(
                "characteristic_id",
                f"characteristic {'/'.join(part for part in key if part)} is defined again differently (first on "
                f"line {earlier[0]}) — keep one row per material, operation and characteristic",
            )
    return [entry for _line, entry in entries.values()]


def read_cost_centres(
    lines: Iterable[str], source: str, progress: Progress | None = None
) -> list[CostCentreAssignment]:
    columns = ("work_centre", "cost_centre")
    assignments: dict[str, tuple[int, CostCentreAssignment]] = {}
    for row, _comma in _rows(lines, source, columns, columns, progress):
        # An empty cost centre is what an export shows for a work centre nobody assigned: a finding, not an error.
        assignment = CostCentreAssignment(row.text("work_centre"), row.text("cost_centre", required=False))
        earlier = assignments.setdefault(assignment.work_centre, (row.line, assignment))
        if earlier[1] != assignment:
            raise row.error(
                "cost_centre",
                f"work centre {assignment.work_centre} has cost centre {earlier[1].cost_centre or '(none)'} on line "
                f"{earlier[0]} — a work centre belongs to one cost centre",
            )
    return [assignment for _line, assignment in assignments.values()]


def read_mappings(lines: Iterable[str], source: str, progress: Progress | None = None) -> list[MappingEntry]:
    columns = ("kind", "source_key", "target_key")
    kinds = ", ".join(kind.value for kind in MappingKind)
    entries: list[MappingEntry] = []
    for row, _comma in _rows(lines, source, columns, columns, progress):
        kind_text = row.text("kind")
        try:
            kind = MappingKind(kind_text)
        except ValueError:
            raise row.error("kind", f"kind {kind_text!r} is not one of {kinds}") from None
        entries.append(MappingEntry(kind, row.text("source_key"), row.text("target_key")))
    return entries


# ---------------------------------------------------------------------------------------------------------------
# Writing (the demo's example exports)


def _csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if cell is None else cell for cell in row] for row in rows)
    return buffer.getvalue()


def mes_parts_csv(parts: Iterable[MesPart]) -> str:
    return _csv(("part_no", "description"), ((part.part_no, part.description) for part in parts))


def shop_floor_routings_csv(routings: Iterable[ShopFloorRouting]) -> str:
    return _csv(
        ("order_no", "routing_version", "plan_version"),
        ((routing.order_no, routing.routing_version, routing.plan_version) for routing in routings),
    )


def qms_catalogue_csv(entries: Iterable[QmsCharacteristic]) -> str:
    return _csv(
        _CATALOGUE_COLUMNS,
        (
            (
                entry.material_no,
                entry.operation_no,
                entry.characteristic_id,
                entry.name,
                entry.unit,
                repr(entry.lower_limit),
                repr(entry.upper_limit),
                entry.decimal_places,
            )
            for entry in entries
        ),
    )


def cost_centres_csv(assignments: Iterable[CostCentreAssignment]) -> str:
    return _csv(("work_centre", "cost_centre"), ((a.work_centre, a.cost_centre) for a in assignments))
