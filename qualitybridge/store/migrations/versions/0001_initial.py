"""Initial schema: orders, gauges, measurement results, outbox, users.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "production_orders",
        sa.Column("order_no", sa.String(32), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("released", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("order_no", name="pk_production_orders"),
    )
    op.create_table(
        "test_equipment",
        sa.Column("equipment_id", sa.String(64), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("calibration_status", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("equipment_id", name="pk_test_equipment"),
    )
    op.create_table(
        "measurement_results",
        sa.Column("result_id", sa.String(36), nullable=False),
        sa.Column("client_result_id", sa.String(128), nullable=True),
        sa.Column("order_no", sa.String(32), nullable=False),
        sa.Column("operation_no", sa.String(16), nullable=False),
        sa.Column("characteristic_id", sa.String(64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(3), nullable=False),
        sa.Column("evaluation", sa.Integer(), nullable=False),
        sa.Column("plan_version", sa.String(32), nullable=False),
        sa.Column("equipment_id", sa.String(64), nullable=False),
        sa.Column("part_serial", sa.String(128), nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reported_by", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("result_id", name="pk_measurement_results"),
        sa.UniqueConstraint("client_result_id", name="uq_measurement_results_client_result_id"),
    )
    op.create_index("ix_measurement_results_order_no", "measurement_results", ["order_no"])
    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("order_no", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("erp_document", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_outbox"),
        sa.UniqueConstraint("idempotency_key", name="uq_outbox_idempotency_key"),
    )
    op.create_index("ix_outbox_state_next_attempt", "outbox", ["state", "next_attempt_at"])
    op.create_table(
        "users",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("work_centres", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_users"),
    )


def downgrade() -> None:
    op.drop_table("users")
    op.drop_index("ix_outbox_state_next_attempt", table_name="outbox")
    op.drop_table("outbox")
    op.drop_index("ix_measurement_results_order_no", table_name="measurement_results")
    op.drop_table("measurement_results")
    op.drop_table("test_equipment")
    op.drop_table("production_orders")
