"""Report throughput of QualityBridge against the ceiling of the stack, measured in one run.

Starts the ERP simulator, `qualitybridge serve` (SQLite by default) and a bare asyncua server with a no-op method,
all over Basic256Sha256 SignAndEncrypt with a user login; then N client processes drive, one workload after the
other for the same duration:

  bare no-op        the no-op method on the bare asyncua server: the ceiling of asyncua itself
  single            ReportMeasurement, one measurement per call
  batched           ReportMeasurements, --batch measurements per call (when the server has the method)

and prints calls/s, accepted reports/s and the count that is durably in the store afterwards.

    .venv/bin/python bench/report_throughput.py --clients 4 --seconds 10 --batch 100
    .venv/bin/python bench/report_throughput.py --store-url postgresql+asyncpg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/report_throughput.py --spc off      # without the SPC engine, to see what it costs

Figures go to docs/performance.md. Shared machines are noisy: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness import NAMESPACE_URI, TEST_USERS, Deployment, free_port, postgres_database  # noqa: E402

KEY = ("1000417", "0010", "C0010")


def _value(sequence: int) -> float:
    """Part temperatures around 20 °C with some spread (deterministic), so that SPC has a process to chart."""
    return 20.0 + ((sequence * 7919) % 101 - 50) / 100


GAUGE = "GA-TMP-0603"


@dataclass
class Job:
    kind: str
    endpoint: str
    cert: str
    key: str
    uri: str
    user: str
    password: str
    seconds: float
    batch: int
    worker: int


async def _client(job: Job) -> Client:
    client = Client(job.endpoint, timeout=30)
    client.application_uri = job.uri
    client.set_user(job.user)
    client.set_password(job.password)
    await client.set_security(
        SecurityPolicyBasic256Sha256, job.cert, job.key, mode=ua.MessageSecurityMode.SignAndEncrypt
    )
    await client.connect()
    return client


async def _drive(job: Job) -> tuple[int, int, int]:
    """Returns (calls, accepted reports, refused reports) within the time box."""
    client = await _client(job)
    calls = accepted = refused = 0
    try:
        if job.kind == "bare":
            idx = await client.get_namespace_index("urn:bench")
            objects = client.nodes.objects
            method = ua.NodeId("Noop", idx)
            deadline = time.monotonic() + job.seconds
            while time.monotonic() < deadline:
                await objects.call_method(method, "x")
                calls += 1
            return calls, calls, 0
        ns = await client.get_namespace_index(NAMESPACE_URI)
        bridge = client.get_node(ua.NodeId("QualityBridge", ns))
        sequence = 0
        deadline = time.monotonic() + job.seconds
        while time.monotonic() < deadline:
            if job.kind == "single":
                sequence += 1
                await bridge.call_method(
                    ua.NodeId("QualityBridge.ReportMeasurement", ns),
                    *KEY,
                    ua.Variant(_value(sequence), ua.VariantType.Double),
                    GAUGE,
                    f"SN-{job.worker}-{sequence}",
                    datetime.now(UTC),
                    f"bench-{job.worker}-{sequence}-{time.time_ns()}",
                )
                calls += 1
                accepted += 1
            else:
                now = datetime.now(UTC)
                ids = [f"bench-{job.worker}-{sequence + n}-{time.time_ns()}" for n in range(job.batch)]
                sequence += job.batch
                n = job.batch
                outputs = await bridge.call_method(
                    ua.NodeId("QualityBridge.ReportMeasurements", ns),
                    ua.Variant([KEY[0]] * n, ua.VariantType.String),
                    ua.Variant([KEY[1]] * n, ua.VariantType.String),
                    ua.Variant([KEY[2]] * n, ua.VariantType.String),
                    ua.Variant([_value(sequence - n + i) for i in range(n)], ua.VariantType.Double),
                    ua.Variant([GAUGE] * n, ua.VariantType.String),
                    ua.Variant([f"SN-{i}" for i in ids], ua.VariantType.String),
                    ua.Variant([now] * n, ua.VariantType.DateTime),
                    ua.Variant(ids, ua.VariantType.String),
                )
                statuses = outputs[2]
                good = sum(1 for status in statuses if status.is_good())
                calls += 1
                accepted += good
                refused += n - good
    finally:
        await client.disconnect()
    return calls, accepted, refused


def _worker(job: Job, results: Any) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING, format=f"client {job.worker}: %(name)s: %(message)s")
    try:
        results.put(asyncio.run(_drive(job)))
    except BaseException as exc:  # a client that fails must say so, not leave the parent waiting
        results.put(exc)
        raise


def run_workload(jobs: list[Job]) -> tuple[int, int, int, float]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=_worker, args=(job, results)) for job in jobs]
    started = time.monotonic()
    for process in processes:
        process.start()
    totals = [results.get(timeout=jobs[0].seconds + 120) for _ in processes]
    failures = [total for total in totals if isinstance(total, BaseException)]
    if failures:
        raise RuntimeError(f"{len(failures)} client process(es) failed, first: {failures[0]!r}")
    for process in processes:
        process.join(timeout=30)
    elapsed = time.monotonic() - started
    return (
        sum(t[0] for t in totals),
        sum(t[1] for t in totals),
        sum(t[2] for t in totals),
        elapsed,
    )


async def _has_batch_method(deployment: Deployment) -> bool:
    async with deployment.session("machine1") as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        try:
            await client.get_node(ua.NodeId("QualityBridge.ReportMeasurements", ns)).read_browse_name()
        except ua.UaStatusCodeError:
            return False
        return True


async def _start_order_if_needed(deployment: Deployment) -> None:
    async with deployment.session("quality") as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        bridge = client.get_node(ua.NodeId("QualityBridge", ns))
        # Refused when the server has no state machine or the order runs already: both fine here.
        with contextlib.suppress(ua.UaStatusCodeError):
            await bridge.call_method(ua.NodeId("QualityBridge.StartOrder", ns), KEY[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=4, help="client processes per workload (default 4)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each workload (default 10)")
    parser.add_argument("--batch", type=int, default=100, help="measurements per ReportMeasurements call")
    parser.add_argument("--work-dir", help="keep the deployment (logs, store) here instead of a temporary folder")
    parser.add_argument("--store-url", default="", help="PostgreSQL URL to measure that store instead of SQLite")
    parser.add_argument(
        "--spc",
        choices=sorted(SPC_CONFIG),
        default="defaults",
        help="the server's SPC engine: off, the defaults of [spc], or all eight rules on every characteristic",
    )
    arguments = parser.parse_args()

    with contextlib.ExitStack() as stack:
        if arguments.work_dir:
            root = Path(arguments.work_dir)
            root.mkdir(parents=True, exist_ok=True)
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="qb-bench-")))
        if arguments.store_url:
            with postgres_database(arguments.store_url) as url:
                run(root, "postgresql", url, arguments)
        else:
            run(root, "sqlite", f"sqlite+aiosqlite:///{root / 'data' / 'qualitybridge.db'}", arguments)


SPC_CONFIG = {
    "off": "\n[spc]\nenabled = false\n",
    "defaults": "",
    "all": "\n[spc.rules]\ncritical = [1, 2, 3, 4, 5, 6, 7, 8]\nmajor = [1, 2, 3, 4, 5, 6, 7, 8]\n"
    "minor = [1, 2, 3, 4, 5, 6, 7, 8]\n",
}


def run(root: Path, backend: str, store_url: str, arguments: argparse.Namespace) -> None:
    deployment = Deployment(root, backend, store_url, extra_config=SPC_CONFIG[arguments.spc])
    print(f"starting simulator and QualityBridge ({backend}, SPC {arguments.spc}) ...", flush=True)
    deployment.start()
    bare_port = free_port()
    assert deployment.client_certificate is not None
    certificate = deployment.client_certificate
    bare = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "bare_server.py"),
            str(bare_port),
            str(root / "bare"),
            str(certificate.cert),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert bare.stdout is not None
        assert "bare server ready" in bare.stdout.readline()
        asyncio.run(_start_order_if_needed(deployment))
        batched = asyncio.run(_has_batch_method(deployment))

        def jobs(kind: str, endpoint: str, user: str, password: str) -> list[Job]:
            return [
                Job(
                    kind,
                    endpoint,
                    str(certificate.cert),
                    str(certificate.key),
                    certificate.uri,
                    user,
                    password,
                    arguments.seconds,
                    arguments.batch,
                    worker,
                )
                for worker in range(arguments.clients)
            ]

        rows = []
        bare_endpoint = f"opc.tcp://127.0.0.1:{bare_port}/bare"
        print(f"{arguments.clients} client processes, {arguments.seconds:g} s per workload", flush=True)
        calls, *_rest = run_workload(jobs("bare", bare_endpoint, "bench", "bench-secret"))
        rows.append(("bare asyncua no-op method", calls / arguments.seconds, calls / arguments.seconds, None))
        machine_password = TEST_USERS["machine1"][1]
        before = asyncio.run(deployment.stored_result_count())
        calls, accepted, _refused, _elapsed = run_workload(
            jobs("single", deployment.endpoint, "machine1", machine_password)
        )
        stored = asyncio.run(deployment.stored_result_count()) - before
        rows.append(("ReportMeasurement (1 per call)", calls / arguments.seconds, accepted / arguments.seconds, stored))
        if batched:
            before = asyncio.run(deployment.stored_result_count())
            calls, accepted, refused, _elapsed = run_workload(
                jobs("batch", deployment.endpoint, "machine1", machine_password)
            )
            stored = asyncio.run(deployment.stored_result_count()) - before
            rows.append(
                (
                    f"ReportMeasurements ({arguments.batch} per call)",
                    calls / arguments.seconds,
                    accepted / arguments.seconds,
                    stored,
                )
            )
            if refused:
                print(f"warning: {refused} batch entries refused", flush=True)
        print()
        print(f"{'workload':<36} {'calls/s':>10} {'reports/s':>10} {'stored':>8}")
        for name, call_rate, report_rate, stored_count in rows:
            stored_text = "-" if stored_count is None else str(stored_count)
            print(f"{name:<36} {call_rate:>10.0f} {report_rate:>10.0f} {stored_text:>8}")
        if batched:
            print(
                f"\nbatched / single reports per second: {rows[2][2] / rows[1][2]:.1f}x; "
                f"single / bare ceiling: {rows[1][1] / rows[0][1]:.0%}"
            )
    finally:
        bare.terminate()
        bare.wait(timeout=10)
        deployment.stop()


if __name__ == "__main__":
    main()
