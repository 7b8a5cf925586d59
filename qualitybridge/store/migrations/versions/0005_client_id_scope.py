"""Client ids scoped to the reporting user; SPC alarms get a client alarm id.

A ClientResultId or ClientConfirmationId was unique across all callers, so one machine's id answered another
machine's report with the first machine's result (issue 9, finding 5). They are now unique per `reported_by`.
SPC alarms get `client_alarm_id`, unique per `reported_by` as well. Existing rows keep their ids: they were
unique overall, so they are unique per user too.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("measurement_results") as batch:
        batch.drop_constraint("uq_measurement_results_client_result_id", type_="unique")
        batch.create_unique_constraint("uq_measurement_results_client_scope", ["reported_by", "client_result_id"])
    with op.batch_alter_table("confirmations") as batch:
        batch.drop_constraint("uq_confirmations_client_confirmation_id", type_="unique")
        batch.create_unique_constraint("uq_confirmations_client_scope", ["reported_by", "client_confirmation_id"])
    with op.batch_alter_table("spc_alarms") as batch:
        batch.add_column(sa.Column("client_alarm_id", sa.String(128), nullable=True))
        batch.create_unique_constraint("uq_spc_alarms_client_scope", ["reported_by", "client_alarm_id"])


def downgrade() -> None:
    with op.batch_alter_table("spc_alarms") as batch:
        batch.drop_constraint("uq_spc_alarms_client_scope", type_="unique")
        batch.drop_column("client_alarm_id")
    with op.batch_alter_table("confirmations") as batch:
        batch.drop_constraint("uq_confirmations_client_scope", type_="unique")
        batch.create_unique_constraint("uq_confirmations_client_confirmation_id", ["client_confirmation_id"])
    with op.batch_alter_table("measurement_results") as batch:
        batch.drop_constraint("uq_measurement_results_client_scope", type_="unique")
        batch.create_unique_constraint("uq_measurement_results_client_result_id", ["client_result_id"])
