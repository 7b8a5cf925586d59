"""Findings 3 and 8 of issue 9: bad input through a real server and a real client.

3. Strings that are not valid UTF-8 are refused with BadInvalidArgument (per entry in a batch, whose valid entries
   are stored); a 2-D array where a 1-D one is declared is refused with BadTypeMismatch. Never BadUnexpectedError.
8. MeasuredAt has a documented lower bound; a malformed transport message is one WARNING line naming the peer,
   without a traceback; the simulator refuses what the contract forbids (duplicate keys, non-finite numbers, an
   Idempotency-Key longer than 255 characters, said as such).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
import struct
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


# ---- finding 8: MeasuredAt's lower bound, malformed transport messages, what the simulator accepts ----------


@pytest.mark.parametrize(
    "measured_at",
    [datetime(1601, 1, 1, 0, 0, 1, tzinfo=UTC), datetime(2000, 1, 1, tzinfo=UTC)],
    ids=["a second after the null DateTime", "years before the order"],
)
async def test_measured_at_before_the_documented_lower_bound_is_out_of_range(
    deployment: Deployment, machine: Session, measured_at: datetime
) -> None:
    before = stored_results(deployment)
    status, _outputs = await machine.outcome("ReportMeasurement", *single(at=measured_at))
    assert name(status) == "BadOutOfRange"
    assert stored_results(deployment) == before


def _raw_exchange(port: int, garbage: bytes) -> tuple[str, bytes]:
    """Hello (answered by Acknowledge), then a malformed OpenSecureChannel chunk; answers (local address, reply)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        url = f"opc.tcp://127.0.0.1:{port}/qualitybridge".encode()
        body = struct.pack("<IIIII", 0, 65535, 65535, 0, 0) + struct.pack("<i", len(url)) + url
        sock.sendall(b"HELF" + struct.pack("<I", 8 + len(body)) + body)
        assert sock.recv(8)[:3] == b"ACK"
        sock.recv(65535)
        sock.sendall(b"OPNF" + struct.pack("<I", 8 + len(garbage)) + garbage)
        reply = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65535):
                reply += chunk
        host, local_port = sock.getsockname()[:2]
        return f"{host}', {local_port}", reply


async def test_a_malformed_message_is_one_warning_line_without_traceback(deployment: Deployment) -> None:
    assert deployment.server is not None
    logged_before = len(deployment.server.logs().splitlines())
    peer, _reply = _raw_exchange(deployment.opcua_port, b"\x00\x00\x00\x00" + b"\xff" * 40)
    await asyncio.sleep(0.5)
    new_lines = deployment.server.logs().splitlines()[logged_before:]
    assert "Traceback" not in "\n".join(new_lines), new_lines
    about_peer = [line for line in new_lines if peer in line]
    assert len(about_peer) == 1, new_lines
    assert "WARNING" in about_peer[0]
    assert "malformed" in about_peer[0]


async def test_the_simulator_refuses_what_the_contract_forbids(deployment: Deployment) -> None:
    with deployment.erp() as erp:
        template = next(o for o in erp.get("/api/v1/orders").json()["orders"] if o["order_no"] == "1000418")
        twice = {**template, "order_no": "7400001", "operations": [*template["operations"], template["operations"][0]]}
        refused = erp.post("/sim/orders", json=twice)
        assert refused.status_code == 400, refused.text
        assert "twice" in refused.json()["error"]["message"]
        infinite = json.dumps({**template, "order_no": "7400002", "planned_quantity": 1.5}).replace("1.5", "1e309")
        refused = erp.post("/sim/orders", content=infinite, headers={"Content-Type": "application/json"})
        assert refused.status_code in (400, 422), refused.text
        assert "7400001" not in str(erp.get("/api/v1/orders").json())

        booked = len(erp.get("/results").json())
        result = {
            "result_id": "R-NAN",
            "order_no": RUNNING,
            "operation_no": "0010",
            "characteristic_id": "C0010",
            "value": 1.5,
            "unit": "CEL",
            "evaluation": "OK",
            "plan_version": "1",
            "equipment_id": THERMOMETER,
            "part_serial": "SN-1",
            "measured_at": datetime.now(UTC).isoformat(),
            "received_at": datetime.now(UTC).isoformat(),
            "reported_by": "machine1",
        }
        nan = json.dumps(result).replace("1.5", "NaN")
        answer = erp.post(
            "/api/v1/results",
            content=nan,
            headers={"Content-Type": "application/json", "Idempotency-Key": "mr-nan"},
        )
        assert answer.status_code == 422, answer.text
        assert len(erp.get("/results").json()) == booked

        long_key = erp.post("/api/v1/results", json=result, headers={"Idempotency-Key": "k" * 256})
        assert long_key.status_code == 400
        assert "255" in long_key.json()["error"]["message"]
        assert "required" not in long_key.json()["error"]["message"]
