"""The `qualitybridge` command: one module per command, each registering its own subparser.

| module           | command                                                          |
| ---------------- | ---------------------------------------------------------------- |
| `serve`          | `serve --config FILE`: the production server                     |
| `demo`           | `demo`: simulator + server with demo data, users and certificate |
| `simulator`      | `simulator [--flavour sap]`: the reference ERP/QMS on its own    |
| `pki`            | `pki list|trust|reject|remove|show-own|install-own`              |
| `users`          | `users add|remove|passwd|list`                                   |
| `audit_log`      | `audit-log`: who did what                                        |
| `outbox`         | `outbox list|retry|discard`: what is owed to the ERP             |
| `resync`         | `resync`: the next ERP sync fetches everything once              |
| `mapping`        | `mapping list|import|export|set|remove`: the sync's mapping tables |
| `client`         | `client browse|read|report-…|call|subscribe`: try it from a shell |
| `report`         | `report ORDER`: an order's quality report as one HTML file        |
| `master_data`    | `master-data audit`: the master-data checklist before go-live     |
| `administration` | the audited work behind pki, users and audit-log                 |
| `common`         | logging, stop signals, `--config`/`--data-dir`                   |

The CLI is the top layer: it may import the app and everything below; nothing imports it.

A command's module is imported only when that command runs (or for the overall help): `serve` need not pay for the
imports of the admin commands, the demo, the simulator and the reports (about a second of CPU at every start).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from qualitybridge.config import ConfigError
from qualitybridge.domain.build import installed_build
from qualitybridge.store import StoreMisconfigured, StoreUnavailable

__all__ = ["main"]

_EPILOG = """\
examples:
  qualitybridge demo                                  simulator + server with demo data in ./data
  qualitybridge demo --data-dir /tmp/qb --port 4841 --erp-port 8091
  qualitybridge serve --config /etc/qualitybridge/qualitybridge.toml
  qualitybridge simulator --port 8080                 the reference ERP/QMS on its own
  qualitybridge client browse                         the demo's address space, as its observer
  qualitybridge client report-measurement OrderNumber=1000418 ...   one measurement, as the demo's machine
  qualitybridge pki list --data-dir ./data            trusted and rejected client certificates
  qualitybridge pki trust <thumbprint|file> --data-dir ./data
  qualitybridge pki install-own plant-signed.pem key.pem --config qualitybridge.toml
  qualitybridge users add machine7 --role Machine --config qualitybridge.toml
  qualitybridge audit-log --since 2h --user machine7 --config qualitybridge.toml
  qualitybridge outbox list --state dead --config qualitybridge.toml
  qualitybridge mapping import materials.csv --kind material --config qualitybridge.toml
  qualitybridge report 1000417 --config qualitybridge.toml   an order's quality report (HTML)
  qualitybridge master-data audit --data-dir ./data --report audit.md   master-data gaps before go-live

See docs/configuration.md for every setting, docs/commissioning.md for connecting UaExpert.
"""

# Command name -> its module, in the order the help lists them.
_COMMANDS = {
    "serve": "serve",
    "demo": "demo",
    "simulator": "simulator",
    "client": "client",
    "pki": "pki",
    "users": "users",
    "audit-log": "audit_log",
    "outbox": "outbox",
    "resync": "resync",
    "mapping": "mapping",
    "report": "report",
    "master-data": "master_data",
}


def _identity() -> str:
    build = installed_build()
    return f"{build.software_version} (build {build.build_number}, {build.build_date:%Y-%m-%d})"


def _modules_for(argv: Sequence[str] | None) -> list[str]:
    """The modules to register: the named command's alone, or all of them (help, a typo, no command)."""
    if argv and argv[0] in _COMMANDS:
        return [_COMMANDS[argv[0]]]
    return list(_COMMANDS.values())


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given the arguments, with only the command they name (its module alone is imported)."""
    parser = argparse.ArgumentParser(
        prog="qualitybridge",
        description="QualityBridge: an OPC UA server that brings ERP/QMS orders, inspection characteristics and "
        "gauges to the shop floor and carries measurements back to the ERP.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"qualitybridge {_identity()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _modules_for(argv):
        importlib.import_module(f"qualitybridge.cli.{name}").register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    arguments = build_parser(argv).parse_args(argv)
    try:
        return int(arguments.run(arguments))
    except (ConfigError, StoreMisconfigured) as exc:
        print(f"qualitybridge: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except StoreUnavailable as exc:
        print(f"qualitybridge: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    except OSError as exc:
        print(f"qualitybridge: {exc}", file=sys.stderr)  # noqa: T201
        return 1


if __name__ == "__main__":
    sys.exit(main())
