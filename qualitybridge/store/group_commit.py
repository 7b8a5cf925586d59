"""Group commit: the writes of concurrent calls share one transaction, so one commit (one fsync) serves them all.

A write is a *work*: a coroutine function that gets the open connection and does its reads and writes in it.
`GroupCommit.run(work)` queues it; one flusher takes whatever has queued (at most `max_works`), runs the works one
after the other in one transaction and commits. Every caller's answer is handed out only after that commit
returned, so a Good answer still means "on disk" (with SQLite `synchronous=FULL`: after the fsync).

The gathering window is natural: works that arrive while a commit is under way go into the next one, so a lone
call waits for nothing but its own commit, and under load each commit carries many calls. `window_seconds` adds a
short wait before a commit for callers that arrive a moment apart, and only while calls come together (the commit
before carried more than one): a lone caller never waits for it. An SQLite commit on the event loop's thread holds
the loop for its fsync, so under load fewer, fuller commits leave the loop more time for the calls themselves (the
server sets 1 ms, `[store] group_commit_window_ms`; docs/performance.md has the figures; 0 by default here).

A work sees the writes of the works before it in the same group (one transaction), so a client id used twice in one
group is found by the second work exactly as if the first had committed alone. Should a work raise, the whole
group is rolled back (nothing half-written) and every work of it runs again in a transaction of its own: only the
failing call gets the error, the others their answers. Works must therefore do all their writing through the
connection they are given (never a second connection: SQLite has one) and be safe to run again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from qualitybridge.store.bulk_rows import renumbered
from qualitybridge.store.sqlite_driver import OneHopConnection

__all__ = ["GroupCommit", "Merged", "Planned", "Statement", "Work"]

_log = logging.getLogger(__name__)

R = TypeVar("R")
T = TypeVar("T")
Work = Callable[[AsyncConnection], Awaitable[R]]


Statement = tuple[str, tuple[Any, ...]]  # SQL in the driver's own parameter style, and its parameters


@dataclass(frozen=True)
class Planned(Generic[R]):
    """A merged write known in full before it runs: its statements (nothing read in between) and its answers, one
    per item, valid once the statements ran without error. The statements of a group must not depend on each
    other's effects: PostgreSQL runs them as one statement (see `_one_statement`), whose parts see one snapshot."""

    statements: list[Statement]
    answers: list[R]


@dataclass(frozen=True)
class Merged(Generic[T, R]):
    """A work that merges with its kind: all `Merged` works of one group with the same `write` are done by one
    call, `write(conn, items)`, which answers one result per item in their order (e.g. the measurements of many
    calls stored with one statement per table instead of three statements per call).

    `plan(dialect, items)`, when given, answers the same write as plain statements, or None when it cannot (e.g.
    it would have to read first). A group whose works all have a plan runs its statements on the driver's own
    connection in one go (see `_direct`); should any of them fail, nothing of it stays and the group runs the
    ordinary way through `write`, which decides what the failure means (a client id stored before, a bad row)."""

    write: Callable[[AsyncConnection, list[T]], Awaitable[list[R]]]
    item: T
    plan: Callable[[Dialect, list[T]], Planned[R] | None] | None = None


_Queued = tuple["Work[Any] | Merged[Any, Any]", "asyncio.Future[Any]"]


class GroupCommit:
    def __init__(self, engine: AsyncEngine, *, window_seconds: float = 0.0, max_works: int = 256) -> None:
        if max_works < 1:
            raise ValueError("group commit needs max_works >= 1")
        self._engine = engine
        self._window = 0.0
        self.window_seconds = window_seconds
        self._max_works = max_works
        self._last_group = 0  # works the last commit carried: more than one, and the next one waits the window
        self._queue: list[_Queued] = []
        self._flusher: asyncio.Task[None] | None = None
        self.commits = 0  # transactions committed; with `works` it tells how many calls one fsync served
        self.works = 0
        self.direct_commits = 0  # of them, run as plain statements on the driver's connection (`_direct`)

    @property
    def window_seconds(self) -> float:
        return self._window

    @window_seconds.setter
    def window_seconds(self, seconds: float) -> None:
        if not 0 <= seconds <= 60:
            raise ValueError(f"group commit needs 0 <= window_seconds <= 60, not {seconds}")
        self._window = seconds

    async def run(self, work: Work[R] | Merged[Any, R]) -> R:
        """Run `work` in a transaction shared with the calls that arrive at the same time; answer after the commit."""
        if self._flusher is None:
            loop = asyncio.get_running_loop()
            # A task of its own, not the first caller's: a caller that is cancelled must not cancel the commit
            # that carries the others.
            self._flusher = loop.create_task(self._flush(), name="store-group-commit")
        else:
            # The flusher's loop is the caller's: Python 3.11's get_running_loop asks the kernel for the process id
            # at every call (a system call per report on the single-call path).
            loop = self._flusher.get_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((work, future))
        return await future

    async def _flush(self) -> None:
        try:
            while self._queue:
                # Lets the callers that are ready in this turn of the event loop join, and while calls come
                # together those that arrive within the window.
                await asyncio.sleep(self._window if self._last_group > 1 else 0)
                group, self._queue = self._queue[: self._max_works], self._queue[self._max_works :]
                self._last_group = len(group)
                await self._commit(group)
        except BaseException:
            # Stopping (the task is cancelled): no caller may be left waiting for an answer that never comes.
            for _work, future in self._queue:
                if not future.done():
                    future.cancel()
            self._queue = []
            raise
        finally:
            self._flusher = None

    async def _commit(self, group: list[_Queued], *, again: bool = False) -> None:
        try:
            results = await self._transaction([work for work, _future in group])
        except Exception as exc:
            if len(group) > 1:
                # One work failed, or the commit did: nothing of the group is written. Each runs again alone, so
                # that only a failing one fails.
                _log.debug("group of %d writes failed (%s); writing each alone", len(group), exc)
                for queued in group:
                    await self._commit([queued])
                return
            if not again and getattr(exc, "connection_invalidated", False):
                # The connection was gone (a database restart while the store was busy: a connection used a moment
                # ago is not pinged, database.py) and SQLAlchemy renewed the pool: once more on a fresh connection,
                # as the works of a failed group of several are written again.
                _log.debug("write failed on a dropped connection (%s); writing it again", exc)
                await self._commit(group, again=True)
                return
            _work, future = group[0]
            if not future.done():
                future.set_exception(exc)
            return
        except BaseException:
            for _work, future in group:
                future.cancel()
            raise
        for (_work, future), result in zip(group, results, strict=True):
            if not future.done():  # a caller that gave up (cancelled) gets nothing; its write stands
                future.set_result(result)

    async def _transaction(self, works: list[Work[Any] | Merged[Any, Any]]) -> list[Any]:
        planned = await self._planned(works) if all(_has_plan(work) for work in works) else None
        if planned is not None:
            results = planned
        else:
            results = [None] * len(works)
            async with self._engine.begin() as conn:
                done: set[Any] = set()
                for position, work in enumerate(works):
                    if not isinstance(work, Merged):
                        results[position] = await work(conn)
                    elif work.write not in done:
                        # All of this kind at the place of the first: they are independent of the works in between.
                        done.add(work.write)
                        kin = _kin(works, work)
                        answers = await work.write(conn, [works[at].item for at in kin])  # type: ignore[union-attr]
                        for at, answer in zip(kin, answers, strict=True):
                            results[at] = answer
        self.commits += 1
        self.works += len(works)
        return results

    async def _planned(self, works: list[Work[Any] | Merged[Any, Any]]) -> list[Any] | None:
        """The group's answers after running its plans' statements in one transaction; None when a plan declined or
        a statement failed (then nothing of them stays, and the group runs the ordinary way)."""
        results: list[Any] = [None] * len(works)
        statements: list[Statement] = []
        done: set[Any] = set()
        for work in works:
            if not isinstance(work, Merged) or work.plan is None or work.write in done:
                continue
            done.add(work.write)
            kin = _kin(works, work)
            plan = work.plan(self._engine.dialect, [works[at].item for at in kin])  # type: ignore[union-attr]
            if plan is None:
                return None
            statements.extend(plan.statements)
            for at, answer in zip(kin, plan.answers, strict=True):
                results[at] = answer
        try:
            ran = await _direct(self._engine, statements)
        except Exception as exc:
            _log.debug("planned group of %d writes failed (%s); writing it the ordinary way", len(works), exc)
            return None
        self.direct_commits += ran
        return results if ran else None


def _has_plan(work: Work[Any] | Merged[Any, Any]) -> bool:
    return isinstance(work, Merged) and work.plan is not None


def _kin(works: list[Work[Any] | Merged[Any, Any]], work: Merged[Any, Any]) -> list[int]:
    """The positions of `work`'s kind in the group: all written by one call at the place of the first (they are
    independent of the works in between)."""
    return [at for at, other in enumerate(works) if isinstance(other, Merged) and other.write == work.write]


async def _direct(engine: AsyncEngine, statements: list[Statement]) -> bool:
    """Run `statements` in one transaction on the pooled connection's driver, without SQLAlchemy's per-statement
    work; False when the backend has no such path (the caller then writes the ordinary way).

    SQLite: the whole transaction (begin, statements, commit) on the event loop's thread when it is small and the
    write lock free, else one job of the connection's thread, one hand-over instead of one per statement.
    PostgreSQL: one statement through asyncpg, one round trip."""
    conn = await engine.connect()
    try:
        driver = (await conn.get_raw_connection()).driver_connection
        if isinstance(driver, OneHopConnection):
            if not driver.try_transaction_here(statements):
                await driver.run_transaction(statements)
            return True
        if conn.dialect.name == "postgresql" and driver is not None:
            try:
                await _direct_postgresql(driver, statements)
            except Exception:
                if driver.is_closed():
                    # The error came past SQLAlchemy, which would have thrown the connection away: without this
                    # the pool hands the dead connection to the ordinary way next (used a moment ago, so not
                    # pinged), and a group of one fails instead of being written.
                    await conn.invalidate()
                raise
            return True
        return False
    finally:
        # Back to the pool here, not in a task of its own as `async with` does it (SQLAlchemy's _run_to_completion,
        # which keeps a close from being abandoned when its caller is cancelled): that task and its shield cost
        # every group's callers two more turns of a busy event loop. Nothing here suspends the close: the driver's
        # transaction is committed or rolled back already, so the pool's reset has nothing to roll back; and the
        # flusher is cancelled only when the store closes.
        await conn.close()


async def _direct_postgresql(driver: Any, statements: list[Statement]) -> None:
    """`statements` through asyncpg: one statement when each has its own target, else one transaction."""
    targets = {" ".join(sql.split(None, 3)[:3]) for sql, _parameters in statements}
    if len(targets) == len(statements):
        # One statement is one transaction on its own: one round trip instead of BEGIN, one per statement
        # and COMMIT, each waiting for the event loop's turn on a busy server.
        sql, parameters = _one_statement(statements)
        await driver.execute(sql, *parameters)
        return
    # Several statements on one table (the relay's markings of two rounds in one group) run in their order: the
    # parts of one statement run in no order, and the outbox's sequence must follow acceptance.
    async with driver.transaction():
        for sql, parameters in statements:
            await driver.execute(sql, *parameters)


def _one_statement(statements: list[Statement]) -> Statement:
    """PostgreSQL's statements (numbered parameters, $n) as one: all but the last as data-modifying WITH parts,
    each one's parameters renumbered after those before it."""
    if len(statements) == 1:
        return statements[0]
    parts: list[str] = []
    parameters: list[Any] = []
    for sql, own in statements:
        parts.append(renumbered(sql, len(parameters)))
        parameters.extend(own)
    head = ", ".join(f"w{number} AS ({part})" for number, part in enumerate(parts[:-1]))
    return f"WITH {head} {parts[-1]}", tuple(parameters)
