"""The relay alone: its CPU per posting, steadier than the report bench's figure on a shared machine.

Fills a fresh SQLite store's outbox with N measurement postings (as a report batch stores them), starts the ERP
simulator as a process of its own, and drains the outbox with `OutboxRelay.run_once` through the REST adapter,
round after round, as a backlog drains. Prints the postings/s, this process's CPU per posting (the relay's event
loop thread, and in all: with aiosqlite's thread, which reads the pages and writes the marks) and the simulator's.

    .venv/bin/python bench/relay_cost.py -n 20000
    .venv/bin/python bench/relay_cost.py -n 20000 --batch 500 --rounds 4

The simulator sets its collector's thresholds as it always does (qualitybridge/collector.py); this process sets
serve's unless --collector-default. Compare before and after alternately (docs/performance.md); nothing else of
QualityBridge runs meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qualitybridge.adapters.rest_erp import RestErpClient  # noqa: E402
from qualitybridge.collector import tune_collector  # noqa: E402
from qualitybridge.domain.ids import new_result_id  # noqa: E402
from qualitybridge.domain.model import MeasurementReport, MeasurementResult, ResultEvaluation  # noqa: E402
from qualitybridge.domain.records import AcceptedMeasurement  # noqa: E402
from qualitybridge.services.diagnostics import Diagnostics  # noqa: E402
from qualitybridge.services.outbox_relay import OutboxRelay  # noqa: E402
from qualitybridge.store import open_store  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")
_ORDER, _OPERATION = "1000417", "0010"  # of the simulator's seed
_CHARACTERISTICS = ("C0010", "C0020", "C0030", "C0040", "C0050", "C0060", "C0070")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _batch(start: int, stop: int, received: datetime) -> list[AcceptedMeasurement]:
    return [
        AcceptedMeasurement(
            result=MeasurementResult(
                result_id=new_result_id(),
                report=MeasurementReport(
                    order_no=_ORDER,
                    operation_no=_OPERATION,
                    characteristic_id=_CHARACTERISTICS[number % len(_CHARACTERISTICS)],
                    value=12.0 + (number % 17) / 1000,
                    equipment_id="GA-CMM-0001",
                    part_serial=f"SN-{number // len(_CHARACTERISTICS)}",
                    measured_at=received - timedelta(milliseconds=number),
                    client_result_id=f"plc-{number}",
                ),
                evaluation=ResultEvaluation.OK,
                plan_version="3",
                unit="MMT",
                reported_by="machine1",
                received_at=received,
            )
        )
        for number in range(start, stop)
    ]


async def _drain(arguments: argparse.Namespace, simulator: subprocess.Popen[bytes], url: str, folder: str) -> None:
    store = await open_store(f"sqlite+aiosqlite:///{folder}/bench.db")
    received = datetime.now(UTC)
    for start in range(0, arguments.n, 1000):
        await store.record_measurements(_batch(start, min(arguments.n, start + 1000), received))
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        for _ in range(200):
            try:
                (await http.get("/stats")).raise_for_status()
                break
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
    erp = RestErpClient(url)
    relay = OutboxRelay(store, erp, Diagnostics(), batch_size=arguments.batch, batches_per_round=arguments.rounds)
    simulator_before, process_before = _cpu_seconds(simulator.pid), time.process_time()
    thread_before, started = time.thread_time(), time.monotonic()
    sent = 0
    while (outcome := await relay.run_once()).sent or outcome.retried:
        sent += outcome.sent
    seconds = time.monotonic() - started
    thread = time.thread_time() - thread_before
    process = time.process_time() - process_before
    simulator_cpu = _cpu_seconds(simulator.pid) - simulator_before
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        stats = (await http.get("/stats")).json()
    await erp.aclose()
    await store.aclose()
    per = 1e6 / max(sent, 1)
    print(
        f"{sent} postings in {seconds:.2f} s = {sent / seconds:.0f}/s; CPU per posting: relay {process * per:.1f} µs "
        f"(its event loop's thread {thread * per:.1f} µs), simulator {simulator_cpu * per:.1f} µs; "
        f"load {os.getloadavg()[0]:.2f}"
    )
    print(f"booked {stats['booked']['results']}, repeats absorbed {stats['duplicates_suppressed_total']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=20_000, help="postings to drain")
    parser.add_argument("--batch", type=int, default=500, help="postings per batch (the contract allows 500)")
    parser.add_argument("--rounds", type=int, default=4, help="batches per relay round")
    parser.add_argument(
        "--collector-default",
        action="store_true",
        help="the garbage collector's default thresholds in this process (the relay's) instead of serve's",
    )
    arguments = parser.parse_args()
    if not arguments.collector_default:
        tune_collector()  # as the relay's process has them (forked by serve)
    port = _free_port()
    simulator = subprocess.Popen(
        [sys.executable, "-m", "qualitybridge.simulator.app", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with tempfile.TemporaryDirectory() as folder:
            asyncio.run(_drain(arguments, simulator, f"http://127.0.0.1:{port}", folder))
    finally:
        simulator.terminate()
        simulator.wait()


if __name__ == "__main__":
    main()
