"""Audit trail and certificate-bound users.

audit_log keeps who did what through OPC UA or the admin CLI (session activations, method calls, writes,
PKI and user changes) with the StatusCode it got; users.certificate_thumbprint binds an X.509 user token to
an account.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("user_name", sa.String(64), nullable=True),
        sa.Column("client_thumbprint", sa.String(40), nullable=True),
        sa.Column("remote_address", sa.String(64), nullable=True),
        sa.Column("node", sa.String(256), nullable=True),
        sa.Column("arguments", sa.String(512), nullable=True),
        sa.Column("status_code", sa.BigInteger(), nullable=False),
        sa.Column("status_name", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_user_name", "audit_log", ["user_name"])
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("certificate_thumbprint", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("certificate_thumbprint")
    op.drop_index("ix_audit_log_user_name", table_name="audit_log")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
