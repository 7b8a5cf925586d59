"""The SQLite store's connections (store/sqlite_driver.py): what SQLAlchemy relies on behaves as with aiosqlite's
own cursors, and a statement costs one hand-over to the connection's thread, not four."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from qualitybridge.store import create_engine
from qualitybridge.store.sqlite_driver import HERE_AT_MOST_PARAMETERS, OneHopConnection

metadata = MetaData()
items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(20), nullable=False, unique=True),
)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


class HandOvers:
    """Counts the calls a connection hands to its thread."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = OneHopConnection._execute

        async def counted(connection: OneHopConnection, fn: Any, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await original(connection, fn, *args, **kwargs)

        monkeypatch.setattr(OneHopConnection, "_execute", counted)


async def test_the_store_runs_on_one_hop_connections_in_wal_mode_with_the_configured_sync(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'sync.db'}", sqlite_synchronous="NORMAL")
    try:
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            assert isinstance(raw.driver_connection, OneHopConnection)
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA synchronous"))).scalar() == 1  # NORMAL
    finally:
        await engine.dispose()


async def test_rows_row_counts_and_generated_keys_come_back(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        first = await conn.execute(insert(items).values(name="a"))
        assert first.inserted_primary_key == (1,)
        many = await conn.execute(insert(items), [{"name": "b"}, {"name": "c"}, {"name": "d"}])
        assert many.rowcount == 3
        changed = await conn.execute(update(items).where(items.c.name.in_(["b", "c"])).values(name=items.c.name + "!"))
        assert changed.rowcount == 2
    async with engine.connect() as conn:
        rows = (await conn.execute(select(items.c.id, items.c.name).order_by(items.c.id))).all()
        assert [tuple(row) for row in rows] == [(1, "a"), (2, "b!"), (3, "c!"), (4, "d")]
        assert (await conn.execute(select(items).where(items.c.name == "none"))).first() is None
        assert (await conn.execute(select(items.c.name).where(items.c.id == 4))).scalar_one() == "d"


async def test_a_failed_transaction_leaves_nothing_and_the_connection_goes_on(engine: AsyncEngine) -> None:
    async def twice() -> None:
        async with engine.begin() as conn:
            await conn.execute(insert(items).values(name="x"))
            await conn.execute(insert(items).values(name="x"))  # unique: refused, the whole transaction goes

    with pytest.raises(IntegrityError):
        await twice()
    async with engine.begin() as conn:
        await conn.execute(insert(items).values(name="y"))
    async with engine.connect() as conn:
        assert (await conn.execute(select(items.c.name))).scalars().all() == ["y"]


async def test_a_statement_is_one_hand_over_and_a_read_needs_no_rollback(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with engine.connect() as conn:  # the pool's connection is open before counting
        await conn.execute(select(1))
    hand_overs = HandOvers(monkeypatch)
    async with engine.connect() as conn:
        await conn.execute(select(items))
    assert hand_overs.count == 1  # aiosqlite's cursors: cursor, execute, fetchall, close, and the pool's rollback
    hand_overs.count = 0
    async with engine.begin() as conn:
        await conn.execute(insert(items), [{"name": "p"}, {"name": "q"}])
        await conn.execute(select(items))
    assert hand_overs.count == 3  # two statements and the commit


async def test_a_streamed_result_reads_every_row(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(items), [{"name": f"n{i}"} for i in range(150)])
    async with engine.connect() as conn:
        streamed = await conn.stream(select(items.c.name).order_by(items.c.id))
        names = [row.name async for row in streamed]
    assert names == [f"n{i}" for i in range(150)]


async def test_a_transaction_of_plain_statements_is_one_hand_over_and_all_or_nothing(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with engine.connect() as conn:
        await conn.execute(select(1))
    hand_overs = HandOvers(monkeypatch)
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert isinstance(driver, OneHopConnection)
        await driver.run_transaction(
            [("INSERT INTO items (name) VALUES (?)", ("a",)), ("UPDATE items SET name = ?", ("b",))]
        )
        assert hand_overs.count == 1  # begin, both statements and the commit in one job of the thread
        with pytest.raises(sqlite3.IntegrityError):
            await driver.run_transaction(
                [("INSERT INTO items (name) VALUES (?)", ("c",)), ("INSERT INTO items (name) VALUES (?)", ("b",))]
            )
    async with engine.connect() as conn:
        assert (await conn.execute(select(items.c.name))).scalars().all() == ["b"], "the failed one left its row"


async def test_a_small_transaction_runs_on_the_calling_thread_and_never_waits_for_the_lock(
    engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group commit of a few calls is written without a hand-over; one that is large, or finds the write lock
    taken by another connection, is not run at all (the caller hands it to the connection's thread, which waits)."""
    async with engine.connect() as conn:
        await conn.execute(select(1))
    hand_overs = HandOvers(monkeypatch)
    written_on: list[int] = []
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert isinstance(driver, OneHopConnection)
        driver._conn.create_function("written_on", 0, lambda: written_on.append(threading.get_ident()) or 0)
        sqlite = driver._conn

        async def settled() -> None:
            assert not sqlite.in_transaction, "a transaction was left open"
            # Off for the transactions here; what the connection's thread runs next waits for locks again.
            assert sqlite.execute("PRAGMA busy_timeout").fetchone()[0] == 0
            hand_overs.count -= 1  # this look is not one of the transactions'
            waits = await driver.on_thread(lambda: sqlite.execute("PRAGMA busy_timeout").fetchone()[0])
            assert waits == 30_000, "its busy wait is not back for the connection's thread"

        sqlite.create_function("written_on", 0, lambda: written_on.append(threading.get_ident()) or 0)
        insert_a = ("INSERT INTO items (name) VALUES (?)", ("a",))
        assert driver.try_transaction_here([insert_a, ("UPDATE items SET id = id + written_on()", ())])
        assert written_on == [threading.get_ident()]
        await settled()

        too_many = [("INSERT INTO items (name) VALUES (?)", (f"m{n}",)) for n in range(HERE_AT_MOST_PARAMETERS + 1)]
        assert not driver.try_transaction_here(too_many)

        with pytest.raises(sqlite3.IntegrityError):  # all or nothing, as on the thread
            driver.try_transaction_here([("INSERT INTO items (name) VALUES (?)", ("c",)), insert_a])
        await settled()

        blocker = sqlite3.connect(tmp_path / "driver.db", isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            started = time.monotonic()
            assert not driver.try_transaction_here([("INSERT INTO items (name) VALUES (?)", ("b",))])
            assert time.monotonic() - started < 10.0, "waited for the other connection's lock (busy timeout 30 s)"
            await settled()
        finally:
            blocker.rollback()
            blocker.close()
        assert hand_overs.count == 0
    async with engine.connect() as conn:
        assert (await conn.execute(select(items.c.name))).scalars().all() == ["a"]


async def test_a_connection_for_one_thread_only_hands_every_transaction_to_its_thread(tmp_path: Path) -> None:
    """SQLite refuses a connection opened with check_same_thread (SQLAlchemy's choice for `:memory:`) on any other
    thread: such a connection never runs a transaction on the event loop's."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'own.db'}?check_same_thread=true")
    try:
        async with engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert isinstance(driver, OneHopConnection)
            assert not driver.on_any_thread
            assert not driver.try_transaction_here([("CREATE TABLE t (n INTEGER)", ())])
            await driver.run_transaction([("CREATE TABLE t (n INTEGER)", ())])
    finally:
        await engine.dispose()
