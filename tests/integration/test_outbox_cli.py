"""`qualitybridge outbox list|retry|discard` as an operator runs it: the real command on a real store file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from qualitybridge.domain.records import AcceptedMeasurement
from qualitybridge.store import open_store
from qualitybridge.store.outbox_admin import DISCARDED
from tests.builders import result
from tests.harness import CliRun, invoke_cli, run_cli


def _outbox(*args: str) -> CliRun:
    return invoke_cli("outbox", *args)


async def test_list_retry_and_discard_dead_letters(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store = await open_store(f"sqlite+aiosqlite:///{(data_dir / 'qualitybridge.db').resolve()}")
    for order_no in ("4711", "4712", "4713"):
        await store.record_measurements([AcceptedMeasurement(result=result(order_no=order_no))])
    first, second, third = [entry.seq for entry in await store.pending_outbox()]
    await store.mark_failed(first, "HTTP 422: unknown_order: order 4711 is not released", datetime.now(UTC), dead=True)
    await store.mark_failed(second, "HTTP 409: idempotency_key_reused", datetime.now(UTC), dead=True)
    await store.aclose()

    listed = run_cli("outbox", "list", "--state", "dead", "--data-dir", str(data_dir))
    assert [line.split()[0] for line in listed.splitlines()[1:]] == [str(first), str(second)]
    assert "unknown_order" in listed

    assert f"back in the queue: {first}" in run_cli("outbox", "retry", str(first), "--data-dir", str(data_dir))
    refused = _outbox("retry", str(third), "--data-dir", str(data_dir))
    assert refused.returncode == 2
    assert f"not dead letters: {third}" in refused.stderr

    discarded = run_cli(
        "outbox", "discard", str(second), "--reason", "booked by hand as QR-4711", "--data-dir", str(data_dir)
    )
    assert "booked by hand as QR-4711" in discarded
    again = _outbox("discard", str(second), "--reason", "twice", "--data-dir", str(data_dir))
    assert again.returncode == 2
    assert "only pending or dead entries can be discarded" in again.stderr

    store = await open_store(f"sqlite+aiosqlite:///{(data_dir / 'qualitybridge.db').resolve()}")
    try:
        by_seq = {record.seq: record for record in await store.outbox_records()}
    finally:
        await store.aclose()
    assert (by_seq[first].state, by_seq[first].attempts) == ("pending", 0)
    assert by_seq[second].state == DISCARDED
    assert by_seq[second].discard_reason == "booked by hand as QR-4711"
    assert by_seq[second].discarded_by
    assert by_seq[third].state == "pending"
