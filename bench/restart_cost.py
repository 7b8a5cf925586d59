"""What a restart costs as the plant's history grows: reading the stored orders and rebuilding the SPC charts.

Seeds a SQLite store directly in bulk (N released orders × C characteristics, M measurements spread over S of the
characteristic streams, one a second, ending now), then times in this process:

  orders read     `Store.released_orders()`: every stored order parsed into the domain model
  spc rebuild     `SpcMonitor.rebuild()`: each chart resumed from its stream's count, baseline and latest values
  full replay     what the rebuild did before: every stored result of every order read and charted

wall seconds and CPU seconds (process time) each, best of --repeat.

    .venv/bin/python bench/restart_cost.py                                   # 200 orders, 100,000 values
    .venv/bin/python bench/restart_cost.py --orders 200 --measurements 400000 --streams 200
    .venv/bin/python bench/restart_cost.py --orders 2000 5000 --measurements 0   # the order read alone

Shared machines are noisy: note `uptime` beside the figures and compare within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qualitybridge.domain.model import (  # noqa: E402
    Classification,
    ErpSnapshot,
    InspectionCharacteristic,
    Operation,
    OrderState,
    ProductionOrder,
    TestEquipment,
)
from qualitybridge.domain.spc import SpcPolicy  # noqa: E402
from qualitybridge.services.event_bus import EventBus  # noqa: E402
from qualitybridge.services.master_data import MasterData  # noqa: E402
from qualitybridge.services.spc_monitor import SpcMonitor  # noqa: E402
from qualitybridge.store import Store, open_store, tables  # noqa: E402


def catalogue(orders: int, characteristics: int) -> ErpSnapshot:
    classes = (Classification.CRITICAL, Classification.MAJOR, Classification.MINOR)
    return ErpSnapshot(
        orders=tuple(
            ProductionOrder(
                order_no=f"{1_000_000 + o}",
                material_no=f"M-{o}",
                planned_quantity=100,
                state=OrderState.RUNNING,
                operations=(
                    Operation(
                        operation_no="0010",
                        characteristics=tuple(
                            InspectionCharacteristic(
                                characteristic_id=f"C{c:03d}",
                                name=f"Characteristic {c}",
                                nominal=10.0,
                                lower_limit=6.0,
                                upper_limit=14.0,
                                unit="MMT",
                                classification=classes[c % 3],
                                plan_version="1",
                                # Half with ERP control limits, half with a baseline of their own.
                                **(
                                    {"center_line": 10.0, "upper_control_limit": 12.4, "lower_control_limit": 7.6}
                                    if c % 2
                                    else {}
                                ),
                            )
                            for c in range(characteristics)
                        ),
                    ),
                ),
            )
            for o in range(orders)
        ),
        equipment=(TestEquipment(equipment_id="G1"),),
    )


async def seed_measurements(store: Store, snapshot: ErpSnapshot, measurements: int, streams: int) -> None:
    keys = [
        (order.order_no, op.operation_no, char.characteristic_id)
        for order in snapshot.orders
        for op in order.operations
        for char in op.characteristics
    ]
    chosen = keys[:: max(len(keys) // streams, 1)][:streams]
    rng = random.Random(1)  # noqa: S311 - plausible values, not secrets
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    async with store.engine.begin() as conn:
        for i in range(measurements):
            order_no, operation_no, characteristic_id = chosen[i % len(chosen)]
            at = now - timedelta(seconds=measurements - i)
            rows.append(
                {
                    "result_id": str(uuid.uuid4()),
                    "client_result_id": None,
                    "order_no": order_no,
                    "operation_no": operation_no,
                    "characteristic_id": characteristic_id,
                    "value": 10.0 + rng.gauss(0, 0.8),
                    "unit": "MMT",
                    "evaluation": 1,
                    "plan_version": "1",
                    "equipment_id": "G1",
                    "part_serial": f"P-{i}",
                    "measured_at": at,
                    "received_at": at,
                    "reported_by": "machine-1",
                }
            )
            if len(rows) == 5000:
                await conn.execute(tables.measurement_results.insert(), rows)
                rows = []
        if rows:
            await conn.execute(tables.measurement_results.insert(), rows)


async def full_replay(store: Store, master: MasterData) -> int:
    """The rebuild as it was: every stored result of every released order, sorted and charted."""
    monitor = SpcMonitor(store, master, SpcPolicy(), events=EventBus())
    charted = 0
    for order in master.orders:
        stored = await store.stored_measurements(order.order_no)
        results = sorted((item.result for item in stored), key=lambda r: (r.received_at, r.report.measured_at))
        for result in results:
            charted += monitor._take(result) is not None  # the old replay, for comparison only
    return charted


async def timed(repeat: int, work: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    best_wall, best_cpu = float("inf"), float("inf")
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        await work()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu


async def run(orders: int, characteristics: int, measurements: int, streams: int, repeat: int) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        store = await open_store(f"sqlite+aiosqlite:///{Path(tmp) / 'store.db'}")
        try:
            snapshot = catalogue(orders, characteristics)
            await store.apply_snapshot(snapshot)
            await seed_measurements(store, snapshot, measurements, streams)
            figures: dict[str, str] = {}
            read_wall, read_cpu = await timed(repeat, store.released_orders)
            figures["orders read"] = f"{read_wall:.2f} s / {read_cpu:.2f} s CPU"
            master = MasterData()
            master.replace(await store.released_orders(), await store.equipment())
            if measurements:
                monitor = SpcMonitor(store, master, SpcPolicy(), events=EventBus())
                wall, cpu = await timed(repeat, monitor.rebuild)
                figures["spc rebuild"] = f"{wall:.2f} s / {cpu:.2f} s CPU"
                wall, cpu = await timed(repeat, lambda: full_replay(store, master))
                figures["full replay"] = f"{wall:.2f} s / {cpu:.2f} s CPU"
            return figures
        finally:
            await store.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, nargs="+", default=[200])
    parser.add_argument("--characteristics", type=int, default=30)
    parser.add_argument("--measurements", type=int, default=100_000)
    parser.add_argument("--streams", type=int, default=200, help="characteristic streams the values go to")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    for n in args.orders:
        figures = asyncio.run(run(n, args.characteristics, args.measurements, args.streams, args.repeat))
        per_stream = args.measurements // max(args.streams, 1)
        line = ", ".join(f"{name} {value}" for name, value in figures.items())
        print(f"{n} orders × {args.characteristics}, {args.measurements} values ({per_stream}/stream): {line}")


if __name__ == "__main__":
    main()
