"""Finding 7 of issue 9: one order's failing postings never delay another order's; no booking without a document.

Through the real server and a real machine client: the ERP is the simulator behind a small HTTP proxy in the test
process that answers 503 for the postings of twelve orders (as an ERP does while an order is locked by a planner),
and 201 with an empty document number for another order's, in the batch answer (`POST /api/v1/postings`) and on
the single posting paths alike. Everything else goes through to the simulator.

1. Twelve orders' postings fail and are retried; a thirteenth order's result, reported after them, is booked by
   the ERP in the relay round after its answer (at most the round under way comes first), not after the failing
   orders' retries. Before the fix a round ended at its first temporary failure: the healthy posting waited
   behind the failing ones for as long as they failed.
2. A 201 without a document number is not a booking: the posting stays pending (`qualitybridge outbox list`) with
   the contract violation as its error and is delivered again under the same key, then booked for real.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from asyncua import Client, ua

from tests.builders import first_characteristic, gauge_for, report, results_at_erp
from tests.harness import NAMESPACE_URI, ORDER_RUNNING, BehindProxy, Deployment, ErpProxy, run_cli, wait_for

pytestmark = pytest.mark.slow

TEMPLATE = "1000418"
FAILING = [f"74001{n:02d}" for n in range(1, 13)]  # twelve orders whose postings the ERP fails for now
HEALTHY = "7400120"
NO_DOCUMENT = "7400130"  # its postings are answered 201 with an empty document number
ORDERS = [*FAILING, HEALTHY, NO_DOCUMENT]
SINGLE_PATHS = ("/api/v1/results", "/api/v1/confirmations", "/api/v1/spc-alarms")
BATCH_PATH = "/api/v1/postings"


@dataclass(frozen=True)
class Seen:
    """One posting as the proxy saw it: when its request arrived, which request, and what the ERP answered."""

    at: float
    request: int
    order_no: str
    key: str
    status: int
    document_no: str | None


class LockedOrdersErp(ErpProxy):
    """Forwards to the simulator, except the postings of `failing` orders (503) and `no_document` orders (201 with
    document_no ""); logs every posting it sees."""

    def __init__(self, simulator_url: str) -> None:
        super().__init__(simulator_url)
        self.failing: set[str] = set()
        self.no_document: set[str] = set()
        self.seen: list[Seen] = []
        self.requests = 0
        self.lock = threading.Lock()

    def answer(self, command: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes] | None:
        if command == "POST" and path == BATCH_PATH:
            return self.batch(json.loads(body), headers)
        if command == "POST" and path in SINGLE_PATHS:
            return self.single(path, body, headers)
        return None

    def _request_number(self) -> tuple[int, float]:
        with self.lock:
            self.requests += 1
            return self.requests, time.monotonic()

    def _log(self, at: float, request: int, order_no: str, key: str, status: int, document_no: str | None) -> None:
        with self.lock:
            self.seen.append(Seen(at, request, order_no, key, status, document_no))

    def _fault(self, order_no: str, key: str) -> dict[str, Any] | None:
        """The outcome the proxy makes up for this posting, or None to let the simulator book it."""
        with self.lock:
            failing, no_document = order_no in self.failing, order_no in self.no_document
        if failing:
            error = {"code": "order_locked", "message": f"order {order_no} is being changed by a planner"}
            return {"idempotency_key": key, "status": 503, "error": error}
        if no_document:
            return {"idempotency_key": key, "status": 201, "document_no": "", "duplicate": False}
        return None

    def batch(self, batch: dict[str, Any], headers: dict[str, str]) -> tuple[int, bytes]:
        request, at = self._request_number()
        items = batch["postings"]
        outcomes: list[dict[str, Any] | None] = [
            self._fault(i["body"]["order_no"], i["idempotency_key"]) for i in items
        ]
        passed = [item for item, outcome in zip(items, outcomes, strict=True) if outcome is None]
        if passed:
            upstream = httpx.post(
                self.simulator_url + BATCH_PATH, json={"postings": passed}, headers=headers, timeout=10
            )
            if upstream.status_code != 200:
                return upstream.status_code, upstream.content
            booked = iter(upstream.json()["outcomes"])
            outcomes = [outcome or next(booked) for outcome in outcomes]
        for item, outcome in zip(items, outcomes, strict=True):
            assert outcome is not None
            self._log(
                at,
                request,
                item["body"]["order_no"],
                item["idempotency_key"],
                outcome["status"],
                outcome.get("document_no"),
            )
        return 200, json.dumps({"outcomes": outcomes}).encode()

    def single(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        request, at = self._request_number()
        order_no = json.loads(body)["order_no"]
        key = next((v for k, v in headers.items() if k.lower() == "idempotency-key"), "")
        outcome = self._fault(order_no, key)
        if outcome is None:
            upstream = httpx.post(self.simulator_url + path, content=body, headers=headers, timeout=10)
            document = upstream.json().get("document_no") if upstream.status_code in (200, 201) else None
            self._log(at, request, order_no, key, upstream.status_code, document)
            return upstream.status_code, upstream.content
        self._log(at, request, order_no, key, outcome["status"], outcome.get("document_no"))
        if outcome["status"] == 503:
            return 503, json.dumps({"error": outcome["error"]}).encode()
        return 201, json.dumps({"document_no": "", "duplicate": False}).encode()

    def of(self, orders: set[str] | list[str] | str) -> list[Seen]:
        wanted = {orders} if isinstance(orders, str) else set(orders)
        with self.lock:
            return [seen for seen in self.seen if seen.order_no in wanted]

    def heal(self) -> None:
        with self.lock:
            self.failing.clear()
            self.no_document.clear()


@dataclass
class Rig:
    deployment: BehindProxy
    proxy: LockedOrdersErp
    key: tuple[str, str]  # operation and characteristic, the same in every order (copies of TEMPLATE)
    gauge: str


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    root = tmp_path_factory.mktemp("relay-head-of-line")
    deployment = BehindProxy(root, "sqlite", f"sqlite+aiosqlite:///{root / 'data' / 'qualitybridge.db'}")
    with LockedOrdersErp(f"http://127.0.0.1:{deployment.erp_port}") as proxy:
        deployment.proxy_port = proxy.port
        try:
            deployment.start()
            with deployment.erp() as erp:
                template = next(o for o in erp.get("/api/v1/orders").json()["orders"] if o["order_no"] == TEMPLATE)
                for order_no in ORDERS:
                    erp.post("/sim/orders", json={**template, "order_no": order_no}).raise_for_status()
            key, gauge = asyncio.run(_start_orders(deployment))
            yield Rig(deployment, proxy, key, gauge)
        finally:
            proxy.heal()
            deployment.stop()


async def _start_orders(deployment: Deployment) -> tuple[tuple[str, str], str]:
    """Waits until every order is published and starts it; answers (operation, characteristic) and a gauge."""
    async with deployment.session("quality") as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        bridge = client.get_node(ua.NodeId("QualityBridge", idx))
        deadline = time.monotonic() + 30
        released: list[str] = []
        while not set(ORDERS) <= set(released):  # all published before any is started
            assert time.monotonic() < deadline, f"orders not published: {sorted(set(ORDERS) - set(released))}"
            await asyncio.sleep(0.2)
            released = await client.get_node(ua.NodeId("QualityBridge.ReleasedOrders", idx)).read_value() or []
        for order_no in ORDERS:
            if await client.get_node(ua.NodeId(f"Order/{order_no}.State", idx)).read_value() != ORDER_RUNNING:
                started = await bridge.call_method(ua.NodeId("QualityBridge.StartOrder", idx), order_no)
                assert started == ORDER_RUNNING
        full_key = await first_characteristic(client, idx, HEALTHY)
        return (full_key[1], full_key[2]), await gauge_for(client, idx, full_key)


async def _report(client: Client, idx: int, rig: Rig, order_no: str) -> str:
    result_id, _evaluation = await report(
        client, idx, (order_no, *rig.key), 12.005, gauge=rig.gauge, measured_at=datetime.now(UTC)
    )
    return str(result_id)


def _outbox(rig: Rig, order_no: str) -> list[str]:
    """`qualitybridge outbox list --order` beside the serving server: one line per posting of the order."""
    listed = run_cli("outbox", "list", "--order", order_no, "--config", str(rig.deployment.config_path))
    return [line for line in listed.splitlines()[1:] if order_no in line]


async def test_twelve_orders_failing_postings_never_delay_a_healthy_orders_posting(rig: Rig) -> None:
    proxy = rig.proxy
    with proxy.lock:
        proxy.failing.update(FAILING)
    try:
        async with rig.deployment.session("machine1") as client:
            idx = await client.get_namespace_index(NAMESPACE_URI)
            for order_no in FAILING:
                await _report(client, idx, rig, order_no)
            # The failing postings are ahead in the outbox and the ERP is refusing them.
            deadline = time.monotonic() + 10
            while not any(seen.status == 503 for seen in proxy.of(FAILING)):  # the client's loop keeps running
                assert time.monotonic() < deadline, "no posting of a failing order reached the ERP"
                await asyncio.sleep(0.05)
            healthy_id = await _report(client, idx, rig, HEALTHY)
            answered = time.monotonic()

        def booked() -> Seen | None:
            return next((seen for seen in proxy.of(HEALTHY) if seen.status == 201), None)

        try:
            booking: Seen | None = wait_for(booked, 10, "the healthy posting to be booked")
        except TimeoutError:
            booking = None
        refused = [seen for seen in proxy.of(FAILING) if seen.status == 503]
        after_answer = {seen.request for seen in refused if seen.at > answered}
        if booking is None:
            pytest.fail(
                f"the posting of healthy order {HEALTHY} was not booked within 10 s of its Good answer; meanwhile "
                f"the ERP refused {len(refused)} postings of the {len(FAILING)} failing orders in "
                f"{len({seen.request for seen in refused})} requests ({len(after_answer)} of them after the answer)"
            )
        waited = booking.at - answered
        # Counted in relay rounds, not seconds, so that a loaded machine cannot make it flaky: the posting goes in
        # the round after its answer; only a round already under way (its outbox read) may come first.
        requests_first = {seen.request for seen in refused if seen.at > answered and seen.request < booking.request}
        assert len(requests_first) <= 1, (
            f"the healthy posting was booked {waited:.2f} s after its answer, behind {len(requests_first)} requests "
            f"carrying the failing orders' postings ({len(refused)} refusals in all)"
        )
        assert len(refused) >= 1
        at_erp = [r for r in results_at_erp(rig.deployment) if r["body"]["result_id"] == healthy_id]
        assert len(at_erp) == 1, "the healthy result is booked at the ERP, once"
        assert not [r for r in results_at_erp(rig.deployment) if r["body"]["order_no"] in FAILING]
    finally:
        proxy.heal()

    # The failing orders' postings were only held for now: once the ERP takes them, each is booked once.
    def all_booked() -> list[dict[str, Any]]:
        mine = [r for r in results_at_erp(rig.deployment) if r["body"]["order_no"] in FAILING]
        return mine if len(mine) == len(FAILING) else []

    booked_failing = wait_for(all_booked, 20, "the failing orders' postings, once the ERP takes them")
    assert sorted(r["body"]["order_no"] for r in booked_failing) == FAILING


async def test_a_201_without_a_document_number_is_not_a_booking_and_is_retried(rig: Rig) -> None:
    proxy = rig.proxy
    with proxy.lock:
        proxy.no_document.add(NO_DOCUMENT)
    try:
        async with rig.deployment.session("machine1") as client:
            idx = await client.get_namespace_index(NAMESPACE_URI)
            result_id = await _report(client, idx, rig, NO_DOCUMENT)
        first = wait_for(lambda: proxy.of(NO_DOCUMENT), 10, "the posting to reach the ERP")[0]
        assert (first.status, first.document_no) == (201, "")
        await asyncio.sleep(0.5)  # the round that got the answer records its outcome
        lines = _outbox(rig, NO_DOCUMENT)
        assert len(lines) == 1, lines
        assert " sent " not in lines[0], f"a 201 without a document number was taken as booked: {lines[0]}"
        assert " pending " in lines[0], lines[0]
        assert "document number" in lines[0], lines[0]
        # Delivered again, under the same key.
        retried = wait_for(lambda: proxy.of(NO_DOCUMENT)[1:], 10, "the posting to be delivered again")
        assert retried[0].key == first.key
    finally:
        proxy.heal()

    def booked() -> list[dict[str, Any]]:
        return [r for r in results_at_erp(rig.deployment) if r["body"]["result_id"] == result_id]

    at_erp = wait_for(booked, 10, "the posting to be booked for real")
    assert len(at_erp) == 1
    assert at_erp[0]["idempotency_key"] == first.key
    document = at_erp[0]["document_no"]
    assert document

    def sent() -> list[str]:
        lines = _outbox(rig, NO_DOCUMENT)
        return lines if " sent " in lines[0] and document in lines[0] else []

    wait_for(sent, 10, f"the outbox to show the posting sent as {document}", interval=0.5)
