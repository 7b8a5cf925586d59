"""Applying the mapping tables in force to an order, and the gaps an order is held back by.

A table in force maps every key of its kind, or the order waits: it is held back (not shown, not reportable) until
the mapping is added, never guessed. What each table fills in:

| table            | key looked up                                | what the mapping gives                        |
| ---------------- | -------------------------------------------- | --------------------------------------------- |
| `material`       | the order's ERP material number              | the order's MES part number (`part_no`)       |
| `characteristic` | each characteristic's ERP characteristic id  | the characteristic's name (the QMS name)      |
| `unit`           | each characteristic's ERP unit               | the characteristic's UNECE unit code          |
| `work-centre`    | the order's and each operation's work centre | a cost centre must exist (not shown yet)      |

An order's superseded plan versions pass the characteristic and unit tables as well.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from qualitybridge.domain.mapping import MappingKind, MappingTables
from qualitybridge.domain.model import InspectionCharacteristic, Operation, ProductionOrder, SupersededPlanVersion

__all__ = ["MappedOrder", "MappingGap", "MissingMapping", "apply_mappings", "waiting_for"]

_LookUp = Callable[[MappingKind, str], "str | None"]


@dataclass(frozen=True, order=True)
class MissingMapping:
    """A key that a table in force does not map."""

    kind: MappingKind
    source_key: str

    def __str__(self) -> str:
        return f"{self.kind.value} {self.source_key or '(empty)'}"


@dataclass(frozen=True)
class MappingGap:
    """One missing mapping, since when it holds records back, and which orders wait for it."""

    kind: MappingKind
    source_key: str
    since: datetime
    orders: tuple[str, ...]

    @property
    def line(self) -> str:
        """The readable line Diagnostics/MasterDataGaps shows: "table, key, since …: holds back order …"."""
        held = ", ".join(self.orders)
        since = f"{self.since.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
        return (
            f"{self.kind.value}, {self.source_key or '(empty)'}, since {since}: "
            f"holds back order{'s' if len(self.orders) > 1 else ''} {held}"
        )


@dataclass(frozen=True)
class MappedOrder:
    """An order with the tables in force applied (`order`) and its plan history likewise (`history`), or None and
    every key it lacks (`missing`)."""

    order: ProductionOrder | None
    missing: tuple[MissingMapping, ...] = ()
    history: tuple[SupersededPlanVersion, ...] = ()


def apply_mappings(
    order: ProductionOrder,
    tables: MappingTables,
    in_force: Collection[MappingKind],
    history: Sequence[SupersededPlanVersion] = (),
) -> MappedOrder:
    """The order as the shop floor sees it through the tables in force; held back when any key lacks a mapping.

    Its superseded plan versions (`history`) pass the characteristic and unit tables too: a late measurement judged
    against one of them must carry the same UNECE unit as one judged today, so a key they lack holds the order back
    as well."""
    missing: dict[MissingMapping, None] = {}  # a dict keeps the order the keys were met in, each once

    def look_up(kind: MappingKind, key: str) -> str | None:
        target = tables.lookup(kind, key)
        if target is None:
            missing[MissingMapping(kind, key)] = None
        return target

    part_no = order.part_no
    if MappingKind.MATERIAL in in_force:
        part_no = look_up(MappingKind.MATERIAL, order.material_no) or part_no
    if MappingKind.WORK_CENTRE in in_force:
        centres = [order.work_centre, *(op.work_centre for op in order.operations if op.work_centre)]
        for centre in dict.fromkeys(centres):
            look_up(MappingKind.WORK_CENTRE, centre)
    operations = tuple(_mapped_operation(operation, look_up, in_force) for operation in order.operations)
    mapped_history = tuple(_mapped_version(version, look_up, in_force) for version in history)
    if missing:
        return MappedOrder(None, tuple(missing))
    if part_no == order.part_no and operations == order.operations:
        return MappedOrder(order, history=mapped_history)
    return MappedOrder(order.model_copy(update={"part_no": part_no, "operations": operations}), history=mapped_history)


def _mapped_version(
    version: SupersededPlanVersion, look_up: _LookUp, in_force: Collection[MappingKind]
) -> SupersededPlanVersion:
    characteristic = _mapped_characteristic(version.characteristic, look_up, in_force)
    if characteristic == version.characteristic:
        return version
    return version.model_copy(update={"characteristic": characteristic})


def _mapped_operation(operation: Operation, look_up: _LookUp, in_force: Collection[MappingKind]) -> Operation:
    characteristics = tuple(_mapped_characteristic(c, look_up, in_force) for c in operation.characteristics)
    if characteristics == operation.characteristics:
        return operation
    return operation.model_copy(update={"characteristics": characteristics})


def _mapped_characteristic(
    characteristic: InspectionCharacteristic, look_up: _LookUp, in_force: Collection[MappingKind]
) -> InspectionCharacteristic:
    changes: dict[str, str] = {}
    if MappingKind.CHARACTERISTIC in in_force:
        name = look_up(MappingKind.CHARACTERISTIC, characteristic.characteristic_id)
        if name is not None and name != characteristic.name:
            changes["name"] = name
    if MappingKind.UNIT in in_force:
        unit = look_up(MappingKind.UNIT, characteristic.unit)
        if unit is not None and unit != characteristic.unit:
            changes["unit"] = unit
    return characteristic.model_copy(update=changes) if changes else characteristic


def waiting_for(held_back: Mapping[str, Sequence[MissingMapping]]) -> dict[MissingMapping, tuple[str, ...]]:
    """Turn "order -> the keys it lacks" around: each missing key with the orders waiting for it, both sorted."""
    waiting: dict[MissingMapping, list[str]] = {}
    for order_no, missing in sorted(held_back.items()):
        for key in missing:
            waiting.setdefault(key, []).append(order_no)
    return {key: tuple(orders) for key, orders in sorted(waiting.items())}
