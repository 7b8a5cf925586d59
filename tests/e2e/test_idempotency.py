"""Findings 4 and 5 of issue 9: idempotency keys, through a real server and real clients.

4. Two sessions sending the same ClientConfirmationId at once both get the stored confirmation back (the repeat
   check is the first thing inside the lock), never Good and BadOutOfRange / BadInvalidState.
5. Client ids are scoped to the calling user: another machine's id is not an answer to mine. The same id with a
   different payload is refused with BadEntryExists, saying so. ReportSpcAlarm takes an optional ClientAlarmId,
   so that a retry after a lost answer does not book a second notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from asyncua import Client, ua
from asyncua.common.methods import call_method_full

from qualitybridge.server.security.identity import Role
from tests.harness import NAMESPACE_URI, Deployment

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

S = ua.StatusCodes
V = ua.VariantType
TEMPLATE = "1000418"  # op 0010 at WC-LATHE-02
PLANNED = 100.0
RACE_ORDERS = [f"73000{n:02d}" for n in range(1, 7)]
LATHE_ORDER = "7300099"  # another copy of 1000418, for finding 5
RUNNING = "1000417"  # seeded Running; op 0010 at WC-DMU-01
DMU, LATHE = "dmu1", "lathe2"
MACHINES = {
    DMU: (Role.MACHINE, "dmu1-secret", ("WC-DMU-01",)),
    LATHE: (Role.MACHINE, "lathe2-secret", ("WC-LATHE-02",)),
}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("idempotency")
    deployment = Deployment(
        root, "sqlite", f"sqlite+aiosqlite:///{root / 'data' / 'qualitybridge.db'}", extra_users=MACHINES
    )
    try:
        deployment.start()
        with deployment.erp() as erp:
            template = next(o for o in erp.get("/api/v1/orders").json()["orders"] if o["order_no"] == TEMPLATE)
            for order_no in [*RACE_ORDERS, LATHE_ORDER]:
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
        for order_no in [*RACE_ORDERS, LATHE_ORDER]:
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


def measurement(order_no: str, value: float, gauge: str, client_id: str, at: datetime) -> list[Any]:
    return [order_no, "0010", "C0010", ua.Variant(value, V.Double), gauge, "SN-1", at, client_id]


def stored_with_client_id(deployment: Deployment, table: str, column: str, client_id: str) -> int:
    database = deployment.store_url.split("///", 1)[1]
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
        query = f"SELECT count(*) FROM {table} WHERE {column} = ?"  # noqa: S608 - constants
        return int(connection.execute(query, (client_id,)).fetchone()[0])


def name(status: int) -> str:
    return ua.StatusCode(ua.UInt32(status)).name


async def test_client_result_ids_are_scoped_to_the_user_and_a_changed_payload_is_refused(
    deployment: Deployment, quality: Session
) -> None:
    assert (await quality.outcome("StartOrder", LATHE_ORDER))[0] == S.Good
    key = f"plc-{time.time_ns()}"
    at = datetime.now(UTC).replace(microsecond=0)
    async with session(deployment, DMU) as dmu, session(deployment, LATHE) as lathe:
        status, (dmu_result, dmu_evaluation) = await dmu.outcome(
            "ReportMeasurement", *measurement(RUNNING, 20.0, "GA-TMP-0603", key, at)
        )
        assert name(status) == "Good"
        status, (lathe_result, lathe_evaluation) = await lathe.outcome(
            "ReportMeasurement", *measurement(LATHE_ORDER, 99.0, "GA-MIC-0207", key, at)
        )
        assert name(status) == "Good"
        assert lathe_result != dmu_result, "another machine's id is not an answer to mine"
        assert (dmu_evaluation, lathe_evaluation) == (1, 2)  # OK at the DMU; 99 mm is NotOK at the lathe
        assert stored_with_client_id(deployment, "measurement_results", "client_result_id", key) == 2

        status, outputs = await dmu.outcome("ReportMeasurement", *measurement(RUNNING, 20.0, "GA-TMP-0603", key, at))
        assert (name(status), outputs[0]) == ("Good", dmu_result), "a true retry gets the first result"
        status, _outputs = await dmu.outcome("ReportMeasurement", *measurement(RUNNING, 21.0, "GA-TMP-0603", key, at))
        assert name(status) == "BadEntryExists", "the same id with another value is not a retry"
        assert stored_with_client_id(deployment, "measurement_results", "client_result_id", key) == 2


async def test_a_confirmation_id_reused_for_another_confirmation_is_refused(
    deployment: Deployment, quality: Session
) -> None:
    del quality  # the orders are published
    key = f"mes-{time.time_ns()}"
    async with session(deployment, DMU) as dmu:
        assert (await dmu.outcome("ReportConfirmation", *confirmation(RUNNING, 1.0, client_id=key)))[0] == S.Good
        status, _outputs = await dmu.outcome("ReportConfirmation", *confirmation(RUNNING, 2.0, client_id=key))
        assert name(status) == "BadEntryExists"
    assert stored_with_client_id(deployment, "confirmations", "client_confirmation_id", key) == 1


def alarm(message: str, *client_alarm_id: str) -> list[Any]:
    return [RUNNING, "0010", "C0010", "WE1", ua.Variant(600, V.UInt16), message, *client_alarm_id]


async def test_spc_alarm_takes_an_optional_client_alarm_id(deployment: Deployment, quality: Session) -> None:
    del quality  # the orders are published
    key = f"spc-{time.time_ns()}"
    async with session(deployment, DMU) as dmu:
        status, (first,) = await dmu.outcome("ReportSpcAlarm", *alarm("beyond UCL", key))
        assert name(status) == "Good"
        status, (again,) = await dmu.outcome("ReportSpcAlarm", *alarm("beyond UCL", key))
        assert (name(status), again) == ("Good", first), "a retry after a lost answer books nothing new"
        status, _outputs = await dmu.outcome("ReportSpcAlarm", *alarm("another alarm", key))
        assert name(status) == "BadEntryExists"
        status, (without_id,) = await dmu.outcome("ReportSpcAlarm", *alarm("no client id"))
        assert name(status) == "Good"
        assert without_id != first
    assert stored_with_client_id(deployment, "spc_alarms", "client_alarm_id", key) == 1
