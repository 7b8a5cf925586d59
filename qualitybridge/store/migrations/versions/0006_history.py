"""HistoryRead serves a characteristic's measurements from measurement_results: an index on the series key and
measurement time lets each page be read in order without a sort.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_measurement_results_series",
        "measurement_results",
        ["order_no", "operation_no", "characteristic_id", "measured_at", "result_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_measurement_results_series", table_name="measurement_results")
