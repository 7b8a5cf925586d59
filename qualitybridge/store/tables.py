"""The relational schema: the one source of truth every other view (address space, ERP relay) derives from.

Orders and gauges are kept as the ERP sent them (a JSON document) next to the columns the server queries;
results and outbox rows are written in one transaction, so that a report answered Good is also queued for
the ERP. Changes to this file need an Alembic migration in `migrations/versions`.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

production_orders = Table(
    "production_orders",
    metadata,
    Column("order_no", String(32), primary_key=True),
    Column("document", JSON, nullable=False),
    Column("state", Integer, nullable=False),
    Column("released", Boolean, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

test_equipment = Table(
    "test_equipment",
    metadata,
    Column("equipment_id", String(64), primary_key=True),
    Column("document", JSON, nullable=False),
    Column("calibration_status", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Where each master-data source's delta sync continues: its own opaque watermark, so a restart resumes the delta.
source_watermarks = Table(
    "source_watermarks",
    metadata,
    Column("source", String(64), primary_key=True),
    Column("watermark", String(512), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The sync findings that stand for this source ([{"key", "reason"}]): a delta does not repeat them.
    Column("findings", JSON, nullable=False),
)

measurement_results = Table(
    "measurement_results",
    metadata,
    Column("result_id", String(36), primary_key=True),
    # A client result id is the caller's: unique per reporting user, not across users (migration 0005).
    Column("client_result_id", String(128), nullable=True),
    # Looked up by order through the series index's first column (no index of its own: migration 0010).
    Column("order_no", String(32), nullable=False),
    Column("operation_no", String(16), nullable=False),
    Column("characteristic_id", String(64), nullable=False),
    Column("value", Float, nullable=False),
    Column("unit", String(3), nullable=False),
    Column("evaluation", Integer, nullable=False),
    Column("plan_version", String(32), nullable=False),
    Column("equipment_id", String(64), nullable=False),
    Column("part_serial", String(128), nullable=False),
    Column("measured_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("reported_by", String(64), nullable=False),
    # Taken with a gauge whose calibration is due soon: accepted, but a quality engineer may want to look again.
    Column("gauge_due_soon", Boolean, nullable=False, server_default=false()),
    # The order's routing version in force at measured_at (migration 0008); NULL: stored before it was recorded.
    Column("routing_version", String(64), nullable=True),
    # A late measurement, judged against plan_version although a newer version was in force when it arrived.
    Column("plan_version_superseded", Boolean, nullable=False, server_default=false()),
    UniqueConstraint("reported_by", "client_result_id", name="uq_measurement_results_client_scope"),
    # One characteristic's series in measurement-time order: HistoryRead pages through it (migration 0006).
    Index("ix_measurement_results_series", "order_no", "operation_no", "characteristic_id", "measured_at", "result_id"),
)

# The plan history (migration 0008): a characteristic's definition as it was in force until superseded_at, kept
# when a sync brought a new plan version or routing version, so that a late measurement is judged against it.
superseded_plan_versions = Table(
    "superseded_plan_versions",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("order_no", String(32), nullable=False),
    Column("operation_no", String(16), nullable=False),
    Column("characteristic_id", String(64), nullable=False),
    Column("plan_version", String(32), nullable=False),
    Column("routing_version", String(64), nullable=False),
    Column("definition", JSON, nullable=False),
    Column("superseded_at", DateTime(timezone=True), nullable=False),
    Index("ix_superseded_plan_versions_key", "order_no", "operation_no", "characteristic_id", "superseded_at"),
)

outbox = Table(
    "outbox",
    metadata,
    # The sequence keeps postings in the order they were accepted, per order and overall.
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("idempotency_key", String(64), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("order_no", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("last_error", Text, nullable=True),
    Column("erp_document", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    # `qualitybridge outbox discard`: a person decided this posting is not to be delivered, and said why.
    Column("discard_reason", Text, nullable=True),
    Column("discarded_by", String(64), nullable=True),
    Column("discarded_at", DateTime(timezone=True), nullable=True),
    # The relay's page: pending postings in acceptance order, without a scan of the sent ones (migration 0009).
    Index("ix_outbox_state_seq", "state", "seq"),
)

confirmations = Table(
    "confirmations",
    metadata,
    Column("confirmation_id", String(36), primary_key=True),
    Column("client_confirmation_id", String(128), nullable=True),
    Column("order_no", String(32), nullable=False),
    Column("operation_no", String(16), nullable=False),
    Column("yield_quantity", Float, nullable=False),
    Column("scrap_quantity", Float, nullable=False),
    Column("rework_quantity", Float, nullable=False),
    Column("unit", String(3), nullable=False),
    Column("reason_code", String(32), nullable=False),
    Column("final", Boolean, nullable=False),
    Column("reported_by", String(64), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Index("ix_confirmations_order_operation", "order_no", "operation_no"),
    UniqueConstraint("reported_by", "client_confirmation_id", name="uq_confirmations_client_scope"),
)

spc_alarms = Table(
    "spc_alarms",
    metadata,
    Column("alarm_id", String(36), primary_key=True),
    Column("order_no", String(32), nullable=False, index=True),
    Column("operation_no", String(16), nullable=False),
    Column("characteristic_id", String(64), nullable=False),
    Column("rule", String(64), nullable=False),
    Column("severity", Integer, nullable=False),
    Column("message", Text, nullable=False),
    Column("raised_at", DateTime(timezone=True), nullable=False),
    Column("reported_by", String(64), nullable=False),
    # Found by the SPC engine (migration 0004); empty for an alarm a machine reported.
    Column("rule_number", Integer, nullable=True),
    Column("result_id", String(36), nullable=True),
    Column("value", Float, nullable=True),
    Column("center_line", Float, nullable=True),
    Column("upper_control_limit", Float, nullable=True),
    Column("lower_control_limit", Float, nullable=True),
    # A machine's own id for a reported alarm (migration 0005), unique per reporting user.
    Column("client_alarm_id", String(128), nullable=True),
    UniqueConstraint("reported_by", "client_alarm_id", name="uq_spc_alarms_client_scope"),
)

# Reports refused because the gauge was blocked: the audit trail of attempted use, never relayed to the ERP.
refused_measurements = Table(
    "refused_measurements",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("order_no", String(32), nullable=False),
    Column("operation_no", String(16), nullable=False),
    Column("characteristic_id", String(64), nullable=False),
    Column("value", Float, nullable=False),
    Column("equipment_id", String(64), nullable=False, index=True),
    Column("calibration_status", Integer, nullable=False),
    Column("part_serial", String(128), nullable=False),
    Column("measured_at", DateTime(timezone=True), nullable=False),
    Column("client_result_id", String(128), nullable=True),
    Column("reason", Text, nullable=False),
    Column("reported_by", String(64), nullable=False),
    Column("refused_at", DateTime(timezone=True), nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(32), nullable=False),
    Column("password_hash", String(256), nullable=False),
    Column("work_centres", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # SHA-1 thumbprint of the certificate an X.509 user token must present to log in as this user.
    Column("certificate_thumbprint", String(40), nullable=True),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("action", String(64), nullable=False),
    Column("user_name", String(64), nullable=True, index=True),
    Column("client_thumbprint", String(40), nullable=True),
    Column("remote_address", String(64), nullable=True),
    Column("node", String(256), nullable=True),
    Column("arguments", String(512), nullable=True),
    # BigInteger: OPC UA status codes are UInt32 and Bad codes do not fit a signed 32-bit column.
    Column("status_code", BigInteger, nullable=False),
    Column("status_name", String(64), nullable=False),
)

# How one system's key names the same thing in another (domain/mapping.py): ERP material -> MES part, ERP
# characteristic -> QMS name, work centre -> cost centre, ERP unit -> UNECE code (migration 0007).
mappings = Table(
    "mappings",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("source_key", String(128), nullable=False),
    Column("target_key", String(128), nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("changed_by", String(64), nullable=False),
    UniqueConstraint("kind", "source_key", name="uq_mappings_kind_source_key"),
)

# The mapping gaps that hold records back now, kept so that "since when" survives a restart (migration 0007).
# The key is the ERP's, unchecked in length, hence Text; `orders` lists the order numbers waiting for it.
mapping_gaps = Table(
    "mapping_gaps",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("source_key", Text, nullable=False),
    Column("since", DateTime(timezone=True), nullable=False),
    Column("orders", JSON, nullable=False),
    UniqueConstraint("kind", "source_key", name="uq_mapping_gaps_kind_source_key"),
)
