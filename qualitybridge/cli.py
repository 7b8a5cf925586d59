"""The `qualitybridge` command: run the server, the demo, the ERP simulator, and administer PKI and users."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from qualitybridge.config import ConfigError, QualityBridgeConfig, load_config

__all__ = ["main"]

_log = logging.getLogger("qualitybridge")

_EPILOG = """\
examples:
  qualitybridge demo                                  simulator + server with demo data in ./data
  qualitybridge demo --data-dir /tmp/qb --port 4841 --erp-port 8091
  qualitybridge serve --config /etc/qualitybridge/qualitybridge.toml
  qualitybridge simulator --port 8080                 the reference ERP/QMS on its own
  qualitybridge pki list --data-dir ./data            trusted and rejected client certificates
  qualitybridge pki trust <thumbprint|file> --data-dir ./data
  qualitybridge users add machine7 --role Machine --config qualitybridge.toml

See docs/configuration.md for every setting, docs/commissioning.md for connecting UaExpert.
"""


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("asyncua").setLevel(logging.WARNING)
    # Libraries that log every request or start-up step at INFO would drown the bridge's own messages.
    for noisy in ("apscheduler", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)


async def _serve(config: QualityBridgeConfig) -> None:
    from qualitybridge.app import QualityBridgeApp

    app = await QualityBridgeApp.create(config)
    try:
        await app.start()
        print(f"QualityBridge ready: {app.endpoint_url}", flush=True)  # noqa: T201 - scripts wait for this line
        stop = asyncio.Event()
        _install_stop_signals(stop)
        await stop.wait()
        _log.info("stopping")
    finally:
        await app.stop()


async def _demo(arguments: argparse.Namespace) -> None:
    from qualitybridge.demo import run_demo

    stop = asyncio.Event()
    _install_stop_signals(stop)
    demo = asyncio.create_task(run_demo(arguments.data_dir, arguments.port, arguments.erp_port, arguments.host))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({demo, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not demo.done():
        demo.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await demo


def _config_for_admin(arguments: argparse.Namespace) -> QualityBridgeConfig:
    if arguments.config is not None:
        return load_config(arguments.config)
    return QualityBridgeConfig(data_dir=arguments.data_dir.resolve())


def _pki(arguments: argparse.Namespace) -> int:
    from qualitybridge.server.pki import PkiLayout, list_certificates, trust_certificate

    layout = PkiLayout(_config_for_admin(arguments).pki_dir)
    layout.ensure()
    if arguments.pki_command == "trust":
        try:
            path = trust_certificate(layout, arguments.certificate)
        except (FileNotFoundError, ValueError) as exc:
            print(f"qualitybridge pki trust: {exc}", file=sys.stderr)  # noqa: T201
            return 2
        print(f"trusted: {path} (takes effect for the next connection, no restart needed)")  # noqa: T201
        return 0
    for group, certificates in list_certificates(layout).items():
        print(f"{group}:")  # noqa: T201
        for info in certificates:
            print(f"  {info.thumbprint}  {info.subject}  valid until {info.not_after:%Y-%m-%d}")  # noqa: T201
        if not certificates:
            print("  (none)")  # noqa: T201
    return 0


async def _users(arguments: argparse.Namespace) -> int:
    from qualitybridge.server.identity import Role, hash_password
    from qualitybridge.store import StoredUser, open_store

    config = _config_for_admin(arguments)
    store = await open_store(config.store_url, sqlite_synchronous=config.store.sqlite_synchronous)
    try:
        if arguments.users_command == "add":
            password = arguments.password or getpass.getpass(f"password for {arguments.name}: ")
            if len(password) < 8:
                print("qualitybridge users add: the password needs at least 8 characters", file=sys.stderr)  # noqa: T201
                return 2
            role = Role(arguments.role)
            work_centres = tuple(arguments.work_centre or ())
            await store.save_user(StoredUser(arguments.name, role.value, hash_password(password), work_centres))
            print(f"user {arguments.name} saved with role {role.value} (new sessions use it)")  # noqa: T201
            return 0
        for user in await store.users():
            centres = ",".join(user.work_centres) or "-"
            print(f"{user.name:<20} {user.role:<16} {centres}")  # noqa: T201
        return 0
    finally:
        await store.aclose()


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qualitybridge",
        description="QualityBridge: an OPC UA server that brings ERP/QMS orders, inspection characteristics and "
        "gauges to the shop floor and carries measurements back to the ERP.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the OPC UA server with a TOML configuration file",
        description="Run the QualityBridge OPC UA server: sync orders, characteristics and gauges from the ERP, "
        "serve them over OPC UA, accept reports and relay them to the ERP. Prints 'QualityBridge ready: <endpoint>' "
        "once clients can connect; stops cleanly on SIGTERM or Ctrl+C. An invalid configuration stops it before "
        "it opens a port, naming each wrong key (exit code 2).",
    )
    serve.add_argument("--config", type=Path, required=True, help="TOML file (see docs/configuration.md)")

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

    simulator = commands.add_parser(
        "simulator",
        help="run only the reference ERP/QMS simulator (HTTP)",
        description="Run the reference ERP/QMS simulator: the generic ERP REST contract v1 (/api/v1), controls to "
        "release, change and withdraw orders and inject faults (/sim), what it received (/results, /stats), and its "
        "OpenAPI document (/openapi.json).",
    )
    simulator.add_argument("--host", default="127.0.0.1")
    simulator.add_argument("--port", type=int, default=8080)

    def add_target(sub: argparse.ArgumentParser) -> None:
        target = sub.add_mutually_exclusive_group()
        target.add_argument("--config", type=Path, help="the server's TOML file (its data_dir and store are used)")
        target.add_argument("--data-dir", type=Path, default=Path("data"), help="data folder (default ./data)")

    pki = commands.add_parser("pki", help="client certificates: list, trust")
    pki_commands = pki.add_subparsers(dest="pki_command", required=True, metavar="PKI_COMMAND")
    add_target(pki_commands.add_parser("list", help="show trusted and rejected certificates"))
    trust = pki_commands.add_parser("trust", help="trust a certificate file or a rejected certificate's thumbprint")
    trust.add_argument("certificate", help="path to a DER/PEM file, or the thumbprint shown by `pki list`")
    add_target(trust)

    users = commands.add_parser("users", help="OPC UA user accounts: add, list")
    users_commands = users.add_subparsers(dest="users_command", required=True, metavar="USERS_COMMAND")
    add = users_commands.add_parser("add", help="create or replace a user")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["Observer", "Machine", "Operator", "QualityEngineer", "Admin"])
    add.add_argument("--password", help="omit to be asked (keeps it out of the shell history)")
    add.add_argument("--work-centre", action="append", help="restrict a Machine to this work centre (repeatable)")
    add_target(add)
    add_target(users_commands.add_parser("list", help="list users and roles"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _build_parser().parse_args(argv)
    try:
        if arguments.command == "serve":
            config = load_config(arguments.config)
            _setup_logging(config.log_level)
            asyncio.run(_serve(config))
        elif arguments.command == "demo":
            _setup_logging("INFO")
            asyncio.run(_demo(arguments))
        elif arguments.command == "simulator":
            from qualitybridge.simulator.app import run

            _setup_logging("INFO")
            run(arguments.host, arguments.port)
        elif arguments.command == "pki":
            _setup_logging("WARNING")
            return _pki(arguments)
        elif arguments.command == "users":
            _setup_logging("WARNING")
            return asyncio.run(_users(arguments))
    except ConfigError as exc:
        print(f"qualitybridge: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except OSError as exc:
        print(f"qualitybridge: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
