"""SQLite through aiosqlite with one thread hand-over per statement instead of four.

aiosqlite runs every call on its connection's own thread; each call is a hand-over (queue, thread wake-up, GIL,
the event loop's self-pipe back): about 70 µs of CPU and, on a busy machine, milliseconds of waiting. SQLAlchemy's
aiosqlite adapter makes four of them per statement — create the cursor, execute, fetch the rows, close the
cursor — so a group commit of a SELECT, two INSERTs and the COMMIT took a dozen, and an idle-connection probe as
many again (measured: 320 µs CPU per `SELECT 1` through SQLAlchemy, 70 µs through aiosqlite directly).

`OneHopConnection` is an `aiosqlite.Connection` whose cursors do all of it in one hand-over: the worker thread
creates the sqlite3 cursor, executes, reads every row (if the statement has any) and closes it; the rows, the
description, the row count and the last row id are kept on the loop side, so SQLAlchemy's `fetchall` and
`close` need no further hand-over. Everything else (commit, rollback, the connection's life) is aiosqlite's own.

Rows are read at once, so a server-side cursor (`stream()`) is buffered like a client-side one; the store does not
stream. Written against aiosqlite 0.22 (its `_execute` and `_conn`, which SQLAlchemy's adapter uses as well);
`tests/integration/test_sqlite_driver.py` pins the behaviour SQLAlchemy relies on.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from functools import partial
from typing import Any, TypeVar

import aiosqlite

__all__ = ["HERE_AT_MOST_PARAMETERS", "OneHopConnection", "one_hop_connector"]

_T = TypeVar("_T")
_Outcome = tuple[list[Any] | None, Any, int, int | None]


class _OneHopCursor:
    """The part of aiosqlite's Cursor that SQLAlchemy's adapter uses, one hand-over per execute."""

    arraysize = 1

    def __init__(self, connection: OneHopConnection) -> None:
        self._connection = connection
        self._rows: deque[Any] = deque()
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> _OneHopCursor:
        self._take(await self._connection.on_thread(_execute, self._connection._conn, sql, parameters or ()))
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> _OneHopCursor:
        self._take(await self._connection.on_thread(_executemany, self._connection._conn, sql, parameters))
        return self

    def _take(self, outcome: _Outcome) -> None:
        rows, self.description, self.rowcount, self.lastrowid = outcome
        self._rows = deque(rows or ())

    async def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = min(len(self._rows), self.arraysize if size is None else size)
        return [self._rows.popleft() for _ in range(count)]

    async def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def close(self) -> None:
        self._rows.clear()  # the sqlite3 cursor was closed on the worker thread already

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._remaining()

    async def _remaining(self) -> AsyncIterator[Any]:
        while self._rows:
            yield self._rows.popleft()

    async def nextset(self) -> None:
        return None

    async def setinputsizes(self, *_sizes: Any) -> None:
        return None


def _execute(connection: sqlite3.Connection, sql: str, parameters: Sequence[Any]) -> _Outcome:
    """On the worker thread: the whole life of a cursor."""
    cursor = connection.cursor()
    try:
        cursor.execute(sql, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else None
        return rows, description, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def _executemany(connection: sqlite3.Connection, sql: str, parameters: Iterable[Sequence[Any]]) -> _Outcome:
    cursor = connection.cursor()
    try:
        cursor.executemany(sql, parameters)
        return None, cursor.description, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def _transaction(connection: sqlite3.Connection, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
    _begin_immediate(connection)
    _commit_all(connection, statements)


# A group commit this small (bound parameters in all) is written on the calling thread: the hand-over to the
# connection's thread and back costs more CPU than its SQLite work (see OneHopConnection.try_transaction_here).
HERE_AT_MOST_PARAMETERS = 1_000


def _transaction_here(connection: sqlite3.Connection, statements: Sequence[tuple[str, Sequence[Any]]]) -> bool:
    """`_transaction` on a connection whose busy wait is off: False, with nothing written, when another connection
    holds a lock it needs (the write lock at its BEGIN, or later)."""
    try:
        _transaction(connection, statements)  # rolled back should any step fail
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:  # the primary code of an extended one
            return False
        raise
    return True


def _busy_wait_restored(connection: sqlite3.Connection, busy_milliseconds: int, job: Callable[[], _T]) -> _T:
    connection.execute(f"PRAGMA busy_timeout = {busy_milliseconds}")
    return job()


def _begin_immediate(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:  # pragma: no cover - the pool hands out connections without one
        raise RuntimeError("a transaction is open on this connection already")
    # IMMEDIATE: the write lock at once, so another process's writer cannot make this one give up half-way.
    connection.execute("BEGIN IMMEDIATE")


def _commit_all(connection: sqlite3.Connection, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
    """`statements` in the transaction begun, committed; rolled back (and the error raised) should one fail."""
    try:
        for sql, parameters in statements:
            connection.execute(sql, parameters)
        connection.commit()
    except BaseException:
        connection.rollback()
        raise


class _CursorOpening:
    """What `cursor()` answers: SQLAlchemy enters it (`async with`/`__aenter__`) to get the cursor."""

    def __init__(self, cursor: _OneHopCursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> _OneHopCursor:
        return self._cursor

    async def __aexit__(self, *_exc: object) -> None:
        await self._cursor.close()

    def __await__(self) -> Any:
        return self.__aenter__().__await__()


class OneHopConnection(aiosqlite.Connection):
    on_any_thread = False  # opened with check_same_thread=False: usable from the event loop's thread too
    busy_milliseconds = 5_000  # how long it waits for another connection's lock (sqlite3.connect's timeout)
    # Off (0) since a transaction on the loop's thread; the next job of the connection's thread restores it first.
    _busy_wait_off = False

    async def _execute(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """aiosqlite's one way to the connection's thread (every statement, commit, rollback and `on_thread` job
        goes through it): the busy wait restored first when a transaction here left it off."""
        if self._busy_wait_off:
            self._busy_wait_off = False
            job = partial(fn, *args, **kwargs)
            fn, args, kwargs = _busy_wait_restored, (self._conn, self.busy_milliseconds, job), {}
        result: _T = await super()._execute(fn, *args, **kwargs)  # type: ignore[no-untyped-call]
        return result

    async def on_thread(self, fn: Callable[..., _T], *args: Any) -> _T:
        """`fn(*args)` on the connection's thread: one hand-over."""
        result: _T = await self._execute(fn, *args)
        return result

    async def run_transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """`statements` in one transaction, begun and committed (or rolled back, and the error raised) in one job of
        the connection's thread: one hand-over for a whole group commit."""
        await self.on_thread(_transaction, self._conn, statements)

    def try_transaction_here(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> bool:
        """`run_transaction` on the calling thread (the event loop's), without a hand-over, when the statements are
        few (HERE_AT_MOST_PARAMETERS) and no other connection holds the write lock; False when it did not run.

        A hand-over costs about 70 µs of CPU (a thread woken, the event loop woken back), on a virtual machine's
        cores more: single report calls commit in groups of a few, and each group paid it (measured, 16 machines:
        server CPU per report 0.67 / 0.59 / 0.67 -> 0.53 / 0.53 / 0.54 ms). The loop waits for the commit's fsync
        instead (a fraction of a millisecond; now and then SQLite's automatic WAL checkpoint, which the commit
        runs, a few milliseconds); under load the group commit's window keeps such commits few and full
        (group_commit.py). It never waits for a lock (the busy wait is off): a transaction of another process
        (the relay's, a CLI command) holding one sends the group to the connection's thread, which waits there. The
        connection is this caller's alone meanwhile (checked out of the pool; its thread has no job). A connection
        opened for one thread only (SQLite's check_same_thread, e.g. `:memory:`) always goes to its thread."""
        if not self.on_any_thread:
            return False
        if sum(len(parameters) for _sql, parameters in statements) > HERE_AT_MOST_PARAMETERS:
            return False
        if self._connection is None:
            raise ValueError("Connection closed")
        if not self._busy_wait_off:
            # Off until a job of the connection's thread needs it (`_execute`), not set and reset around every
            # transaction here: two statements fewer per group commit on the loop's thread.
            self._connection.execute("PRAGMA busy_timeout = 0")
            self._busy_wait_off = True
        return _transaction_here(self._connection, statements)

    def cursor(self) -> Any:
        """A cursor without a hand-over: the sqlite3 cursor is made on the worker thread at each execute."""
        return _CursorOpening(_OneHopCursor(self))

    async def rollback(self) -> None:
        """Without a hand-over when there is nothing to roll back: the pool rolls back every connection it gets
        back, and most come back from a read or a commit. The flag is read between statements, never while the
        worker thread runs one of this connection's (one user at a time: the pool holds one connection)."""
        if self._connection is not None and not self._connection.in_transaction:
            return
        await super().rollback()


def one_hop_connector(database: str, **kwargs: Any) -> Callable[[], Any]:
    """An `async_creator` for SQLAlchemy's aiosqlite dialect: opens `database` (sqlite3.connect's arguments)."""

    async def connect() -> OneHopConnection:
        connection = OneHopConnection(lambda: sqlite3.connect(database, **kwargs), iter_chunk_size=64)
        connection.on_any_thread = kwargs.get("check_same_thread", True) is False
        connection.busy_milliseconds = round(kwargs.get("timeout", 5.0) * 1000)
        # As SQLAlchemy does for the connections it opens itself: the worker thread must not keep the process up.
        connection._thread.daemon = True
        await connection
        return connection

    return connect
