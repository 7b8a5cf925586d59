"""`qualitybridge demo`: the simulator and the server together on the embedded default, ready to connect to.

The demo creates its users (with random passwords written to <data-dir>/demo-users.txt) and a client
certificate that is already trusted, so a first connection works without any set-up; everything else is
exactly the production server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from qualitybridge.app import QualityBridgeApp
from qualitybridge.cli.common import check_ports_free, install_stop_signals, setup_logging
from qualitybridge.cli.master_data import EXPORTS_FOLDER
from qualitybridge.config import (
    ErpSettings,
    OperationsSettings,
    QmsSettings,
    QualityBridgeConfig,
    SapS4HanaSettings,
    ServerSettings,
    SpcRuleDefaults,
    SpcSettingsSection,
)
from qualitybridge.domain.master_data_exports import (
    COST_CENTRES_FILE,
    MES_PARTS_FILE,
    MES_ROUTINGS_FILE,
    QMS_CATALOGUE_FILE,
    cost_centres_csv,
    mes_parts_csv,
    qms_catalogue_csv,
    shop_floor_routings_csv,
)
from qualitybridge.server.pki import PkiLayout, make_self_signed_certificate, trust_certificate
from qualitybridge.server.security.identity import Role, hash_password
from qualitybridge.store import Store, StoredUser

__all__ = ["DEMO_CLIENT_URI", "DemoUser", "register", "run_demo"]

_log = logging.getLogger(__name__)

DEMO_CLIENT_URI = "urn:qualitybridge:demo-client"
_DEMO_ACCOUNTS = (
    ("machine1", Role.MACHINE),
    ("operator", Role.OPERATOR),
    ("quality", Role.QUALITY_ENGINEER),
    ("observer", Role.OBSERVER),
    ("admin", Role.ADMIN),
)


@dataclass(frozen=True)
class DemoUser:
    name: str
    role: str
    password: str


def _read_users_file(path: Path) -> list[DemoUser]:
    users = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 3 and not line.startswith("#"):
            users.append(DemoUser(*parts))
    return users


def _write_secret(path: Path, data: bytes) -> None:
    """Owner-only from the first byte (a chmod after writing leaves a moment in which others may read)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    path.chmod(0o600)  # an existing file keeps its mode through O_CREAT


async def ensure_demo_users(store: Store, data_dir: Path) -> list[DemoUser]:
    """Create the demo accounts once; later starts reuse the passwords in demo-users.txt."""
    users_file = data_dir / "demo-users.txt"
    if users_file.exists():
        users = _read_users_file(users_file)
    else:
        users = [DemoUser(name, role.value, secrets.token_urlsafe(9)) for name, role in _DEMO_ACCOUNTS]
        _write_secret(
            users_file,
            (
                "# QualityBridge demo users: name role password\n"
                + "".join(f"{u.name} {u.role} {u.password}\n" for u in users)
            ).encode("utf-8"),
        )
    stored = {user.name for user in await store.users()}
    for user in users:
        if user.name not in stored:
            await store.save_user(StoredUser(user.name, user.role, hash_password(user.password), ()))
    return users


def ensure_demo_client_certificate(data_dir: Path, pki: PkiLayout) -> tuple[Path, Path]:
    """A client certificate the demo trusts from the start, for scripts and first steps."""
    folder = data_dir / "demo-client"
    cert_path, key_path = folder / "cert.der", folder / "key.pem"
    if not cert_path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        certificate, key = make_self_signed_certificate(DEMO_CLIENT_URI, "QualityBridge demo client", ["localhost"])
        cert_path.write_bytes(certificate)
        _write_secret(key_path, key)
    pki.ensure()
    trust_certificate(pki, str(cert_path))
    return cert_path, key_path


def write_demo_exports(data_dir: Path) -> Path:
    """The plant's other systems' exports matching the demo's ERP, gaps included, for `master-data audit`.

    Written at every start: they describe the simulator's seed data, which every start resets too."""
    from qualitybridge.simulator.seed import seed_shop_floor_exports

    exports = seed_shop_floor_exports()
    folder = data_dir / EXPORTS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (
        (MES_PARTS_FILE, mes_parts_csv(exports.mes_parts)),
        (MES_ROUTINGS_FILE, shop_floor_routings_csv(exports.mes_routings)),
        (QMS_CATALOGUE_FILE, qms_catalogue_csv(exports.qms_catalogue)),
        (COST_CENTRES_FILE, cost_centres_csv(exports.cost_centres)),
    ):
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def demo_config(
    data_dir: Path, port: int, erp_port: int, host: str, erp: str = "rest", operations_port: int = 9840
) -> QualityBridgeConfig:
    """The demo's configuration; with `erp="sap"` the simulator's SAP face is the ERP and its REST face the QMS."""
    erp_url = f"http://127.0.0.1:{erp_port}"
    # The demo shows every Nelson rule on every characteristic, whatever its classification.
    spc = SpcSettingsSection(rules=SpcRuleDefaults(critical=ALL_EIGHT, major=ALL_EIGHT, minor=ALL_EIGHT))
    operations = OperationsSettings(enabled=True, port=operations_port, max_sync_age_seconds=30)
    if erp != "sap":
        return QualityBridgeConfig(
            data_dir=data_dir.resolve(),
            server=ServerSettings(host=host, port=port),
            erp=ErpSettings(base_url=erp_url, sync_interval_seconds=5, relay_interval_seconds=1),
            spc=spc,
            operations=operations,
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    password_file = data_dir.resolve() / "sap-password"
    if not password_file.exists():
        password_file.write_text("demo-only\n", encoding="utf-8")  # the simulator takes any password
        password_file.chmod(0o600)
    return QualityBridgeConfig(
        data_dir=data_dir.resolve(),
        server=ServerSettings(host=host, port=port),
        erp=SapS4HanaSettings(
            adapter="sap-s4hana",
            base_url=erp_url,
            sap_client="100",
            plant="1010",
            username="QB_COMM_USER",
            password_file=password_file,
            sync_interval_seconds=5,
            relay_interval_seconds=1,
        ),
        qms=QmsSettings(base_url=erp_url),
        spc=spc,
        operations=operations,
    )


ALL_EIGHT = [1, 2, 3, 4, 5, 6, 7, 8]


def command_name() -> str:
    """How to run `qualitybridge` from here: the bare name when it is on PATH, else the venv's script."""
    script = Path(sys.executable).parent / "qualitybridge"
    if not script.exists() or shutil.which("qualitybridge") == str(script):
        return "qualitybridge"
    with contextlib.suppress(ValueError):
        return str(script.relative_to(Path.cwd()))
    return str(script)


def example_report(app: QualityBridgeApp) -> str:
    """A report-measurement the demo data accepts now: a running order's characteristic, a fitting valid gauge."""
    from qualitybridge.domain.model import CalibrationStatus, OrderState

    for order in app.master_data.orders:
        if order.state is not OrderState.RUNNING:
            continue
        for operation in order.operations:
            for characteristic in operation.characteristics:
                gauge = next(
                    (
                        g.equipment_id
                        for g in app.master_data.equipment
                        if g.calibration_status is CalibrationStatus.VALID
                        and (not characteristic.gauge_type or g.equipment_type == characteristic.gauge_type)
                    ),
                    None,
                )
                if gauge is not None:
                    return (
                        f"OrderNumber={order.order_no} OperationNumber={operation.operation_no} "
                        f"CharacteristicId={characteristic.characteristic_id} Value={characteristic.nominal} "
                        f"EquipmentId={gauge} PartSerial=SN-0001"
                    )
    return "OrderNumber=... (run without arguments to list them)"


def _banner(
    app: QualityBridgeApp, users: list[DemoUser], client: tuple[Path, Path], erp_url: str, exports: Path
) -> str:
    settings = app.config.server
    command = command_name()
    target = ""
    if settings.port != 4840:
        target += f" --endpoint {settings.endpoint_url('127.0.0.1')}"
    if app.config.data_dir != Path("data").resolve():
        target += f" --data-dir {app.config.data_dir}"
    lines = [
        "",
        "QualityBridge demo is running.",
        f"  OPC UA endpoint   {settings.endpoint_url()}",
        f"                    {settings.endpoint_url('127.0.0.1')}",
        "  Security          Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss; Sign or SignAndEncrypt",
        f"  Demo users        (also in {app.config.data_dir / 'demo-users.txt'})",
        *[f"    {u.name:<10} {u.role:<16} {u.password}" for u in users],
        f"  Trusted client    certificate {client[0]}, key {client[1]}, ApplicationUri {DEMO_CLIENT_URI}",
        f"  ERP simulator     {erp_url}  (orders /api/v1/orders, received results /results, API /openapi.json)",
        *(
            [f"  SAP face          {erp_url}/sap/opu/odata/sap/  (booked /sap/results, /sap/confirmations, /sap/stats)"]
            if app.config.erp.adapter == "sap-s4hana"
            else []
        ),
        f"  Operations        {app.operations_url}  (status page; /healthz, /readyz, /metrics)",
        f"  Master data       {command} master-data audit --data-dir {app.config.data_dir}"
        + (f" --erp-url {erp_url}" if not erp_url.endswith(":8080") else "")
        + " --report audit.md",
        f"                    (MES, QMS and cost-centre exports with typical gaps in {exports})",
        f"  Try it            {command} client browse{target}",
        f"                    {command} client report-measurement{target} \\",
        f"                        {example_report(app)}",
        f"                    then see it at {erp_url}/results",
        "  UaExpert          add the endpoint above, pick Basic256Sha256 - SignAndEncrypt, log in as a demo user;",
        "                    the first attempt is refused: trust UaExpert's certificate with",
        f"                    {command} pki trust <thumbprint> --data-dir {app.config.data_dir}",
        f"                    ({command} pki list shows it under rejected), then connect again.",
        "  Stop              Ctrl+C",
        "",
    ]
    return "\n".join(lines)


async def run_demo(
    data_dir: Path,
    port: int,
    erp_port: int,
    host: str = "0.0.0.0",  # noqa: S104
    erp: str = "rest",
    operations_port: int = 9840,
) -> None:
    from qualitybridge.simulator.app import serve as serve_simulator

    started = asyncio.Event()
    flavour: Literal["rest", "sap"] = "sap" if erp == "sap" else "rest"
    simulator = asyncio.create_task(
        serve_simulator("127.0.0.1", erp_port, started=started, flavour=flavour), name="erp-simulator"
    )
    starting = asyncio.create_task(started.wait())
    await asyncio.wait({simulator, starting}, return_when=asyncio.FIRST_COMPLETED)
    if simulator.done():
        starting.cancel()
        simulator.result()  # raises why the simulator could not start (e.g. port in use)
    config = demo_config(data_dir, port, erp_port, host, erp, operations_port)
    app = await QualityBridgeApp.create(config)
    try:
        users = await ensure_demo_users(app.store, config.data_dir)
        await app.reload_users()
        client = ensure_demo_client_certificate(config.data_dir, PkiLayout(config.pki_dir))
        exports = write_demo_exports(config.data_dir)
        await app.start()
        print(_banner(app, users, client, f"http://127.0.0.1:{erp_port}", exports), flush=True)  # noqa: T201
        await app.wait_until_stopped()
    finally:
        await app.stop()
        simulator.cancel()
        await asyncio.gather(simulator, return_exceptions=True)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="run the ERP simulator and the server together with demo data and demo users",
        description="Start the reference ERP/QMS simulator and the OPC UA server in one process, on the embedded "
        "default (SQLite in the data folder). Creates demo users (written to <data-dir>/demo-users.txt as "
        "'name role password') and a client certificate that is already trusted, then prints the endpoint and how "
        "to connect UaExpert.",
    )
    demo.add_argument("--data-dir", type=Path, default=Path("data"), help="store, PKI and demo users (default ./data)")
    demo.add_argument("--port", type=int, default=4840, help="OPC UA port; endpoint opc.tcp://<host>:N/qualitybridge")
    demo.add_argument("--erp-port", type=int, default=8080, help="HTTP port of the ERP simulator (default 8080)")
    demo.add_argument("--host", default="0.0.0.0", help="interface the OPC UA server listens on")  # noqa: S104
    demo.add_argument(
        "--erp",
        choices=("rest", "sap"),
        default="rest",
        help="rest: the generic REST contract; sap: the simulator's SAP S/4HANA face as ERP (docs/sap-s4hana.md)",
    )
    demo.add_argument(
        "--operations-port", type=int, default=9840, help="HTTP port of the operations endpoint on 127.0.0.1"
    )
    demo.set_defaults(run=run)


def run(arguments: argparse.Namespace) -> int:
    setup_logging("INFO")
    check_ports_free(
        [
            (arguments.host, arguments.port, "--port"),
            ("127.0.0.1", arguments.erp_port, "--erp-port"),
            ("127.0.0.1", arguments.operations_port, "--operations-port"),
        ],
        "the demo's command line",
    )
    asyncio.run(_demo_until_stopped(arguments))
    return 0


async def _demo_until_stopped(arguments: argparse.Namespace) -> None:
    stop = asyncio.Event()
    install_stop_signals(stop)
    demo = asyncio.create_task(
        run_demo(
            arguments.data_dir,
            arguments.port,
            arguments.erp_port,
            arguments.host,
            arguments.erp,
            arguments.operations_port,
        )
    )
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({demo, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not demo.done():
        demo.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await demo
