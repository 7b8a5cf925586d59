"""What the SPC monitor adds per accepted measurement on the report path, in process, against the SQLite store.

The same batches of `ReportingService.report_measurements` (100 per call, one Running order, one characteristic)
run alternately on a bus without and with the SPC monitor subscribed (all eight rules, baseline limits), so that
machine noise hits both alike. The OPC UA layer is left out: it is the same in both except the Spc object's
writes (a few µs each without subscribers, asyncua-address-space.md §4). Prints µs per measurement, medians.

    .venv/bin/python bench/spc_report_path.py --rounds 6 --batches 20
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qualitybridge.domain.model import (  # noqa: E402
    Classification,
    ErpSnapshot,
    InspectionCharacteristic,
    MeasurementReport,
    Operation,
    OrderState,
    ProductionOrder,
    TestEquipment,
)
from qualitybridge.domain.spc import ALL_RULES, SpcPolicy  # noqa: E402
from qualitybridge.services.event_bus import EventBus  # noqa: E402
from qualitybridge.services.master_data import MasterData  # noqa: E402
from qualitybridge.services.reporting import ReportingService  # noqa: E402
from qualitybridge.services.spc_monitor import SpcMonitor  # noqa: E402
from qualitybridge.store import open_store  # noqa: E402

BATCH = 100


def snapshot() -> ErpSnapshot:
    characteristic = InspectionCharacteristic(
        characteristic_id="C1",
        name="Diameter",
        nominal=20.0,
        lower_limit=18.0,
        upper_limit=22.0,
        unit="MMT",
        classification=Classification.CRITICAL,
        plan_version="1",
    )
    order = ProductionOrder(
        order_no="B1",
        material_no="M",
        planned_quantity=1e9,
        state=OrderState.RUNNING,
        operations=(Operation(operation_no="0010", characteristics=(characteristic,)),),
    )
    return ErpSnapshot(orders=(order,), equipment=(TestEquipment(equipment_id="G1"),))


async def run(rounds: int, batches: int, rules: frozenset[int]) -> None:
    with tempfile.TemporaryDirectory(prefix="qb-spc-path-") as folder:
        store = await open_store(f"sqlite+aiosqlite:///{Path(folder) / 'store.db'}", sqlite_synchronous="FULL")
        await store.apply_snapshot(snapshot())
        master = MasterData()
        master.replace(await store.released_orders(), await store.equipment())
        plain_bus, spc_bus = EventBus(), EventBus()
        policy = SpcPolicy(rules_by_classification={"critical": rules})
        SpcMonitor(store, master, policy, events=spc_bus).subscribe()
        alarm_writes = 0
        write_alarms = store.record_spc_alarms_once

        async def counted(records):  # type: ignore[no-untyped-def]  # one call = one transaction
            nonlocal alarm_writes
            alarm_writes += 1
            return await write_alarms(records)

        store.record_spc_alarms_once = counted  # type: ignore[method-assign]
        services = {"without SPC": ReportingService(store, master, events=plain_bus),
                    "with SPC": ReportingService(store, master, events=spc_bus)}  # fmt: skip
        sequence = 0
        timings: dict[str, list[float]] = {name: [] for name in services}
        for _ in range(rounds):
            for name, service in services.items():
                started = time.perf_counter()
                for _ in range(batches):
                    now = datetime.now(UTC) - timedelta(seconds=1)
                    reports = []
                    for _ in range(BATCH):
                        sequence += 1
                        value = 20.0 + ((sequence * 7919) % 101 - 50) / 100
                        reports.append(MeasurementReport(
                            order_no="B1", operation_no="0010", characteristic_id="C1", value=value,
                            equipment_id="G1", part_serial=f"P{sequence}", measured_at=now,
                        ))  # fmt: skip
                    await service.report_measurements(reports, "bench")
                timings[name].append((time.perf_counter() - started) / (batches * BATCH) * 1e6)
        alarms = len(await store.spc_alarms("B1"))
        await store.aclose()
    base = statistics.median(timings["without SPC"])
    with_spc = statistics.median(timings["with SPC"])
    print(f"{rounds} rounds × {batches} batches of {BATCH}; {alarms} SPC alarms stored during the run")
    print(f"alarm transactions: {alarm_writes} (one per report batch that raised any, not one per alarm)")
    print(f"without SPC: {base:.1f} µs per measurement (runs {', '.join(f'{t:.0f}' for t in timings['without SPC'])})")
    print(f"with SPC:    {with_spc:.1f} µs per measurement (runs {', '.join(f'{t:.0f}' for t in timings['with SPC'])})")
    print(f"added by SPC: {with_spc - base:.1f} µs per measurement ({with_spc / base - 1:+.0%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument(
        "--rules", default="1-8", help="Nelson rules judged: 1-8 (the demo), or e.g. 1 (this stream then raises none)"
    )
    args = parser.parse_args()
    rules = ALL_RULES if args.rules == "1-8" else frozenset(int(rule) for rule in args.rules.split(","))
    print(f"rules {sorted(rules)}")
    asyncio.run(run(args.rounds, args.batches, rules))


if __name__ == "__main__":
    main()
