"""Cost of one sync interval against SAP: a delta with 1 % of the catalogue changed, against a full refetch.

Starts the simulator's SAP face in this process with a catalogue of --orders orders (3 operations, --chars
characteristics each in all), syncs it once into a fresh SQLite store (the first, full fetch), changes the limits
of 1 % of the orders at SAP, and then measures one sync round three ways:

  delta          what a sync interval costs normally: LastChangeDateTime ge <watermark>, changed orders only
  idle delta     the next round, nothing changed: one empty page
  full refetch   the same round as a full resync (everything released, then compared with the store)

For each: wall time of the round (fetch + store), HTTP requests and response bytes. The same for the generic REST
adapter (?changed_since= against a whole page) follows, on the same simulator.

    .venv/bin/python bench/sap_delta_sync.py --orders 2000 --chars 30

Figures go to docs/sap-s4hana.md. Shared machines are noisy: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qualitybridge.adapters.rest_erp import RestErpClient  # noqa: E402
from qualitybridge.adapters.sap_s4hana import SapS4HanaClient  # noqa: E402
from qualitybridge.domain.model import (  # noqa: E402
    InspectionCharacteristic,
    Operation,
    ProductionOrder,
)
from qualitybridge.services.diagnostics import Diagnostics  # noqa: E402
from qualitybridge.services.erp_sync import ErpSync  # noqa: E402
from qualitybridge.services.master_data import MasterData  # noqa: E402
from qualitybridge.simulator.app import serve  # noqa: E402
from qualitybridge.simulator.seed import seed_equipment  # noqa: E402
from qualitybridge.simulator.state import SimulatorState  # noqa: E402
from qualitybridge.store import open_store  # noqa: E402
from tests.harness import free_port  # noqa: E402


@dataclass
class Meter(httpx.AsyncBaseTransport):
    inner: httpx.AsyncBaseTransport = field(default_factory=httpx.AsyncHTTPTransport)
    requests: int = 0
    received: int = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        self.received += len(body)
        return httpx.Response(response.status_code, headers=response.headers, content=body, request=request)

    def reset(self) -> None:
        self.requests = self.received = 0


def catalogue(orders: int, characteristics: int) -> list[ProductionOrder]:
    per_operation = max(1, characteristics // 3)
    built = []
    for number in range(orders):
        operations = tuple(
            Operation(
                operation_no=f"{(op + 1) * 10:04d}",
                description=f"Operation {op + 1}",
                work_centre=f"WC-{number % 17:02d}",
                characteristics=tuple(
                    InspectionCharacteristic(
                        characteristic_id=f"C{(index + 1) * 10:04d}",
                        name=f"Diameter {index + 1}",
                        nominal=10.0 + index,
                        lower_limit=9.99 + index,
                        upper_limit=10.01 + index,
                        unit="MMT",
                        decimal_places=3,
                        gauge_type="CALIPER",
                        plan_version="P01",
                    )
                    for index in range(per_operation)
                ),
            )
            for op in range(3)
        )
        built.append(
            ProductionOrder(
                order_no=str(2_000_000 + number),
                material_no=f"MAT-{number:06d}",
                plant="1010",
                planned_quantity=50,
                operations=operations,
            )
        )
    return built


async def measure(label: str, meter: Meter, sync: ErpSync) -> None:
    meter.reset()
    started = time.perf_counter()
    change = await sync.run_once()
    took = time.perf_counter() - started
    moved = len(change.released) + len(change.changed) + len(change.withdrawn)
    print(
        f"  {label:<14} {took * 1000:9.0f} ms  {meter.requests:5d} requests  {meter.received / 1e6:8.2f} MB  "
        f"{moved} orders changed in the store"
    )


async def main(orders: int, characteristics: int) -> None:
    state = SimulatorState(catalogue(orders, characteristics), seed_equipment())
    port = free_port()
    started = asyncio.Event()
    task = asyncio.create_task(serve("127.0.0.1", port, state=state, started=started, flavour="sap"))
    await asyncio.wait_for(started.wait(), 30)
    url = f"http://127.0.0.1:{port}"
    changed = max(1, orders // 100)
    print(f"{orders} orders x {characteristics} characteristics at SAP; {changed} orders (1 %) change")
    try:
        for flavour in ("sap-s4hana", "rest"):
            with tempfile.TemporaryDirectory() as folder:
                store = await open_store(f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}")
                meter = Meter()
                client: SapS4HanaClient | RestErpClient
                if flavour == "sap-s4hana":
                    client = SapS4HanaClient(url, plant="1010", sap_client="100", auth=("U", "P"), transport=meter)
                else:
                    client = RestErpClient(url, transport=meter)
                sync = ErpSync(client, store, MasterData(), Diagnostics())
                print(f"{flavour}:")
                await asyncio.sleep(1.1)  # the catalogue is older than the first sync, as at a real plant
                await measure("first (full)", meter, sync)
                await asyncio.sleep(1.1)  # a new second for LastChangeDateTime
                for order in state.orders()[1][:changed]:
                    first = order.operations[0]
                    limits = first.characteristics[0].model_copy(update={"upper_limit": 10.02})
                    operation = first.model_copy(update={"characteristics": (limits, *first.characteristics[1:])})
                    state.change_order(order.model_copy(update={"operations": (operation, *order.operations[1:])}))
                await asyncio.sleep(1.1)  # the round comes a while after the change (interval 10 s by default)
                await measure("delta", meter, sync)
                await measure("idle delta", meter, sync)
                # Put the change back and forth once more so the full refetch has the same 1 % to apply.
                for order in state.orders()[1][:changed]:
                    first = order.operations[0]
                    limits = first.characteristics[0].model_copy(update={"upper_limit": 10.03})
                    operation = first.model_copy(update={"characteristics": (limits, *first.characteristics[1:])})
                    state.change_order(order.model_copy(update={"operations": (operation, *order.operations[1:])}))
                sync.request_full_resync()
                await measure("full refetch", meter, sync)
                await client.aclose()
                await store.aclose()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--chars", type=int, default=30, help="characteristics per order (over 3 operations)")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.orders, arguments.chars))
