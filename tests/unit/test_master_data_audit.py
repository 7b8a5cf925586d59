"""The master-data audit's five checks on small hand-made plants: each gap found, with its records, and nothing else."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from qualitybridge.domain.mapping import MappingEntry, MappingKind, MappingTables
from qualitybridge.domain.master_data_audit import (
    AuditInputs,
    AuditResult,
    CostCentreAssignment,
    MasterDataPath,
    MesPart,
    QmsCharacteristic,
    Severity,
    ShopFloorRouting,
    key_shape,
    run_audit,
)
from qualitybridge.services.master_data_audit_report import (
    audit_json,
    audit_markdown,
    audit_table,
    exit_code,
    summary_line,
)
from tests.builders import AuditPlant, audit_order, audit_plant


def _inputs(plant: AuditPlant, **overrides: object) -> AuditInputs:
    fields: dict[str, object] = {
        "erp_orders": plant.orders,
        "mes_parts": plant.parts,
        "shop_floor_routings": plant.routings,
        "qms_catalogue": plant.catalogue,
        "cost_centres": plant.cost_centres,
        "mappings": MappingTables.of(plant.mappings),
    }
    fields.update(overrides)
    return AuditInputs(**fields)  # type: ignore[arg-type]


def _found(result: AuditResult) -> dict[str, list[dict[str, str]]]:
    return {finding.code: [dict(record) for record in finding.records] for finding in result.findings}


def test_a_plant_whose_systems_agree_has_no_finding_and_runs_every_check() -> None:
    result = run_audit(_inputs(audit_plant()))
    assert result.findings == ()
    assert result.skipped == ()
    assert exit_code(result) == 0
    assert summary_line(result) == (
        "master-data audit: 0 blocking findings (0 records); 0 warnings (0 records) — exit 0"
    )


# check 1 ---------------------------------------------------------------------------------------------------------


def test_key_shape_keeps_separators_and_classes() -> None:
    assert key_shape("MAT-100233") == "AAA-999999"
    assert key_shape("GH-4711-02") == "AA-9999-99"
    assert key_shape("000000000000100233") == "9" * 18


def test_a_material_number_a_digit_short_is_outside_the_erps_range() -> None:
    plant = audit_plant()
    plant.add_order(audit_order("5005", "M-10005"))
    plant.mappings.append(MappingEntry(MappingKind.MATERIAL, "M-10005", "M-100005"))
    plant.parts.append(MesPart("M-100005"))

    result = run_audit(_inputs(plant))

    assert _found(result) == {
        "key-outside-number-range": [
            {
                "system": "ERP",
                "key_kind": "material number",
                "key": "M-10005",
                "pattern": "A-99999",
                "expected": "M-999999",
            }
        ]
    }
    assert result.findings[0].severity is Severity.WARNING
    ranges = {(r.system, r.key_kind): (r.pattern, r.keys) for r in result.number_ranges}
    assert ranges[("ERP", "material number")] == ("M-999999", 4)
    assert ranges[("MES", "part number")] == ("M-999999", 5)
    assert ranges[("ERP", "characteristic id")] == ("C9999", 3)


def test_two_ranges_each_used_often_are_both_accepted_and_few_keys_are_not_judged() -> None:
    plant = audit_plant()
    parts = [MesPart(f"M-10000{n}") for n in range(5)] + [MesPart(f"RAW-{n}") for n in range(3)]
    result = run_audit(_inputs(plant, mes_parts=parts, erp_orders=None))
    assert "key-outside-number-range" not in _found(result)
    assert {r.pattern for r in result.number_ranges if r.system == "MES"} == {"M-999999", "RAW-9"}

    two_keys = run_audit(AuditInputs(mes_parts=[MesPart("A-1"), MesPart("B12")]))
    assert two_keys.findings == ()


# check 2 ---------------------------------------------------------------------------------------------------------


def test_materials_without_an_mes_part_say_why_and_suggest_a_similar_part() -> None:
    plant = audit_plant()
    plant.add_order(audit_order("5005", "M-100005"))  # nothing at all
    plant.add_order(audit_order("5006", "M-100006", part_no="M-100096"))  # the ERP names a part the MES lacks
    plant.add_order(audit_order("5007", "M-100007"))
    plant.mappings.append(MappingEntry(MappingKind.MATERIAL, "M-100007", "M-900007"))  # mapped to a missing part
    plant.parts.append(MesPart("M100005"))  # the same number without its dash: only a hint, never a match
    plant.parts.append(MesPart("M-100099"))  # no material reaches it

    found = _found(run_audit(_inputs(plant)))

    assert found["material-without-part"] == [
        {
            "material_no": "M-100005",
            "orders": "5005",
            "reason": "no material mapping, no part number on its orders, no MES part of the same number",
            "similar_part": "M100005",
        },
        {
            "material_no": "M-100006",
            "orders": "5006",
            "reason": "the ERP orders name part M-100096, which the MES part list does not have",
        },
        {
            "material_no": "M-100007",
            "orders": "5007",
            "reason": "mapped to MES part M-900007, which the MES part list does not have",
        },
    ]
    assert found["part-without-material"] == [{"part_no": "M-100099"}, {"part_no": "M100005"}]


def test_a_mapped_material_without_released_orders_still_reaches_its_part() -> None:
    plant = audit_plant()
    plant.mappings.append(MappingEntry(MappingKind.MATERIAL, "M-100077", "M-100077"))
    plant.parts.append(MesPart("M-100077"))
    assert run_audit(_inputs(plant)).findings == ()


# check 3 ---------------------------------------------------------------------------------------------------------


def test_orders_on_another_version_on_the_shop_floor_are_blocking_and_missing_ones_warned() -> None:
    plant = audit_plant()
    routings = {r.order_no: r for r in plant.routings}
    routings["5001"] = ShopFloorRouting("5001", "R00", "P01")
    routings["5002"] = ShopFloorRouting("5002", "R00", "P00")
    routings["5003"] = ShopFloorRouting("5003", "", "")  # the MES does not track versions: nothing to compare
    del routings["5004"]

    result = run_audit(_inputs(plant, shop_floor_routings=list(routings.values()), shop_floor_source="the MES"))

    found = _found(result)
    assert [(r["order_no"], r["differs"], r["shop_floor_routing_version"]) for r in found["version-differs"]] == [
        ("5001", "routing", "R00"),
        ("5002", "routing, plan", "R00"),
    ]
    assert found["order-not-on-shop-floor"] == [{"order_no": "5004", "material_no": "M-100004"}]
    titles = {f.code: f.title for f in result.findings}
    assert titles["version-differs"].endswith("between the ERP and the MES")


# check 4 ---------------------------------------------------------------------------------------------------------


def _catalogue_with(plant: AuditPlant, key: tuple[str, str], **changes: object) -> list[QmsCharacteristic]:
    material, cid = key
    return [
        dataclasses.replace(entry, **changes)  # type: ignore[arg-type]
        if (entry.material_no, entry.characteristic_id) == (material, cid)
        else entry
        for entry in plant.catalogue
    ]


@pytest.mark.parametrize(
    ("changes", "code", "erp", "qms"),
    [
        ({"name": "Bore Ø12"}, "characteristic-name-differs", "Bore diameter", "Bore Ø12"),
        ({"unit": "4H"}, "characteristic-unit-differs", "MMT", "4H"),
        ({"upper_limit": 12.018001}, "characteristic-limits-differ", "12 … 12.018", "12 … 12.018001"),
        ({"lower_limit": 11.99}, "characteristic-limits-differ", "12 … 12.018", "11.99 … 12.018"),
        ({"decimal_places": 4}, "characteristic-decimals-differ", "3", "4"),
    ],
)
def test_each_difference_of_a_characteristic_definition_is_found(
    changes: dict[str, object], code: str, erp: str, qms: str
) -> None:
    plant = audit_plant()
    result = run_audit(_inputs(plant, qms_catalogue=_catalogue_with(plant, ("M-100003", "C0010"), **changes)))
    assert _found(result) == {
        code: [
            {
                "material_no": "M-100003",
                "operation_no": "0010",
                "characteristic_id": "C0010",
                "orders": "5003",
                "erp": erp,
                "qms": qms,
            }
        ]
    }
    expected = Severity.WARNING if code == "characteristic-decimals-differ" else Severity.BLOCKING
    assert result.findings[0].severity is expected


def test_same_limits_and_units_written_otherwise_are_no_difference() -> None:
    plant = audit_plant()
    catalogue = _catalogue_with(plant, ("M-100003", "C0010"), unit="mm", upper_limit=12.018 + 1e-13)
    catalogue = [dataclasses.replace(entry, decimal_places=None) for entry in catalogue]  # not in this catalogue
    assert run_audit(_inputs(plant, qms_catalogue=catalogue)).findings == ()


def test_a_characteristic_mapping_names_the_qms_side_and_a_global_entry_serves_every_plan() -> None:
    plant = audit_plant()
    catalogue = _catalogue_with(plant, ("M-100003", "C0010"), name="Bore Ø12")
    catalogue = [e for e in catalogue if e.characteristic_id != "C0030"]
    catalogue.append(QmsCharacteristic("", "", "C0030", "Part temperature", "CEL", 18.0, 22.0, 1))
    mappings = MappingTables.of(
        [*plant.mappings, MappingEntry(MappingKind.CHARACTERISTIC, "M-100003/0010/C0010", "Bore Ø12")]
    )
    assert run_audit(_inputs(plant, qms_catalogue=catalogue, mappings=mappings)).findings == ()


def test_a_characteristic_the_catalogue_lacks_is_listed_once_with_all_its_orders() -> None:
    plant = audit_plant()
    plant.add_order(audit_order("5011", "M-100001"))
    catalogue = [e for e in plant.catalogue if (e.material_no, e.characteristic_id) != ("M-100001", "C0020")]
    found = _found(run_audit(_inputs(plant, qms_catalogue=catalogue)))
    assert found == {
        "characteristic-not-in-catalogue": [
            {"material_no": "M-100001", "operation_no": "0010", "characteristic_id": "C0020", "orders": "5001 5011"}
        ]
    }


# check 5 ---------------------------------------------------------------------------------------------------------


def test_work_centres_without_cost_centre_and_units_without_unece_code() -> None:
    plant = audit_plant()
    plant.add_order(audit_order("5005", "M-100001", work_centre="WC-03", units={"C0010": "mm", "C0020": "XYZ"}))
    plant.cost_centres.append(CostCentreAssignment("WC-09", ""))  # listed without cost centre: still none

    found = _found(run_audit(_inputs(plant)))

    assert found["work-centre-without-cost-centre"] == [{"work_centre": "WC-03", "orders": "5005"}]
    assert found["unit-without-unece-code"] == [{"unit": "mm", "orders": "5005"}]
    assert found["unit-unknown"] == [{"unit": "XYZ", "orders": "5005"}]


def test_the_work_centre_and_unit_mappings_close_those_gaps() -> None:
    plant = audit_plant()
    plant.add_order(audit_order("5005", "M-100001", work_centre="WC-03", units={"C0010": "mm"}))
    plant.mappings += [
        MappingEntry(MappingKind.WORK_CENTRE, "WC-03", "CC-4713"),
        MappingEntry(MappingKind.UNIT, "mm", "MMT"),
    ]
    assert run_audit(_inputs(plant)).findings == ()
    assert "check 5" not in summary_line(run_audit(_inputs(plant, cost_centres=None)))


def test_keys_a_required_table_lacks_are_listed_once_as_held_back() -> None:
    plant = audit_plant()
    plant.mappings += [MappingEntry(MappingKind.UNIT, code, code) for code in ("MMT", "NU")]
    required = {MappingKind.MATERIAL, MappingKind.UNIT}

    found = _found(run_audit(_inputs(plant, required_mappings=required)))

    # Materials the required table lacks are held back, not judged by equal numbers (and not listed twice).
    assert found == {
        "key-without-required-mapping": [
            {"table": "material", "key": "M-100001", "orders": "5001"},
            {"table": "material", "key": "M-100002", "orders": "5002"},
            {"table": "material", "key": "M-100003", "orders": "5003"},
            {"table": "unit", "key": "CEL", "orders": "5001 5002 5003 5004"},
        ]
    }


def test_checks_without_their_inputs_are_skipped_saying_what_they_need() -> None:
    result = run_audit(AuditInputs(mes_parts=[MesPart("M-1")]))
    assert [(s.check, s.needs) for s in result.skipped] == [
        (2, "the ERP and an MES part list"),
        (3, "the ERP and an MES routing list (or QualityBridge's store)"),
        (4, "the ERP and a QMS characteristic catalogue"),
        (5, "the ERP"),
    ]
    without_cost_centres = run_audit(_inputs(audit_plant(), cost_centres=None, mappings=MappingTables()))
    assert [(s.check, s.part) for s in without_cost_centres.skipped] == [(5, "work centres without cost centre")]


# reports ---------------------------------------------------------------------------------------------------------


def test_the_reports_carry_every_finding_with_its_records_and_what_to_do() -> None:
    plant = audit_plant()
    plant.add_order(audit_order("5005", "M-100005", work_centre="WC-03"))
    result = run_audit(_inputs(plant))
    moment = datetime(2026, 11, 29, 22, 0, tzinfo=UTC)

    document = audit_json(result, {"erp": "ERP (rest) at http://erp"}, moment)
    assert document["schema"] == "qualitybridge.master-data-audit/1"
    assert document["summary"] == {
        "exit_code": 1,
        "blocking_findings": 2,
        "blocking_records": 2,
        "warnings": 0,
        "warning_records": 0,
    }
    assert [(f["check"], f["code"]) for f in document["findings"]] == [
        (2, "material-without-part"),
        (5, "work-centre-without-cost-centre"),
    ]

    markdown = audit_markdown(result, {"erp": "ERP (rest) at http://erp"}, moment)
    assert "### Check 2 — ERP materials without an MES part (1 record)" in markdown
    assert "| M-100005 | 5005 |" in markdown
    assert "**What to do:** Create the part in the MES" in markdown
    assert "| released orders (ERP) | ERP (rest) at http://erp |" in markdown

    table = audit_table(result)
    assert "2      BLOCKING        1  ERP materials without an MES part: M-100005" in table
    assert table.endswith("master-data audit: 2 blocking findings (2 records); 0 warnings (0 records) — exit 1")


def test_the_reports_of_a_partial_run_say_which_checks_did_not_run_and_how_data_gets_in() -> None:
    paths = [MasterDataPath("production orders and routings", "automatic", "ERP adapter rest, every 10 s")]
    result = run_audit(AuditInputs(mes_parts=[MesPart("M-1")], paths=paths))
    moment = datetime(2026, 11, 29, 22, 0, tzinfo=UTC)

    table = audit_table(result).splitlines()
    assert table[1:3] == ["(no findings)", "check 2 not run (common component key): needs the ERP and an MES part list"]
    assert table[-1] == (
        "master-data audit: 0 blocking findings (0 records); 0 warnings (0 records); "
        "checks not run: 2, 3, 4, 5 — exit 0"
    )
    markdown = audit_markdown(result, {"mes_parts": "parts.csv"}, moment)
    assert "| MES part list | parts.csv |" in markdown
    assert "- Check 4 (characteristic definitions): needs the ERP and a QMS characteristic catalogue." in markdown
    assert "| production orders and routings | automatic | ERP adapter rest, every 10 s |" in markdown
    assert audit_json(result, {}, moment)["paths"] == [
        {"kind": "production orders and routings", "path": "automatic", "via": "ERP adapter rest, every 10 s"}
    ]
