"""`qualitybridge master-data audit` as a project runs it: the real command against the simulator over HTTP, with
export files on disk. One gap is planted per checklist item; the JSON lists exactly those, and exit codes say
clean (0), blocking (1) or could not run (2, naming the file or the ERP)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from qualitybridge.adapters.rest_contract import order_to_dto
from qualitybridge.domain.mapping import MappingEntry, MappingKind
from qualitybridge.domain.master_data_audit import MesPart, ShopFloorRouting
from qualitybridge.domain.master_data_exports import (
    COST_CENTRES_FILE,
    MAPPINGS_FILE,
    MES_PARTS_FILE,
    MES_ROUTINGS_FILE,
    QMS_CATALOGUE_FILE,
    cost_centres_csv,
    mes_parts_csv,
    qms_catalogue_csv,
    shop_floor_routings_csv,
)
from qualitybridge.domain.model import ErpSnapshot, ProductionOrder
from qualitybridge.simulator import SimulatorState, serve
from qualitybridge.store import open_store
from tests.builders import AuditPlant, audit_order, audit_plant
from tests.harness import POSTGRES_SKIP_REASON, POSTGRES_URL, free_port, invoke_cli


@dataclass
class Erp:
    url: str
    http: httpx.AsyncClient

    async def release(self, order: ProductionOrder) -> None:
        answer = await self.http.post("/sim/orders", json=order_to_dto(order).model_dump(mode="json"))
        answer.raise_for_status()


@pytest.fixture
async def erp() -> AsyncIterator[Erp]:
    """The simulator publishing the audit plant's orders (nothing else), on a loopback port."""
    port = free_port()
    started = asyncio.Event()
    state = SimulatorState(orders=audit_plant().orders, equipment=[])
    server = asyncio.create_task(serve("127.0.0.1", port, state=state, started=started))
    await asyncio.wait_for(started.wait(), timeout=10)
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        yield Erp(url, http)
    server.cancel()
    await asyncio.gather(server, return_exceptions=True)


@dataclass(frozen=True)
class Audit:
    code: int
    stdout: str
    stderr: str
    document: dict[str, Any] | None

    def found(self) -> set[tuple[int, str, str, str]]:
        """(check, severity, code, the record's key) of every record in the JSON."""
        assert self.document is not None
        return {
            (finding["check"], finding["severity"], finding["code"], _key(record))
            for finding in self.document["findings"]
            for record in finding["records"]
        }


def _key(record: dict[str, str]) -> str:
    if "characteristic_id" in record:
        return f"{record['material_no']}/{record['operation_no']}/{record['characteristic_id']}"
    return record.get("key") or next(iter(record.values()))


async def _audit(tmp_path: Path, *args: str) -> Audit:
    """The real command (in-process, in a thread of its own) while this test's loop keeps serving the simulator."""
    report = tmp_path / "audit.json"
    report.unlink(missing_ok=True)
    command = ["master-data", "audit", *args, "--json", str(report), "--report", str(tmp_path / "audit.md")]
    completed = await asyncio.wait_for(asyncio.to_thread(invoke_cli, *command), timeout=120)
    document = json.loads(report.read_text(encoding="utf-8")) if report.exists() else None
    return Audit(completed.returncode, completed.stdout, completed.stderr, document)


def _write_exports(folder: Path, plant: AuditPlant, *, leave_out: tuple[str, ...] = ()) -> list[str]:
    """The plant's export files in `folder`, as command-line options (but those in `leave_out`)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "--mes-parts": (MES_PARTS_FILE, mes_parts_csv(plant.parts)),
        "--mes-routings": (MES_ROUTINGS_FILE, shop_floor_routings_csv(plant.routings)),
        "--qms-catalogue": (QMS_CATALOGUE_FILE, qms_catalogue_csv(plant.catalogue)),
        "--cost-centres": (COST_CENTRES_FILE, cost_centres_csv(plant.cost_centres)),
        "--mappings": (
            MAPPINGS_FILE,
            "kind,source_key,target_key\n"
            + "".join(f"{m.kind.value},{m.source_key},{m.target_key}\n" for m in plant.mappings),
        ),
    }
    options: list[str] = []
    for option, (name, text) in files.items():
        if option not in leave_out:
            (folder / name).write_text(text, encoding="utf-8")
            options += [option, str(folder / name)]
    return options


async def test_a_clean_plant_passes_and_one_planted_gap_per_checklist_item_is_found_exactly(
    erp: Erp, tmp_path: Path
) -> None:
    clean = await _audit(tmp_path, "--erp-url", erp.url, *_write_exports(tmp_path / "clean", audit_plant()))
    assert clean.code == 0, clean.stdout + clean.stderr
    assert clean.document is not None
    assert clean.document["findings"] == []
    assert clean.document["skipped"] == []
    assert clean.document["counts"]["erp_orders"] == 4
    assert clean.stdout.rstrip().endswith(
        "master-data audit: 0 blocking findings (0 records); 0 warnings (0 records) — exit 0"
    )

    plant = audit_plant()
    # 1 number ranges: a material number a digit short (mapped to its part, so that is its only gap)
    number_short = audit_order("5005", "M-10005")
    plant.add_order(number_short)
    plant.mappings.append(MappingEntry(MappingKind.MATERIAL, "M-10005", "M-100005"))
    plant.parts.append(MesPart("M-100005"))
    # 2 common key: a material the MES has no part for, and an MES part no material reaches
    no_part = audit_order("5006", "M-100006")
    plant.add_order(no_part)
    plant.parts.append(MesPart("M-100099"))
    # 3 versions: the MES still runs order 5003 on the previous routing
    plant.routings = [r if r.order_no != "5003" else ShopFloorRouting("5003", "R00", "P01") for r in plant.routings]
    # 4 characteristic definitions: the QMS names a characteristic differently
    plant.catalogue = [
        e if (e.material_no, e.characteristic_id) != ("M-100002", "C0020") else dataclasses.replace(e, name="Torque M8")
        for e in plant.catalogue
    ]
    # 5 propagation: work centre WC-02 lost its cost centre; an order measures in "mm", not a UNECE code
    plant.cost_centres = [c for c in plant.cost_centres if c.work_centre != "WC-02"]
    in_millimetres = audit_order("5007", "M-100001", units={"C0010": "mm"})
    plant.orders.append(in_millimetres)  # the catalogue has its material's characteristics (in MMT) already
    plant.routings.append(ShopFloorRouting("5007", "R01", "P01"))
    for order in (number_short, no_part, in_millimetres):
        await erp.release(order)

    gaps = await _audit(tmp_path, "--erp-url", erp.url, *_write_exports(tmp_path / "gaps", plant))

    assert gaps.code == 1, gaps.stdout + gaps.stderr
    assert gaps.found() == {
        (1, "warning", "key-outside-number-range", "M-10005"),
        (2, "blocking", "material-without-part", "M-100006"),
        (2, "warning", "part-without-material", "M-100099"),
        (3, "blocking", "version-differs", "5003"),
        (4, "blocking", "characteristic-name-differs", "M-100002/0010/C0020"),
        (5, "blocking", "work-centre-without-cost-centre", "WC-02"),
        (5, "blocking", "unit-without-unece-code", "mm"),
    }
    assert gaps.stdout.rstrip().endswith(
        "master-data audit: 5 blocking findings (5 records); 2 warnings (2 records) — exit 1"
    )
    report = (tmp_path / "audit.md").read_text(encoding="utf-8")
    assert "| M-100002 | 0010 | C0020 | 5002 | Tightening torque | Torque M8 |" in report
    assert "check 4: ERP characteristics against" in gaps.stderr  # progress, per step


async def test_the_store_gives_the_mappings_and_what_qualitybridge_publishes_and_the_config_the_tables_in_force(
    erp: Erp, tmp_path: Path
) -> None:
    plant = audit_plant()
    data_dir = tmp_path / "data"
    store = await open_store(f"sqlite+aiosqlite:///{(data_dir / 'qualitybridge.db').resolve()}")
    try:
        await store.set_mapping(MappingEntry(MappingKind.MATERIAL, "M-100004", "M-900004"))
        published = [o if o.order_no != "5002" else o.model_copy(update={"plan_version": "P00"}) for o in plant.orders]
        await store.apply_snapshot(ErpSnapshot(orders=tuple(published), equipment=()))
    finally:
        await store.aclose()
    exports = _write_exports(tmp_path / "exports", plant, leave_out=("--mes-routings", "--mappings"))

    audit = await _audit(tmp_path, "--data-dir", str(data_dir), "--erp-url", erp.url, *exports)

    assert audit.code == 1, audit.stdout + audit.stderr
    assert audit.found() == {(3, "blocking", "version-differs", "5002")}
    assert audit.document is not None
    assert audit.document["inputs"]["mappings"].startswith("the store (SQLite file ")
    assert audit.document["inputs"]["shop_floor_routings"].startswith("orders QualityBridge publishes")

    # The server's configuration: its ERP adapter, its store, and the material table in force.
    config = tmp_path / "qualitybridge.toml"
    config.write_text(
        f'data_dir = "{data_dir}"\n[erp]\nbase_url = "{erp.url}"\n[master_data]\nrequired_mappings = ["material"]\n',
        encoding="utf-8",
    )
    in_force = await _audit(tmp_path, "--config", str(config), *exports)
    assert in_force.found() == {
        (3, "blocking", "version-differs", "5002"),
        (5, "blocking", "key-without-required-mapping", "M-100001"),
        (5, "blocking", "key-without-required-mapping", "M-100002"),
        (5, "blocking", "key-without-required-mapping", "M-100003"),
    }
    assert in_force.document is not None
    assert in_force.document["inputs"]["erp"] == f"ERP (rest) at {erp.url}"
    paths = {path["kind"]: (path["path"], path["via"]) for path in in_force.document["paths"]}
    assert paths["production orders and routings"] == ("automatic", "ERP adapter rest, every 10 s")
    assert paths["ERP material number -> MES part number"] == (
        "manual",
        "mapping table material (1 entry), `qualitybridge mapping import`",
    )


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for the server's [store], dropped afterwards."""
    if not POSTGRES_URL:
        pytest.skip(POSTGRES_SKIP_REASON)
    name = f"qb_audit_{uuid.uuid4().hex[:10]}"
    admin = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(admin)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
        yield f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.close()


@pytest.mark.postgres
async def test_a_postgresql_store_gives_the_mappings_and_what_qualitybridge_publishes(
    erp: Erp, postgres_url: str, tmp_path: Path
) -> None:
    plant = audit_plant()
    store = await open_store(postgres_url)
    try:
        await store.set_mapping(MappingEntry(MappingKind.MATERIAL, "M-100004", "M-900004"))
        published = [
            o if o.order_no != "5001" else o.model_copy(update={"routing_version": "R00"}) for o in plant.orders
        ]
        await store.apply_snapshot(ErpSnapshot(orders=tuple(published), equipment=()))
    finally:
        await store.aclose()
    config = tmp_path / "qualitybridge.toml"
    config.write_text(
        f'data_dir = "{tmp_path}"\n[store]\nurl = "{postgres_url}"\n[erp]\nbase_url = "{erp.url}"\n', encoding="utf-8"
    )
    exports = _write_exports(tmp_path / "exports", plant, leave_out=("--mes-routings", "--mappings"))

    audit = await _audit(tmp_path, "--config", str(config), *exports)

    assert audit.code == 1, audit.stdout + audit.stderr
    assert audit.found() == {(3, "blocking", "version-differs", "5001")}
    assert audit.document is not None
    assert audit.document["inputs"]["mappings"].startswith("the store (PostgreSQL at ")


def _audits(*runs: list[str]) -> list[tuple[int, str]]:
    """(exit code, stderr) of several audits through the CLI's entry point (in-process, invoke_cli)."""
    answers = [invoke_cli("master-data", "audit", *run) for run in runs]
    return [(answer.returncode, answer.stderr) for answer in answers]


def test_an_unreadable_file_and_an_erp_that_is_down_stop_the_audit_with_exit_2_naming_them(tmp_path: Path) -> None:
    catalogue = tmp_path / "qms.csv"
    catalogue.write_text(
        "characteristic_id,name,unit,lower_limit,upper_limit\nC0010,Bore,MMT,12,12.018\nC0020,Torque,NU,22;5,27.5\n",
        encoding="utf-8",
    )
    missing = tmp_path / "nowhere.csv"
    down = f"http://127.0.0.1:{free_port()}"
    report = tmp_path / "audit.json"

    bad_mappings = tmp_path / "mappings.csv"
    bad_mappings.write_text("kind,source_key,target_key\nparts,M-1,P-1\n", encoding="utf-8")
    exports = tmp_path / "exports"
    _write_exports(exports, audit_plant(), leave_out=("--mappings",))  # under the names --exports looks for

    bad_file, no_file, no_erp, bad_kind, no_folder, files_only = _audits(
        ["--no-erp", "--qms-catalogue", str(catalogue), "--json", str(report)],
        ["--no-erp", "--mes-parts", str(missing)],
        ["--erp-url", down],
        ["--no-erp", "--mappings", str(bad_mappings)],
        ["--data-dir", str(tmp_path / "no-such-folder")],
        ["--no-erp", "--exports", str(exports)],
    )

    assert bad_file[0] == 2
    assert (
        f"could not run: {catalogue}, line 3, column 4 (lower_limit): lower_limit '22;5' is not a number" in bad_file[1]
    )
    assert not report.exists(), "a run that could not run writes no result"
    assert no_file[0] == 2
    assert f"could not run: cannot read {missing}: No such file or directory" in no_file[1]
    assert no_erp[0] == 2
    assert f"could not run: the ERP (rest) at {down} did not answer" in no_erp[1]
    assert "--no-erp" in no_erp[1]
    assert bad_kind[0] == 2
    assert f"{bad_mappings}, line 2, column 1 (kind): kind 'parts' is not one of material" in bad_kind[1]
    assert no_folder[0] == 2
    assert "no-such-folder does not exist" in no_folder[1]
    # Files only, found by their default names: without the ERP, checks 2 to 5 say what they need.
    assert files_only[0] == 0, files_only[1]
    assert f"reading {exports / 'mes-parts.csv'}" in files_only[1]
    assert f"reading {exports / 'cost-centres.csv'}" in files_only[1]
