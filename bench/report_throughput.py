"""Report throughput and latency of QualityBridge against the ceiling of the stack, measured in one run.

Starts the ERP simulator, `qualitybridge serve` (SQLite by default) and a bare asyncua server with a no-op method,
all over Basic256Sha256 SignAndEncrypt with a user login; then N client processes with M sessions each (a session
is a machine making one call after the other) drive, one workload after the other for the same duration:

  bare no-op   the no-op method on the bare asyncua server: the ceiling of asyncua itself, on the same sessions
  bare-shaped  (only when chosen) a no-op method on the bare server taking ReportMeasurement's eight arguments and
               answering its two outputs: how much of the gap to the ceiling is the call's shape (the clients' and
               the stack's encoding of eight arguments), not QualityBridge's work
  single       ReportMeasurement, one measurement per call, as fast as answered
  paced        ReportMeasurement at half the single-call rate just measured, spread evenly over the sessions, while
               a subscriber (publishing interval 10 ms) watches the characteristic's LastMeasuredAt: latency from
               the call (its MeasuredAt) to the data change, and to the booking at the ERP simulator
  batched      ReportMeasurements, --batch measurements per call as fast as answered; meanwhile the simulator's
               count of booked results is sampled, and after it until the relay has delivered everything: the
               relay's postings/s
  offered      ReportMeasurements at an offered rate (--batch-rate measurements/s, spread evenly over the
               --batch-sessions of every client process): the measurements/s stored, the relay's postings/s while
               the machines report and until it drained, and the outbox's depth (stored, not yet booked) over the
               reporting window with its trend over the second half: whether the relay keeps pace with that rate

and prints them side by side with the machine load. "stored" counts rows that are in the store afterwards.

    .venv/bin/python bench/report_throughput.py --clients 4 --sessions 4 --seconds 10 --batch 100
    .venv/bin/python bench/report_throughput.py --store-url postgresql+asyncpg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/report_throughput.py --spc off      # without the SPC engine, to see what it costs
    .venv/bin/python bench/report_throughput.py --workloads bare,bare-shaped,single --rounds 3  # single calls only
    .venv/bin/python bench/report_throughput.py --workloads bare,single --rounds 3 --characteristics spread
    .venv/bin/python bench/report_throughput.py --workloads bare,single --rounds 3 --group-commit-window-ms 0
    .venv/bin/python bench/report_throughput.py --only-batched --batch 1000   # batches and the relay only
    .venv/bin/python bench/report_throughput.py --workloads offered --batch-rate 15000 --batch 100 --batch-sessions 2

Figures go to docs/performance.md. Shared machines are noisy: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
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


def _spread_keys() -> list[tuple[tuple[str, str, str], str, float, float]]:
    """Every characteristic of the seed's running order with a gauge of its type that may measure: (key, gauge,
    middle of the tolerance, an eighth of its width) — for `--characteristics spread`, machines of a line each
    measuring their own characteristic."""
    from qualitybridge.simulator.seed import seed_equipment, seed_orders

    usable = [g for g in seed_equipment() if not g.calibration_status.blocks_measuring]
    keys = []
    for order in seed_orders():
        if order.order_no != KEY[0]:
            continue
        for operation in order.operations:
            for c in operation.characteristics:
                gauge = next(g.equipment_id for g in usable if g.equipment_type == c.gauge_type)
                width = c.upper_limit - c.lower_limit
                keys.append(
                    (
                        (order.order_no, operation.operation_no, c.characteristic_id),
                        gauge,
                        c.lower_limit + width / 2,
                        width / 8,
                    )
                )
    return keys


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
    sessions: int = 1
    rate: float = 0.0  # calls per second and session; 0: one after the other as fast as they are answered
    processes: int = 1
    batch_sessions: int = 1  # of `sessions`, those that send batches (batched and offered workloads)
    spread: bool = False  # single calls: each machine its own characteristic (`--characteristics spread`)


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


async def _crew_member(job: Job, commands: Any, results: Any, all_ready: Any) -> None:
    """One client process: opens its sessions once, then runs each workload it is sent on all of them.

    Each session is a machine making one call after the other: asyncua serves the requests of one connection one at
    a time, so concurrency at the server comes from sessions, as in a plant. The sessions stay open across
    workloads, as a plant's machines stay connected; every session is open before the first call.
    """
    # One after the other: the server holds at most 16 not yet activated connections per address.
    clients = [await _client(job) for _ in range(job.sessions)]
    results.put("connected")
    try:
        while (command := await asyncio.to_thread(commands.get)) is not None:
            kind, rate = command
            await asyncio.to_thread(all_ready.wait, 300)
            results.put(await _drive(replace(job, kind=kind, rate=rate), clients))
    finally:
        await asyncio.gather(*(client.disconnect() for client in clients), return_exceptions=True)


async def _drive(job: Job, clients: list[Client]) -> tuple[int, int, int, list[float]]:
    """Returns (calls, accepted reports, refused reports, each call's latency in seconds) within the time box."""
    totals = [0, 0, 0]
    latencies: list[float] = []
    start_at = time.monotonic()
    deadline = start_at + job.seconds

    # Batches go from few sessions per process (one by default): an asyncua client drops its session when its
    # keep-alive probe is not answered within a second, and the probe waits behind the session's own batch call,
    # which takes longer than that when many sessions send big batches at once.
    active = clients[: job.batch_sessions] if job.kind in _BATCHED else clients

    async def one_machine(lane: int, client: Client) -> None:
        if job.kind == "bare":
            idx = await client.get_namespace_index("urn:bench")
            call = _bare_call(client.nodes.objects, ua.NodeId("Noop", idx))
        elif job.kind == "bare-shaped":
            idx = await client.get_namespace_index("urn:bench")
            call = _report_call(job, client.nodes.objects, idx, method=ua.NodeId("NoopShaped", idx))
        else:
            ns = await client.get_namespace_index(NAMESPACE_URI)
            call = _report_call(job, client.get_node(ua.NodeId("QualityBridge", ns)), ns)
        sequence = 0
        interval = 1 / job.rate if job.rate else 0.0
        # Paced machines start spread over one interval, so that the calls arrive evenly, not in waves.
        next_at = start_at + interval * (lane * job.processes + job.worker) / (len(active) * job.processes)
        while time.monotonic() < deadline:
            if interval:
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at += interval
            sequence += 1
            called_at = time.monotonic()
            accepted, refused = await call(lane, sequence)
            latencies.append(time.monotonic() - called_at)
            totals[0] += 1
            totals[1] += accepted
            totals[2] += refused

    await asyncio.gather(*(one_machine(lane, client) for lane, client in enumerate(active)))
    return totals[0], totals[1], totals[2], latencies


Call = Callable[[int, int], Awaitable[tuple[int, int]]]
_BATCHED = ("batch", "offered")  # the workloads that call ReportMeasurements


def _bare_call(objects: Any, method: ua.NodeId) -> Call:
    async def call(_lane: int, _sequence: int) -> tuple[int, int]:
        await objects.call_method(method, "x")
        return 1, 0

    return call


def _report_call(job: Job, bridge: Any, ns: int, method: ua.NodeId | None = None) -> Call:
    """ReportMeasurement(s) calls; with `method`, the same single call's arguments sent to that method instead."""
    single = method or ua.NodeId("QualityBridge.ReportMeasurement", ns)
    batch = ua.NodeId("QualityBridge.ReportMeasurements", ns)

    spread = _spread_keys() if job.spread and job.kind == "single" and method is None else []

    async def call(lane: int, sequence: int) -> tuple[int, int]:
        tag = f"{job.kind}-{job.worker}-{lane}-{sequence}-{time.time_ns()}"
        if job.kind not in _BATCHED:
            key, gauge, value = KEY, GAUGE, _value(sequence * 97 + lane * 13 + job.worker)
            if spread:
                key, gauge, middle, eighth = spread[(job.worker * job.sessions + lane) % len(spread)]
                value = middle + (value - 20.0) * 2 * eighth  # _value's ±0.5 around 20 as ±1/8 of the tolerance
            await bridge.call_method(
                single,
                *key,
                ua.Variant(value, ua.VariantType.Double),
                gauge,
                f"SN-{tag}",
                datetime.now(UTC),
                tag,
            )
            return 1, 0
        n = job.batch
        now = datetime.now(UTC)
        ids = [f"{tag}-{i}" for i in range(n)]
        outputs = await bridge.call_method(
            batch,
            ua.Variant([KEY[0]] * n, ua.VariantType.String),
            ua.Variant([KEY[1]] * n, ua.VariantType.String),
            ua.Variant([KEY[2]] * n, ua.VariantType.String),
            ua.Variant(
                [_value((sequence * n + i) * 97 + lane * 13 + job.worker) for i in range(n)], ua.VariantType.Double
            ),
            ua.Variant([GAUGE] * n, ua.VariantType.String),
            ua.Variant([f"SN-{i}" for i in ids], ua.VariantType.String),
            ua.Variant([now] * n, ua.VariantType.DateTime),
            ua.Variant(ids, ua.VariantType.String),
        )
        good = sum(1 for status in outputs[2] if status.is_good())
        return good, n - good

    return call


def _quiet_asyncua() -> None:
    """asyncua's client warns per session (hostname not in the test certificate, the session timeout it was given):
    dozens of lines per run that hide the figures. Its errors still show."""
    import logging

    logging.getLogger("asyncua").setLevel(logging.ERROR)


def _worker(job: Job, commands: Any, results: Any, all_ready: Any) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING, format=f"client {job.worker}: %(name)s: %(message)s")
    _quiet_asyncua()
    try:
        asyncio.run(_crew_member(job, commands, results, all_ready))
    except BaseException as exc:  # a client that fails must say so, not leave the parent waiting
        results.put(exc)
        raise


class Crew:
    """The client processes of one server, each with its sessions, kept for every workload against that server."""

    def __init__(self, jobs: list[Job]) -> None:
        context = multiprocessing.get_context("spawn")
        self._seconds = jobs[0].seconds
        self.latencies: list[float] = []
        self._results = context.Queue()
        self._closed = False
        self._commands = [context.Queue() for _ in jobs]
        # Reusable: once per workload. Held here: a spawned child unpickles it after the start, and a barrier
        # the parent no longer references is gone by then.
        self._all_ready = context.Barrier(len(jobs))
        self._processes = [
            context.Process(target=_worker, args=(job, commands, self._results, self._all_ready))
            for job, commands in zip(jobs, self._commands, strict=True)
        ]
        for process in self._processes:
            process.start()
        # Every session open before the first workload, so that logins (scrypt) are not measured as reports.
        connected = [self._results.get(timeout=300) for _ in self._processes]
        failures = [answer for answer in connected if isinstance(answer, BaseException)]
        if failures:
            self.close()
            raise RuntimeError(f"{len(failures)} client process(es) failed to connect, first: {failures[0]!r}")

    def run(self, kind: str, rate: float = 0.0) -> tuple[int, int, int]:
        """One workload on every session at once; answers (calls, accepted, refused) summed over the processes.

        The calls' latencies (seconds) of the last run are kept in `latencies`."""
        for commands in self._commands:
            commands.put((kind, rate))
        totals = [self._results.get(timeout=self._seconds + 120) for _ in self._processes]
        failures = [total for total in totals if isinstance(total, BaseException)]
        if failures:
            raise RuntimeError(f"{len(failures)} client process(es) failed, first: {failures[0]!r}")
        self.latencies = [latency for total in totals for latency in total[3]]
        return sum(t[0] for t in totals), sum(t[1] for t in totals), sum(t[2] for t in totals)

    def close(self) -> None:
        """Stop the client processes; once (a crew closed early is closed again by the bench's exit stack)."""
        if self._closed:
            return
        self._closed = True
        for commands in self._commands:
            commands.put(None)
        for process in self._processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()


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
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="the bare ceiling and the single calls take turns this many times; their figures are the sums "
        "(default 1; 3 on a machine whose speed drifts)",
    )
    parser.add_argument("--batch", type=int, default=100, help="measurements per ReportMeasurements call")
    parser.add_argument("--work-dir", help="keep the deployment (logs, store) here instead of a temporary folder")
    parser.add_argument("--store-url", default="", help="PostgreSQL URL to measure that store instead of SQLite")
    parser.add_argument(
        "--spc",
        choices=sorted(SPC_CONFIG),
        default="defaults",
        help="the server's SPC engine: off, the defaults of [spc], or all eight rules on every characteristic",
    )
    parser.add_argument(
        "--group-commit-window-ms",
        type=float,
        help="the server's [store] group_commit_window_ms (default: the product's); 0 to see what the window saves",
    )
    parser.add_argument(
        "--sessions",
        type=int,
        default=4,
        help="sessions per client process, each a machine making one call after the other (default 4)",
    )
    parser.add_argument(
        "--workloads",
        default="bare,single,paced,batch",
        help="comma-separated subset of bare,bare-shaped,single,paced,batch,offered to run (default "
        "bare,single,paced,batch; paced needs single, offered needs --batch-rate)",
    )
    parser.add_argument(
        "--characteristics",
        choices=("one", "spread"),
        default="one",
        help="single calls all on one characteristic (default, as every figure before), or each machine on its own "
        "characteristic of the running order (its eleven, in turn), as the machines of a line report",
    )
    parser.add_argument(
        "--batch-rate",
        type=float,
        default=0.0,
        help="measurements/s the offered workload sends in batches of --batch, spread evenly over its sessions; "
        "given, the offered workload runs (after the batched one when both are chosen)",
    )
    parser.add_argument(
        "--batch-sessions",
        type=int,
        default=1,
        help="sessions per client process that send batches, in the batched and offered workloads (default 1)",
    )
    parser.add_argument(
        "--only-batched",
        action="store_true",
        help="the same as --workloads batch: only the batched workload and the relay",
    )
    arguments = parser.parse_args()
    if arguments.only_batched:
        arguments.workloads = "batch"
    arguments.workloads = {name.strip() for name in arguments.workloads.split(",") if name.strip()}
    if arguments.batch_rate > 0:
        arguments.workloads.add("offered")
    unknown = arguments.workloads - {"bare", "bare-shaped", "single", "paced", "batch", "offered"}
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    if "paced" in arguments.workloads and "single" not in arguments.workloads:
        parser.error("paced runs at half the single rate: it needs the single workload")
    if "offered" in arguments.workloads and arguments.batch_rate <= 0:
        parser.error("the offered workload needs --batch-rate")
    if not 1 <= arguments.batch_sessions <= arguments.sessions:
        parser.error("--batch-sessions must be between 1 and --sessions")
    if arguments.rounds < 1:
        parser.error("--rounds must be at least 1")

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


class _BenchDeployment(Deployment):
    """The tests' deployment with the product's default ERP sync interval (10 s): the tests sync every second,
    which put a sync of the master data (and its store transaction) between the reports of every second."""

    group_commit_window_ms: float | None = None

    def write_config(self) -> None:
        super().write_config()
        text = self.config_path.read_text(encoding="utf-8")
        if self.group_commit_window_ms is not None:
            text = text.replace("[store]\n", f"[store]\ngroup_commit_window_ms = {self.group_commit_window_ms}\n", 1)
        self.config_path.write_text(
            text.replace("sync_interval_seconds = 1\n", "sync_interval_seconds = 10\n"), encoding="utf-8"
        )


def run(root: Path, backend: str, store_url: str, arguments: argparse.Namespace) -> None:
    _quiet_asyncua()  # this process is a client too (it starts the order)
    deployment = _BenchDeployment(root, backend, store_url, extra_config=SPC_CONFIG[arguments.spc])
    deployment.group_commit_window_ms = arguments.group_commit_window_ms
    print(f"starting simulator and QualityBridge ({backend}, SPC {arguments.spc}) ...", flush=True)
    print(f"machine load at start (1/5/15 min): {_load()}", flush=True)
    deployment.start()
    assert deployment.server is not None
    assert deployment.server.process is not None
    server_pid = deployment.server.process.pid
    relay_pid = _relay_pid(server_pid)
    print(f"server pid {server_pid} (for a profiler: py-spy record -p PID)", flush=True)
    if relay_pid is not None:
        print(f"the relay's own process: pid {relay_pid} ([erp] relay_process)", flush=True)
    if deployment.simulator is not None and deployment.simulator.process is not None:
        print(f"the ERP simulator: pid {deployment.simulator.process.pid}", flush=True)
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
    stack = contextlib.ExitStack()  # the crew's processes, closed before the servers stop
    try:
        assert bare.stdout is not None
        assert "bare server ready" in bare.stdout.readline()
        asyncio.run(_start_order_if_needed(deployment))

        def jobs(kind: str, endpoint: str, user: str, password: str, rate: float = 0.0) -> list[Job]:
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
                    arguments.sessions,
                    rate,
                    arguments.clients,
                    arguments.batch_sessions,
                    arguments.characteristics == "spread",
                )
                for worker in range(arguments.clients)
            ]

        sessions = arguments.clients * arguments.sessions
        print(
            f"{arguments.clients} client processes x {arguments.sessions} sessions ({sessions} machines), "
            f"{arguments.seconds:g} s per workload",
            flush=True,
        )
        machine = ("machine1", TEST_USERS["machine1"][1])
        chosen = arguments.workloads
        bare_crew: Crew | None = None
        if chosen & {"bare", "bare-shaped"}:
            bare_crew = Crew(jobs("bare", f"opc.tcp://127.0.0.1:{bare_port}/bare", "bench", "bench-secret"))
            stack.callback(bare_crew.close)
        crew = Crew(jobs("single", deployment.endpoint, *machine))
        stack.callback(crew.close)
        # The ceiling and the single calls take turns (--rounds): a shared machine's speed drifts over a minute, and
        # a ratio of two figures measured at different moments carries that drift.
        bare_calls = bare_cpu = 0.0
        shaped_calls = shaped_cpu = 0.0
        single_calls = single_accepted = 0
        single_cpu = 0.0
        single_relay_cpu = 0.0
        single_stored = 0

        def on_bare(kind: str, title: str, of_rounds: str) -> tuple[int, float]:
            """One turn of a bare workload: its calls and the bare server's CPU seconds, printed."""
            assert bare_crew is not None
            cpu_before = _cpu_seconds(bare.pid)
            calls, *_rest = bare_crew.run(kind)
            cpu = _cpu_seconds(bare.pid) - cpu_before
            latency = f"call latency {_percentiles(bare_crew.latencies)}"
            print(f"{title}: {calls / arguments.seconds:.0f} calls/s, {_per_call(cpu, calls)}, {latency}{of_rounds}")
            return calls, cpu

        for turn in range(1, arguments.rounds + 1):
            of_rounds = f" (round {turn} of {arguments.rounds})" if arguments.rounds > 1 else ""
            if "bare" in chosen:
                calls, cpu = on_bare("bare", "bare no-op", of_rounds)
                bare_calls += calls
                bare_cpu += cpu
            if "bare-shaped" in chosen:
                calls, cpu = on_bare("bare-shaped", "bare no-op shaped like ReportMeasurement", of_rounds)
                shaped_calls += calls
                shaped_cpu += cpu
            if "single" in chosen:
                before = asyncio.run(deployment.stored_result_count())
                if turn == 1:
                    print("single: running (every session is open; a profiler may attach now)", flush=True)
                cpu_before = _cpu_seconds(server_pid)
                relay_cpu_before = _cpu_seconds(relay_pid) if relay_pid is not None else 0.0
                calls, accepted, _refused = crew.run("single")
                cpu = _cpu_seconds(server_pid) - cpu_before
                relay_cpu = _cpu_seconds(relay_pid) - relay_cpu_before if relay_pid is not None else 0.0
                single_relay_cpu += relay_cpu
                single_stored += asyncio.run(deployment.stored_result_count()) - before
                single_calls += calls
                single_accepted += accepted
                single_cpu += cpu
                print(
                    f"single: {accepted / arguments.seconds:.0f} reports/s, {_per_call(cpu, calls)}"
                    f"{_relay_per_call(relay_pid, relay_cpu, calls)}, call latency {_percentiles(crew.latencies)}"
                    f"{of_rounds}"
                )
            sys.stdout.flush()
        if bare_crew is not None:
            bare_crew.close()  # its sessions idle on the bare server through the other workloads otherwise
        measured = arguments.seconds * arguments.rounds
        bare_rate = bare_calls / measured
        shaped_rate = shaped_calls / measured
        single_rate = single_accepted / measured
        if arguments.rounds > 1:
            if "bare" in chosen:
                print(f"bare no-op, all rounds: {bare_rate:.0f} calls/s, {_per_call(bare_cpu, int(bare_calls))}")
            if "bare-shaped" in chosen:
                shaped = _per_call(shaped_cpu, int(shaped_calls))
                print(f"bare no-op shaped like ReportMeasurement, all rounds: {shaped_rate:.0f} calls/s, {shaped}")
            if "single" in chosen:
                print(
                    f"single, all rounds: {single_rate:.0f} reports/s, {_per_call(single_cpu, single_calls)}"
                    f"{_relay_per_call(relay_pid, single_relay_cpu, single_calls)}"
                )

        # Half the single-call maximum, paced evenly over every session, watched by a subscriber.
        paced_rate = single_rate / 2
        latencies: list[float] = []
        booking: list[float] = []
        if "paced" in chosen:
            paced_job = jobs("paced", deployment.endpoint, *machine)[0]
            latencies = _paced_run(deployment, crew, paced_job, paced_rate / sessions)
            booking = _booking_latencies(deployment)
            print(f"paced: {len(latencies)} data changes, {len(booking)} bookings", flush=True)

        batched: dict[str, BatchedFigures] = {}
        if "batch" in chosen:
            batched["batch"] = _batched_run(deployment, crew, "batch", 0.0, arguments.seconds)
        if "offered" in chosen:
            batch_sessions = arguments.clients * arguments.batch_sessions
            calls_per_session = arguments.batch_rate / arguments.batch / batch_sessions
            batched["offered"] = _batched_run(deployment, crew, "offered", calls_per_session, arguments.seconds)
        crew.close()
        print(f"machine load at end (1/5/15 min): {_load()}", flush=True)

        def share(rate: float) -> str:
            return f"{rate / bare_rate:.0%}" if bare_rate else "-"

        print()
        print(f"{'workload':<44} {'calls/s':>9} {'reports/s':>10} {'vs bare':>8} {'stored':>8}")
        if "bare" in chosen:
            print(f"{'bare asyncua no-op method (the ceiling)':<44} {bare_rate:>9.0f} {'-':>10} {'100%':>8} {'-':>8}")
        if "bare-shaped" in chosen:
            title = "bare no-op shaped like ReportMeasurement"
            print(f"{title:<44} {shaped_rate:>9.0f} {'-':>10} {share(shaped_rate):>8} {'-':>8}")
        if "single" in chosen:
            print(
                f"{'ReportMeasurement, 1 per call':<44} {single_rate:>9.0f} {single_rate:>10.0f} "
                f"{share(single_rate):>8} {single_stored:>8}"
            )
        for kind, figures in batched.items():
            title = f"ReportMeasurements, {arguments.batch} per call"
            if kind == "offered":
                title += f", offered {arguments.batch_rate:.0f}/s"
            calls_rate = figures.calls / arguments.seconds
            print(
                f"{title:<44} {calls_rate:>9.0f} {figures.accepted / arguments.seconds:>10.0f} "
                f"{share(calls_rate):>8} {figures.stored:>8}"
            )
            _print_batched(figures, arguments)
        if "paced" in chosen:
            print(f"at half the single maximum ({paced_rate:.0f} reports/s, {sessions} sessions paced):")
            print(f"  report -> data change at a subscriber (publishing 10 ms): {_percentiles(latencies)}")
            print(f"  report -> booking at the ERP simulator:                    {_percentiles(booking)}")
    finally:
        stack.close()
        bare.terminate()
        bare.wait(timeout=10)
        deployment.stop()


@dataclass
class BatchedFigures:
    """What one batched workload (as fast as answered, or at an offered rate) measured."""

    calls: int
    accepted: int
    refused: int
    stored: int
    call_latencies: list[float]
    relayed: int  # booked at the simulator from the workload's start until it drained (or gave up)
    during: int  # of them, booked while the machines reported
    drained: int  # of them, booked after the last call
    drain_seconds: float  # from the workload's start until everything stored was booked
    drained_at: float | None
    cpu_used: dict[str, float]  # CPU seconds per process, from the start until drained
    drain_cpu: dict[str, float]  # of them, after the last call
    window_cpu: dict[str, float]  # of them, while the machines reported
    window_seconds: float
    depth_at_start: int  # results stored but not yet booked as the machines began
    depth_at_end: int  # as the last call was answered
    depths: list[tuple[float, int]]  # (seconds into the window, depth) while the machines reported
    stats: dict[str, Any]
    everything: int


def _batched_run(deployment: Deployment, crew: Crew, kind: str, rate: float, seconds: float) -> BatchedFigures:
    """One batched workload, then waits until the relay has booked everything stored; the simulator's booked count
    and the store's result count are sampled all along, so the outbox's depth over the window shows."""
    erp = deployment.erp()
    assert deployment.server is not None
    assert deployment.server.process is not None
    assert deployment.simulator is not None
    assert deployment.simulator.process is not None
    cpu_pids = {"server": deployment.server.process.pid, "simulator": deployment.simulator.process.pid}
    relay_pid = _relay_pid(deployment.server.process.pid)
    if relay_pid is not None:
        cpu_pids["relay process"] = relay_pid
    booked_before = _booked(erp)
    before = asyncio.run(deployment.stored_result_count())
    cpu_before = {name: _cpu_seconds(pid) for name, pid in cpu_pids.items()}
    watch = _BookingWatch(erp, deployment)
    watch.start()
    try:
        calls, accepted, refused = crew.run(kind, rate)
    except RuntimeError as exc:  # sessions dropped: say so, and still report what was measured
        print(f"{kind} workload failed: {exc}", flush=True)
        calls = accepted = refused = 0
    call_latencies = crew.latencies
    batch_end = time.monotonic()
    cpu_at_batch_end = {name: _cpu_seconds(pid) for name, pid in cpu_pids.items()}
    booked_at_batch_end = watch.last
    everything = asyncio.run(deployment.stored_result_count())
    drained_at = watch.until(everything, timeout=300)
    watch.stop()
    cpu_used = {name: _cpu_seconds(pid) - cpu_before[name] for name, pid in cpu_pids.items()}
    # After the last call only the relay works: its CPU per posting, in the server and at the simulator.
    drain_cpu = {name: _cpu_seconds(pid) - cpu_at_batch_end[name] for name, pid in cpu_pids.items()}
    window_cpu = {name: cpu_at_batch_end[name] - cpu_before[name] for name in cpu_pids}
    depths = [(at - watch.started, stored - booked) for at, booked, stored in watch.depth_samples if at <= batch_end]
    return BatchedFigures(
        calls=calls,
        accepted=accepted,
        refused=refused,
        stored=everything - before,
        call_latencies=call_latencies,
        relayed=watch.last - booked_before,
        during=watch.booked_by(batch_end) - booked_before,
        drained=watch.last - booked_at_batch_end,
        drain_seconds=(drained_at or time.monotonic()) - watch.started,
        drained_at=drained_at,
        cpu_used=cpu_used,
        drain_cpu=drain_cpu,
        window_cpu=window_cpu,
        window_seconds=batch_end - watch.started,
        depth_at_start=before - booked_before,
        depth_at_end=everything - booked_at_batch_end,
        depths=depths,
        stats=erp.get("/stats").json(),
        everything=everything,
    )


def _print_batched(figures: BatchedFigures, arguments: argparse.Namespace) -> None:
    seconds = arguments.seconds
    print(f"  a batch call's latency at the client: {_percentiles(figures.call_latencies)}")
    if figures.refused:
        print(f"warning: {figures.refused} batch entries refused", flush=True)
    print(f"  measurements stored: {figures.stored} = {figures.stored / seconds:.0f}/s")
    print(
        f"relay to the ERP simulator: {figures.relayed} results booked in {figures.drain_seconds:.1f} s from the "
        f"workload's start = {figures.relayed / figures.drain_seconds:.0f} postings/s "
        f"({figures.during / seconds:.0f}/s while the machines reported)"
        f"{'' if figures.drained_at else '; NOT drained within 300 s'}"
    )
    if figures.depths:
        peak = max(depth for _at, depth in figures.depths)
        per_second: dict[int, int] = {}
        for at, depth in figures.depths:
            per_second.setdefault(int(at), depth)
        series = " ".join(f"{depth}" for _second, depth in sorted(per_second.items()))
        print(
            f"  outbox depth (stored, not yet booked): {figures.depth_at_start} at the start, "
            f"{figures.depth_at_end} as the last call was answered, at most {peak} while the machines reported"
        )
        print(f"  depth at each second of the window: {series}")
        trend = _depth_trend(figures.depths, figures.window_seconds)
        if trend is not None:
            # The rates above lag the stores' by the relay's pipeline (a round in flight); the depth's slope does
            # not: a relay that keeps pace holds it near 0, one that falls behind shows by how much per second.
            print(
                f"  depth's trend over the window's second half: {trend:+.0f}/s: "
                f"{_pace_verdict(trend, figures.stored / seconds)}"
            )
    if figures.window_seconds > 0:
        # A server near one core's worth (its one GIL) has no time left for the relay, whatever the relay's rounds.
        print(
            "  busy while the machines reported (CPU s per s): "
            + ", ".join(f"{name} {cpu / figures.window_seconds:.2f}" for name, cpu in figures.window_cpu.items())
        )
    if figures.stored:
        # CPU time, not wall time: what a measurement costs whatever else the machine is busy with.
        print(
            "CPU per measurement (reported, stored, relayed and booked): "
            + ", ".join(f"{name} {cpu / figures.stored * 1e6:.0f} µs" for name, cpu in figures.cpu_used.items())
        )
    if figures.drained:
        print(
            f"CPU per posting while the relay drained alone ({figures.drained} postings): "
            + ", ".join(f"{name} {cpu / figures.drained * 1e6:.0f} µs" for name, cpu in figures.drain_cpu.items())
        )
    stats = figures.stats
    print(
        f"exactly once: {stats['booked']['results']} results booked for {figures.everything} stored; "
        f"{stats['duplicates_suppressed']['results']} repeated deliveries absorbed by the idempotency key"
    )


def _relay_pid(server_pid: int) -> int | None:
    """The relay's own process ([erp] relay_process): the server's one child; None when it relays itself."""
    try:
        children = Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _relay_per_call(relay_pid: int | None, cpu_seconds: float, calls: int) -> str:
    if relay_pid is None or not calls:
        return ""
    return f" + relay process {cpu_seconds / calls * 1000:.2f} ms"


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc (Linux); NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _per_call(cpu_seconds: float, calls: int) -> str:
    """The server's CPU per call: unlike calls/s, it hardly depends on what else the machine runs."""
    if not calls or cpu_seconds != cpu_seconds:
        return "server CPU per call unknown"
    return f"server CPU {cpu_seconds * 1000 / calls:.2f} ms per call"


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


# A relay round in flight makes the depth a saw-tooth; a slope within this share of the stored rate is that, not a
# relay falling behind or catching up.
_PACE_TOLERANCE = 0.05


def _pace_verdict(trend: float, stored_per_second: float) -> str:
    """What the depth's trend says of the relay, for the one reading the output."""
    if abs(trend) <= _PACE_TOLERANCE * stored_per_second:
        return f"the relay keeps pace (within ±{_PACE_TOLERANCE:.0%} of the stored rate)"
    if trend > 0:
        return f"the relay falls behind by {trend:.0f} postings/s"
    return f"the relay catches up by {-trend:.0f} postings/s"


def _depth_trend(depths: list[tuple[float, int]], window_seconds: float) -> float | None:
    """The outbox depth's least-squares slope (postings per second) over the second half of the window, once the
    relay has had time to find its pace; None with fewer than four samples there."""
    half = [(at, depth) for at, depth in depths if at >= window_seconds / 2]
    if len(half) < 4:
        return None
    mean_at = sum(at for at, _depth in half) / len(half)
    mean_depth = sum(depth for _at, depth in half) / len(half)
    spread = sum((at - mean_at) ** 2 for at, _depth in half)
    if spread == 0:
        return None
    return sum((at - mean_at) * (depth - mean_depth) for at, depth in half) / spread


def _percentiles(seconds: list[float]) -> str:
    if not seconds:
        return "no samples"
    ordered = sorted(seconds)

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000

    return f"p50 {at(0.5):.0f} ms, p99 {at(0.99):.0f} ms, max {ordered[-1] * 1000:.0f} ms ({len(ordered)} samples)"


def _booked(erp: httpx.Client) -> int:
    return int(erp.get("/stats").json()["booked"]["results"])


class _BookingWatch:
    """Samples the simulator's count of booked results four times a second, from a thread; with a deployment, the
    store's count of results too (after the booked count, so that a depth is never understated)."""

    def __init__(self, erp: httpx.Client, deployment: Deployment | None = None) -> None:
        self._erp = erp
        self._deployment = deployment
        self.samples: list[tuple[float, int]] = []
        self.depth_samples: list[tuple[float, int, int]] = []  # (when, booked, stored)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()

    def start(self) -> None:
        self.started = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                at, booked = time.monotonic(), _booked(self._erp)
                self.samples.append((at, booked))
                if self._deployment is not None:
                    with contextlib.suppress(Exception):  # a busy store: this sample goes without its depth
                        stored = asyncio.run(self._deployment.stored_result_count())
                        self.depth_samples.append((at, booked, stored))
            self._stop.wait(0.25)

    @property
    def last(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def booked_by(self, moment: float) -> int:
        before = [count for at, count in self.samples if at <= moment]
        return before[-1] if before else 0

    def until(self, count: int, timeout: float) -> float | None:
        """When the simulator had `count` results booked (None: not within `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reached = [at for at, booked in self.samples if booked >= count]
            if reached:
                return reached[0]
            time.sleep(0.1)
        return None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _paced_run(deployment: Deployment, crew: Crew, job: Job, rate_per_session: float) -> list[float]:
    """Runs the paced workload with a subscriber on the characteristic's LastMeasuredAt; answers its latencies (s)."""
    context = multiprocessing.get_context("spawn")
    latencies = context.Queue()
    ready, done = context.Event(), context.Event()
    subscriber = context.Process(target=_subscriber, args=(deployment.endpoint, job, latencies, ready, done))
    subscriber.start()
    if not ready.wait(60):
        raise RuntimeError("the subscriber did not get its subscription within 60 s")
    try:
        crew.run("paced", rate_per_session)
    finally:
        done.set()
    found = latencies.get(timeout=120)
    subscriber.join(timeout=30)
    if isinstance(found, BaseException):
        raise RuntimeError(f"the subscriber failed: {found!r}")
    return list(found)


def _subscriber(endpoint: str, job: Job, latencies: Any, ready: Any, done: Any) -> None:
    _quiet_asyncua()
    try:
        latencies.put(asyncio.run(_subscribe(endpoint, job, ready, done)))
    except BaseException as exc:
        latencies.put(exc)
        raise


class _Arrivals:
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def datachange_notification(self, _node: Any, value: Any, _data: Any) -> None:
        if isinstance(value, datetime):
            sent = value if value.tzinfo else value.replace(tzinfo=UTC)
            self.seconds.append((datetime.now(UTC) - sent).total_seconds())


async def _subscribe(endpoint: str, job: Job, ready: Any, done: Any) -> list[float]:
    client = await _client(replace(job, endpoint=endpoint, user="observer", password=TEST_USERS["observer"][1]))
    try:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        node = client.get_node(ua.NodeId(f"Order/{KEY[0]}/Op/{KEY[1]}/Char/{KEY[2]}.LastMeasuredAt", ns))
        arrivals = _Arrivals()
        subscription = await client.create_subscription(10, arrivals)
        await subscription.subscribe_data_change(node, queuesize=1000)
        await asyncio.sleep(1)
        arrivals.seconds.clear()  # the initial value is no report of this run
        ready.set()
        await asyncio.to_thread(done.wait, 600)
        await asyncio.sleep(2)  # the last reports' data changes are still on their way
        return arrivals.seconds
    finally:
        await client.disconnect()


def _booking_latencies(deployment: Deployment) -> list[float]:
    """Report (its MeasuredAt, set by the client as it calls) to booking at the simulator, for the paced reports."""
    erp = deployment.erp()
    deadline = time.monotonic() + 120
    while True:
        bookings = [
            item for item in erp.get("/results").json() if item["body"]["client_result_id"].startswith("paced-")
        ]
        stored = asyncio.run(deployment.stored_result_count())
        if _booked(erp) >= stored or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return [
        (
            datetime.fromisoformat(item["received_at"]) - datetime.fromisoformat(item["body"]["measured_at"])
        ).total_seconds()
        for item in bookings
    ]


if __name__ == "__main__":
    main()
