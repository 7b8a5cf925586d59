"""PostgreSQL's pooled connections: pinged at checkout only after lying idle (not once per group commit), and a
connection the server dropped is replaced — whether the store was quiet or busy when it went."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from qualitybridge.store import database
from qualitybridge.store.database import create_engine
from qualitybridge.store.group_commit import GroupCommit, Merged, Planned
from tests.harness import POSTGRES_SKIP_REASON, POSTGRES_URL

pytestmark = [pytest.mark.postgres, pytest.mark.skipif(not POSTGRES_URL, reason=POSTGRES_SKIP_REASON)]


class _Pings:
    def __init__(self, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = engine.dialect.do_ping

        def counted(dbapi_connection: Any) -> bool:
            self.count += 1
            return original(dbapi_connection)

        monkeypatch.setattr(engine.dialect, "do_ping", counted)


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    engine = create_engine(POSTGRES_URL)
    yield engine
    await engine.dispose()


async def _backend(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _terminate(pid: int) -> None:
    admin = create_async_engine(POSTGRES_URL)
    try:
        async with admin.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        await admin.dispose()


async def test_a_busy_pool_is_not_pinged_at_every_checkout(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings = _Pings(engine, monkeypatch)
    for _ in range(5):
        await _backend(engine)
    assert pings.count == 0, "a connection used a moment ago was pinged again"


async def test_an_idle_connection_the_server_dropped_is_replaced(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 0.05)
    pings = _Pings(engine, monkeypatch)
    first = await _backend(engine)
    await _terminate(first)
    await asyncio.sleep(0.1)
    assert await _backend(engine) != first  # no error: the ping found it gone and the pool took a new one
    assert pings.count >= 1


async def test_a_group_commit_on_a_connection_dropped_while_busy_is_written_again(engine: AsyncEngine) -> None:
    """No ping (the connection was used a moment ago): the group fails on the dead connection, SQLAlchemy renews the
    pool, and the works are written again one by one on fresh connections; every caller gets its answer."""
    pid = await _backend(engine)
    await _terminate(pid)
    group = GroupCommit(engine)

    async def write(conn: Any) -> int:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())

    answers = await asyncio.gather(*(group.run(write) for _ in range(4)))
    assert pid not in answers


async def test_a_planned_write_alone_on_a_connection_dropped_while_busy_is_written(engine: AsyncEngine) -> None:
    """A single call's planned group (run on the driver's connection, past SQLAlchemy) meets the dropped connection
    first: the connection is thrown away there, so the ordinary way that follows takes a fresh one and the caller
    gets its answer instead of an error."""
    pid = await _backend(engine)
    await _terminate(pid)
    group = GroupCommit(engine)

    async def write(conn: Any, items: list[int]) -> list[int]:
        await conn.execute(text("SELECT 1"))
        return items

    def plan(_dialect: Any, items: list[int]) -> Planned[int]:
        return Planned([("SELECT 1", ())], items)

    assert await group.run(Merged(write, 7, plan=plan)) == 7


async def test_a_single_call_after_the_server_dropped_a_busy_pool_is_written(engine: AsyncEngine) -> None:
    """A group of one on a dead connection (no ping: used a moment ago) is written again on a fresh one, as a group
    of several is; before, the caller got the disconnect, where pool_pre_ping had answered it."""

    async def held_backend() -> int:
        async with engine.connect() as conn:
            pid = int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
            await asyncio.sleep(0.05)  # held, so that the pool opens one connection per caller
            return pid

    pids = set(await asyncio.gather(*(held_backend() for _ in range(3))))
    assert len(pids) == 3
    for pid in pids:
        await _terminate(pid)
    group = GroupCommit(engine)

    async def write(conn: Any) -> int:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())

    assert await group.run(write) not in pids
