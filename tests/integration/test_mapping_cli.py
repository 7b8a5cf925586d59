"""`qualitybridge mapping list|import|export|set|remove` through the CLI's parser, on a real SQLite store file:
an import is all or nothing and names every bad line; every change is audited."""

from __future__ import annotations

import asyncio
from pathlib import Path

from qualitybridge.domain.audit import AuditEntry
from qualitybridge.domain.mapping import MappingEntry, MappingKind
from qualitybridge.domain.mapping_gaps import MissingMapping
from qualitybridge.store import open_store
from qualitybridge.store.audit_log import AuditLogStore
from tests.harness import invoke_cli


def run(*args: str) -> tuple[int, str, str]:
    completed = invoke_cli(*args)
    return completed.returncode, completed.stdout, completed.stderr


def _stored(data_dir: Path) -> tuple[list[MappingEntry], list[AuditEntry]]:
    async def read() -> tuple[list[MappingEntry], list[AuditEntry]]:
        store = await open_store(f"sqlite+aiosqlite:///{(data_dir / 'qualitybridge.db').resolve()}")
        try:
            return await store.list_mappings(), await AuditLogStore(store.engine).entries(limit=100)
        finally:
            await store.aclose()

    return asyncio.run(read())


def _pairs(entries: list[MappingEntry], kind: MappingKind) -> list[tuple[str, str]]:
    return [(entry.source_key, entry.target_key) for entry in entries if entry.kind is kind]


def test_a_bad_file_names_every_bad_line_and_writes_nothing(tmp_path: Path) -> None:
    target = ("--data-dir", str(tmp_path))
    good = tmp_path / "good.csv"
    good.write_text("source_key,target_key\n4711-000,P-100\n4712-000,P-200\n", encoding="utf-8")
    assert run("mapping", "import", str(good), "--kind", "material", *target)[0] == 0

    bad = tmp_path / "bad.csv"
    bad.write_text(
        "source_key,target_key\n"
        "4711-000,P-101\n"  # line 2: fine on its own (would change a target)
        ",P-300\n"  # line 3: empty key
        "4713-000,P-400\n"  # line 4: fine
        "\n"  # line 5: blank, skipped
        "4713-000,P-401\n"  # line 6: the key of line 4 again
        "4714-000,P-500,extra\n"  # line 7: a value too many
        "4715-000,\n",  # line 8: empty target
        encoding="utf-8",
    )
    code, out, err = run("mapping", "import", str(bad), "--kind", "material", *target)
    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        f"qualitybridge mapping import: {bad}: 4 problem(s), nothing imported:",
        "  line 3: the ERP material number is empty: give the key",
        "  line 6: ERP material number '4713-000' is mapped already on line 4: keep one of the two lines",
        "  line 7: 3 values for 2 columns: quote values with commas",
        "  line 8: the MES part number is empty: give the key",
    ]
    stored, audit = _stored(tmp_path)
    assert _pairs(stored, MappingKind.MATERIAL) == [("4711-000", "P-100"), ("4712-000", "P-200")]
    assert [(entry.action, entry.status_name, entry.node) for entry in audit][-1] == (
        "mapping import",
        "BadInvalidArgument",
        "material",
    )


def test_header_and_unit_codes_are_checked(tmp_path: Path) -> None:
    target = ("--data-dir", str(tmp_path))
    columns = tmp_path / "columns.csv"
    columns.write_text("source_key,target,comment\nmm,MMT,x\n", encoding="utf-8")
    code, _, err = run("mapping", "import", str(columns), "--kind", "unit", *target)
    assert code == 1
    assert "  line 1: unknown column 'target': the columns are source_key and target_key" in err
    assert "  line 1: unknown column 'comment': the columns are source_key and target_key" in err
    assert "  line 1: column 'target_key' is missing: add it to the header" in err

    excel = tmp_path / "excel.csv"
    excel.write_text("source_key;target_key\nmm;MMT\n", encoding="utf-8")
    code, _, err = run("mapping", "import", str(excel), "--kind", "unit", *target)
    assert code == 1
    assert "line 1: the columns are separated by ';': save the file with ',' between source_key and target_key" in err

    units = tmp_path / "units.csv"
    # Excel's byte-order mark, the columns in the other order, CRLF line ends: all fine.
    units.write_text("\ufefftarget_key,source_key\r\nMMT,mm\r\nmillimetre,Millimeter\r\n", encoding="utf-8")
    code, _, err = run("mapping", "import", str(units), "--kind", "unit", *target)
    assert code == 1
    assert err.splitlines()[1:] == [
        "  line 3: 'millimetre' (for ERP unit 'Millimeter') is not a UNECE code QualityBridge knows: use one of "
        "4H, AMP, BAR, C62, CEL, CMT, DD, GRM, HTZ, KGM, MMT, MTR, NEW, NU, P1, SEC, VLT"
    ]
    units.write_text("\ufefftarget_key,source_key\r\nMMT,mm\r\nMMT,Millimeter\r\n", encoding="utf-8")
    assert run("mapping", "import", str(units), "--kind", "unit", *target)[0] == 0
    assert _pairs(_stored(tmp_path)[0], MappingKind.UNIT) == [("Millimeter", "MMT"), ("mm", "MMT")]

    code, _, err = run("mapping", "import", str(tmp_path / "missing.csv"), "--kind", "unit", *target)
    assert code == 2
    assert "cannot read" in err
    assert "missing.csv" in err
    assert "nothing imported" in err


def test_set_remove_merge_export_round_trip(tmp_path: Path) -> None:
    target = ("--data-dir", str(tmp_path))
    assert run("mapping", "set", "--kind", "work-centre", "WC-DRILL-02", "CC-4711", *target)[0] == 0
    assert run("mapping", "set", "--kind", "material", "4711-000", "P-100", *target)[0] == 0
    code, _, err = run("mapping", "set", "--kind", "unit", "mm", "millimetre", *target)
    assert code == 2
    assert "'millimetre' (for ERP unit 'mm') is not a UNECE code" in err

    more = tmp_path / "more.csv"
    more.write_text('source_key,target_key\n4711-000,P-100\n"4712,000",P-200\n', encoding="utf-8")
    code, out, _ = run("mapping", "import", str(more), "--kind", "material", "--merge", "--dry-run", *target)
    assert (code, out.strip()) == (
        0,
        "material table: 2 entries (1 new, 0 changed, 0 removed, 1 unchanged); --dry-run: nothing written",
    )
    assert len(_stored(tmp_path)[0]) == 2
    assert run("mapping", "import", str(more), "--kind", "material", "--merge", *target)[0] == 0

    exported = tmp_path / "exported.csv"
    assert run("mapping", "export", "--kind", "material", "--output", str(exported), *target)[0] == 0
    assert exported.read_text(encoding="utf-8") == 'source_key,target_key\n4711-000,P-100\n"4712,000",P-200\n'
    code, out, _ = run("mapping", "export", "--kind", "material", *target)
    assert out == exported.read_text(encoding="utf-8")

    assert run("mapping", "remove", "--kind", "material", "4711-000", *target)[0] == 0
    code, _, err = run("mapping", "remove", "--kind", "material", "4711-000", *target)
    assert (code, err.strip()) == (2, "qualitybridge mapping remove: the material table has no entry for '4711-000'")
    assert run("mapping", "import", str(exported), "--kind", "material", *target)[0] == 0

    code, out, _ = run("mapping", "list", *target)
    listed = [line.split()[:3] for line in out.splitlines()[1:]]
    assert listed == [
        ["material", "4711-000", "P-100"],
        ["material", "4712,000", "P-200"],
        ["work-centre", "WC-DRILL-02", "CC-4711"],
    ]
    stored, audit = _stored(tmp_path)
    assert {entry.changed_by for entry in stored} == {audit[0].user_name}
    assert [(entry.action, entry.status_name) for entry in audit] == [
        ("mapping set", "Good"),
        ("mapping set", "Good"),
        ("mapping set", "BadInvalidArgument"),
        ("mapping import", "Good"),
        ("mapping remove", "Good"),
        ("mapping remove", "BadNotFound"),
        ("mapping import", "Good"),
    ]


def test_the_command_explains_itself() -> None:
    completed = invoke_cli("mapping", "import", "--help")
    assert completed.returncode == 0
    assert "source_key,target_key" in completed.stdout
    assert "--kind {material,characteristic,work-centre,unit}" in completed.stdout


def test_gaps_lists_what_the_server_recorded(tmp_path: Path) -> None:
    config = tmp_path / "qb.toml"
    config.write_text('data_dir = "data"\n[master_data]\nrequired_mappings = ["material"]\n', encoding="utf-8")
    target = ("--config", str(config))
    assert run("mapping", "gaps", *target)[1] == "(no gaps; tables in force: material)\n"

    async def record() -> None:
        store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'qualitybridge.db'}")
        try:
            await store.record_mapping_gaps({MissingMapping(MappingKind.MATERIAL, "MAT-1"): ["1000", "1001"]})
        finally:
            await store.aclose()

    asyncio.run(record())
    code, out, _ = run("mapping", "gaps", *target)
    assert code == 0
    assert out.startswith("material, MAT-1, since ")
    assert out.endswith(": holds back orders 1000, 1001\n")
