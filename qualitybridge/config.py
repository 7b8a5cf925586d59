"""Configuration: one TOML file, validated by pydantic, with errors that name the key and the fix.

Every setting has a default that works for the embedded demo (SQLite in the data folder, the bundled
ERP simulator on localhost). A plant overrides only what differs.
"""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["ConfigError", "ErpSettings", "QualityBridgeConfig", "ServerSettings", "StoreSettings", "load_config"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


Port = Annotated[int, Field(ge=1, le=65535)]


class ServerSettings(_Section):
    host: str = Field(default="0.0.0.0", description="Interface the OPC UA server listens on")  # noqa: S104
    port: Port = 4840
    path: str = Field(default="qualitybridge", description="Path of the endpoint URL opc.tcp://<host>:<port>/<path>")
    hostname: str = Field(
        default_factory=socket.gethostname,
        description="Host name clients use; goes into the endpoint URL and the certificate's SubjectAltName",
    )
    application_uri: str = Field(default="", description="Defaults to urn:<hostname>:qualitybridge")
    allow_security_none: bool = Field(
        default=False, description="Offer SecurityPolicy None. Only for isolated test benches."
    )
    allow_anonymous_read: bool = Field(
        default=False, description="Let anonymous sessions browse and read (never write or call methods)"
    )

    @property
    def effective_application_uri(self) -> str:
        return self.application_uri or f"urn:{self.hostname}:qualitybridge"

    def endpoint_url(self, host: str | None = None) -> str:
        return f"opc.tcp://{host or self.hostname}:{self.port}/{self.path}"


class StoreSettings(_Section):
    url: str = Field(
        default="",
        description="SQLAlchemy async URL; empty = SQLite file <data_dir>/qualitybridge.db. "
        "PostgreSQL: postgresql+asyncpg://user@host:5432/db",
    )
    sqlite_synchronous: str = Field(
        default="FULL", description="SQLite PRAGMA synchronous: FULL survives power loss, NORMAL only process crashes"
    )

    @field_validator("url")
    @classmethod
    def _async_driver(cls, url: str) -> str:
        if url and not (url.startswith("sqlite+aiosqlite://") or url.startswith("postgresql+asyncpg://")):
            raise ValueError(
                "use an async driver URL: 'sqlite+aiosqlite:///path/file.db' or "
                "'postgresql+asyncpg://user@host:5432/database'"
            )
        return url

    @field_validator("sqlite_synchronous")
    @classmethod
    def _synchronous_mode(cls, mode: str) -> str:
        if mode.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("must be FULL, EXTRA or NORMAL")
        return mode.upper()


class ErpSettings(_Section):
    base_url: str = Field(default="http://127.0.0.1:8080", description="Root URL of the ERP/QMS REST contract v1")
    sync_interval_seconds: float = Field(default=10.0, gt=0, le=86400)
    relay_interval_seconds: float = Field(default=2.0, gt=0, le=3600)
    timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    relay_max_attempts: int = Field(default=20, ge=1, le=10_000)
    relay_backoff_max_seconds: float = Field(default=300.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://, e.g. 'http://erp.example:8080'")
        return url.rstrip("/")


class SecuritySettings(_Section):
    """How often the running server takes admin changes into effect and looks after its own certificate."""

    reload_interval_seconds: float = Field(
        default=2.0,
        gt=0,
        le=300,
        description="Users and trust list changes (CLI) reach the running server within this time; "
        "sessions of removed users or distrusted certificates end",
    )
    certificate_check_minutes: float = Field(
        default=60.0, gt=0, le=1440, description="How often the own certificate is checked for renewal or replacement"
    )
    certificate_renew_before_days: int = Field(
        default=30, ge=1, le=365, description="A self-signed own certificate is renewed this long before it expires"
    )
    certificate_valid_days: int = Field(default=730, ge=30, le=3650, description="Lifetime of a self-signed one")


class AuditSettings(_Section):
    """The audit trail (docs/commissioning.md#audit-log)."""

    retention_days: int = Field(default=365, ge=1, le=36500, description="Entries older than this are purged")
    purge_interval_hours: float = Field(default=24.0, gt=0, le=720, description="How often the purge runs")
    flush_interval_seconds: float = Field(
        default=0.5, gt=0, le=60, description="Entries are written in batches at least this often"
    )
    opcua_events: bool = Field(default=True, description="Raise OPC UA AuditEvents (delivered to Admin sessions only)")


class QualityBridgeConfig(_Section):
    data_dir: Path = Field(default=Path("data"), description="Folder for the SQLite store, PKI and logs")
    log_level: str = "INFO"
    server: ServerSettings = Field(default_factory=ServerSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    erp: ErpSettings = Field(default_factory=ErpSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, level: str) -> str:
        if level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return level.upper()

    @property
    def store_url(self) -> str:
        return self.store.url or f"sqlite+aiosqlite:///{(self.data_dir / 'qualitybridge.db').resolve()}"

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and how to fix it."""


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown setting — remove it or check its spelling against docs/configuration.md"
    if error["type"] == "missing":
        return f"{key}: required setting is missing — add it"
    return f"{key}: {error['msg']} (got {error.get('input')!r})"


def parse_config(raw: dict[str, Any], *, source: str) -> QualityBridgeConfig:
    try:
        config = QualityBridgeConfig.model_validate(raw)
    except ValidationError as exc:
        lines = "\n".join(f"  - {_describe(err)}" for err in exc.errors())  # type: ignore[arg-type]
        raise ConfigError(f"invalid configuration in {source}:\n{lines}") from None
    return config


def load_config(path: Path) -> QualityBridgeConfig:
    """Read and validate a TOML config; a relative data_dir is taken relative to the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    config = parse_config(raw, source=str(path))
    if not config.data_dir.is_absolute():
        config.data_dir = (path.parent / config.data_dir).resolve()
    return config
