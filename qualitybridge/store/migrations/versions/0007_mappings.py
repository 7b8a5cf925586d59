"""Mapping tables: ERP material ↔ MES part, ERP characteristic ↔ QMS name, work centre ↔ cost centre, ERP unit ↔
UNECE code (issue 13). One table for the four kinds; a source key maps to one target per kind. mapping_gaps keeps
the keys a table in force lacks, with since when, so the Diagnostics gap list survives a restart.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mappings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("source_key", sa.String(128), nullable=False),
        sa.Column("target_key", sa.String(128), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_by", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_mappings"),
        sa.UniqueConstraint("kind", "source_key", name="uq_mappings_kind_source_key"),
    )
    op.create_table(
        "mapping_gaps",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("source_key", sa.Text(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("orders", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_mapping_gaps"),
        sa.UniqueConstraint("kind", "source_key", name="uq_mapping_gaps_kind_source_key"),
    )


def downgrade() -> None:
    op.drop_table("mapping_gaps")
    op.drop_table("mappings")
