"""The export files of the master-data audit: what spreadsheets produce is read, a bad row is named to the cell."""

from __future__ import annotations

import pytest

from qualitybridge.domain import master_data_exports
from qualitybridge.domain.mapping import MappingEntry, MappingKind
from qualitybridge.domain.master_data_audit import CostCentreAssignment, MesPart, QmsCharacteristic, ShopFloorRouting
from qualitybridge.domain.master_data_exports import (
    ExportFileError,
    cost_centres_csv,
    mes_parts_csv,
    qms_catalogue_csv,
    read_cost_centres,
    read_mappings,
    read_mes_parts,
    read_qms_catalogue,
    read_shop_floor_routings,
    shop_floor_routings_csv,
)


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def test_what_the_writers_write_the_readers_read_back() -> None:
    parts = [MesPart("GH-4711-02", 'Gearbox housing, "cast"'), MesPart("DS-2230-01")]
    routings = [ShopFloorRouting("1000417", "R02", "P03"), ShopFloorRouting("1000418", "", "P05")]
    catalogue = [
        QmsCharacteristic("MAT-1", "0010", "C0010", "Bearing seat Ø62 H7", "MMT", 62.0, 62.03, 3),
        QmsCharacteristic("", "", "C0020", "Torque", "NU", 22.5, 27.5, None),
    ]
    cost_centres = [CostCentreAssignment("WC-DMU-01", "4711-1010"), CostCentreAssignment("WC-GRIND-01", "")]
    assert read_mes_parts(_lines(mes_parts_csv(parts)), "p.csv") == parts
    assert read_shop_floor_routings(_lines(shop_floor_routings_csv(routings)), "r.csv") == routings
    assert read_qms_catalogue(_lines(qms_catalogue_csv(catalogue)), "q.csv") == catalogue
    assert read_cost_centres(_lines(cost_centres_csv(cost_centres)), "c.csv") == cost_centres


def test_a_spreadsheet_export_with_semicolons_decimal_commas_extra_columns_and_blank_lines_is_read() -> None:
    text = (
        "\ufeffCharacteristic_ID;Name;Unit;Lower_Limit;Upper_Limit;Inspector\n"
        "C0010;Bore;mm;11,99;12,018;Meier\n"
        "\n"
        ";;;;;\n"
        "C0020;Torque;NU;22,5;27,5;\n"
    )
    assert read_qms_catalogue(_lines(text), "qms.csv") == [
        QmsCharacteristic("", "", "C0010", "Bore", "mm", 11.99, 12.018, None),
        QmsCharacteristic("", "", "C0020", "Torque", "NU", 22.5, 27.5, None),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "part,description\nGH-1,x\n",
            "parts.csv, line 1: the header lacks part_no — the first line must name the columns: part_no,description",
        ),
        (
            "description,part_no\nhousing,GH-1\nshaft,\n",
            "parts.csv, line 3, column 2 (part_no): part_no is empty — every row needs one",
        ),
        ("part_no\nGH-1\nGH-2,extra\n", "parts.csv, line 3, column 2: 2 cells but the header names 1 columns"),
        ("", "parts.csv, line 1: the header lacks part_no — the first line must name the columns: part_no,description"),
    ],
)
def test_a_bad_part_list_is_named_by_file_line_and_column(text: str, message: str) -> None:
    with pytest.raises(ExportFileError) as refused:
        read_mes_parts(_lines(text), "parts.csv")
    assert str(refused.value) == message


_HEADER = "material_no,operation_no,characteristic_id,name,unit,lower_limit,upper_limit,decimal_places\n"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            "M,0010,C1,Bore,MMT,12.O,12.1,3",
            "column 6 (lower_limit): lower_limit '12.O' is not a number — write it like 62.03",
        ),
        ("M,0010,C1,Bore,MMT,12.2,12.1,3", "column 6 (lower_limit): lower_limit exceeds upper_limit — swap them"),
        ("M,0010,C1,Bore,MMT,12,inf,3", "column 7 (upper_limit): upper_limit 'inf' is not a finite number"),
        (
            "M,0010,C1,Bore,MMT,12,12.1,-1",
            "column 8 (decimal_places): decimal_places '-1' is not a whole number ≥ 0 "
            "— write it like 3, or leave it empty",
        ),
        ("M,0010,C1,,MMT,12,12.1,3", "column 4 (name): name is empty — every row needs one"),
        (
            "M,0010,C1,Bore,MMT,12,12.2,3",
            "column 3 (characteristic_id): characteristic M/0010/C1 is defined again "
            "differently (first on line 2) — keep one row per material, operation and characteristic",
        ),
    ],
)
def test_a_bad_catalogue_row_is_named_by_line_and_column(row: str, message: str) -> None:
    text = _HEADER + "M,0010,C1,Bore,MMT,12,12.1,3\n" + row + "\n"
    with pytest.raises(ExportFileError) as refused:
        read_qms_catalogue(_lines(text), "qms.csv")
    assert str(refused.value) == f"qms.csv, line 3, {message}"


def test_conflicting_routings_and_cost_centres_are_refused_repeated_equal_rows_are_not() -> None:
    routings = "order_no,routing_version,plan_version\n1000417,R02,P03\n1000417,R02,P03\n1000417,R01,P03\n"
    with pytest.raises(ExportFileError, match=r"r.csv, line 4, column 1 \(order_no\): order 1000417 is listed again"):
        read_shop_floor_routings(_lines(routings), "r.csv")
    centres = "work_centre,cost_centre\nWC-1,CC-1\nWC-1,CC-2\n"
    with pytest.raises(ExportFileError, match=r"line 3, column 2 \(cost_centre\): work centre WC-1 has cost centre "):
        read_cost_centres(_lines(centres), "c.csv")


def test_mappings_name_their_kind_as_the_mapping_command_does() -> None:
    text = "kind,source_key,target_key\nmaterial,MAT-1,GH-1\nwork-centre,WC-1,CC-1\n"
    assert read_mappings(_lines(text), "m.csv") == [
        MappingEntry(MappingKind.MATERIAL, "MAT-1", "GH-1"),
        MappingEntry(MappingKind.WORK_CENTRE, "WC-1", "CC-1"),
    ]
    with pytest.raises(ExportFileError) as refused:
        read_mappings(_lines("kind,source_key,target_key\nparts,MAT-1,GH-1\n"), "m.csv")
    assert str(refused.value) == (
        "m.csv, line 2, column 1 (kind): kind 'parts' is not one of material, characteristic, work-centre, unit"
    )


def test_progress_is_reported_on_large_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(master_data_exports, "PROGRESS_EVERY_ROWS", 1_000)
    heard: list[str] = []
    lines = ["part_no\n", *(f"P-{n:06d}\n" for n in range(2_500))]
    assert len(read_mes_parts(lines, "big.csv", heard.append)) == 2_500
    assert heard == ["big.csv: 1000 rows read", "big.csv: 2000 rows read"]
