"""Shop-floor reporting: confirmations, SPC alarms, refused gauge attempts, due-soon flag, discarded postings.

Results get `gauge_due_soon`; the outbox gets who discarded an entry, when and why (`qualitybridge outbox discard`),
so that nothing leaves it silently. Existing rows keep their meaning: no result was flagged, nothing discarded.

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("measurement_results") as batch:
        batch.add_column(sa.Column("gauge_due_soon", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("discard_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("discarded_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("discarded_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "confirmations",
        sa.Column("confirmation_id", sa.String(36), nullable=False),
        sa.Column("client_confirmation_id", sa.String(128), nullable=True),
        sa.Column("order_no", sa.String(32), nullable=False),
        sa.Column("operation_no", sa.String(16), nullable=False),
        sa.Column("yield_quantity", sa.Float(), nullable=False),
        sa.Column("scrap_quantity", sa.Float(), nullable=False),
        sa.Column("rework_quantity", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(3), nullable=False),
        sa.Column("reason_code", sa.String(32), nullable=False),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.Column("reported_by", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("confirmation_id", name="pk_confirmations"),
        sa.UniqueConstraint("client_confirmation_id", name="uq_confirmations_client_confirmation_id"),
    )
    op.create_index("ix_confirmations_order_operation", "confirmations", ["order_no", "operation_no"])
    op.create_table(
        "spc_alarms",
        sa.Column("alarm_id", sa.String(36), nullable=False),
        sa.Column("order_no", sa.String(32), nullable=False),
        sa.Column("operation_no", sa.String(16), nullable=False),
        sa.Column("characteristic_id", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reported_by", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("alarm_id", name="pk_spc_alarms"),
    )
    op.create_index("ix_spc_alarms_order_no", "spc_alarms", ["order_no"])
    op.create_table(
        "refused_measurements",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("order_no", sa.String(32), nullable=False),
        sa.Column("operation_no", sa.String(16), nullable=False),
        sa.Column("characteristic_id", sa.String(64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("equipment_id", sa.String(64), nullable=False),
        sa.Column("calibration_status", sa.Integer(), nullable=False),
        sa.Column("part_serial", sa.String(128), nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client_result_id", sa.String(128), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("reported_by", sa.String(64), nullable=False),
        sa.Column("refused_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_refused_measurements"),
    )
    op.create_index("ix_refused_measurements_equipment_id", "refused_measurements", ["equipment_id"])


def downgrade() -> None:
    op.drop_index("ix_refused_measurements_equipment_id", table_name="refused_measurements")
    op.drop_table("refused_measurements")
    op.drop_index("ix_spc_alarms_order_no", table_name="spc_alarms")
    op.drop_table("spc_alarms")
    op.drop_index("ix_confirmations_order_operation", table_name="confirmations")
    op.drop_table("confirmations")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("discarded_at")
        batch.drop_column("discarded_by")
        batch.drop_column("discard_reason")
    with op.batch_alter_table("measurement_results") as batch:
        batch.drop_column("gauge_due_soon")
