"""`qualitybridge client` as the demo prints it: browse, read, report a measurement and see it at the simulator."""

from __future__ import annotations

import re
import shlex
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.harness import ChildProcess, CliRun, free_port, invoke_cli, wait_for

pytestmark = pytest.mark.slow


@dataclass
class Demo:
    data_dir: Path
    erp_port: int
    banner: str
    endpoint: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    root = tmp_path_factory.mktemp("client-demo")
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
            "--operations-port",
            str(operations_port),
            "--host",
            "127.0.0.1",
        ],
        root,
        "Stop              Ctrl+C",
    )
    process.start()
    try:
        yield Demo(root / "data", erp_port, process.logs(), f"opc.tcp://127.0.0.1:{port}/qualitybridge")
    finally:
        process.stop()


def client(*args: str) -> CliRun:
    """`qualitybridge client ARGS` in-process (invoke_cli): the demo server is the process of its own here."""
    return invoke_cli("client", *args)


def printed_command(banner: str, action: str) -> list[str]:
    """The `client <action>` command as the banner prints it (continuation lines joined), without the program."""
    text = banner.replace("\\\n", " ")
    line = next(line for line in text.splitlines() if f" client {action}" in line)
    words = shlex.split(line.split("Try it", 1)[-1])
    return words[words.index("client") + 1 :]


def test_banner_shows_the_operations_endpoint_and_the_client(demo: Demo) -> None:
    assert re.search(r"Operations\s+http://127\.0\.0\.1:\d+/", demo.banner)
    assert " client browse" in demo.banner
    assert " client report-measurement" in demo.banner
    assert stat.S_IMODE((demo.data_dir / "demo-users.txt").stat().st_mode) == 0o600


def test_report_measurement_as_the_banner_prints_it_books_at_the_simulator(demo: Demo) -> None:
    completed = client(*printed_command(demo.banner, "report-measurement"))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "ReportMeasurement: Good" in completed.stdout
    result_id = re.search(r"ResultId = (\S+)", completed.stdout)
    assert result_id, completed.stdout

    def booked() -> bool:
        results = httpx.get(f"http://127.0.0.1:{demo.erp_port}/results", timeout=10).json()
        return any(r["body"]["result_id"] == result_id.group(1) for r in results)

    wait_for(booked, 10, "the measurement at the simulator")


def test_browse_and_read(demo: Demo) -> None:
    target = ["--endpoint", demo.endpoint, "--data-dir", str(demo.data_dir)]
    browsed = client("browse", *target, "--depth", "1")
    assert browsed.returncode == 0, browsed.stderr
    assert "Orders" in browsed.stdout
    assert "ReportMeasurement" in browsed.stdout
    assert "[method]" in browsed.stdout
    read = client("read", "ns=0;i=2264", *target)  # Server.ServerStatus.BuildInfo.SoftwareVersion
    assert read.returncode == 0, read.stderr
    assert read.stdout.strip() == "ns=0;i=2264 = 0.1.0"


def test_arguments_are_typed_from_the_declaration_and_refusals_readable(demo: Demo) -> None:
    target = ["--endpoint", demo.endpoint, "--data-dir", str(demo.data_dir)]
    listing = client("report-measurement", *target)
    assert listing.returncode == 2
    assert "Value: Double" in listing.stderr
    assert "MeasuredAt: DateTime = now" in listing.stderr
    wrong_type = client("report-measurement", *target, "Value=twelve")
    assert wrong_type.returncode == 2
    assert "Value='twelve' is not a Double" in wrong_type.stderr
    refused = client(
        "report-measurement",
        *target,
        "OrderNumber=0000000",
        "OperationNumber=0010",
        "CharacteristicId=X",
        "Value=1.5",
        "EquipmentId=GA-CAL-0101",
        "PartSerial=SN-1",
    )
    assert refused.returncode == 1
    assert "refused: BadNotFound" in refused.stdout


def test_subscribe_prints_the_current_value(demo: Demo) -> None:
    target = ["--endpoint", demo.endpoint, "--data-dir", str(demo.data_dir)]
    completed = client("subscribe", "ns=0;i=2259", *target, "--seconds", "2")  # Server.ServerStatus.State
    assert completed.returncode == 0, completed.stderr
    assert "ns=0;i=2259 = " in completed.stdout


def test_a_wrong_password_is_one_line_naming_the_fix(demo: Demo) -> None:
    completed = client(
        "read",
        "ns=0;i=2264",
        "--endpoint",
        demo.endpoint,
        "--data-dir",
        str(demo.data_dir),
        "--user",
        "observer",
        "--password",
        "wrong-password",
    )
    assert completed.returncode == 2
    assert "refused 'observer'" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_the_readme_snippet_runs_as_a_script(demo: Demo, tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    snippet = readme.split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "report.py"
    # The README's endpoint is the demo's default port; this demo runs on a free one.
    script.write_text(snippet.replace("opc.tcp://localhost:4840/qualitybridge", demo.endpoint), encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, str(script)], cwd=demo.data_dir.parent, capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    result_id, evaluation = completed.stdout.split()
    assert result_id
    assert evaluation in ("1", "2")
