"""What every `qualitybridge` command shares: logging set-up, stop signals, and how an admin command finds its
deployment (`--config FILE` or `--data-dir DIR`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from qualitybridge.config import QualityBridgeConfig, load_config

__all__ = ["add_target", "config_for_admin", "install_stop_signals", "setup_logging"]


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("asyncua").setLevel(logging.WARNING)
    # Libraries that log every request or start-up step at INFO would drown the bridge's own messages.
    for noisy in ("apscheduler", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)


def add_target(sub: argparse.ArgumentParser) -> None:
    """The deployment an admin command works on: the server's TOML file, or a bare data folder."""
    target = sub.add_mutually_exclusive_group()
    target.add_argument("--config", type=Path, help="the server's TOML file (its data_dir and store are used)")
    target.add_argument("--data-dir", type=Path, default=Path("data"), help="data folder (default ./data)")


def config_for_admin(arguments: argparse.Namespace) -> QualityBridgeConfig:
    if arguments.config is not None:
        return load_config(arguments.config)
    return QualityBridgeConfig(data_dir=arguments.data_dir.resolve())
