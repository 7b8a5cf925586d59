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
  qualitybridge pki install-own plant-signed.pem key.pem --config qualitybridge.toml
  qualitybridge users add machine7 --role Machine --config qualitybridge.toml
  qualitybridge audit-log --since 2h --user machine7 --config qualitybridge.toml
  qualitybridge outbox list --state dead --config qualitybridge.toml

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
    from qualitybridge.cli.demo import run_demo

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


def _password(arguments: argparse.Namespace, required: bool) -> str | None:
    if arguments.password is not None or not required:
        return str(arguments.password) if arguments.password is not None else None
    return getpass.getpass(f"password for {arguments.name}: ")


async def _admin(arguments: argparse.Namespace) -> int:
    """pki, users and audit-log commands; the work is done in qualitybridge.cli.administration."""
    from qualitybridge.cli.administration import Administration

    async with Administration.open(_config_for_admin(arguments)) as admin:
        sub_command = getattr(arguments, "pki_command", None) or getattr(arguments, "users_command", None)
        command = (arguments.command, sub_command)
        if command == ("pki", "list"):
            output = admin.pki_list()
        elif command == ("pki", "trust"):
            output = await admin.pki_trust(arguments.certificate)
        elif command == ("pki", "reject"):
            output = await admin.pki_reject(arguments.thumbprint)
        elif command == ("pki", "remove"):
            output = await admin.pki_remove(arguments.thumbprint)
        elif command == ("pki", "show-own"):
            output = admin.pki_show_own()
        elif command == ("pki", "install-own"):
            output = await admin.pki_install_own(arguments.certificate, arguments.key)
        elif command == ("users", "add"):
            output = await admin.users_add(
                arguments.name,
                arguments.role,
                password=_password(arguments, required=arguments.certificate is None),
                work_centres=arguments.work_centre or (),
                certificate_file=arguments.certificate,
            )
        elif command == ("users", "remove"):
            output = await admin.users_remove(arguments.name)
        elif command == ("users", "passwd"):
            output = await admin.users_passwd(arguments.name, _password(arguments, required=True) or "")
        elif command == ("users", "list"):
            output = await admin.users_list()
        else:
            output = await admin.audit_log(since=arguments.since, user=arguments.user, limit=arguments.limit)
    for line in output.lines:
        print(line)  # noqa: T201
    for line in output.errors:
        print(line, file=sys.stderr)  # noqa: T201
    return output.exit_code


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

    pki = commands.add_parser(
        "pki", help="certificates: list, trust, reject, remove, show-own, install-own (no restart needed)"
    )
    pki_commands = pki.add_subparsers(dest="pki_command", required=True, metavar="PKI_COMMAND")
    add_target(pki_commands.add_parser("list", help="show trusted, issuer (CA) and rejected certificates"))
    trust = pki_commands.add_parser("trust", help="trust a certificate file or a rejected certificate's thumbprint")
    trust.add_argument("certificate", help="path to a DER/PEM file, or the thumbprint shown by `pki list`")
    add_target(trust)
    for name, what in (
        ("reject", "move a trusted certificate to rejected; its sessions end"),
        ("remove", "delete a certificate from trusted, issuer and rejected"),
    ):
        sub = pki_commands.add_parser(name, help=what)
        sub.add_argument("thumbprint", help="SHA-1 thumbprint as shown by `pki list`")
        add_target(sub)
    add_target(pki_commands.add_parser("show-own", help="the server's own certificate, as clients see it"))
    install = pki_commands.add_parser("install-own", help="replace the server certificate with a plant-CA-signed one")
    install.add_argument("certificate", type=Path, help="certificate (PEM or DER) with the server's ApplicationUri")
    install.add_argument("key", type=Path, help="its private key (PEM or DER, unencrypted RSA)")
    add_target(install)

    users = commands.add_parser("users", help="OPC UA user accounts: add, remove, passwd, list")
    users_commands = users.add_subparsers(dest="users_command", required=True, metavar="USERS_COMMAND")
    add = users_commands.add_parser("add", help="create or replace a user")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["Observer", "Machine", "Operator", "QualityEngineer", "Admin"])
    add.add_argument("--password", help="omit to be asked (keeps it out of the shell history)")
    add.add_argument("--work-centre", action="append", help="restrict a Machine to this work centre (repeatable)")
    add.add_argument(
        "--certificate", type=Path, help="bind a certificate (X.509 user token); without --password: certificate only"
    )
    add_target(add)
    remove = users_commands.add_parser("remove", help="delete a user; its open sessions end")
    remove.add_argument("name")
    add_target(remove)
    passwd = users_commands.add_parser("passwd", help="set a new password")
    passwd.add_argument("name")
    passwd.add_argument("--password", help="omit to be asked")
    add_target(passwd)
    add_target(users_commands.add_parser("list", help="list users, roles, work centres and bound certificates"))

    audit = commands.add_parser("audit-log", help="who did what: logins, method calls, writes, admin changes")
    audit.add_argument("--since", help="30m, 2h, 7d or an ISO time (UTC)")
    audit.add_argument("--user", help="only this user (OS account for admin changes: os:<name>)")
    audit.add_argument("--limit", type=int, default=100, help="newest N entries (default 100)")
    add_target(audit)

    from qualitybridge.cli.outbox import add_outbox_commands

    add_outbox_commands(commands, add_target)
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
        elif arguments.command in ("pki", "users", "audit-log"):
            _setup_logging("WARNING")
            return asyncio.run(_admin(arguments))
        elif arguments.command == "outbox":
            from qualitybridge.cli.outbox import run_outbox_command

            _setup_logging("WARNING")
            return asyncio.run(run_outbox_command(arguments, _config_for_admin(arguments)))
    except ConfigError as exc:
        print(f"qualitybridge: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except OSError as exc:
        print(f"qualitybridge: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
