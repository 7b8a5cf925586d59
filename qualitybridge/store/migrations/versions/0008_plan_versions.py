"""Plan-version tracking (issue 13): every measurement records the routing version in force at its MeasuredAt and
whether it was judged against a superseded plan version; a sync that brings a new plan (or routing) version keeps
the characteristic's previous definition in `superseded_plan_versions`.

Existing measurements get `routing_version` NULL ("not recorded": stored before this revision) and
`plan_version_superseded` false (they were judged against the version in force when they arrived, which is all
QualityBridge knew then). No history exists for changes made before this revision.

Revision ID: 0008
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("measurement_results") as batch:
        batch.add_column(sa.Column("routing_version", sa.String(64), nullable=True))
        batch.add_column(sa.Column("plan_version_superseded", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "superseded_plan_versions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("order_no", sa.String(32), nullable=False),
        sa.Column("operation_no", sa.String(16), nullable=False),
        sa.Column("characteristic_id", sa.String(64), nullable=False),
        sa.Column("plan_version", sa.String(32), nullable=False),
        sa.Column("routing_version", sa.String(64), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_superseded_plan_versions"),
    )
    op.create_index(
        "ix_superseded_plan_versions_key",
        "superseded_plan_versions",
        ["order_no", "operation_no", "characteristic_id", "superseded_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_superseded_plan_versions_key", table_name="superseded_plan_versions")
    op.drop_table("superseded_plan_versions")
    with op.batch_alter_table("measurement_results") as batch:
        batch.drop_column("plan_version_superseded")
        batch.drop_column("routing_version")
