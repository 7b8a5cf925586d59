"""Watermarks of master-data sources: where each source's delta sync continues after a restart.

One row per source ("erp", "erp+qms"); the watermark is the source's own opaque text (a REST revision pair, an SAP
LastChangeDateTime), with the sync findings that stand for it (a delta does not repeat them, so a restart must
not forget them). A missing row means: fetch everything once.

Revision ID: 0004_watermarks
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_watermarks"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "source_watermarks",
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("watermark", sa.String(512), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("findings", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("source", name="pk_source_watermarks"),
    )


def downgrade() -> None:
    op.drop_table("source_watermarks")
