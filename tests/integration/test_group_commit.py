"""Group commit on SQLite and PostgreSQL: concurrent writes share one transaction, each caller's answer comes after
the commit, and one caller's failure neither fails the others nor leaves anything of its own written."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from qualitybridge.domain.model import ErpSnapshot, OrderState, OutboxState
from qualitybridge.store import Store, open_store, tables
from qualitybridge.store.group_commit import GroupCommit, Merged

# The store's own row of a refused measurement, so this test writes what the store writes.
from qualitybridge.store.shop_floor_records import _refused_row
from qualitybridge.store.sqlite_driver import OneHopConnection
from tests.builders import accepted, confirmation_record, order, refused_attempt
from tests.loop_turns import LoopTurns


class _Refused(Exception):
    """What a work raises after it has written: its write must not stay."""


async def _counts(store: Store) -> tuple[int, int, int]:
    async with store.engine.connect() as conn:
        results = (await conn.execute(select(func.count()).select_from(tables.measurement_results))).scalar_one()
        outbox = (await conn.execute(select(func.count()).select_from(tables.outbox))).scalar_one()
        refused = (await conn.execute(select(func.count()).select_from(tables.refused_measurements))).scalar_one()
    return int(results), int(outbox), int(refused)


async def test_concurrent_calls_share_commits_and_each_gets_its_own_answer(store: Store) -> None:
    batches = [[accepted(f"plc-{n}")] for n in range(40)]
    commits_before = store.writes.commits
    answers = await asyncio.gather(*(store.record_measurements(batch) for batch in batches))
    assert [[(item.result.result_id, created) for item, created in answer] for answer in answers] == [
        [(batch[0].result.result_id, True)] for batch in batches
    ]
    commits = store.writes.commits - commits_before
    assert commits < len(batches), f"{len(batches)} concurrent calls took {commits} commits: nothing was grouped"
    assert await _counts(store) == (40, 40, 0)


async def test_an_answer_comes_only_after_its_commit(store: Store) -> None:
    """What a caller was answered is committed: a second connection sees it the moment the answer is there."""
    batches = [[accepted(f"seen-{n}")] for n in range(10)]

    async def report_then_look(batch: list[Any]) -> int:
        await store.record_measurements(batch)
        async with store.engine.connect() as conn:
            query = select(func.count()).where(tables.measurement_results.c.result_id == batch[0].result.result_id)
            return int((await conn.execute(query.select_from(tables.measurement_results))).scalar_one())

    assert await asyncio.gather(*(report_then_look(batch) for batch in batches)) == [1] * 10


async def test_a_failing_call_fails_alone_and_leaves_nothing_written(store: Store) -> None:
    group = GroupCommit(store.engine)

    def insert(item: Any, fail: bool) -> Any:
        async def work(conn: AsyncConnection) -> str:
            await conn.execute(tables.refused_measurements.insert(), [_refused_row(item)])
            if fail:
                raise _Refused(item.reason)
            return item.reason

        return work

    items = [refused_attempt(reason=f"attempt {n}") for n in range(6)]
    outcomes = await asyncio.gather(
        *(group.run(insert(item, fail=n == 2)) for n, item in enumerate(items)), return_exceptions=True
    )
    assert isinstance(outcomes[2], _Refused)
    assert [outcome for n, outcome in enumerate(outcomes) if n != 2] == [f"attempt {n}" for n in range(6) if n != 2]
    stored = {item.reason for item in await store.refused_measurements()}
    assert stored == {f"attempt {n}" for n in range(6) if n != 2}, "the failing call's row stayed, or others went"


async def test_a_client_id_sent_twice_at_once_is_stored_once(store: Store) -> None:
    first, second = accepted("twice"), accepted("twice", value=12.5)
    answers = await asyncio.gather(store.record_measurements([first]), store.record_measurements([second]))
    (stored_first, created_first), (stored_second, created_second) = answers[0][0], answers[1][0]
    assert (created_first, created_second) == (True, False)
    assert stored_second == stored_first, "the second call is answered with the first one's measurement"
    assert await _counts(store) == (1, 1, 0)


async def test_a_cancelled_caller_does_not_stop_the_others(store: Store) -> None:
    calls = [asyncio.ensure_future(store.record_measurements([accepted(f"c-{n}")])) for n in range(8)]
    await asyncio.sleep(0)
    calls[3].cancel()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(outcomes[3], asyncio.CancelledError)
    assert all(isinstance(outcome, list) for n, outcome in enumerate(outcomes) if n != 3)
    results, _outbox, _refused = await _counts(store)
    assert results in (7, 8), "a cancelled caller's write either stands whole or was never made"


async def test_confirmations_and_order_states_join_the_group(store: Store) -> None:
    await store.apply_snapshot(ErpSnapshot(orders=(order("1000", state=OrderState.RUNNING),), equipment=()))
    record = confirmation_record()
    commits_before = store.writes.commits
    (stored, created), changed, measured = await asyncio.gather(
        store.record_confirmation(record),
        store.change_order_state("1000", OrderState.RUNNING, OrderState.INTERRUPTED),
        store.record_measurements([accepted("with-others")]),
    )
    assert (stored, created, changed, measured[0][1]) == (record, True, True, True)
    assert store.writes.commits - commits_before < 3


async def test_merged_works_are_written_by_one_call_and_answered_each(store: Store) -> None:
    group = GroupCommit(store.engine)
    calls: list[list[int]] = []

    async def write_all(_conn: AsyncConnection, items: list[int]) -> list[int]:
        calls.append(items)
        return [item * 10 for item in items]

    async def plain(_conn: AsyncConnection) -> str:
        return "plain"

    answers = await asyncio.gather(
        group.run(Merged(write_all, 1)),
        group.run(plain),
        group.run(Merged(write_all, 2)),
        group.run(Merged(write_all, 3)),
    )
    assert answers == [10, "plain", 20, 30]
    assert calls == [[1, 2, 3]], "the merged works of one group were not written by one call"
    assert group.commits == 1


def test_the_group_refuses_a_negative_window() -> None:
    with pytest.raises(ValueError, match="window_seconds"):
        GroupCommit(None, window_seconds=-1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="window_seconds"):
        GroupCommit(None).window_seconds = 61  # type: ignore[arg-type]


async def test_while_calls_come_together_a_commit_waits_the_window_for_more(store: Store) -> None:
    """After a commit that carried several calls, the next one waits the window: a call that arrives a few turns
    of the event loop after the first shares its commit instead of taking one of its own."""
    store.writes.window_seconds = 1.0  # far longer than the few turns below, however busy the machine
    try:
        await asyncio.gather(*(store.record_measurements([accepted(f"together-{n}")]) for n in range(3)))
        commits = store.writes.commits
        first = asyncio.create_task(store.record_measurements([accepted("first")]))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not first.done(), "the first call was committed without waiting for others"
        late = asyncio.create_task(store.record_measurements([accepted("a few turns later")]))
        await asyncio.gather(first, late)
        assert store.writes.commits == commits + 1, "the late call did not share the first one's commit"
    finally:
        store.writes.window_seconds = 0.0


async def test_a_lone_call_never_waits_for_the_window(store: Store) -> None:
    """One machine reporting alone is answered after its own commit, however long the window."""
    store.writes.window_seconds = 60.0
    try:
        await store.record_measurements([accepted("alone")])  # the commit before this one carried one call
        await asyncio.wait_for(store.record_measurements([accepted("alone again")]), timeout=30)
    finally:
        store.writes.window_seconds = 0.0


async def test_a_group_of_reports_and_deliveries_runs_as_plain_statements(store: Store) -> None:
    """Measurements and the relay's deliveries have plans: their group commits skip SQLAlchemy (one thread hand-over
    on SQLite, asyncpg's own calls on PostgreSQL), and what they wrote reads back as the ordinary write's."""
    commits, direct = store.writes.commits, store.writes.direct_commits
    answers = await asyncio.gather(*(store.record_measurements([accepted(f"plain-{n}")]) for n in range(8)))
    assert all(created for answer in answers for _item, created in answer)
    pending = await store.pending_outbox()
    await store.mark_sent_many([(entry.seq, f"DOC-{entry.seq}") for entry in pending[:5]])
    assert store.writes.commits - commits >= 2
    assert store.writes.direct_commits - direct == store.writes.commits - commits, "a group went the ordinary way"
    assert await _counts(store) == (8, 8, 0)
    stored = {item.result.result_id: item.result for item in await store.stored_measurements()}
    assert stored == {item.result.result_id: item.result for answer in answers for item, _created in answer}
    sent = await store.outbox_entries([OutboxState.SENT])
    assert [(entry.seq, entry.erp_document) for entry in sent] == [(e.seq, f"DOC-{e.seq}") for e in pending[:5]]


async def test_a_client_id_stored_before_sends_the_group_the_ordinary_way(store: Store) -> None:
    """The plan assumes no client id was stored before; the unique client scope refuses the group's statements when
    one was, nothing of them stays, and the ordinary write answers the repeat with the first measurement."""
    (first, _created), *_ = await store.record_measurements([accepted("again")])
    direct = store.writes.direct_commits
    repeat, fresh = await asyncio.gather(
        store.record_measurements([accepted("again", value=first.result.report.value)]),
        store.record_measurements([accepted("fresh")]),
    )
    assert repeat == [(first, False)]
    assert fresh[0][1] is True
    assert store.writes.direct_commits == direct, "the refused plan counted as written"
    assert await _counts(store) == (2, 2, 0)


async def test_a_lone_call_is_answered_three_turns_of_the_event_loop_after_it_called(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The group commit's own turns of the loop (on a busy server each carries many calls' work): the call's, the
    flusher's gathering turn, and the caller's resumption. The job on SQLite's thread is run at once on the loop
    here, so that only the loop's turns are counted (with the pooled connection closed in a task of its own, as
    `async with engine.connect()` does, they were six)."""
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    try:
        await store.record_measurements([accepted("warming-up")])

        async def at_once(_connection: OneHopConnection, fn: Any, *args: Any) -> Any:
            return fn(*args)

        monkeypatch.setattr(OneHopConnection, "on_thread", at_once)
        async with LoopTurns() as turns:
            direct_before, called_at = store.writes.direct_commits, turns.count
            await store.record_measurements([accepted("counted")])
            answered_at = turns.count
        assert store.writes.direct_commits == direct_before + 1  # the planned path: one job on the driver
        assert answered_at - called_at == 3
        assert await _counts(store) == (2, 2, 0)
    finally:
        await store.aclose()


async def test_a_group_that_finds_the_write_lock_taken_waits_for_it_off_the_event_loop(tmp_path: Path) -> None:
    """Small groups are written on the event loop's thread (no hand-over), but never wait there for a lock another
    process holds (the relay's process, a CLI command): the loop goes on serving meanwhile, and the group is written
    once the lock is free."""
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    blocker = sqlite3.connect(tmp_path / "store.db", isolation_level=None, check_same_thread=False)
    try:
        await store.record_measurements([accepted("before")])
        direct = store.writes.direct_commits
        blocker.execute("BEGIN IMMEDIATE")
        writing = asyncio.create_task(store.record_measurements([accepted("while-locked")]))
        started = time.monotonic()
        for _ in range(10):
            await asyncio.sleep(0.02)
        # 0.2 s of sleeps; waiting for the lock would block the loop for the busy timeout (30 s)
        assert time.monotonic() - started < 10.0, "the event loop waited for the lock"
        assert not writing.done()
        blocker.rollback()
        await asyncio.wait_for(writing, 30)
        assert store.writes.direct_commits == direct + 1, "not written by the planned path"
        assert await _counts(store) == (2, 2, 0)
    finally:
        blocker.close()
        await store.aclose()
