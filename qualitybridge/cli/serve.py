"""`qualitybridge serve --config FILE`: the production server."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from qualitybridge.cli.common import install_stop_signals, setup_logging
from qualitybridge.config import QualityBridgeConfig, load_config

__all__ = ["register"]

_log = logging.getLogger("qualitybridge")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the OPC UA server with a TOML configuration file",
        description="Run the QualityBridge OPC UA server: sync orders, characteristics and gauges from the ERP, "
        "serve them over OPC UA, accept reports and relay them to the ERP. Prints 'QualityBridge ready: <endpoint>' "
        "once clients can connect; stops cleanly on SIGTERM or Ctrl+C. An invalid configuration stops it before "
        "it opens a port, naming each wrong key (exit code 2).",
    )
    serve.add_argument("--config", type=Path, required=True, help="TOML file (see docs/configuration.md)")
    serve.set_defaults(run=run)


def run(arguments: argparse.Namespace) -> int:
    config = load_config(arguments.config)
    setup_logging(config.log_level, config.log_format)
    asyncio.run(_serve(config))
    return 0


async def _serve(config: QualityBridgeConfig) -> None:
    from qualitybridge.app import QualityBridgeApp

    app = await QualityBridgeApp.create(config)
    try:
        await app.start()
        print(f"QualityBridge ready: {app.endpoint_url}", flush=True)  # noqa: T201 - scripts wait for this line
        if app.operations_url:
            print(f"Operations endpoint: {app.operations_url}", flush=True)  # noqa: T201
        stop = asyncio.Event()
        install_stop_signals(stop)
        await stop.wait()
        _log.info("stopping")
    finally:
        await app.stop()
