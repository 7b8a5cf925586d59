"""`qualitybridge master-data audit`: the master-data checklist before go-live, over the live ERP and export files.

Gathers the inputs (released orders through the configured ERP adapter, CSV exports of the MES and QMS, the
mapping tables, what QualityBridge's store publishes), runs the pure checks of
`qualitybridge.domain.master_data_audit` and writes the result as a table, Markdown and JSON. Exit 0: no blocking
finding; 1: blocking findings; 2: could not run (the message names the file or the ERP).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from qualitybridge.adapters.factory import erp_client_for
from qualitybridge.cli.common import setup_logging
from qualitybridge.config import ConfigError, ErpSettings, QualityBridgeConfig, SapS4HanaSettings, load_config
from qualitybridge.domain.mapping import MappingEntry, MappingKind, MappingTables
from qualitybridge.domain.master_data_audit import (
    AuditInputs,
    MasterDataPath,
    ShopFloorRouting,
    run_audit,
)
from qualitybridge.domain.master_data_exports import (
    COST_CENTRES_FILE,
    MES_PARTS_FILE,
    MES_ROUTINGS_FILE,
    QMS_CATALOGUE_FILE,
    ExportFileError,
    read_cost_centres,
    read_mappings,
    read_mes_parts,
    read_qms_catalogue,
    read_shop_floor_routings,
)
from qualitybridge.domain.model import ProductionOrder
from qualitybridge.domain.ports import ErpRejected, ErpUnavailable
from qualitybridge.services.master_data_audit_report import (
    audit_json,
    audit_markdown,
    audit_table,
    exit_code,
)
from qualitybridge.store import StoreMisconfigured, StoreUnavailable, open_store, store_location

__all__ = ["EXPORTS_FOLDER", "register"]

_Row = TypeVar("_Row")

# Where `--data-dir DIR` looks for export files not named on the command line (the demo writes its own there).
EXPORTS_FOLDER = "master-data"

_EPILOG = f"""\
examples:
  qualitybridge demo --data-dir /tmp/qb &             the demo writes example exports to /tmp/qb/{EXPORTS_FOLDER}/
  qualitybridge master-data audit --data-dir /tmp/qb --report audit.md --json audit.json
  qualitybridge master-data audit --config qualitybridge.toml --mes-parts parts.csv --qms-catalogue qms.csv
  qualitybridge master-data audit --no-erp --mes-parts parts.csv --mappings candidate-mappings.csv

inputs:
  ERP            released orders with operations and characteristics, through the adapter of --config
                 (REST or SAP S/4HANA) or the REST contract at --erp-url; --no-erp leaves it out
  export files   --mes-parts, --mes-routings, --qms-catalogue, --cost-centres (CSV, formats in
                 docs/master-data.md); not named, they are looked for in <data-dir>/{EXPORTS_FOLDER}/ or --exports DIR
  mappings       the store's mapping tables; --mappings FILE (kind,source_key,target_key) instead of them
  shop floor     --mes-routings, else the orders QualityBridge's store publishes

checks (blocking findings make exit 1, docs/master-data.md says which are blocking):
  1 number ranges per system     2 ERP material <-> MES part      3 routing / plan versions
  4 characteristic definitions   5 cost centres, UNECE units, paths into QualityBridge

exit codes: 0 no blocking finding, 1 blocking findings, 2 could not run (names the file or the ERP)
"""


class AuditCannotRun(Exception):
    """An input the audit was asked to use could not be read; the message names it and what to do."""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    master_data = commands.add_parser(
        "master-data",
        help="check master data across ERP, MES and QMS before go-live (audit)",
        description="Master data across the systems QualityBridge connects.",
    )
    actions = master_data.add_subparsers(dest="action", required=True, metavar="ACTION")
    audit = actions.add_parser(
        "audit",
        help="run the master-data checklist and report the gaps",
        description="Run the master-data checklist an integration project runs before go-live: number ranges, "
        "ERP material <-> MES part, routing and plan versions, characteristic definitions, cost centres and units. "
        "Prints a table with a summary line; --report writes a Markdown report for the quality manager, --json "
        "the same for CI.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = audit.add_mutually_exclusive_group()
    target.add_argument("--config", type=Path, help="the server's TOML file: its ERP adapter, data_dir and store")
    target.add_argument("--data-dir", type=Path, help="a data folder (the demo's): its store and master-data exports")
    erp = audit.add_mutually_exclusive_group()
    erp.add_argument("--erp-url", help="read the ERP over the REST contract at this URL instead of the configured one")
    erp.add_argument("--no-erp", action="store_true", help="do not read the ERP (files only)")
    audit.add_argument(
        "--exports", type=Path, metavar="DIR", help=f"folder of export files (default DIR/{EXPORTS_FOLDER})"
    )
    audit.add_argument("--mes-parts", type=Path, metavar="FILE", help=f"MES part list ({MES_PARTS_FILE})")
    audit.add_argument("--mes-routings", type=Path, metavar="FILE", help=f"MES routing versions ({MES_ROUTINGS_FILE})")
    audit.add_argument(
        "--qms-catalogue", type=Path, metavar="FILE", help=f"QMS characteristic catalogue ({QMS_CATALOGUE_FILE})"
    )
    audit.add_argument(
        "--cost-centres", type=Path, metavar="FILE", help=f"work centre -> cost centre ({COST_CENTRES_FILE})"
    )
    audit.add_argument(
        "--mappings",
        type=Path,
        metavar="FILE",
        help="mapping tables to audit instead of the store's (kind,source_key,target_key)",
    )
    audit.add_argument("--report", type=Path, metavar="FILE", help="write the Markdown report here")
    audit.add_argument(
        "--json", type=Path, metavar="FILE", help="write the JSON result here (schema in docs/master-data.md)"
    )
    audit.set_defaults(run=run)


def _progress(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)  # noqa: T201


def run(arguments: argparse.Namespace) -> int:
    setup_logging("WARNING")
    try:
        gathered = asyncio.run(_gather(arguments))
        result = run_audit(gathered.inputs, progress=_progress)
        generated_at = datetime.now(UTC)
        if arguments.report is not None:
            _write(arguments.report, audit_markdown(result, gathered.described, generated_at))
        if arguments.json is not None:
            document = audit_json(result, gathered.described, generated_at)
            _write(arguments.json, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    except AuditCannotRun as exc:
        print(f"qualitybridge master-data audit: could not run: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    print(audit_table(result))  # noqa: T201
    return exit_code(result)


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise AuditCannotRun(f"cannot write {path}: {exc.strerror}") from None


@dataclass
class _Gathered:
    inputs: AuditInputs = field(default_factory=AuditInputs)
    described: dict[str, str] = field(default_factory=dict)


def _config(arguments: argparse.Namespace) -> QualityBridgeConfig | None:
    """The deployment named on the command line, or None (files and --erp-url only)."""
    try:
        if arguments.config is not None:
            return load_config(arguments.config)
    except ConfigError as exc:
        raise AuditCannotRun(str(exc)) from None
    data_dir = arguments.data_dir
    if data_dir is None:
        return None
    if not data_dir.is_dir():
        raise AuditCannotRun(f"data folder {data_dir} does not exist — pass the demo's or server's with --data-dir")
    return QualityBridgeConfig(data_dir=data_dir.resolve())


def _export_file(
    arguments: argparse.Namespace, option: str, name: str, config: QualityBridgeConfig | None
) -> Path | None:
    given: Path | None = getattr(arguments, option)
    if given is not None:
        return given
    folder: Path | None = arguments.exports
    if folder is None and config is not None:
        folder = config.data_dir / EXPORTS_FOLDER
    if folder is not None and (folder / name).is_file():
        return folder / name
    return None


def _read(path: Path, reader: Callable[..., list[_Row]]) -> list[_Row]:
    _progress(f"reading {path}")
    try:
        with path.open(encoding="utf-8-sig", newline="") as file:
            return reader(file, str(path), _progress)
    except ExportFileError as exc:
        raise AuditCannotRun(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise AuditCannotRun(f"{path}: not UTF-8 text (byte {exc.start}) — save the export as UTF-8 CSV") from None
    except OSError as exc:
        raise AuditCannotRun(f"cannot read {path}: {exc.strerror}") from None


async def _gather(arguments: argparse.Namespace) -> _Gathered:
    config = _config(arguments)
    gathered = _Gathered()
    inputs: dict[str, Any] = {}
    described = gathered.described

    files: dict[str, tuple[str, str, Callable[..., list[Any]]]] = {
        "mes_parts": ("mes_parts", MES_PARTS_FILE, read_mes_parts),
        "shop_floor_routings": ("mes_routings", MES_ROUTINGS_FILE, read_shop_floor_routings),
        "qms_catalogue": ("qms_catalogue", QMS_CATALOGUE_FILE, read_qms_catalogue),
        "cost_centres": ("cost_centres", COST_CENTRES_FILE, read_cost_centres),
    }
    for key, (option, name, reader) in files.items():
        path = _export_file(arguments, option, name, config)
        if path is not None:
            inputs[key] = _read(path, reader)
            described[key] = str(path)
    if "shop_floor_routings" in inputs:
        inputs["shop_floor_source"] = "the MES routing export"

    mapping_entries: list[MappingEntry] | None = None
    # Only when named: a stale mapping file lying in an exports folder must not silently replace the store's tables.
    mappings_file: Path | None = arguments.mappings
    if mappings_file is not None:
        mapping_entries = _read(mappings_file, read_mappings)
        described["mappings"] = str(mappings_file)

    if config is not None and _store_exists(config):
        store_mappings, published = await _read_store(config, need_orders="shop_floor_routings" not in inputs)
        if mapping_entries is None:
            mapping_entries = store_mappings
            described["mappings"] = f"the store ({store_location(config.store_url)})"
        if published is not None:
            inputs["shop_floor_routings"] = published
            inputs["shop_floor_source"] = "QualityBridge's store"
            described["shop_floor_routings"] = f"orders QualityBridge publishes ({store_location(config.store_url)})"
    tables = MappingTables.of(mapping_entries or ())
    inputs["required_mappings"] = _required_mappings(config)
    described.setdefault("mappings", "none given (all four tables empty)")
    inputs["mappings"] = tables

    settings = _erp_settings(arguments, config)
    if settings is not None:
        inputs["erp_orders"] = await _erp_orders(settings)
        described["erp"] = _erp_name(settings)
    inputs["paths"] = _paths(settings, config, tables)
    gathered.inputs = AuditInputs(**inputs)
    return gathered


def _required_mappings(config: QualityBridgeConfig | None) -> tuple[MappingKind, ...]:
    """The tables in force per the configuration (`[master_data] required_mappings`); none without one."""
    if config is None:
        return ()
    return tuple(MappingKind(name) for name in config.master_data.required_mappings)


def _store_exists(config: QualityBridgeConfig) -> bool:
    """A configured database, or the embedded SQLite file: the audit never creates a store."""
    return bool(config.store.url) or (config.data_dir / "qualitybridge.db").is_file()


async def _read_store(
    config: QualityBridgeConfig, *, need_orders: bool
) -> tuple[list[MappingEntry], list[ShopFloorRouting] | None]:
    _progress(f"reading the store ({store_location(config.store_url)})")
    try:
        store = await open_store(config.store_url, sqlite_synchronous=config.store.sqlite_synchronous)
    except (StoreMisconfigured, StoreUnavailable) as exc:
        raise AuditCannotRun(str(exc)) from None
    try:
        mappings = await store.list_mappings()
        published = None
        if need_orders:
            published = [
                ShopFloorRouting(order.order_no, order.routing_version, order.plan_version)
                for order in await store.released_orders()
            ]
        return mappings, published
    finally:
        await store.aclose()


def _erp_settings(
    arguments: argparse.Namespace, config: QualityBridgeConfig | None
) -> ErpSettings | SapS4HanaSettings | None:
    if arguments.no_erp:
        return None
    if arguments.erp_url is not None:
        try:
            return ErpSettings(base_url=arguments.erp_url)
        except ValueError as exc:
            raise AuditCannotRun(f"--erp-url {arguments.erp_url}: must start with http:// or https://") from exc
    return (config or QualityBridgeConfig()).erp


def _erp_name(settings: ErpSettings | SapS4HanaSettings) -> str:
    return f"ERP ({settings.adapter}) at {settings.base_url}"


async def _erp_orders(settings: ErpSettings | SapS4HanaSettings) -> list[ProductionOrder]:
    name = _erp_name(settings)
    _progress(f"reading released orders from the {name}")
    try:
        erp = erp_client_for(settings)
    except ConfigError as exc:
        raise AuditCannotRun(f"the {name}: {exc}") from None
    try:
        changes = await erp.fetch_all()
    except (ErpUnavailable, ErpRejected) as exc:
        raise AuditCannotRun(
            f"the {name} did not answer: {exc} — start it, pass --erp-url, or run on files only with --no-erp"
        ) from None
    finally:
        await erp.aclose()
    _progress(f"{len(changes.orders)} released orders")
    return list(changes.orders)


def _paths(
    settings: ErpSettings | SapS4HanaSettings | None, config: QualityBridgeConfig | None, tables: MappingTables
) -> list[MasterDataPath]:
    configured = settings or (config.erp if config is not None else None)
    if configured is None:
        erp = MasterDataPath("production orders and routings", "none", "no ERP adapter configured")
        orders = [erp, MasterDataPath("inspection characteristics", "none", "no ERP adapter configured")]
    else:
        via = f"ERP adapter {configured.adapter}, every {configured.sync_interval_seconds:g} s"
        orders = [
            MasterDataPath("production orders and routings", "automatic", via),
            MasterDataPath("inspection characteristics", "automatic", via),
        ]
    qms = config.qms if config is not None else None
    gauges_via = f"QMS adapter at {qms.base_url}" if qms is not None else "the ERP adapter"
    paths = [*orders, MasterDataPath("test equipment", "automatic" if configured or qms else "none", gauges_via)]
    for kind in MappingKind:
        entries = len(tables.table(kind))
        paths.append(
            MasterDataPath(
                f"{kind.source_name} -> {kind.target_name}",
                "manual",
                f"mapping table {kind.value} ({entries} {'entry' if entries == 1 else 'entries'}), "
                "`qualitybridge mapping import`",
            )
        )
    return paths
