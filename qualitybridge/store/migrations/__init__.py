"""Alembic migrations of the store; `qualitybridge.store.database.migrate` runs them at every start."""
