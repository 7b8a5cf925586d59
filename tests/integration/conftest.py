"""Fixtures of the integration tier: stores on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from qualitybridge.store import Store, open_store
from tests.harness import POSTGRES_SKIP_REASON, POSTGRES_URL


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A migrated, empty store on each backend; PostgreSQL gets a schema of its own per test."""
    if request.param == "sqlite":
        opened = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
        yield opened
        await opened.aclose()
        return
    if not POSTGRES_URL:
        pytest.skip(POSTGRES_SKIP_REASON)
    schema = f"qb_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(POSTGRES_URL)
    async with admin.begin() as conn:
        await conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    engine = create_async_engine(POSTGRES_URL, connect_args={"server_settings": {"search_path": schema}})
    opened = await open_store(POSTGRES_URL, engine=engine)
    try:
        yield opened
    finally:
        await opened.aclose()
        async with admin.begin() as conn:
            await conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.dispose()
