"""Finding 1 of issue 9: one bad ERP order must not stop the plant.

A careless ERP (the simulator behind a small HTTP proxy that adds orders the contract forbids: an operation
listed twice, a characteristic listed twice, a planned quantity of 1e309) releases its bad orders before a good
one. The good one must be served, Diagnostics must name each bad order and why, and a restart on the same data
folder must come up and serve.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from asyncua import ua

from tests.harness import NAMESPACE_URI, BehindProxy, Deployment, ErpProxy

pytestmark = pytest.mark.slow

TEMPLATE = "1000418"
DUPLICATE_OPERATION, DUPLICATE_CHARACTERISTIC, INFINITE_QUANTITY = "7200001", "7200002", "7200003"
GOOD = "7200009"  # listed after the bad ones


def _bad_orders(template: dict[str, Any]) -> list[str]:
    """The bad orders as JSON text (1e309 cannot be written by json.dumps, so it is spliced in)."""
    duplicate_operation = {**copy.deepcopy(template), "order_no": DUPLICATE_OPERATION}
    duplicate_operation["operations"] = [*duplicate_operation["operations"], duplicate_operation["operations"][0]]
    duplicate_characteristic = {**copy.deepcopy(template), "order_no": DUPLICATE_CHARACTERISTIC}
    characteristics = duplicate_characteristic["operations"][0]["characteristics"]
    characteristics.append(characteristics[0])
    infinite = {**copy.deepcopy(template), "order_no": INFINITE_QUANTITY, "planned_quantity": 12345.5}
    return [
        json.dumps(duplicate_operation),
        json.dumps(duplicate_characteristic),
        json.dumps(infinite).replace("12345.5", "1e309"),
    ]


class CarelessErp(ErpProxy):
    """Forwards everything to the simulator; GET /api/v1/orders gets the bad orders listed before the others."""

    def answer(self, command: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes] | None:
        if command != "GET" or not path.startswith("/api/v1/orders"):
            return None
        upstream = self.forward(command, path, body, headers)
        page = upstream.json()
        template = next(o for o in page["orders"] if o["order_no"] == TEMPLATE)
        good = json.dumps({**template, "order_no": GOOD})
        orders = [*_bad_orders(template), *(json.dumps(o) for o in page["orders"]), good]
        return upstream.status_code, f'{{"revision": {page["revision"]}, "orders": [{", ".join(orders)}]}}'.encode()


@pytest.fixture
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BehindProxy]:
    root = tmp_path_factory.mktemp("bad-erp")
    deployment = BehindProxy(root, "sqlite", f"sqlite+aiosqlite:///{root / 'data' / 'qualitybridge.db'}")
    with CarelessErp(f"http://127.0.0.1:{deployment.erp_port}") as proxy:
        deployment.proxy_port = proxy.port
        try:
            deployment.start()
            yield deployment
        finally:
            deployment.stop()


async def _served_and_findings(deployment: Deployment, within: float = 20.0) -> list[str]:
    """Waits until the good order is served; answers Diagnostics' sync findings."""
    async with deployment.session("observer") as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        deadline = time.monotonic() + within
        while True:
            try:
                state = await client.get_node(ua.NodeId(f"Order/{GOOD}.State", idx)).read_value()
                break
            except ua.uaerrors.BadNodeIdUnknown:
                assert time.monotonic() < deadline, f"order {GOOD}, released after the bad ones, is not served"
                await asyncio.sleep(0.2)
        assert state == 2  # AllowedToStart
        released = await client.get_node(ua.NodeId("QualityBridge.ReleasedOrders", idx)).read_value()
        assert GOOD in released
        assert not {DUPLICATE_OPERATION, DUPLICATE_CHARACTERISTIC, INFINITE_QUANTITY} & set(released)
        findings: list[str] = await client.get_node(
            ua.NodeId("QualityBridge.Diagnostics.SyncFindings", idx)
        ).read_value()
        return findings


def _finding(findings: list[str], order_no: str) -> str:
    named = [f for f in findings if order_no in f]
    assert len(named) == 1, f"Diagnostics names order {order_no} once: {findings}"
    return named[0].lower()


async def test_bad_orders_are_findings_the_rest_syncs_and_a_restart_serves(deployment: BehindProxy) -> None:
    findings = await _served_and_findings(deployment)
    assert "operation" in _finding(findings, DUPLICATE_OPERATION)
    assert "twice" in _finding(findings, DUPLICATE_OPERATION)
    assert "characteristic" in _finding(findings, DUPLICATE_CHARACTERISTIC)
    assert "twice" in _finding(findings, DUPLICATE_CHARACTERISTIC)
    assert "finite" in _finding(findings, INFINITE_QUANTITY)

    assert deployment.server is not None
    server_log = deployment.server.logs()
    for order_no in (DUPLICATE_OPERATION, DUPLICATE_CHARACTERISTIC, INFINITE_QUANTITY):
        # logged once, though every sync (1 s) sees it again
        assert sum(order_no in line and "refused" in line for line in server_log.splitlines()) == 1, order_no
    assert "Traceback" not in server_log

    deployment.server.stop()
    deployment.server.start()  # same data folder; raises if the server exits
    restarted = await _served_and_findings(deployment)
    for order_no in (DUPLICATE_OPERATION, DUPLICATE_CHARACTERISTIC, INFINITE_QUANTITY):
        _finding(restarted, order_no)
