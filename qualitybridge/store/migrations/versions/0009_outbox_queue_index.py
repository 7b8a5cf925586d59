"""The relay reads the pending postings in acceptance order (state, seq): with an index on exactly that, each round
reads its page without scanning the sent postings before it or sorting the whole backlog.

Revision ID: 0009
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_state_seq", "outbox", ["state", "seq"])


def downgrade() -> None:
    op.drop_index("ix_outbox_state_seq", table_name="outbox")
