"""How the address space scales with the catalogue: N released orders × C inspection characteristics.

For each N it starts the ERP simulator and `qualitybridge serve` (SQLite, sync every second, as the e2e tests do),
then measures what a plant notices:

  browsable     seconds from the last order released at the simulator until every order is in ReleasedOrders
                and the last one's subtree answers a Browse (includes the sync that fetches them, up to 1 s)
  rss           the server's resident memory (VmRSS) once they are browsable
  browse order  seconds for a client to browse one order's whole subtree (every node, one Browse per node)
  read 1000     seconds for one Read of 1,000 values (Nominal of 1,000 characteristics in different orders)
  1 % change    seconds from changing 1 % of the orders at the simulator (their UpperLimit) until a client
                subscribed to those values has every new value (acceptance: sync interval + 1 s)
  restart       the server restarted on that store: seconds until its port accepts a connection, a session opens, and
                every order is browsable again; RSS then. "empty restart" is the same before the orders are
                released (the simulator's seeded orders only): what start-up costs whatever the catalogue
  session drops how often a client waiting for the orders lost its session (asyncua's 1 s keep-alive probe)

    .venv/bin/python bench/catalogue_scale.py --orders 20 50            # quick
    .venv/bin/python bench/catalogue_scale.py --orders 200 2000 5000    # the figures in docs/performance.md

Releasing thousands of orders at the simulator takes a while itself (one HTTP request per order); it is not counted.
Shared machines are noisy: note `uptime` beside the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from asyncua import Client, ua

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.builders import catalogue_order  # noqa: E402
from tests.harness import (  # noqa: E402
    NAMESPACE_URI,
    TEST_USERS,
    ChildProcess,
    Deployment,
    secure_session,
)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def release(erp_url: str, orders: list[dict[str, Any]], method: str = "POST") -> None:
    async with httpx.AsyncClient(base_url=erp_url, timeout=60) as http:
        queue = list(orders)

        async def worker() -> None:
            while queue:
                body = queue.pop()
                path = "/sim/orders" if method == "POST" else f"/sim/orders/{body['order_no']}"
                answer = await http.request(method, path, json=body)
                answer.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(8)))


async def wait_browsable(client: Client, idx: int, order_nos: set[str], within: float) -> float:
    """Seconds until ReleasedOrders lists all of them and the last one's characteristic answers a Read."""
    started = time.monotonic()
    released = client.get_node(ua.NodeId("QualityBridge.ReleasedOrders", idx))
    last = max(order_nos)
    while time.monotonic() - started < within:
        listed = set(await released.read_value() or [])
        if order_nos <= listed:
            try:
                children = await client.get_node(ua.NodeId(f"Order/{last}/Op/0010.Characteristics", idx)).get_children()
                if children:
                    return time.monotonic() - started
            except ua.UaStatusCodeError:
                pass
        await asyncio.sleep(0.1)
    raise TimeoutError(f"not every order browsable after {within} s")


async def browsable_despite_drops(deployment: Deployment, order_nos: set[str]) -> tuple[float, int]:
    """Seconds until every order is browsable, and how often the waiting client lost its session meanwhile
    (a busy event loop makes the keep-alive fail)."""
    started = time.monotonic()
    drops = 0
    while True:
        try:
            async with deployment.session("observer") as client:
                idx = await client.get_namespace_index(NAMESPACE_URI)
                await wait_browsable(client, idx, order_nos, within=max(120, len(order_nos) * 0.5))
                return time.monotonic() - started, drops
        except (TimeoutError, ConnectionError, ua.UaError, OSError):
            drops += 1
            if time.monotonic() - started > max(600, len(order_nos)):
                raise


async def browse_subtree(client: Client, node_id: ua.NodeId) -> int:
    count = 0
    pending = [client.get_node(node_id)]
    while pending:
        node = pending.pop()
        count += 1
        pending.extend(await node.get_children())
    return count


async def read_1000(deployment: Deployment, n: int, c: int, operations: int) -> float | str:
    try:
        async with deployment.session("observer") as client:
            idx = await client.get_namespace_index(NAMESPACE_URI)
            chars_per_op = max(1, c // operations)
            targets = [
                ua.NodeId(f"Order/B{(k * 7919) % n:06d}/Op/0010/Char/C{k % chars_per_op + 1:03d}.Nominal", idx)
                for k in range(1000)
            ]
            request = [client.get_node(target) for target in targets]
            started = time.monotonic()
            values = await client.read_values(request)
            seconds = time.monotonic() - started
            assert all(value == 12.009 for value in values), "a Nominal read back wrong"
            return seconds
    except (ConnectionError, TimeoutError, ua.UaError) as exc:
        return f"session dropped ({type(exc).__name__})"


async def measure(deployment: Deployment, server: ChildProcess, n: int, c: int, operations: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    orders = [catalogue_order(number, c, operations) for number in range(n)]
    order_nos = {order["order_no"] for order in orders}
    assert server.process is not None
    async with deployment.session("observer") as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        figures["rss before MiB"] = rss_mib(server.process.pid)
        started = time.monotonic()
        await release(deployment.erp_url, orders)
        figures["release s (not counted)"] = time.monotonic() - started
    figures["browsable s"], figures["session drops"] = await browsable_despite_drops(deployment, order_nos)
    figures["rss MiB"] = rss_mib(server.process.pid)
    async with deployment.session("observer") as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        one = f"B{n // 2:06d}"
        started = time.monotonic()
        figures["nodes in one order"] = await browse_subtree(client, ua.NodeId(f"Order/{one}", idx))
        figures["browse order s"] = time.monotonic() - started
    # The Read builds up to 1,000 nodes in one request; a client whose keep-alive probe waits behind it may lose its
    # session, which is counted rather than ending the run.
    figures["read 1000 s"] = await read_1000(deployment, n, c, operations)
    async with deployment.session("observer") as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        changed = orders[:: max(1, n // max(1, n // 100))][: max(1, n // 100)]
        received: dict[str, float] = {}
        all_seen = asyncio.Event()
        wanted = {f"Order/{order['order_no']}/Op/0010/Char/C001.UpperLimit" for order in changed}

        class Handler:
            def datachange_notification(self, node: Any, value: Any, _data: Any) -> None:
                if value == 12.05:
                    received[str(node.nodeid.Identifier)] = time.monotonic()
                    if wanted <= received.keys():
                        all_seen.set()

        subscription = await client.create_subscription(100, Handler())
        await subscription.subscribe_data_change([client.get_node(ua.NodeId(name, idx)) for name in sorted(wanted)])
        await asyncio.sleep(1.0)
        updated = [catalogue_order(int(order["order_no"][1:]), c, operations, upper=12.05) for order in changed]
        started = time.monotonic()
        await release(deployment.erp_url, updated, method="PUT")
        released_at = time.monotonic()
        await asyncio.wait_for(all_seen.wait(), timeout=60)
        figures["1% change orders"] = len(changed)
        figures["1% change s"] = max(received.values()) - released_at
        figures["1% put s (not counted)"] = released_at - started
        await subscription.delete()
    return figures


async def restart_figures(
    deployment: Deployment, server: ChildProcess, order_nos: set[str], label: str = "restart"
) -> dict[str, Any]:
    """Restart the server on its store: seconds until its port accepts a connection, until a secure session is
    open, and (with orders) until every order is browsable again; RSS then."""
    server.stop()
    started = time.monotonic()
    server.launch()
    figures: dict[str, Any] = {}
    assert deployment.client_certificate is not None
    password = TEST_USERS["observer"][1]
    while True:
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", deployment.opcua_port)
            writer.close()
            figures[f"{label}: port open s"] = time.monotonic() - started
            break
        except OSError:
            await asyncio.sleep(0.05)
    while True:
        try:
            async with secure_session(deployment.endpoint, deployment.client_certificate, "observer", password) as c:
                figures[f"{label}: session open s"] = time.monotonic() - started
                if order_nos:
                    idx = await c.get_namespace_index(NAMESPACE_URI)
                    await wait_browsable(c, idx, order_nos, within=max(120, len(order_nos) * 0.5))
                    figures[f"{label}: browsable s"] = time.monotonic() - started
                break
        except (TimeoutError, OSError, ua.UaError, ConnectionError):
            if time.monotonic() - started > 300:
                raise
            await asyncio.sleep(0.2)
    assert server.process is not None
    figures[f"{label}: rss MiB"] = rss_mib(server.process.pid)
    return figures


def run_one(n: int, c: int, operations: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="qb-catalogue-") as folder:
        deployment = Deployment(Path(folder), "sqlite", f"sqlite+aiosqlite:///{Path(folder) / 'data' / 'qb.db'}")
        try:
            deployment.start()
            assert deployment.server is not None
            # The same restart without the catalogue first: what start-up costs whatever the catalogue size.
            figures = asyncio.run(restart_figures(deployment, deployment.server, set(), label="empty restart"))
            figures.update(asyncio.run(measure(deployment, deployment.server, n, c, operations)))
            order_nos = {f"B{number:06d}" for number in range(n)}
            figures.update(asyncio.run(restart_figures(deployment, deployment.server, order_nos)))
            return figures
        except BaseException:
            if deployment.server is not None:  # what the server was doing is the interesting part of a failure
                print("".join(deployment.server.logs().splitlines(keepends=True)[-40:]), file=sys.stderr)
            raise
        finally:
            deployment.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, nargs="+", default=[200])
    parser.add_argument("--characteristics", type=int, default=30)
    parser.add_argument("--operations", type=int, default=3, help="operations per order (characteristics spread)")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # asyncua's client warns about every reconnect and test certificate
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} load {os.getloadavg()}", flush=True)
    for n in arguments.orders:
        figures = run_one(n, arguments.characteristics, arguments.operations)
        print(f"N={n} C={arguments.characteristics}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in figures.items()))
        print(f"# load {os.getloadavg()}", flush=True)


def _fmt(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    main()
