"""The master-data audit: the checklist an integration project runs before go-live, as pure rules.

Integration projects fail on master data, not on protocols. The audit compares what the ERP publishes (released
orders with their operations and inspection characteristics) with what the other systems export (MES part list,
MES routing list, QMS characteristic catalogue, cost-centre list), through the mapping tables:

| check | what                       | blocking (exit 1)                                | warning                      |
| ----- | -------------------------- | ------------------------------------------------ | --------------------------- |
| 1     | number ranges per system   | —                                                | a key outside its range      |
| 2     | common component key       | an ERP material without an MES part              | an MES part no material has  |
| 3     | routing / plan versions    | an order whose versions differ on the shop floor | an order the shop floor lacks|
| 4     | characteristic definitions | name, unit or limits differ; not in catalogue    | decimal places differ        |
| 5     | propagation                | work centre without cost centre; a unit that is  | a code-shaped unit unknown to|
|       |                            | no UNECE code                                    | QualityBridge                |

Blocking is what makes data wrong on the shop floor or held back by the sync (a part the MES cannot find, a
tolerance judged differently by ERP and QMS, a confirmation no cost centre takes); a warning is worth a look but
harms nothing by itself. Each check runs when its inputs are there; `AuditResult.skipped` says which did not and
what input it needs. Every check is one pass over its inputs with dictionary look-ups: linear in the rows.
"""

from __future__ import annotations

import math
import re
import string
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from qualitybridge.domain.mapping import MappingKind, MappingTables
from qualitybridge.domain.model import ProductionOrder
from qualitybridge.domain.units import UNECE_UNITS

__all__ = [
    "CHECK_TITLES",
    "AuditInputs",
    "AuditResult",
    "CostCentreAssignment",
    "Finding",
    "KeyRange",
    "MasterDataPath",
    "MesPart",
    "QmsCharacteristic",
    "Severity",
    "ShopFloorRouting",
    "SkippedCheck",
    "key_shape",
    "run_audit",
]

CHECK_TITLES = {
    1: "Number ranges per system",
    2: "Common component key (ERP material ↔ MES part)",
    3: "Routing and plan versions",
    4: "Characteristic definitions (ERP plan ↔ QMS catalogue)",
    5: "Propagation (cost centres, units, paths into QualityBridge)",
}

Progress = Callable[[str], None]


class Severity(StrEnum):
    BLOCKING = "blocking"
    WARNING = "warning"


@dataclass(frozen=True)
class MesPart:
    part_no: str
    description: str = ""


@dataclass(frozen=True)
class ShopFloorRouting:
    """The routing and inspection-plan version the shop floor works an order with (empty: not tracked there)."""

    order_no: str
    routing_version: str
    plan_version: str


@dataclass(frozen=True)
class QmsCharacteristic:
    """One characteristic of the QMS catalogue. Empty `material_no`/`operation_no` make it apply to every plan with
    this characteristic id (a global catalogue); `decimal_places` None: the catalogue does not say."""

    material_no: str
    operation_no: str
    characteristic_id: str
    name: str
    unit: str
    lower_limit: float
    upper_limit: float
    decimal_places: int | None = None


@dataclass(frozen=True)
class CostCentreAssignment:
    work_centre: str
    cost_centre: str


@dataclass(frozen=True)
class MasterDataPath:
    """How one kind of master data gets into QualityBridge: `automatic` (an adapter), `manual` (a person), `none`."""

    kind: str
    path: str
    via: str


@dataclass(frozen=True)
class AuditInputs:
    """What the audit compares; None means the input was not given (its checks are skipped, saying so)."""

    erp_orders: Sequence[ProductionOrder] | None = None
    mes_parts: Sequence[MesPart] | None = None
    shop_floor_routings: Sequence[ShopFloorRouting] | None = None
    shop_floor_source: str = "the shop floor"
    qms_catalogue: Sequence[QmsCharacteristic] | None = None
    cost_centres: Sequence[CostCentreAssignment] | None = None
    mappings: MappingTables = field(default_factory=MappingTables)
    # The tables in force ([master_data] required_mappings): the sync holds back a record whose key they lack.
    required_mappings: Collection[MappingKind] = ()
    paths: Sequence[MasterDataPath] = ()


@dataclass(frozen=True)
class Finding:
    """One kind of gap with every record it concerns. `code` is stable (for CI); `records` are sorted."""

    check: int
    code: str
    severity: Severity
    title: str
    what_to_do: str
    records: tuple[Mapping[str, str], ...]


@dataclass(frozen=True)
class KeyRange:
    """A number range one system uses for one kind of key: its pattern (A letter, 9 digit, others as they are, a
    common leading prefix kept), how many keys follow it, and one example."""

    system: str
    key_kind: str
    pattern: str
    keys: int
    example: str


@dataclass(frozen=True)
class SkippedCheck:
    check: int
    part: str
    needs: str


@dataclass(frozen=True)
class AuditResult:
    findings: tuple[Finding, ...]
    number_ranges: tuple[KeyRange, ...]
    paths: tuple[MasterDataPath, ...]
    skipped: tuple[SkippedCheck, ...]
    counts: Mapping[str, int]

    @property
    def blocking(self) -> tuple[Finding, ...]:
        return tuple(finding for finding in self.findings if finding.severity is Severity.BLOCKING)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(finding for finding in self.findings if finding.severity is Severity.WARNING)


def run_audit(inputs: AuditInputs, progress: Progress | None = None) -> AuditResult:
    """All five checks over `inputs`; `progress` hears one line per step."""
    audit = _Audit(inputs, progress or (lambda _line: None))
    audit.check_number_ranges()
    audit.check_component_key()
    audit.check_versions()
    audit.check_characteristics()
    audit.check_propagation()
    findings = sorted(audit.findings, key=lambda f: (f.check, f.severity is not Severity.BLOCKING, f.code))
    return AuditResult(
        findings=tuple(findings),
        number_ranges=tuple(audit.ranges),
        paths=tuple(inputs.paths),
        skipped=tuple(audit.skipped),
        counts=audit.counts,
    )


# ---------------------------------------------------------------------------------------------------------------
# Check 1: number ranges

_LETTER, _DIGIT = "A", "9"


# str.translate does ASCII keys (nearly all) in C; others take the per-character path.
_ASCII_SHAPES = str.maketrans(dict.fromkeys(string.ascii_letters, _LETTER) | dict.fromkeys(string.digits, _DIGIT))


def key_shape(key: str) -> str:
    """A key's shape: each letter A, each digit 9, anything else as it is ("MAT-100233" -> "AAA-999999")."""
    if key.isascii():
        return key.translate(_ASCII_SHAPES)
    return "".join(_LETTER if char.isalpha() else _DIGIT if char.isdigit() else char for char in key)


def _leading_prefix(keys: Iterable[str]) -> str:
    """The literal prefix every key shares, up to its first digit (a range's fixed letters, not its numbers)."""
    prefix: str | None = None
    for key in keys:
        if prefix is None:
            prefix = next((key[:position] for position, char in enumerate(key) if char.isdigit()), key)
        elif not key.startswith(prefix):
            length = next(
                (n for n, (mine, theirs) in enumerate(zip(prefix, key, strict=False)) if mine != theirs), None
            )
            prefix = prefix[: min(len(prefix), len(key)) if length is None else length]
        if not prefix:
            return ""
    return prefix or ""


# A shape used by at least this share of a system's keys (and by two keys or more) is one of its number ranges.
_RANGE_SHARE = 0.1
# Fewer keys than this show no range worth judging a key against.
_MIN_KEYS_FOR_RANGES = 3


# ---------------------------------------------------------------------------------------------------------------


def _orders_text(order_nos: Iterable[str]) -> str:
    return " ".join(sorted(set(order_nos)))


def _number(value: float) -> str:
    return f"{value:.12g}"


def _limits_equal(first: float, second: float) -> bool:
    return math.isclose(first, second, rel_tol=1e-9, abs_tol=1e-12)


_CODE_SHAPED = re.compile(r"[A-Z0-9]{2,3}")
_NOT_ALPHANUMERIC = re.compile(r"[\W_]+")
_UNECE_BY_SYMBOL = {symbol: code for code, (symbol, _name) in UNECE_UNITS.items() if symbol}


class _Audit:
    def __init__(self, inputs: AuditInputs, progress: Progress) -> None:
        self.inputs = inputs
        self.progress = progress
        self.findings: list[Finding] = []
        self.ranges: list[KeyRange] = []
        self.skipped: list[SkippedCheck] = []
        self.counts: dict[str, int] = {}
        orders = inputs.erp_orders
        if orders is not None:
            self.counts["erp_orders"] = len(orders)
            self.counts["erp_characteristics"] = sum(
                len(operation.characteristics) for order in orders for operation in order.operations
            )
        for name, rows in (
            ("mes_parts", inputs.mes_parts),
            ("shop_floor_routings", inputs.shop_floor_routings),
            ("qms_characteristics", inputs.qms_catalogue),
            ("cost_centres", inputs.cost_centres),
        ):
            if rows is not None:
                self.counts[name] = len(rows)
        self.counts["mappings"] = sum(len(inputs.mappings.table(kind)) for kind in MappingKind)

    def _find(
        self, check: int, code: str, severity: Severity, title: str, what_to_do: str, records: list[dict[str, str]]
    ) -> None:
        if records:
            records.sort(key=lambda record: tuple(record.values()))
            self.findings.append(Finding(check, code, severity, title, what_to_do, tuple(records)))

    def _skip(self, check: int, part: str, needs: str) -> None:
        self.skipped.append(SkippedCheck(check, part, needs))

    # check 1 -----------------------------------------------------------------------------------------------------

    def check_number_ranges(self) -> None:
        self.progress("check 1: number ranges")
        key_sets: list[tuple[str, str, set[str]]] = []
        orders = self.inputs.erp_orders
        if orders is not None:
            key_sets.append(("ERP", "material number", {order.material_no for order in orders}))
            key_sets.append(
                (
                    "ERP",
                    "characteristic id",
                    {c.characteristic_id for o in orders for op in o.operations for c in op.characteristics},
                )
            )
        if self.inputs.mes_parts is not None:
            key_sets.append(("MES", "part number", {part.part_no for part in self.inputs.mes_parts}))
        if self.inputs.qms_catalogue is not None:
            key_sets.append(
                ("QMS", "characteristic id", {entry.characteristic_id for entry in self.inputs.qms_catalogue})
            )
        if not key_sets:
            self._skip(1, "number ranges", "the ERP or an export file")
            return
        records: list[dict[str, str]] = []
        for system, key_kind, keys in key_sets:
            records.extend(self._ranges_of(system, key_kind, keys))
        self._find(
            1,
            "key-outside-number-range",
            Severity.WARNING,
            "Keys outside their system's number range",
            "Check each key against the system's numbering: a typo or a key from another system (a missing "
            "prefix, a digit too many) must be corrected at the source before go-live; a real new range is fine.",
            records,
        )

    def _ranges_of(self, system: str, key_kind: str, keys: set[str]) -> list[dict[str, str]]:
        by_shape: dict[str, list[str]] = defaultdict(list)
        for key in keys:
            by_shape[key_shape(key)].append(key)
        ranked = sorted(by_shape.items(), key=lambda item: (-len(item[1]), item[0]))
        threshold = max(2, math.ceil(_RANGE_SHARE * len(keys)))
        ranges = [ranked[0]] + [(shape, members) for shape, members in ranked[1:] if len(members) >= threshold]
        patterns: list[str] = []
        for shape, members in ranges:
            prefix = _leading_prefix(members)
            pattern = prefix + shape[len(prefix) :]
            patterns.append(pattern)
            self.ranges.append(KeyRange(system, key_kind, pattern, len(members), min(members)))
        if len(keys) < _MIN_KEYS_FOR_RANGES:
            return []
        in_range = {shape for shape, _members in ranges}
        expected = " or ".join(patterns)
        return [
            {"system": system, "key_kind": key_kind, "key": key, "pattern": key_shape(key), "expected": expected}
            for shape, members in ranked
            if shape not in in_range
            for key in members
        ]

    # check 2 -----------------------------------------------------------------------------------------------------

    def check_component_key(self) -> None:
        orders, parts = self.inputs.erp_orders, self.inputs.mes_parts
        if orders is None or parts is None:
            self._skip(2, "common component key", "the ERP and an MES part list")
            return
        self.progress(f"check 2: {len(parts)} MES parts")
        part_numbers = {part.part_no for part in parts}
        material_map = self.inputs.mappings.table(MappingKind.MATERIAL)
        orders_of: dict[str, list[str]] = defaultdict(list)
        named_parts: dict[str, set[str]] = defaultdict(set)
        for order in orders:
            orders_of[order.material_no].append(order.order_no)
            if order.part_no:
                named_parts[order.material_no].add(order.part_no)
        reached = {part for part in material_map.values() if part in part_numbers}
        missing: list[dict[str, str]] = []
        similar: dict[str, str] | None = None  # built on the first gap: a clean plant never pays for it
        held_back = MappingKind.MATERIAL in self.inputs.required_mappings
        for material, order_nos in orders_of.items():
            if held_back and material not in material_map:
                # The sync holds its orders back: check 5 lists it with the other missing mappings. Its part (by
                # number) is not reported as unreached too: one gap, one record.
                part, _why_not = self._part_of(material, {}, named_parts[material], part_numbers)
                if part is not None:
                    reached.add(part)
                continue
            part, why_not = self._part_of(material, material_map, named_parts[material], part_numbers)
            if part is not None:
                reached.add(part)
                continue
            record = {"material_no": material, "orders": _orders_text(order_nos), "reason": why_not}
            similar = similar if similar is not None else _similar_index(part_numbers)
            hint = similar.get(_normalised(material))
            if hint is not None and material not in material_map:
                record["similar_part"] = hint
            missing.append(record)
        self._find(
            2,
            "material-without-part",
            Severity.BLOCKING,
            "ERP materials without an MES part",
            "Create the part in the MES, or add the material mapping: `qualitybridge mapping set --kind material "
            "<material> <part>` (or import them all with `qualitybridge mapping import`). Until then the sync holds "
            "the material's orders back.",
            missing,
        )
        unreached = [{"part_no": part} for part in part_numbers - reached]
        self._find(
            2,
            "part-without-material",
            Severity.WARNING,
            "MES parts no ERP material reaches",
            "If the part is made from an ERP material, add the material mapping for it; if it is obsolete in the "
            "MES, retire it there. (ERP materials are those of released orders and those in the material mapping.)",
            unreached,
        )

    @staticmethod
    def _part_of(
        material: str, material_map: Mapping[str, str], named: set[str], part_numbers: set[str]
    ) -> tuple[str | None, str]:
        mapped = material_map.get(material)
        if mapped is not None:
            if mapped in part_numbers:
                return mapped, ""
            return None, f"mapped to MES part {mapped}, which the MES part list does not have"
        for part in named:
            if part in part_numbers:
                return part, ""
        if material in part_numbers:
            return material, ""
        if named:
            return None, f"the ERP orders name part {', '.join(sorted(named))}, which the MES part list does not have"
        return None, "no material mapping, no part number on its orders, no MES part of the same number"

    # check 3 -----------------------------------------------------------------------------------------------------

    def check_versions(self) -> None:
        orders, routings = self.inputs.erp_orders, self.inputs.shop_floor_routings
        if orders is None or routings is None:
            self._skip(3, "routing and plan versions", "the ERP and an MES routing list (or QualityBridge's store)")
            return
        self.progress(f"check 3: {len(orders)} orders against {len(routings)} shop-floor routings")
        shop_floor = {routing.order_no: routing for routing in routings}
        source = self.inputs.shop_floor_source
        differing: list[dict[str, str]] = []
        absent: list[dict[str, str]] = []
        for order in orders:
            routing = shop_floor.get(order.order_no)
            if routing is None:
                absent.append({"order_no": order.order_no, "material_no": order.material_no})
                continue
            which = [
                name
                for name, erp, theirs in (
                    ("routing", order.routing_version, routing.routing_version),
                    ("plan", order.plan_version, routing.plan_version),
                )
                if theirs and erp != theirs
            ]
            if which:
                differing.append(
                    {
                        "order_no": order.order_no,
                        "material_no": order.material_no,
                        "differs": ", ".join(which),
                        "erp_routing_version": order.routing_version,
                        "shop_floor_routing_version": routing.routing_version,
                        "erp_plan_version": order.plan_version,
                        "shop_floor_plan_version": routing.plan_version,
                    }
                )
        self._find(
            3,
            "version-differs",
            Severity.BLOCKING,
            f"Orders whose routing or plan version differs between the ERP and {source}",
            "Bring the shop floor to the ERP's version (transfer the new routing or inspection plan to the MES, or "
            "resync QualityBridge with `qualitybridge resync`) before the order runs; parts made on the old version "
            "are inspected against the wrong tolerances.",
            differing,
        )
        self._find(
            3,
            "order-not-on-shop-floor",
            Severity.WARNING,
            f"Released ERP orders {source} does not have",
            "Transfer the order to the shop floor, or find why it stays behind (a held-back order is listed under "
            "Diagnostics/MasterDataGaps in QualityBridge).",
            absent,
        )

    # check 4 -----------------------------------------------------------------------------------------------------

    def check_characteristics(self) -> None:
        orders, catalogue = self.inputs.erp_orders, self.inputs.qms_catalogue
        if orders is None or catalogue is None:
            self._skip(4, "characteristic definitions", "the ERP and a QMS characteristic catalogue")
            return
        self.progress(f"check 4: ERP characteristics against {len(catalogue)} QMS catalogue entries")
        index = {(e.material_no, e.operation_no, e.characteristic_id): e for e in catalogue}
        # The same plan characteristic comes with every order of its material: judge each definition once.
        planned: dict[tuple[str, str, str, str, str, float, float, int], list[str]] = defaultdict(list)
        for order in orders:
            for operation in order.operations:
                for c in operation.characteristics:
                    key = (
                        order.material_no,
                        operation.operation_no,
                        c.characteristic_id,
                        c.name,
                        c.unit,
                        c.lower_limit,
                        c.upper_limit,
                        c.decimal_places,
                    )
                    planned[key].append(order.order_no)
        found: dict[str, list[dict[str, str]]] = defaultdict(list)
        names = self.inputs.mappings.table(MappingKind.CHARACTERISTIC)
        for (material, operation_no, cid, name, unit, lower, upper, decimals), order_nos in planned.items():
            where = {
                "material_no": material,
                "operation_no": operation_no,
                "characteristic_id": cid,
                "orders": _orders_text(order_nos),
            }
            entry = (
                index.get((material, operation_no, cid)) or index.get((material, "", cid)) or index.get(("", "", cid))
            )
            if entry is None:
                found["missing"].append(where)
                continue
            expected_name = names.get(f"{material}/{operation_no}/{cid}") or names.get(cid) or name
            if entry.name.strip() != expected_name.strip():
                found["name"].append({**where, "erp": expected_name, "qms": entry.name})
            if self._unece(entry.unit) != self._unece(unit):
                found["unit"].append({**where, "erp": unit, "qms": entry.unit})
            if not (_limits_equal(entry.lower_limit, lower) and _limits_equal(entry.upper_limit, upper)):
                found["limits"].append(
                    {
                        **where,
                        "erp": f"{_number(lower)} … {_number(upper)}",
                        "qms": f"{_number(entry.lower_limit)} … {_number(entry.upper_limit)}",
                    }
                )
            if entry.decimal_places is not None and entry.decimal_places != decimals:
                found["decimals"].append({**where, "erp": str(decimals), "qms": str(entry.decimal_places)})
        fix_at_source = "Decide which system is right and correct the other before go-live"
        self._find(
            4,
            "characteristic-not-in-catalogue",
            Severity.BLOCKING,
            "ERP plan characteristics the QMS catalogue does not have",
            "Create the characteristic in the QMS catalogue (or correct its key there), so that the QMS can take "
            "the results QualityBridge relays.",
            found["missing"],
        )
        self._find(
            4,
            "characteristic-name-differs",
            Severity.BLOCKING,
            "Characteristics named differently by the ERP plan and the QMS catalogue",
            f"{fix_at_source}; if both names stay, add the characteristic mapping: `qualitybridge mapping set "
            "--kind characteristic <ERP characteristic id> <QMS name>`.",
            found["name"],
        )
        self._find(
            4,
            "characteristic-unit-differs",
            Severity.BLOCKING,
            "Characteristics whose unit differs between the ERP plan and the QMS catalogue",
            f"{fix_at_source}: a value in the wrong unit is judged against the wrong tolerance.",
            found["unit"],
        )
        self._find(
            4,
            "characteristic-limits-differ",
            Severity.BLOCKING,
            "Characteristics whose tolerance limits differ between the ERP plan and the QMS catalogue",
            f"{fix_at_source}: ERP and QMS would judge the same part differently. Check the drawing's revision.",
            found["limits"],
        )
        self._find(
            4,
            "characteristic-decimals-differ",
            Severity.WARNING,
            "Characteristics whose decimal places differ between the ERP plan and the QMS catalogue",
            "Align the decimal places (the gauge's resolution): otherwise values are shown and rounded differently.",
            found["decimals"],
        )

    def _unece(self, unit: str) -> str:
        """A unit as its UNECE code when it can be told: a known code, a unit mapping, or a known symbol (mm)."""
        stripped = unit.strip()
        if stripped in UNECE_UNITS:
            return stripped
        mapped = self.inputs.mappings.lookup(MappingKind.UNIT, stripped)
        if mapped is not None:
            return mapped
        return _UNECE_BY_SYMBOL.get(stripped, stripped)

    # check 5 -----------------------------------------------------------------------------------------------------

    def check_propagation(self) -> None:
        orders = self.inputs.erp_orders
        if orders is None:
            self._skip(5, "work centres and units", "the ERP")
            return
        self.progress(f"check 5: work centres and units of {len(orders)} orders")
        self._check_required_mappings(orders)
        self._check_cost_centres(orders)
        self._check_units(orders)

    def _check_required_mappings(self, orders: Sequence[ProductionOrder]) -> None:
        required = [kind for kind in MappingKind if kind in self.inputs.required_mappings]
        if not required:
            return
        waiting: dict[tuple[MappingKind, str], list[str]] = defaultdict(list)
        for order in orders:
            keys = {
                MappingKind.MATERIAL: [order.material_no],
                MappingKind.WORK_CENTRE: [order.work_centre, *(op.work_centre for op in order.operations)],
                MappingKind.CHARACTERISTIC: [
                    c.characteristic_id for op in order.operations for c in op.characteristics
                ],
                MappingKind.UNIT: [c.unit for op in order.operations for c in op.characteristics],
            }
            for kind in required:
                table = self.inputs.mappings.table(kind)
                for key in set(keys[kind]):
                    if key and key not in table:
                        waiting[(kind, key)].append(order.order_no)
        self._find(
            5,
            "key-without-required-mapping",
            Severity.BLOCKING,
            "Keys a required mapping table lacks: the sync holds their orders back",
            "Add the mapping (`qualitybridge mapping set --kind <table> <key> <target>`, or `qualitybridge mapping "
            "import`); the orders appear at the next sync round, without a restart.",
            [
                {"table": kind.value, "key": key, "orders": _orders_text(order_nos)}
                for (kind, key), order_nos in waiting.items()
            ],
        )

    def _check_cost_centres(self, orders: Sequence[ProductionOrder]) -> None:
        mapped = self.inputs.mappings.table(MappingKind.WORK_CENTRE)
        listed = self.inputs.cost_centres
        if listed is None and not mapped:
            self._skip(5, "work centres without cost centre", "a cost-centre list or the work-centre mapping")
            return
        with_cost_centre = {row.work_centre for row in listed or () if row.cost_centre} | {
            work_centre for work_centre, cost_centre in mapped.items() if cost_centre
        }
        used: dict[str, list[str]] = defaultdict(list)
        for order in orders:
            for work_centre in {order.work_centre, *(operation.work_centre for operation in order.operations)}:
                if work_centre:
                    used[work_centre].append(order.order_no)
        self._find(
            5,
            "work-centre-without-cost-centre",
            Severity.BLOCKING,
            "Work centres without a cost centre",
            "Assign the cost centre in the ERP's controlling (and the cost-centre export), or add the work-centre "
            "mapping: `qualitybridge mapping set --kind work-centre <work centre> <cost centre>`. Confirmations "
            "and scrap booked there reach no cost centre.",
            [
                {"work_centre": work_centre, "orders": _orders_text(order_nos)}
                for work_centre, order_nos in used.items()
                if work_centre not in with_cost_centre
            ],
        )

    def _check_units(self, orders: Sequence[ProductionOrder]) -> None:
        used: dict[str, list[str]] = defaultdict(list)
        for order in orders:
            used[order.quantity_unit].append(order.order_no)
            for operation in order.operations:
                for characteristic in operation.characteristics:
                    used[characteristic.unit].append(order.order_no)
        unknown: list[dict[str, str]] = []
        not_codes: list[dict[str, str]] = []
        for unit, order_nos in used.items():
            code = self.inputs.mappings.lookup(MappingKind.UNIT, unit) or unit
            if code in UNECE_UNITS:
                continue
            record = {"unit": unit, "orders": _orders_text(order_nos)}
            (unknown if _CODE_SHAPED.fullmatch(code) else not_codes).append(record)
        self._find(
            5,
            "unit-without-unece-code",
            Severity.BLOCKING,
            "Units that are no UNECE Rec. 20 code",
            "Send the UNECE common code from the ERP (MMT for mm, C62 for pieces, …), or add the unit mapping: "
            "`qualitybridge mapping set --kind unit <ERP unit> <UNECE code>`. OPC UA clients identify units by "
            "that code (EngineeringUnits).",
            not_codes,
        )
        self._find(
            5,
            "unit-unknown",
            Severity.WARNING,
            "Unit codes QualityBridge does not know",
            "If the code is a valid UNECE Rec. 20 code, nothing is wrong, but HMIs show the code instead of a "
            "symbol; otherwise map it: `qualitybridge mapping set --kind unit <ERP unit> <UNECE code>`.",
            unknown,
        )


def _normalised(key: str) -> str:
    """A key without case, separators and leading zeros: only to suggest a likely partner, never to match."""
    compact = _NOT_ALPHANUMERIC.sub("", key.upper())
    return compact.lstrip("0") or compact


def _similar_index(part_numbers: Iterable[str]) -> dict[str, str]:
    index: dict[str, str] = {}
    for part in sorted(part_numbers):
        index.setdefault(_normalised(part), part)
    return index
