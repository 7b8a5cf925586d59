"""Both ends of the relay's own process (qualitybridge/relay_process.py) over real pipes, in this process.

The worker (`relay_until_stopped`) runs as a task of this event loop instead of in a forked child, with a store of its
own on the same SQLite file and the real simulator over HTTP; the server's end (`RelayProcess`) holds the other ends
of the pipes. What the fork itself adds (the child, its exit, its death) is tested through `serve` in
tests/e2e/test_relay_process.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from qualitybridge import relay_process
from qualitybridge.adapters.rest_erp import RestErpClient
from qualitybridge.config import QualityBridgeConfig
from qualitybridge.domain.events import DiagnosticsChanged, DomainEvent, PostingAttempted, PostingDeadLettered
from qualitybridge.domain.ids import new_result_id
from qualitybridge.domain.model import MeasurementReport, MeasurementResult, ResultEvaluation
from qualitybridge.relay_process import RelayProcess, relay_until_stopped
from qualitybridge.services.diagnostics import Diagnostics
from qualitybridge.services.erp_sync import ErpSync
from qualitybridge.services.event_bus import EventBus
from qualitybridge.services.master_data import MasterData
from qualitybridge.store import Store, open_store
from tests.harness import wait_until


@dataclass
class Link:
    """The server's end of a worker running in this loop, and what the server heard from it."""

    relay: RelayProcess
    worker: asyncio.Task[None]
    events: list[DomainEvent]
    diagnostics: Diagnostics
    lost: list[bool]


@pytest.fixture
async def server_store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    yield opened
    await opened.aclose()


async def _linked(tmp_path: Path, erp_url: str) -> Link:
    config = QualityBridgeConfig.model_validate(
        {
            "data_dir": str(tmp_path),
            "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"},
            "erp": {"base_url": erp_url, "relay_interval_seconds": 0.2, "timeout_seconds": 2},
        }
    )
    commands_read, commands_write = os.pipe()
    reports_read, reports_write = os.pipe()
    os.set_blocking(commands_write, False)
    worker = asyncio.create_task(relay_until_stopped(config, commands_read, reports_write))
    # Not a child of this process: reaping it answers "gone" at once, as for a worker that has exited.
    relay = RelayProcess(os.getpid(), commands_write, reports_read, stop_seconds=10)
    bus = EventBus()
    heard: list[DomainEvent] = []

    async def record(event: DomainEvent) -> None:
        heard.append(event)

    for kind in (PostingAttempted, PostingDeadLettered, DiagnosticsChanged):
        bus.subscribe(kind, record)
    lost: list[bool] = []
    diagnostics = Diagnostics(events=bus)
    await relay.start(bus, diagnostics, on_lost=lambda: lost.append(True))
    return Link(relay, worker, heard, diagnostics, lost)


async def _synced_results(store: Store, erp_url: str, count: int) -> list[MeasurementResult]:
    client = RestErpClient(erp_url, timeout_seconds=2)
    master = MasterData()
    await ErpSync(client, store, master, Diagnostics()).run_once()
    await client.aclose()
    order = master.orders[0]
    operation = order.operations[0]
    characteristic = operation.characteristics[0]
    return [
        MeasurementResult(
            result_id=new_result_id(),
            report=MeasurementReport(
                order_no=order.order_no,
                operation_no=operation.operation_no,
                characteristic_id=characteristic.characteristic_id,
                value=characteristic.nominal,
                equipment_id="GA-CMM-0001",
                part_serial=f"SN-{n}",
                measured_at=datetime.now(UTC),
            ),
            evaluation=ResultEvaluation.OK,
            plan_version=characteristic.plan_version,
            unit=characteristic.unit,
            reported_by="machine1",
            received_at=datetime.now(UTC),
        )
        for n in range(count)
    ]


async def test_the_worker_relays_what_the_server_stored_and_the_server_hears_its_events(
    tmp_path: Path, server_store: Store, erp_url: str
) -> None:
    results = await _synced_results(server_store, erp_url, 3)
    refused = results.pop()
    async with httpx.AsyncClient(base_url=erp_url, timeout=10) as http:
        link = await _linked(tmp_path, erp_url)
        for result in results:
            await server_store.record_measurement(result)
        link.relay.wake()

        async def both_booked() -> bool:
            booked = {entry["body"]["result_id"] for entry in (await http.get("/results")).json()}
            return {result.result_id for result in results} <= booked

        await wait_until(both_booked, "the worker booked both results")
        await wait_until(
            lambda: sum(e.count for e in link.events if isinstance(e, PostingAttempted) and e.outcome == "sent") == 2,
            "the server heard of both postings sent",
        )
        # A posting the ERP refuses: its dead letter reaches the server's bus as the event the OPC UA view shows.
        (await http.delete(f"/sim/orders/{refused.report.order_no}")).raise_for_status()
        await server_store.record_measurement(refused)
        link.relay.wake()
        await wait_until(lambda: any(isinstance(e, PostingDeadLettered) for e in link.events), "the dead letter")
        (dead,) = [e for e in link.events if isinstance(e, PostingDeadLettered)]
        assert (dead.idempotency_key, dead.kind, dead.order_no, dead.attempts) == (
            f"mr-{refused.result_id}",
            "measurement",
            refused.report.order_no,
            1,
        )
        assert "HTTP 4" in dead.last_error
        # The worker's outbox figures land in the server's diagnostics (and its DiagnosticsChanged).
        await wait_until(
            lambda: link.diagnostics.outbox_dead_letters == 1, "the dead letter counted in the diagnostics"
        )
        assert link.diagnostics.outbox_depth == 0
        assert any(isinstance(e, DiagnosticsChanged) and e.outbox_dead_letters == 1 for e in link.events)

        await link.relay.stop()
        await asyncio.wait_for(link.worker, 10)  # the worker ended its round and left
        assert link.lost == []  # a stop is not a loss
        assert not link.relay.running


async def test_a_worker_that_ends_while_the_server_runs_hands_the_relaying_back(
    tmp_path: Path, server_store: Store, erp_url: str
) -> None:
    await _synced_results(server_store, erp_url, 1)  # migrated and synced, as the server has it before it starts
    link = await _linked(tmp_path, erp_url)
    await asyncio.sleep(0.3)  # the worker has opened its store and relays
    link.worker.cancel()  # it ends without being told to: its end of the reports pipe closes
    await asyncio.gather(link.worker, return_exceptions=True)
    await wait_until(lambda: link.lost == [True], "the server told that its relay process is gone")
    link.relay.wake()  # no pipe any more: a wake is dropped, never raised
    await link.relay.stop()


async def test_a_server_that_stops_before_starting_its_relay_lets_the_worker_go_at_once(tmp_path: Path) -> None:
    config = QualityBridgeConfig.model_validate({"data_dir": str(tmp_path)})
    commands_read, commands_write = os.pipe()
    reports_read, reports_write = os.pipe()
    worker = asyncio.create_task(relay_until_stopped(config, commands_read, reports_write))
    relay = RelayProcess(os.getpid(), commands_write, reports_read, stop_seconds=5)
    await asyncio.sleep(0.05)  # the worker waits for `start`
    await relay.stop()  # never started: the worker reads end-of-file where it waited for `start`
    await asyncio.wait_for(worker, 5)
    assert not (tmp_path / "qualitybridge.db").exists()  # it opened no store


def _readable(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b""


async def test_wakes_that_come_together_are_written_once_and_the_last_is_never_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Half a second between wakes (the product spaces them 50 ms): a hundred wakes fall into one spacing anywhere.
    monkeypatch.setattr(relay_process, "WAKE_SPACING_SECONDS", 0.5)
    commands_read, commands_write = os.pipe()
    reports_read, reports_write = os.pipe()
    os.set_blocking(commands_read, False)
    os.set_blocking(commands_write, False)
    relay = RelayProcess(os.getpid(), commands_write, reports_read)
    for _ in range(100):  # a burst of group commits, each waking the relay
        relay.wake()
    assert _readable(commands_read) == b"w"  # the first at once, the other 99 held
    await wait_until(
        lambda: _readable(commands_read) == b"w", "the wake held back, written after the spacing", seconds=5.0
    )
    await asyncio.sleep(0.6)
    relay.wake()  # a spacing after the last write: at once again
    assert _readable(commands_read) == b"w"
    await asyncio.sleep(0.6)
    assert _readable(commands_read) == b""  # nothing more was asked for
    os.close(reports_write)
    await relay.stop()
    os.close(commands_read)


async def test_a_second_worker_on_the_same_data_folder_waits_for_the_first_to_be_gone(
    tmp_path: Path, server_store: Store, erp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="qualitybridge.relay_process")
    (result,) = await _synced_results(server_store, erp_url, 1)
    first = await _linked(tmp_path, erp_url)
    # Its first round's outbox figures: it holds the lock and relays.
    await wait_until(lambda: any(isinstance(e, DiagnosticsChanged) for e in first.events), "the first worker relays")
    second = await _linked(tmp_path, erp_url)  # a new server's, while the old one's ends its round
    await wait_until(lambda: "another relay process holds" in caplog.text, "the second worker waits for the lock")
    await asyncio.sleep(0.3)
    assert "the previous relay process is gone" not in caplog.text  # still waiting: one relay at a time
    await first.relay.stop()
    await asyncio.wait_for(first.worker, 10)
    await wait_until(lambda: "the previous relay process is gone: relaying" in caplog.text, "the second worker relays")
    await server_store.record_measurement(result)
    second.relay.wake()
    await wait_until(
        lambda: any(isinstance(e, PostingAttempted) and e.outcome == "sent" for e in second.events),
        "the second worker delivered",
    )
    await second.relay.stop()
    await asyncio.wait_for(second.worker, 10)


async def test_reports_the_server_cannot_read_stop_the_worker_and_hand_the_relaying_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Stands in for the forked worker: a child this test may kill (Popen returns at once).
    worker = subprocess.Popen(["sleep", "60"])  # noqa: ASYNC220
    commands_read, commands_write = os.pipe()
    reports_read, reports_write = os.pipe()
    os.set_blocking(commands_write, False)
    relay = RelayProcess(worker.pid, commands_write, reports_read, stop_seconds=5)
    lost: list[bool] = []
    await relay.start(EventBus(), Diagnostics(), on_lost=lambda: lost.append(True))
    # A line beyond any report (a worker gone wrong): unread, the worker would block on it and relay no more.
    writing = asyncio.create_task(asyncio.to_thread(os.write, reports_write, b"x" * (3 << 20)))
    await wait_until(lambda: lost == [True], "the server told that its relay process is gone")
    assert "reading the outbox relay process's reports failed; it is stopped" in caplog.text
    assert "killed by signal 9" in caplog.text
    await relay.stop()
    with contextlib.suppress(BrokenPipeError):  # the server's end is closed: the writer is let go
        await asyncio.wait_for(writing, 5)
    for fd in (commands_read, reports_write):
        os.close(fd)
    worker.wait(timeout=5)


def test_an_error_text_crosses_the_pipe_as_the_store_keeps_it() -> None:
    dead = PostingDeadLettered("mr-1", "measurement", "1000417", 20, "HTTP 500: " + "x" * 10_000)
    line = relay_process.encode_report(dead)
    assert line is not None
    crossed = relay_process.decode_report(line)
    assert isinstance(crossed, PostingDeadLettered)
    assert crossed.last_error == dead.last_error[:2000]
