"""SPC alarms found by QualityBridge's own SPC engine: the Nelson rule number, the result that completed the
pattern, its plotted value and the control limits in force. Machine-reported alarms leave them empty.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("spc_alarms") as batch:
        batch.add_column(sa.Column("rule_number", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("result_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("value", sa.Float(), nullable=True))
        batch.add_column(sa.Column("center_line", sa.Float(), nullable=True))
        batch.add_column(sa.Column("upper_control_limit", sa.Float(), nullable=True))
        batch.add_column(sa.Column("lower_control_limit", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("spc_alarms") as batch:
        for name in ("lower_control_limit", "upper_control_limit", "center_line", "value", "result_id", "rule_number"):
            batch.drop_column(name)
