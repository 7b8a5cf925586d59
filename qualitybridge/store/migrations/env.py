"""Alembic environment: runs on the connection handed over by `qualitybridge.store.database.migrate`.

Driving Alembic from the application (rather than an alembic.ini) means every start brings the schema to head,
so an upgraded QualityBridge never runs against an old schema and never drops a plant's data.
"""

from __future__ import annotations

from alembic import context

from qualitybridge.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
