"""Time to gather and render `qualitybridge report` for one order of many measurements (SQLite).

Writes --values measurements of two characteristics straight into a fresh SQLite store (as the integration test
does), then times gather_order_report (the store reads and the SPC judgement of every value for the chart's limits)
and render_order_report (the HTML page with an envelope of the points), --rounds times, and prints each round and the
median. The test suite checks the report's shape and that its reads do not grow with the values; the seconds are
measured here, because they depend on the machine.

    .venv/bin/python bench/order_report.py --values 100000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qualitybridge.domain.model import ErpSnapshot  # noqa: E402
from qualitybridge.services.order_report import gather_order_report, render_order_report  # noqa: E402
from qualitybridge.store import open_store  # noqa: E402
from tests.integration.test_order_report import GAUGES, _order, store_many_measurements  # noqa: E402


async def one_round(folder: Path, values: int) -> tuple[float, float, int]:
    store = await open_store(f"sqlite+aiosqlite:///{folder / 'report.db'}")
    try:
        await store.apply_snapshot(ErpSnapshot(orders=(_order("2000"),), equipment=GAUGES))
        await store_many_measurements(store, "2000", values)
        began = time.perf_counter()
        report = await gather_order_report(store, "2000")
        gathered = time.perf_counter() - began
        page = render_order_report(report)
        rendered = time.perf_counter() - began - gathered
    finally:
        await store.aclose()
    return gathered, rendered, len(page)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--values", type=int, default=100_000, help="measurements in the order (default 100000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each on a fresh store (default 3)")
    args = parser.parse_args()
    gathered_s: list[float] = []
    for number in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory() as folder:
            gathered, rendered, size = asyncio.run(one_round(Path(folder), args.values))
        gathered_s.append(gathered)
        print(
            f"round {number}: {args.values} values gathered in {gathered:.2f} s, rendered in {rendered:.2f} s, "
            f"{size / 1000:.0f} KB"
        )
    print(f"median gather {statistics.median(gathered_s):.2f} s over {args.rounds} rounds")


if __name__ == "__main__":
    main()
