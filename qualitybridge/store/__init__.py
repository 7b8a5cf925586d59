"""The store: SQLAlchemy 2 (async) over SQLite or PostgreSQL, schema versioned with Alembic."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from qualitybridge.store.database import create_engine, migrate
from qualitybridge.store.repository import OutboxCounts, Store, StoredUser

__all__ = ["OutboxCounts", "Store", "StoredUser", "create_engine", "migrate", "open_store"]


async def open_store(url: str, *, sqlite_synchronous: str = "FULL", engine: AsyncEngine | None = None) -> Store:
    """Connect, bring the schema to head, and hand back the store."""
    engine = engine or create_engine(url, sqlite_synchronous=sqlite_synchronous)
    await migrate(engine)
    return Store(engine)
