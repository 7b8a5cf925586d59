"""Fixtures of the integration tier: stores on SQLite and (when configured) PostgreSQL, and the ERP simulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from qualitybridge.simulator.app import serve
from qualitybridge.store import Store, open_store
from tests.harness import POSTGRES_SKIP_REASON, POSTGRES_URL, free_port, postgres_schema_engine


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
    async with postgres_schema_engine(POSTGRES_URL) as engine:
        opened = await open_store(POSTGRES_URL, engine=engine)
        try:
            yield opened
        finally:
            await opened.aclose()


@pytest.fixture
async def erp_url() -> AsyncIterator[str]:
    """The reference ERP simulator over real HTTP on a loopback port of its own, for this test."""
    port = free_port()
    started = asyncio.Event()
    task = asyncio.create_task(serve("127.0.0.1", port, started=started))
    await asyncio.wait_for(started.wait(), 20)
    yield f"http://127.0.0.1:{port}"
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
