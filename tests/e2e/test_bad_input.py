"""Findings 3 and 8 of issue 9: bad input through a real server and a real client.

3. Strings that are not valid UTF-8 are refused with BadInvalidArgument (per entry in a batch, whose valid entries
   are stored); a 2-D array where a 1-D one is declared is refused with BadTypeMismatch. Never BadUnexpectedError.
"""

from __future__ import annotations

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

from tests.harness import NAMESPACE_URI, Deployment

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

S = ua.StatusCodes
V = ua.VariantType
RUNNING = "1000417"  # seeded Running; op 0010 at WC-DMU-01
THERMO = (RUNNING, "0010", "C0010")  # 18..22 °C, THERMOMETER
THERMOMETER = "GA-TMP-0603"
# asyncua encodes a str with surrogateescape: a lone surrogate \udcff goes on the wire as the byte 0xff, which is
# not valid UTF-8; the server decodes it back into the same lone surrogate.
NOT_UTF8 = "SN-\udcff\udcfe"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("bad-input")
    deployment = Deployment(root, "sqlite", f"sqlite+aiosqlite:///{root / 'data' / 'qualitybridge.db'}")
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


class Session:
    def __init__(self, client: Client, idx: int) -> None:
        self.client = client
        self.idx = idx

    async def outcome(self, method: str, *arguments: Any) -> tuple[int, list[Any]]:
        try:
            result = await call_method_full(
                self.client.get_node(ua.NodeId("QualityBridge", self.idx)),
                ua.NodeId(f"QualityBridge.{method}", self.idx),
                *arguments,
            )
        except ua.UaStatusCodeError as exc:
            return int(exc.code), []
        return S.Good, list(result.OutputArguments)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def machine(deployment: Deployment) -> AsyncIterator[Session]:
    async with deployment.session("machine1") as client:
        yield Session(client, await client.get_namespace_index(NAMESPACE_URI))


def stored_results(deployment: Deployment) -> int:
    database = deployment.store_url.split("///", 1)[1]
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
        return int(connection.execute("SELECT count(*) FROM measurement_results").fetchone()[0])


def single(*, serial: str = "SN-1", client_id: str = "", at: datetime | None = None) -> list[Any]:
    return [*THERMO, ua.Variant(20.0, V.Double), THERMOMETER, serial, at or datetime.now(UTC), client_id]


def batch(serials: list[str]) -> list[ua.Variant]:
    n = len(serials)
    return [
        ua.Variant([THERMO[0]] * n, V.String),
        ua.Variant([THERMO[1]] * n, V.String),
        ua.Variant([THERMO[2]] * n, V.String),
        ua.Variant([20.0] * n, V.Double),
        ua.Variant([THERMOMETER] * n, V.String),
        ua.Variant(serials, V.String),
        ua.Variant([datetime.now(UTC)] * n, V.DateTime),
        ua.Variant([], V.String),
    ]


def name(status: int) -> str:
    return ua.StatusCode(ua.UInt32(status)).name


@pytest.mark.parametrize(
    ("method", "arguments"),
    [
        ("ReportMeasurement", single(serial=NOT_UTF8)),
        ("ReportMeasurement", single(client_id=f"plc-{NOT_UTF8}")),
        (
            "ReportConfirmation",
            [
                *(RUNNING, "0010", ua.Variant(0.0, V.Double), ua.Variant(1.0, V.Double), ua.Variant(0.0, V.Double)),
                *("", NOT_UTF8, ua.Variant(False, V.Boolean), ""),
            ],
        ),
        ("ReportSpcAlarm", [*THERMO, "WE1", ua.Variant(500, V.UInt16), f"beyond UCL {NOT_UTF8}"]),
        ("StartOrder", [NOT_UTF8]),
    ],
    ids=["PartSerial", "ClientResultId", "ReasonCode", "Message", "OrderNumber"],
)
async def test_a_string_that_is_not_utf8_is_an_invalid_argument(
    deployment: Deployment, machine: Session, method: str, arguments: list[Any]
) -> None:
    before = stored_results(deployment)
    status, _outputs = await machine.outcome(method, *arguments)
    if method == "StartOrder":
        assert name(status) in ("BadInvalidArgument", "BadUserAccessDenied"), "a Machine may not start orders"
    else:
        assert name(status) == "BadInvalidArgument"
    assert stored_results(deployment) == before


async def test_a_batch_entry_that_is_not_utf8_is_refused_alone(deployment: Deployment, machine: Session) -> None:
    before = stored_results(deployment)
    status, (result_ids, _evaluations, statuses, messages, _due) = await machine.outcome(
        "ReportMeasurements", *batch([f"SN-a-{time.time_ns()}", NOT_UTF8, f"SN-b-{time.time_ns()}"])
    )
    assert name(status) == "Good"
    assert [name(s.value) for s in statuses] == ["Good", "BadInvalidArgument", "Good"]
    assert "PartSerial" in messages[1]
    assert [bool(result_id) for result_id in result_ids] == [True, False, True]
    assert stored_results(deployment) == before + 2, "the valid entries are stored"


@pytest.mark.parametrize("column", [0, 3], ids=["OrderNumbers", "Values"])
async def test_a_two_dimensional_array_is_a_type_mismatch(
    deployment: Deployment, machine: Session, column: int
) -> None:
    arguments = batch(["SN-1", "SN-2"])
    flat = arguments[column]
    arguments[column] = ua.Variant([flat.Value, flat.Value], flat.VariantType, Dimensions=[2, 2])
    before = stored_results(deployment)
    status, _outputs = await machine.outcome("ReportMeasurements", *arguments)
    assert name(status) == "BadTypeMismatch"
    assert stored_results(deployment) == before


async def test_no_traceback_for_bad_input(deployment: Deployment, machine: Session) -> None:
    del machine  # after the tests above
    assert deployment.server is not None
    logs = deployment.server.logs()
    assert "Traceback" not in logs
    assert "BadUnexpectedError" not in logs
