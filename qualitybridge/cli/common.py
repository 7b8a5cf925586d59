"""What every `qualitybridge` command shares: logging set-up, stop signals, and how an admin command finds its
deployment (`--config FILE` or `--data-dir DIR`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qualitybridge.config import QualityBridgeConfig, load_config
from qualitybridge.server.security.refusal_logging import DuplicateRefusalFilter

__all__ = [
    "BUSINESS_KEYS",
    "JsonLogFormatter",
    "add_target",
    "config_for_admin",
    "install_stop_signals",
    "setup_logging",
]

# Attributes a log call may add with `extra=`; the JSON format carries them as fields of their own, so that a log
# search can filter by order or user without parsing the message.
BUSINESS_KEYS = (
    "order_no",
    "operation_no",
    "characteristic_id",
    "equipment_id",
    "result_id",
    "idempotency_key",
    "method",
    "status",
    "user",
    "client_address",
    "client_thumbprint",
)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: timestamp (UTC, ISO 8601), level, logger, message, and business keys present."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in BUSINESS_KEYS:
            value = record.__dict__.get(key)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(level: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    # A refused login or certificate is one WARNING line from QualityBridge, not also an asyncua ERROR.
    handler.addFilter(DuplicateRefusalFilter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
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
