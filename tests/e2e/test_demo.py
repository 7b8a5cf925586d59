"""The README's run command: `qualitybridge demo` comes up, and a machine can use it as the README says."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from asyncua import ua

from tests.harness import (
    NAMESPACE_URI,
    ChildProcess,
    ClientCertificate,
    free_port,
    invoke_cli,
    secure_session,
    wait_for,
)

pytestmark = pytest.mark.slow

RUNNING = 3  # OrderStateEnum


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int, int]]:
    root = tmp_path_factory.mktemp("demo")
    port, erp_port, operations_port = free_port(), free_port(), free_port()
    process = ChildProcess(
        "demo",
        [
            "demo",
            "--data-dir",
            str(root / "data"),
            "--port",
            str(port),
            "--erp-port",
            str(erp_port),
            # Not the default 9840: another test run on the same machine may be serving its own demo there.
            "--operations-port",
            str(operations_port),
            "--host",
            "127.0.0.1",
        ],
        root,
        "QualityBridge demo is running.",
    )
    process.start()
    try:
        yield root / "data", port, erp_port
    finally:
        process.stop()


def demo_users(data_dir: Path) -> dict[str, tuple[str, str]]:
    lines = (data_dir / "demo-users.txt").read_text(encoding="utf-8").splitlines()
    return {name: (role, password) for name, role, password in (line.split() for line in lines if line[:1] != "#")}


async def test_demo_users_file_has_one_line_per_user_with_role_and_password(demo: tuple[Path, int, int]) -> None:
    users = demo_users(demo[0])
    assert {role for role, _password in users.values()} >= {
        "Machine",
        "Operator",
        "QualityEngineer",
        "Observer",
        "Admin",
    }
    assert all(len(password) >= 8 for _role, password in users.values())


async def test_demo_loop_browse_report_and_see_results_at_the_erp(demo: tuple[Path, int, int]) -> None:
    data_dir, port, erp_port = demo
    certificate = ClientCertificate(
        data_dir / "demo-client" / "cert.der", data_dir / "demo-client" / "key.pem", "urn:qualitybridge:demo-client"
    )
    users = demo_users(data_dir)
    machine = next(name for name, (role, _pw) in users.items() if role == "Machine")
    endpoint = f"opc.tcp://127.0.0.1:{port}/qualitybridge"
    async with secure_session(endpoint, certificate, machine, users[machine][1]) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)

        async def read(identifier: str) -> Any:
            return await client.get_node(ua.NodeId(identifier, ns)).read_value()

        async def fitting_gauge(gauge_type: str) -> str:
            """A gauge of the type the characteristic asks for, calibration valid (the server refuses others)."""
            for gauge in await client.get_node(ua.NodeId("QualityBridge.TestEquipment", ns)).get_children():
                gauge_id = gauge.nodeid.Identifier
                if (
                    await read(f"{gauge_id}.EquipmentType") == gauge_type
                    and await read(f"{gauge_id}.CalibrationStatus") == 0
                ):
                    return str((await gauge.read_browse_name()).Name)
            raise AssertionError(f"the demo has no valid {gauge_type} gauge")

        orders = await client.get_node(ua.NodeId("QualityBridge.Orders", ns)).get_children()
        assert len(orders) >= 3
        # Measurements are accepted for a Running order only; the demo data has one running from the start.
        states = {(await o.read_browse_name()).Name: await read(f"{o.nodeid.Identifier}.State") for o in orders}
        order_no = next(number for number, state in states.items() if state == RUNNING)
        operation = (await client.get_node(ua.NodeId(f"Order/{order_no}.Operations", ns)).get_children())[0]
        operation_no = (await operation.read_browse_name()).Name
        folder = client.get_node(ua.NodeId(f"Order/{order_no}/Op/{operation_no}.Characteristics", ns))
        characteristic_id = (await (await folder.get_children())[0].read_browse_name()).Name
        base = f"Order/{order_no}/Op/{operation_no}/Char/{characteristic_id}"
        nominal = await client.get_node(ua.NodeId(f"{base}.Nominal", ns)).read_value()
        upper = await client.get_node(ua.NodeId(f"{base}.UpperLimit", ns)).read_value()
        gauge = await fitting_gauge(await read(f"{base}.GaugeType"))
        bridge = client.get_node(ua.NodeId("QualityBridge", ns))

        async def report(value: float) -> list[Any]:
            answer: list[Any] = await bridge.call_method(
                ua.NodeId("QualityBridge.ReportMeasurement", ns),
                order_no,
                operation_no,
                characteristic_id,
                ua.Variant(value, ua.VariantType.Double),
                gauge,
                "SN-DEMO",
                datetime.now(UTC),
                "",
            )
            return answer

        inside, outside = await report(nominal), await report(upper + 1)
    reported = time.monotonic()
    assert (inside[1], outside[1]) == (1, 2)

    def arrived() -> bool:
        booked = {r["body"]["result_id"] for r in httpx.get(f"http://127.0.0.1:{erp_port}/results").json()}
        return {inside[0], outside[0]} <= booked

    # The relay's promptness is measured in bench/report_throughput.py; here only that both arrive (generous
    # deadline, so a busy machine does not decide the verdict).
    wait_for(arrived, 30.0, "both demo results at the simulator")
    print(f"demo results booked at the simulator {time.monotonic() - reported:.2f} s after their answers")


def test_the_master_data_audit_of_the_demo_finds_the_gaps_its_seed_data_plant(demo: tuple[Path, int, int]) -> None:
    data_dir, _port, erp_port = demo
    report = data_dir.parent / "audit.json"
    completed = invoke_cli(
        "master-data",
        "audit",
        "--data-dir",
        str(data_dir),
        "--erp-url",
        f"http://127.0.0.1:{erp_port}",
        "--json",
        str(report),
    )
    assert completed.returncode == 1, completed.stdout + completed.stderr
    document = json.loads(report.read_text(encoding="utf-8"))
    found = {
        (finding["check"], finding["code"], "/".join(record[key] for key in finding_keys(record)))
        for finding in document["findings"]
        for record in finding["records"]
    }
    assert found == {
        (2, "material-without-part", "MAT-102090"),
        (2, "part-without-material", "GH-4711-01"),
        (3, "version-differs", "1000421"),
        (4, "characteristic-name-differs", "MAT-100871/0010/C0030"),
        (5, "work-centre-without-cost-centre", "WC-GRIND-01"),
    }
    assert document["inputs"]["mes_parts"] == str(data_dir.resolve() / "master-data" / "mes-parts.csv")


def finding_keys(record: dict[str, str]) -> list[str]:
    if "characteristic_id" in record:
        return ["material_no", "operation_no", "characteristic_id"]
    return [next(iter(record))]
