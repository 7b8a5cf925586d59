"""`qualitybridge simulator`: the reference ERP/QMS on its own."""

from __future__ import annotations

import argparse

from qualitybridge.cli.common import setup_logging

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    simulator = commands.add_parser(
        "simulator",
        help="run only the reference ERP/QMS simulator (HTTP)",
        description="Run the reference ERP/QMS simulator: the generic ERP REST contract v1 (/api/v1), controls to "
        "release, change and withdraw orders and inject faults (/sim), what it received (/results, /stats), and its "
        "OpenAPI document (/openapi.json).",
    )
    simulator.add_argument("--host", default="127.0.0.1")
    simulator.add_argument("--port", type=int, default=8080)
    simulator.add_argument(
        "--flavour",
        choices=("rest", "sap"),
        default="rest",
        help="rest: the generic contract only; sap: also SAP S/4HANA's OData entity sets under /sap/opu/odata/sap "
        "(docs/sap-s4hana.md), the REST face then serving as the QMS",
    )
    simulator.set_defaults(run=run)


def run(arguments: argparse.Namespace) -> int:
    from qualitybridge.simulator.app import run as run_simulator

    setup_logging("INFO")
    run_simulator(arguments.host, arguments.port, arguments.flavour)
    return 0
