"""`qualitybridge serve --config FILE`: the production server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from qualitybridge.cli.common import check_ports_free, install_stop_signals, setup_logging
from qualitybridge.collector import tune_collector
from qualitybridge.config import QualityBridgeConfig, load_config

if TYPE_CHECKING:
    from qualitybridge.relay_process import RelayProcess

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
    ports = [(config.server.host, config.server.port, "[server] port")]
    if config.operations.enabled:
        ports.append((config.operations.host, config.operations.port, "[operations] port"))
    check_ports_free(ports, str(arguments.config))  # before any certificate, folder or store is created
    tune_collector()  # before the fork: the relay's process inherits it
    relay = _fork_relay(config)
    asyncio.run(_serve(config, relay))
    return 0


def _fork_relay(config: QualityBridgeConfig) -> RelayProcess | None:
    """The relay's own process ([erp] relay_process), forked here: before the event loop, a thread or a socket
    exists (qualitybridge/relay_process.py). It waits for the server to start it."""
    if not config.erp.relay_process:
        return None
    if config.erp.adapter != "rest":
        # SAP's posting keys (inspection lot, operation, decimals) come from the server's sync and are looked up
        # before each post (no idempotency key): its relay stays where the sync keeps them current.
        _log.info(
            "the %s adapter relays in the server's process ([erp] relay_process applies to rest)", config.erp.adapter
        )
        return None
    from qualitybridge.relay_process import RelayProcess

    return RelayProcess.fork(config)


async def _serve(config: QualityBridgeConfig, relay: RelayProcess | None = None) -> None:
    """Start, serve until SIGTERM/SIGINT, stop. A signal during start ends the start where it is and stops what
    is already running, without a traceback."""
    stop, started = asyncio.Event(), asyncio.Event()
    install_stop_signals(stop)
    life = asyncio.create_task(_live(config, stop, started, relay), name="qualitybridge")
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({life, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not life.done() and not started.is_set():
        life.cancel()  # still starting: stop now rather than after the start's ERP timeout
    with contextlib.suppress(asyncio.CancelledError):
        await life


async def _live(
    config: QualityBridgeConfig, stop: asyncio.Event, started: asyncio.Event, relay: RelayProcess | None
) -> None:
    from qualitybridge.app import QualityBridgeApp

    app: QualityBridgeApp | None = None
    try:
        app = await QualityBridgeApp.create(config, relay_process=relay)
        await app.start()
        started.set()
        # The CPU a start costs (imports, address space, store, first sync): docs/performance.md "Start-up".
        _log.info("started with %.2f s of CPU", time.process_time())
        # What the start built (address space, master data, imported modules: most of the heap, and it lives as
        # long as the process) leaves the collector's full scans, which otherwise walk it again and again while
        # batches of reports allocate: a fifth of the server's CPU per batched measurement (docs/performance.md,
        # "Issue 11, 2026-11-30"). Only here, in the server's own process: tests build many apps in one process.
        gc.collect()
        gc.freeze()
        # The ready line comes last: a script that has seen it finds every address the start announces printed.
        if app.operations_url:
            print(f"Operations endpoint: {app.operations_url}", flush=True)  # noqa: T201
        print(f"QualityBridge ready: {app.endpoint_url}", flush=True)  # noqa: T201 - scripts wait for this line
        await stop.wait()
        _log.info("stopping")
    finally:
        if app is not None:
            await app.stop()  # the relay's process with it
        elif relay is not None:
            await relay.stop()  # the start failed: the relay's process has not started and ends at once
