"""What every `qualitybridge` command shares: logging set-up, stop signals, and how an admin command finds its
deployment (`--config FILE` or `--data-dir DIR`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import logging
import signal
import socket
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qualitybridge.config import ConfigError, QualityBridgeConfig, load_config
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
    """The deployment an admin command works on. A --data-dir (or the default ./data) must exist: run in the wrong
    folder, a command would otherwise create an empty deployment and change that instead of the real one."""
    if arguments.config is not None:
        return load_config(arguments.config)
    data_dir = arguments.data_dir.resolve()
    if not data_dir.is_dir():
        raise ConfigError(
            f"data folder {data_dir} does not exist: pass the server's with --data-dir DIR or --config FILE "
            "(qualitybridge demo and serve create it)"
        )
    return QualityBridgeConfig(data_dir=data_dir)


def check_ports_free(ports: Sequence[tuple[str, int, str]], source: str) -> None:
    """Before anything is created: each (host, port, setting) must be free to listen on, else one line naming it."""
    for host, port, setting in ports:
        if port == 0:
            continue
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            with socket.create_server((host, port), family=family, reuse_port=False):
                pass
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port {port} on {host} is already in use (another QualityBridge or service?): "
                    f"stop it or change {setting} in {source}"
                ) from None
            raise ConfigError(f"cannot listen on {host}:{port} ({setting} in {source}): {exc.strerror}") from None
