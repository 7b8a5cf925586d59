"""Findings 4 and 5 of issue 9: idempotency keys, through a real server and real clients.

4. Two sessions sending the same ClientConfirmationId at once both get the stored confirmation back (the repeat
   check is the first thing inside the lock), never Good and BadOutOfRange / BadInvalidState.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from asyncua import Client, ua
from asyncua.common.methods import call_method_full

from tests.harness import NAMESPACE_URI, Deployment

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

S = ua.StatusCodes
V = ua.VariantType
TEMPLATE = "1000418"  # op 0010 at WC-LATHE-02
PLANNED = 100.0
RACE_ORDERS = [f"73000{n:02d}" for n in range(1, 7)]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("idempotency")
    deployment = Deployment(root, "sqlite", f"sqlite+aiosqlite:///{root / 'data' / 'qualitybridge.db'}")
    try:
        deployment.start()
        with deployment.erp() as erp:
            template = next(o for o in erp.get("/api/v1/orders").json()["orders"] if o["order_no"] == TEMPLATE)
            for order_no in RACE_ORDERS:
                erp.post(
                    "/sim/orders", json={**template, "order_no": order_no, "planned_quantity": PLANNED}
                ).raise_for_status()
        yield deployment
    finally:
        deployment.stop()


class Session:
    def __init__(self, client: Client, idx: int) -> None:
        self.client = client
        self.idx = idx

    def node(self, identifier: str) -> Any:
        return self.client.get_node(ua.NodeId(identifier, self.idx))

    async def outcome(self, method: str, *arguments: Any) -> tuple[int, list[Any]]:
        """(StatusCode, outputs) of one call; a Bad answer is an outcome, not an exception."""
        try:
            result = await call_method_full(
                self.node("QualityBridge"), ua.NodeId(f"QualityBridge.{method}", self.idx), *arguments
            )
        except ua.UaStatusCodeError as exc:
            return int(exc.code), []
        return S.Good, list(result.OutputArguments)


@contextlib.asynccontextmanager
async def session(deployment: Deployment, user: str) -> AsyncIterator[Session]:
    async with deployment.session(user) as client:
        yield Session(client, await client.get_namespace_index(NAMESPACE_URI))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def quality(deployment: Deployment) -> AsyncIterator[Session]:
    async with session(deployment, "quality") as opened:
        deadline = time.monotonic() + 20
        for order_no in RACE_ORDERS:
            while True:
                try:
                    await opened.node(f"Order/{order_no}.State").read_value()
                    break
                except ua.uaerrors.BadNodeIdUnknown:
                    assert time.monotonic() < deadline, f"order {order_no} not published"
                    await asyncio.sleep(0.2)
        yield opened


def confirmation(order_no: str, yield_quantity: float, *, final: bool = False, client_id: str = "") -> list[Any]:
    return [
        order_no,
        "0010",
        ua.Variant(yield_quantity, V.Double),
        ua.Variant(0.0, V.Double),
        ua.Variant(0.0, V.Double),
        "",
        "",
        ua.Variant(final, V.Boolean),
        client_id,
    ]


async def test_same_confirmation_id_from_two_sessions_at_once_answers_the_stored_one(
    deployment: Deployment, quality: Session
) -> None:
    """60 of planned 100 (+10 %) twice under one id: both answers must name the one stored confirmation.

    Six orders, each raced once (three partial, three final after EndOrder): before the fix a race is lost
    whenever both calls pass the check outside the lock, which happens on nearly every attempt.
    """
    async with session(deployment, "machine1") as first, session(deployment, "machine1") as second:
        for number, order_no in enumerate(RACE_ORDERS):
            assert (await quality.outcome("StartOrder", order_no))[0] == S.Good
            final = number % 2 == 1
            if final:
                assert (await quality.outcome("EndOrder", order_no))[0] == S.Good
            client_id = f"race-{order_no}-{time.time_ns()}"
            arguments = confirmation(order_no, 60.0, final=final, client_id=client_id)
            answers = await asyncio.gather(
                first.outcome("ReportConfirmation", *arguments), second.outcome("ReportConfirmation", *arguments)
            )
            statuses = [ua.StatusCode(ua.UInt32(status)).name for status, _outputs in answers]
            assert statuses == ["Good", "Good"], f"order {order_no} (final={final}): {statuses}"
            assert answers[0][1] == answers[1][1], "both name the one stored confirmation"
