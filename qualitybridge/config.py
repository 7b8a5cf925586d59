"""Configuration: one TOML file, validated by pydantic, with errors that name the key and the fix.

Every setting has a default that works for the embedded demo (SQLite in the data folder, the bundled
ERP simulator on localhost). A plant overrides only what differs.
"""

from __future__ import annotations

import math
import socket
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "ConfigError",
    "ErpSettings",
    "HistorySettings",
    "KpiSettings",
    "LimitsSettings",
    "MasterDataSettings",
    "OperationsSettings",
    "PublishSettings",
    "QmsSettings",
    "QualityBridgeConfig",
    "QualityEventSettings",
    "ReportingSettings",
    "SapS4HanaSettings",
    "ServerSettings",
    "SpcCharacteristicSettings",
    "SpcRuleDefaults",
    "SpcSettingsSection",
    "StoreSettings",
    "load_config",
]


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
    connect_wait_seconds: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="At start, how long to wait for a store that is not reachable yet (retried every 2 s)",
    )
    group_commit_window_ms: float = Field(
        default=1.0,
        ge=0,
        le=100,
        description="While machines report at the same time, how long a commit waits for more calls to share its "
        "fsync (a lone call never waits); 0 = commit at once",
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


def _http_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://, e.g. 'http://erp.example:8080'")
    return url.rstrip("/")


class _ErpCommon(_Section):
    """What every ERP adapter shares: how often to sync and relay, and how patiently."""

    sync_interval_seconds: float = Field(default=10.0, gt=0, le=86400)
    relay_interval_seconds: float = Field(default=2.0, gt=0, le=3600)
    timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    relay_max_attempts: int = Field(default=20, ge=1, le=10_000)
    relay_backoff_max_seconds: float = Field(default=300.0, gt=0)
    relay_process: bool = Field(
        default=True,
        description="`serve` relays postings to the ERP from a process of its own (forked at start), on another "
        "core than the OPC UA server's event loop; false: in the server's process",
    )


class ErpSettings(_ErpCommon):
    """`[erp]` with `adapter = "rest"` (the default): the generic REST contract v1."""

    adapter: Literal["rest"] = "rest"
    base_url: str = Field(default="http://127.0.0.1:8080", description="Root URL of the ERP/QMS REST contract v1")

    _url = field_validator("base_url")(_http_url)


class SapS4HanaSettings(_ErpCommon):
    """`[erp]` with `adapter = "sap-s4hana"`: SAP S/4HANA over its OData V2 APIs (docs/sap-s4hana.md).

    Authentication is Basic (username with password_file or password_env) or OAuth2 client credentials (token_url,
    client_id, client_secret_file); a password is never written into the file itself.
    """

    adapter: Literal["sap-s4hana"]
    base_url: str = Field(description="Services are under <base_url>/sap/opu/odata/sap/<SERVICE>/")
    sap_client: str = Field(default="", description="Sent as the sap-client query parameter; empty = default client")
    plant: str = Field(min_length=1, max_length=4, description="Only this plant's production orders")
    username: str = ""
    password_file: Path | None = None
    password_env: str = ""
    token_url: str = ""
    client_id: str = ""
    client_secret_file: Path | None = None
    page_size: int = Field(default=500, ge=1, le=5000, description="$top of one page; SAP pages further by __next")
    orders_per_request: int = Field(
        default=20, ge=1, le=100, description="Orders asked for in one operations/inspection lot request ($filter)"
    )
    quality_notification_type: str = Field(
        default="",
        max_length=2,
        description="SPC alarms become quality notifications of this type (e.g. 'Q3'); empty = they stay in the "
        "outbox as not deliverable to SAP (or go to [qms])",
    )
    quality_notification_path: str = Field(
        default="/sap/opu/odata4/sap/api_qualitynotification/srvd_a2x/sap/qualitynotification/0001",
        description="Root of the OData V4 quality notification service, below base_url",
    )

    _url = field_validator("base_url")(_http_url)

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secret(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for inline in ("password", "client_secret"):
                if inline in data:
                    raise ValueError(
                        f"erp.{inline}: never write a secret into the configuration — use "
                        f"{'password_file or password_env' if inline == 'password' else 'client_secret_file'}"
                    )
        return data

    @model_validator(mode="after")
    def _one_way_to_log_in(self) -> SapS4HanaSettings:
        oauth = self.token_url or self.client_id or self.client_secret_file is not None
        if oauth:
            missing = [
                f"erp.{key}"
                for key, value in (
                    ("token_url", self.token_url),
                    ("client_id", self.client_id),
                    ("client_secret_file", self.client_secret_file),
                )
                if not value
            ]
            if missing:
                raise ValueError(f"OAuth2 client credentials need {', '.join(missing)} — add it")
            if self.username:
                raise ValueError("erp.username and erp.token_url: choose Basic or OAuth2, not both")
            return self
        if not self.username:
            raise ValueError("erp.username is missing — add it (or token_url, client_id, client_secret_file)")
        if (self.password_file is None) == (not self.password_env):
            raise ValueError("erp.password_file or erp.password_env: set exactly one of them for erp.username")
        return self

    @property
    def uses_oauth(self) -> bool:
        return bool(self.token_url)


class QmsSettings(_Section):
    """`[qms]`, optional: test equipment from, and SPC alarms to, a QMS speaking the generic REST contract v1."""

    adapter: Literal["rest"] = "rest"
    base_url: str = Field(description="Root URL of the QMS's REST contract v1")
    timeout_seconds: float = Field(default=10.0, gt=0, le=600)

    _url = field_validator("base_url")(_http_url)


ERP_ADAPTERS = ("rest", "sap-s4hana")


def _erp_adapter(value: Any) -> str:
    adapter = value.get("adapter", "rest") if isinstance(value, dict) else getattr(value, "adapter", "rest")
    return str(adapter)


ErpSection = Annotated[
    Annotated[ErpSettings, Tag("rest")] | Annotated[SapS4HanaSettings, Tag("sap-s4hana")],
    Discriminator(_erp_adapter),
]


# A ReportMeasurements batch sends one element per entry in each of its 8 parallel arrays
# (server/methods/measurements.py, REPORT_MEASUREMENTS_ARGUMENTS; tests/unit/test_array_limits.py holds them equal).
ARRAY_ELEMENTS_PER_BATCH_ENTRY = 8


class LimitsSettings(_Section):
    """Limits against abuse: each one exceeded is answered with its standard OPC UA Bad code (docs/configuration.md).

    Enforced by qualitybridge.server.limits; the defaults leave room for UaExpert browsing and dozens of machines.
    The entries of one batch call are limited by `[reporting] max_batch_size`, not here.
    """

    max_connections: int = Field(
        default=200, ge=1, description="Open TCP connections, sessions not yet activated included; more are closed"
    )
    activation_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="A connection without an activated session after this is closed"
    )
    max_unactivated_connections_per_address: int = Field(
        default=16,
        ge=1,
        description="Connections from one IP address without an activated session; more from it are closed at once, "
        "so that a flood from one address leaves room for others",
    )
    hello_timeout_seconds: float = Field(
        default=3.0,
        gt=0,
        le=300,
        description="A connection that has not sent its Hello after this is closed (shorter than the activation "
        "timeout: a real client sends Hello right after connecting)",
    )
    max_sessions: int = Field(default=100, ge=1, description="Sessions at once; one more gets BadTooManySessions")
    max_session_timeout_seconds: float = Field(
        default=300.0,
        ge=10,
        le=3600,
        description="Upper bound of the session timeout a client may ask for: how long a silent client's "
        "session (and its subscriptions) is kept",
    )
    max_subscriptions_per_session: int = Field(
        default=20, ge=1, description="One more CreateSubscription gets BadTooManySubscriptions"
    )
    max_monitored_items_per_subscription: int = Field(
        default=2_000, ge=1, description="Items past it get BadTooManyMonitoredItems (per item)"
    )
    max_monitored_items_per_session: int = Field(
        default=10_000,
        ge=1,
        description="All subscriptions of a session together; items past it get BadTooManyMonitoredItems",
    )
    max_operations_per_request: int = Field(
        default=1_000,
        ge=1,
        description="Nodes per Read/Write/Browse, calls per Call, items per monitored-item request; "
        "more gets BadTooManyOperations. Published as ServerCapabilities.OperationLimits",
    )
    max_message_size: int = Field(
        default=4 * 1024 * 1024,
        ge=65_536,
        le=256 * 1024 * 1024,
        description="Bytes of one request message (all chunks); a larger one gets BadRequestTooLarge "
        "and the connection closes",
    )
    max_chunk_size: int = Field(
        default=65_535,
        ge=8_192,
        le=1024 * 1024,
        description="Bytes of one message chunk (TCP receive buffer); a larger chunk header gets "
        "BadTcpMessageTooLarge and the connection closes",
    )
    max_chunk_count: int = Field(
        default=0, ge=0, description="Chunks of one request message; 0 = as many as max_message_size needs"
    )
    max_array_length: int = Field(
        default=100_000,
        ge=1_000,
        le=10_000_000,
        description="Array elements of one request message, all its arrays together (so also of any one array); "
        "more gets BadEncodingLimitsExceeded before any element is decoded. Published as "
        "ServerCapabilities.MaxArrayLength. A ReportMeasurements batch takes 8 per entry",
    )
    max_queued_chunks_per_connection: int = Field(
        default=128,
        ge=16,
        description="Received chunks waiting to be processed per connection; a client sending faster is "
        "disconnected. Bounds memory: max_connections × this × max_chunk_size",
    )
    max_requests_per_second: float = Field(
        default=1_000.0,
        gt=0,
        description="Sustained service requests per session (token bucket); Publish and deletes are not counted. "
        "More get BadResourceUnavailable",
    )
    request_burst: int = Field(default=2_000, ge=1, description="Requests a session may send at once above the rate")
    login_penalty_base_seconds: float = Field(
        default=0.5, ge=0, le=60, description="Delay after the first failed login from a client address; doubles"
    )
    login_penalty_max_seconds: float = Field(
        default=8.0, ge=0, le=600, description="Cap of the doubling delay; keep below clients' request timeout"
    )
    login_failure_memory_seconds: float = Field(
        default=900.0, gt=0, description="Failed logins of an address are forgotten after this long without a new one"
    )

    @model_validator(mode="after")
    def _consistent(self) -> LimitsSettings:
        if self.login_penalty_max_seconds < self.login_penalty_base_seconds:
            raise ValueError("login_penalty_max_seconds must be at least login_penalty_base_seconds")
        if self.max_queued_chunks_per_connection < self.effective_max_chunk_count:
            raise ValueError(
                f"max_queued_chunks_per_connection must be at least the chunks of one message "
                f"({self.effective_max_chunk_count}): raise it or lower max_message_size"
            )
        return self

    @property
    def effective_max_chunk_count(self) -> int:
        if self.max_chunk_count:
            return self.max_chunk_count
        # A chunk carries a little less body than its size (headers, signature, padding): keep one spare per 64.
        chunks = math.ceil(self.max_message_size / self.max_chunk_size)
        return chunks + chunks // 64 + 1


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


class HistorySettings(_Section):
    """HistoryRead of measured values and how long measurements are kept (docs/information-model.md#history)."""

    retention_days: int = Field(
        default=0,
        ge=0,
        le=36500,
        description="Measurements taken longer ago than this are purged, except those the outbox still owes the "
        "ERP; 0 keeps them for ever",
    )
    purge_interval_hours: float = Field(default=24.0, gt=0, le=720, description="How often the purge runs")
    max_values_per_answer: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Values in one HistoryRead answer per node; the rest follows through a continuation point",
    )


class KpiSettings(_Section):
    """Quality KPIs posted to the ERP/QMS (docs/kpis.md)."""

    enabled: bool = Field(default=True, description="Compute and post daily and per-order KPIs")
    daily_at: str = Field(
        default="00:15",
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        description="UTC time of day (HH:MM) at which the previous day's KPIs are computed and posted",
    )


class QualityEventSettings(_Section):
    """Quality events beyond those the data raises by itself (docs/information-model.md, quality events)."""

    calibration_reminder_at: str = Field(
        default="06:00",
        pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9])?$",
        description="UTC time of day (HH:MM) of the daily GaugeCalibration event for every gauge still due soon or "
        "expired; empty: no daily reminder (status changes still raise their events)",
    )


class ReportingSettings(_Section):
    """What the report methods accept (docs/report-methods.md)."""

    max_batch_size: int = Field(
        default=1000, ge=1, le=100_000, description="Entries per ReportMeasurements call; more: BadTooManyOperations"
    )
    future_tolerance_seconds: float = Field(
        default=300.0,
        ge=0,
        le=86_400,
        description="How far a MeasuredAt may lie ahead of the server clock (machine clocks drift) before "
        "BadOutOfRange",
    )
    measured_at_margin_days: float = Field(
        default=30.0,
        gt=0,
        le=3650,
        description="How far a MeasuredAt may lie before the order's planned start (or before now, if the start "
        "lies ahead) before BadOutOfRange: a PLC buffers measurements for a while, not for years",
    )
    over_confirmation_percent: float = Field(
        default=10.0,
        ge=0,
        le=1000,
        description="How far an operation's confirmed quantity (yield + scrap) may exceed the order's planned "
        "quantity, in percent, before BadOutOfRange",
    )


OrderStateName = Literal["NOT_ALLOWED_TO_START", "ALLOWED_TO_START", "RUNNING", "INTERRUPTED", "ENDED", "ABORTED"]


class PublishSettings(_Section):
    """`[publish]`: which released orders the address space publishes (docs/configuration.md#publish).

    The defaults publish every released order. Orders left out stay in the store: reports against them are still
    accepted, stored and relayed; they are only not browsable.
    """

    work_centres: list[str] = Field(
        default_factory=list,
        description="Publish only orders planned on one of these work centres (the order's or an operation's); "
        "empty = every work centre",
    )
    states: list[OrderStateName] = Field(
        default_factory=list, description="Publish only orders in one of these states; empty = every state"
    )
    planned_days_back: float | None = Field(
        default=None,
        ge=0,
        le=3650,
        description="Leave out orders whose planned end lies more than this many days in the past; unset = no limit",
    )
    planned_days_ahead: float | None = Field(
        default=None,
        ge=0,
        le=3650,
        description="Leave out orders whose planned start lies more than this many days ahead; unset = no limit",
    )


NelsonRules = Annotated[list[Annotated[int, Field(ge=1, le=8)]], Field(max_length=8)]


class SpcRuleDefaults(_Section):
    """The Nelson rules (1..8) judged for a characteristic of each classification, unless it has its own list."""

    # The same defaults as qualitybridge.domain.spc.DEFAULT_RULES (the config imports nothing of QualityBridge;
    # a unit test keeps the two equal).
    critical: NelsonRules = Field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 7, 8])
    major: NelsonRules = Field(default_factory=lambda: [1, 2, 5, 6])  # the Western Electric rules
    minor: NelsonRules = Field(default_factory=lambda: [1])


class SpcSeverity(_Section):
    """OPC UA severity (1..1000) of a rule violation, by the characteristic's classification."""

    critical: int = Field(default=900, ge=1, le=1000)
    major: int = Field(default=700, ge=1, le=1000)
    minor: int = Field(default=400, ge=1, le=1000)


class SpcCharacteristicSettings(_Section):
    """`[spc.characteristics.<characteristic id>]`: one characteristic's own rules or baseline length."""

    rules: NelsonRules | None = None
    baseline_subgroups: int | None = Field(default=None, ge=2, le=10_000)


class SpcSettingsSection(_Section):
    """Statistical process control by QualityBridge itself (docs/spc.md)."""

    enabled: bool = Field(default=True, description="Judge every accepted measurement with the SPC engine")
    baseline_subgroups: int = Field(
        default=25,
        ge=2,
        le=10_000,
        description="Points (subgroups) whose statistics set the control limits when the plan gives none",
    )
    capability_window: int = Field(
        default=125, ge=2, le=100_000, description="Latest values over which Cp, Cpk, Pp and Ppk are computed"
    )
    catch_up_minutes: float = Field(
        default=10.0,
        ge=0,
        le=10_080,
        description="At start, violations of results received this recently that have no alarm yet (a crash "
        "between storing the result and its alarm) are raised and posted",
    )
    rules: SpcRuleDefaults = Field(default_factory=SpcRuleDefaults)
    severity: SpcSeverity = Field(default_factory=SpcSeverity)
    characteristics: dict[str, SpcCharacteristicSettings] = Field(default_factory=dict)


class OperationsSettings(_Section):
    """The HTTP operations endpoint: /healthz, /readyz, /metrics and a status page (docs/operations.md)."""

    enabled: bool = Field(default=False, description="Serve the operations endpoint")
    host: str = Field(
        default="127.0.0.1", description="Interface it listens on; loopback unless a monitoring host must reach it"
    )
    port: int = Field(default=9840, ge=0, le=65535, description="HTTP port (0 = any free port, logged at start)")
    max_sync_age_seconds: float = Field(
        default=120.0,
        gt=0,
        description="/readyz reports not ready when the last successful ERP sync is older than this",
    )
    store_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="/readyz reports not ready when the store does not answer within this"
    )


# The mapping tables, named as `qualitybridge mapping --kind` names them (domain/mapping.py MappingKind).
MappingKindName = Literal["material", "characteristic", "work-centre", "unit"]


class MasterDataSettings(_Section):
    """[master_data]: which mapping tables the ERP sync applies (docs/master-data.md)."""

    required_mappings: list[MappingKindName] = Field(
        default_factory=list,
        description="Mapping tables in force: an order with a key such a table does not map is held back and listed "
        "under Diagnostics/MasterDataGaps. Default: none (orders are shown as the ERP sends them)",
    )

    @field_validator("required_mappings")
    @classmethod
    def _each_once(cls, kinds: list[str]) -> list[str]:
        twice = sorted({kind for kind in kinds if kinds.count(kind) > 1})
        if twice:
            raise ValueError(f"names {', '.join(twice)} more than once: list each table once")
        return kinds


class QualityBridgeConfig(_Section):
    data_dir: Path = Field(default=Path("data"), description="Folder for the SQLite store, PKI and logs")
    log_level: str = "INFO"
    log_format: str = Field(default="text", description="text (one line per entry) or json (one object per line)")
    server: ServerSettings = Field(default_factory=ServerSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    erp: ErpSection = Field(default_factory=ErpSettings)
    qms: QmsSettings | None = None
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    reporting: ReportingSettings = Field(default_factory=ReportingSettings)
    history: HistorySettings = Field(default_factory=HistorySettings)
    kpis: KpiSettings = Field(default_factory=KpiSettings)
    quality_events: QualityEventSettings = Field(default_factory=QualityEventSettings)
    spc: SpcSettingsSection = Field(default_factory=SpcSettingsSection)
    operations: OperationsSettings = Field(default_factory=OperationsSettings)
    publish: PublishSettings = Field(default_factory=PublishSettings)
    master_data: MasterDataSettings = Field(default_factory=MasterDataSettings)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, level: str) -> str:
        if level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return level.upper()

    @field_validator("log_format")
    @classmethod
    def _known_format(cls, log_format: str) -> str:
        if log_format.lower() not in ("text", "json"):
            raise ValueError("must be text or json")
        return log_format.lower()

    @model_validator(mode="after")
    def _batches_within_array_limit(self) -> QualityBridgeConfig:
        needed = ARRAY_ELEMENTS_PER_BATCH_ENTRY * self.reporting.max_batch_size + 64
        if self.limits.max_array_length < needed:
            raise ValueError(
                f"limits.max_array_length ({self.limits.max_array_length}) must be at least {needed}: a "
                f"ReportMeasurements batch of reporting.max_batch_size ({self.reporting.max_batch_size}) entries "
                f"sends {ARRAY_ELEMENTS_PER_BATCH_ENTRY} array elements per entry"
            )
        return self

    @property
    def store_url(self) -> str:
        return self.store.url or f"sqlite+aiosqlite:///{(self.data_dir / 'qualitybridge.db').resolve()}"

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and how to fix it."""


def _describe(error: dict[str, Any]) -> str:
    # The adapter's name is part of pydantic's location for [erp]; the file has no such level.
    key = ".".join(str(part) for part in error["loc"] if part not in ERP_ADAPTERS)
    if error["type"] == "union_tag_invalid":
        return f"{key}.adapter: unknown adapter {error['ctx']['tag']!r} — use one of {', '.join(ERP_ADAPTERS)}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "value_error" and message.startswith(f"{key}."):
        return message  # a check across keys of one section names its keys itself
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
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}): save it as UTF-8"
        ) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    config = parse_config(raw, source=str(path))
    if not config.data_dir.is_absolute():
        config.data_dir = (path.parent / config.data_dir).resolve()
    return config
