"""What publishing a catalogue costs inside one asyncua server, without clients: the figures behind the choice of
the catalogue in docs/performance.md.

Measures, in one process: one order made the way the view made every order before (instantiate per order, operation
and characteristic, then the values written); N orders published through the catalogue; one order's nodes built on
access; a sync that changed nothing, one that changed 1 %, and the withdrawal of half the orders.

    .venv/bin/python bench/catalogue_build.py --orders 2000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from pathlib import Path

from asyncua import Server

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qualitybridge.adapters.rest_contract import OrderDTO, order_from_dto  # noqa: E402
from qualitybridge.domain.model import ProductionOrder  # noqa: E402
from qualitybridge.server.address_space.namespace import QualityBridgeNamespace  # noqa: E402
from qualitybridge.server.address_space.view import AddressSpaceView  # noqa: E402
from tests.builders import catalogue_order  # noqa: E402
from tests.integration.test_catalogue_nodes import _instantiated_as_before, _subtree  # noqa: E402


def rss_mib() -> float:
    gc.collect()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def with_one_limit_changed(order: ProductionOrder) -> ProductionOrder:
    operation = order.operations[0]
    first = operation.characteristics[0].model_copy(update={"upper_limit": 12.05})
    changed = operation.model_copy(update={"characteristics": (first, *operation.characteristics[1:])})
    return order.model_copy(update={"operations": (changed, *order.operations[1:])})


async def main(count: int) -> None:
    orders = [order_from_dto(OrderDTO.model_validate(catalogue_order(n))) for n in range(count + 1)]
    server = Server()
    await server.init()
    ns = await QualityBridgeNamespace.load(server)

    before = rss_mib()
    started = time.perf_counter()
    await _instantiated_as_before(server, ns, orders[0])
    seconds = time.perf_counter() - started
    nodes = len(_subtree(server.iserver.aspace, ns.order(orders[0].order_no)))
    print(
        f"instantiate: one order, {nodes} nodes, {seconds:.2f} s = {seconds / nodes * 1e6:.0f} µs/node, "
        f"+{rss_mib() - before:.1f} MiB"
    )

    view = AddressSpaceView(server, ns)
    await view.show([], [])
    published = orders[1:]
    before = rss_mib()
    started = time.perf_counter()
    await view.show(published, [])
    seconds = time.perf_counter() - started
    print(
        f"catalogue: {count} orders published in {seconds:.2f} s = {seconds / count * 1e3:.2f} ms/order, "
        f"+{rss_mib() - before:.1f} MiB"
    )

    before = rss_mib()
    started = time.perf_counter()
    built = _subtree(server.iserver.aspace, ns.order(published[0].order_no))
    seconds = time.perf_counter() - started
    print(
        f"catalogue: one order's {len(built)} nodes built on access in {seconds:.3f} s = "
        f"{seconds / len(built) * 1e6:.0f} µs/node, +{rss_mib() - before:.1f} MiB"
    )

    started = time.perf_counter()
    await view.show(published, [])
    print(f"catalogue: a sync that changed nothing: {(time.perf_counter() - started) * 1e3:.1f} ms")
    changed = [with_one_limit_changed(order) if i % 100 == 0 else order for i, order in enumerate(published)]
    started = time.perf_counter()
    await view.show(changed, [])
    print(
        f"catalogue: a sync that changed 1 % ({len(range(0, count, 100))} orders): "
        f"{(time.perf_counter() - started) * 1e3:.1f} ms"
    )
    started = time.perf_counter()
    await view.show(changed[: count // 2], [])
    print(f"catalogue: {count - count // 2} orders withdrawn: {(time.perf_counter() - started) * 1e3:.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=2000)
    asyncio.run(main(parser.parse_args().orders))
