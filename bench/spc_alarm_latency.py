"""Latency from a ReportMeasurement call to the SPC alarm's notification at a client subscribed at the Server object.

Starts the ERP simulator and `qualitybridge serve` (SQLite) with all eight Nelson rules on, as in the demo. A
subscriber (its own session, publishing interval --publishing-ms) watches SpcAlarmEventType at the Server object.
The reporter sends a baseline of --baseline noisy part temperatures, then alternately an ordinary value and one far
outside the control limits: each outlier is a rule-1 violation. For each outlier, the time from just before the
call to the event's arrival at the subscriber is one latency sample. Prints p50, p90, p99 and max.

    .venv/bin/python bench/spc_alarm_latency.py --alarms 200 --publishing-ms 10

The publishing interval bounds the latency from below on average by half of it: a client that wants alarms fast
asks for a short one. Shared machines are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import ua

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness import NAMESPACE_URI, Deployment  # noqa: E402

KEY = ("1000417", "0010", "C0010")  # part temperature, 18..22 °C, minor
GAUGE = "GA-TMP-0603"
ALL_RULES = """
[spc]
baseline_subgroups = 25
[spc.rules]
critical = [1, 2, 3, 4, 5, 6, 7, 8]
major = [1, 2, 3, 4, 5, 6, 7, 8]
minor = [1, 2, 3, 4, 5, 6, 7, 8]
"""


class Arrivals:
    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.event = asyncio.Event()

    def event_notification(self, event: Any) -> None:
        self.at[str(event.ResultId)] = time.perf_counter()
        self.event.set()


async def measure(deployment: Deployment, alarms: int, baseline: int, publishing_ms: float) -> list[float]:
    await deployment.ensure_running(KEY[0])
    async with deployment.session("observer") as watcher, deployment.session("machine1") as machine:
        idx = await watcher.get_namespace_index(NAMESPACE_URI)
        arrivals = Arrivals()
        subscription = await watcher.create_subscription(publishing_ms, arrivals)
        await subscription.subscribe_events(watcher.nodes.server, watcher.get_node(ua.NodeId(1011, idx)))
        midx = await machine.get_namespace_index(NAMESPACE_URI)
        bridge = machine.get_node(ua.NodeId("QualityBridge", midx))
        method = ua.NodeId("QualityBridge.ReportMeasurement", midx)

        async def report(value: float, serial: str) -> tuple[str, float]:
            started = time.perf_counter()
            result_id, _evaluation = await bridge.call_method(
                method, *KEY, ua.Variant(value, ua.VariantType.Double), GAUGE, serial, datetime.now(UTC), ""
            )
            return str(result_id), started

        for n in range(baseline):
            await report(20.0 + ((n * 7919) % 101 - 50) / 100, f"B-{n}")
        latencies = []
        for n in range(alarms):
            await report(20.0 + (0.1 if n % 2 else -0.1), f"N-{n}")  # an ordinary part between two outliers
            arrivals.event.clear()
            result_id, started = await report(21.9 if n % 2 else 18.1, f"O-{n}")
            deadline = time.perf_counter() + 5
            while result_id not in arrivals.at:
                assert time.perf_counter() < deadline, f"no alarm for outlier {n}"
                await asyncio.wait_for(arrivals.event.wait(), timeout=5)
                arrivals.event.clear()
            latencies.append((arrivals.at[result_id] - started) * 1000)
        return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alarms", type=int, default=200)
    parser.add_argument("--baseline", type=int, default=25)
    parser.add_argument("--publishing-ms", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qb-spc-latency-") as folder:
        root = Path(folder)
        deployment = Deployment(
            root, "sqlite", f"sqlite+aiosqlite:///{root / 'data' / 'qualitybridge.db'}", extra_config=ALL_RULES
        )
        print("starting simulator and QualityBridge (SQLite, all eight rules) ...", flush=True)
        deployment.start()
        try:
            latencies = asyncio.run(measure(deployment, args.alarms, args.baseline, args.publishing_ms))
        finally:
            deployment.stop()
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"{len(latencies)} alarms, publishing interval {args.publishing_ms:g} ms: report call → notification at a "
        f"Server subscriber p50 {cuts[49]:.1f} ms, p90 {cuts[89]:.1f} ms, p99 {cuts[98]:.1f} ms, "
        f"max {max(latencies):.1f} ms"
    )


if __name__ == "__main__":
    main()
