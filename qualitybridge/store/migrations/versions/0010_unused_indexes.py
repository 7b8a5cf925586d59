"""Two indexes no query needs, each written at every accepted measurement: (order_no) of the results, which the
series index (order_no, operation_no, characteristic_id, measured_at, result_id) serves by its first column, and
(state, next_attempt_at) of the outbox, which no query reads (the relay pages by (state, seq), migration 0009) and
which every delivery's marking moved as well.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_measurement_results_order_no", table_name="measurement_results")
    op.drop_index("ix_outbox_state_next_attempt", table_name="outbox")


def downgrade() -> None:
    op.create_index("ix_outbox_state_next_attempt", "outbox", ["state", "next_attempt_at"])
    op.create_index("ix_measurement_results_order_no", "measurement_results", ["order_no"])
