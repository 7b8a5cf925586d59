"""CPU per measurement of the batched report path in process: from ReportMeasurements' decoded arguments to the
durable commit, without asyncua's decoding, the relay or the clients.

Calls `ReportMeasurementsMethod.call` with batches as asyncua hands them over (eight arrays of Variants, the shape
of bench/report_throughput.py's batches: one order, operation, characteristic and gauge, distinct part serials and
client ids, one MeasuredAt) against a SQLite store with `synchronous=FULL`, with or without the SPC monitor (the
[spc] defaults), after `gc.freeze()` and with the collector's thresholds as `serve` sets them. Prints the process's
CPU time (every thread: aiosqlite's does SQLite's work) per measurement for each round, the share of the threads
other than the event loop's, and what the garbage collector took. The store grows round by round, as a server's
does; compare runs of equal length.

    .venv/bin/python bench/batch_report_path.py --rounds 6 --calls 10
    .venv/bin/python bench/batch_report_path.py --spc off              # what SPC adds is the difference
    .venv/bin/python bench/batch_report_path.py --classification major  # four Nelson rules instead of eight
    .venv/bin/python bench/batch_report_path.py --collector-default     # what serve's collector thresholds save
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asyncua import ua  # noqa: E402
from asyncua.crypto.permission_rules import UserRole  # noqa: E402

from qualitybridge.app import spc_policy  # noqa: E402
from qualitybridge.collector import tune_collector  # noqa: E402
from qualitybridge.config import SpcSettingsSection  # noqa: E402
from qualitybridge.domain.model import (  # noqa: E402
    Classification,
    ErpSnapshot,
    InspectionCharacteristic,
    Operation,
    OrderState,
    ProductionOrder,
    TestEquipment,
)
from qualitybridge.server.methods.measurements import ReportMeasurementsMethod  # noqa: E402
from qualitybridge.server.security.access import current_user  # noqa: E402
from qualitybridge.server.security.identity import QualityBridgeUser, Role  # noqa: E402
from qualitybridge.services.event_bus import EventBus  # noqa: E402
from qualitybridge.services.master_data import MasterData  # noqa: E402
from qualitybridge.services.reporting import ReportingService  # noqa: E402
from qualitybridge.services.spc_monitor import SpcMonitor  # noqa: E402
from qualitybridge.store import open_store  # noqa: E402

ORDER, OPERATION, CHARACTERISTIC, GAUGE = "1000417", "0010", "C0010", "GA-TMP-0603"


def snapshot(classification: Classification) -> ErpSnapshot:
    characteristic = InspectionCharacteristic(
        characteristic_id=CHARACTERISTIC,
        name="Part temperature",
        nominal=20.0,
        lower_limit=19.0,
        upper_limit=21.0,
        unit="CEL",
        classification=classification,
        plan_version="1",
    )
    order = ProductionOrder(
        order_no=ORDER,
        material_no="M",
        planned_quantity=1e9,
        state=OrderState.RUNNING,
        operations=(Operation(operation_no=OPERATION, characteristics=(characteristic,)),),
    )
    return ErpSnapshot(orders=(order,), equipment=(TestEquipment(equipment_id=GAUGE),))


def _value(sequence: int) -> float:
    """Part temperatures around 20 °C with some spread, as bench/report_throughput.py sends them."""
    return 20.0 + ((sequence * 7919) % 101 - 50) / 100


def _thread_ticks() -> dict[str, int]:
    """CPU clock ticks so far of the event loop's thread ("loop") and of all others ("others")."""
    ticks = {"loop": 0, "others": 0}
    for thread in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{thread}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        ticks["loop" if int(thread) == os.getpid() else "others"] += int(fields[11]) + int(fields[12])
    return ticks


class _Batches:
    def __init__(self, size: int) -> None:
        self.size = size
        self.sequence = 0

    def arguments(self) -> list[ua.Variant]:
        self.sequence += 1
        n = self.size
        now = datetime.now(UTC) - timedelta(seconds=1)
        ids = [f"bench-{self.sequence}-{time.time_ns()}-{i}" for i in range(n)]
        strings = ua.VariantType.String
        return [
            ua.Variant([ORDER] * n, strings),
            ua.Variant([OPERATION] * n, strings),
            ua.Variant([CHARACTERISTIC] * n, strings),
            ua.Variant([_value(self.sequence * n + i) for i in range(n)], ua.VariantType.Double),
            ua.Variant([GAUGE] * n, strings),
            ua.Variant([f"SN-{i}" for i in ids], strings),
            ua.Variant([now] * n, ua.VariantType.DateTime),
            ua.Variant(ids, strings),
        ]


async def run(arguments: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="qb-batch-path-") as folder:
        store = await open_store(f"sqlite+aiosqlite:///{Path(folder) / 'store.db'}", sqlite_synchronous="FULL")
        await store.apply_snapshot(snapshot(Classification(arguments.classification)))
        master = MasterData()
        master.replace(await store.released_orders(), await store.equipment())
        events = EventBus()
        if arguments.spc == "on":
            SpcMonitor(store, master, spc_policy(SpcSettingsSection()), events=events).subscribe()
        method = ReportMeasurementsMethod(ReportingService(store, master, events=events), max_batch_size=1000)
        current_user.set(QualityBridgeUser(role=UserRole.User, name="machine1", account_role=Role.MACHINE))
        batches = _Batches(arguments.batch)
        split = {"loop": 0, "others": 0}

        async def one_round() -> float:
            calls = [batches.arguments() for _ in range(arguments.calls)]
            before, started = _thread_ticks(), time.process_time()
            for call in calls:
                answer = await method.call(ua.NodeId("QualityBridge.ReportMeasurements", 1), *call)
                if not all(code.is_good() for code in answer.OutputArguments[2].Value):
                    raise SystemExit(f"entries refused: {answer.OutputArguments[3].Value[:3]}")
            cpu = time.process_time() - started
            after = _thread_ticks()
            for name in split:
                split[name] += after[name] - before[name]
            return cpu / (arguments.calls * arguments.batch) * 1e6

        await one_round()  # imports, caches and the first pages of the store
        gc.collect()
        gc.freeze()
        if not arguments.collector_default:
            tune_collector()
        collected = [0.0]
        collection_started = [0.0]

        def watch(phase: str, _info: dict[str, Any]) -> None:
            if phase == "start":
                collection_started[0] = time.perf_counter()
            else:
                collected[0] += time.perf_counter() - collection_started[0]

        split = {"loop": 0, "others": 0}
        gc.callbacks.append(watch)
        timings = [await one_round() for _ in range(arguments.rounds)]
        gc.callbacks.remove(watch)
        await store.aclose()
    measurements = arguments.rounds * arguments.calls * arguments.batch
    ticks = sum(split.values()) or 1
    print(
        f"SPC {arguments.spc} ({arguments.classification}), {arguments.rounds} rounds x {arguments.calls} calls x "
        f"{arguments.batch}: median {statistics.median(timings):.1f} µs CPU per measurement "
        f"(rounds {', '.join(f'{t:.1f}' for t in timings)}); threads other than the loop's "
        f"{split['others'] / ticks:.0%}; garbage collector {collected[0] / measurements * 1e6:.1f} µs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=10, help="ReportMeasurements calls per round")
    parser.add_argument("--batch", type=int, default=1000, help="measurements per call")
    parser.add_argument("--spc", choices=("on", "off"), default="on")
    parser.add_argument(
        "--collector-default",
        action="store_true",
        help="the garbage collector's default thresholds instead of serve's (to see what serve's save)",
    )
    parser.add_argument("--classification", choices=[c.value for c in Classification], default="critical")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
