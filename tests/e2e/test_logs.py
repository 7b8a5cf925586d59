"""Logs a plant can alert on: a refused login is one WARNING line from QualityBridge (no asyncua ERROR for it),
and `log_format = "json"` writes one JSON object per line with business keys where there are any."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua

from tests.harness import Deployment, free_port, make_client_certificate, secure_session, wait_for

pytestmark = pytest.mark.slow


class JsonLogDeployment(Deployment):
    def write_config(self) -> None:
        super().write_config()
        text = self.config_path.read_text(encoding="utf-8")
        self.config_path.write_text(text.replace('log_level = "INFO"', 'log_level = "INFO"\nlog_format = "json"'))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("logs")
    deployment = JsonLogDeployment(
        root, "sqlite", f"sqlite+aiosqlite:///{root / 'data' / 'qualitybridge.db'}", opcua_port=free_port()
    )
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


def log_lines(deployment: Deployment) -> list[str]:
    assert deployment.server is not None
    return deployment.server.stderr_path.read_text(encoding="utf-8").splitlines()


def entries(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


def test_every_line_is_one_json_object_with_the_fields(deployment: Deployment) -> None:
    parsed = entries(log_lines(deployment))
    assert parsed, "serve logs at least its start"
    for entry in parsed:
        assert {"timestamp", "level", "logger", "message"} <= entry.keys()
    assert any("QualityBridge serving" in entry["message"] for entry in parsed)


async def test_a_wrong_password_is_exactly_one_warning_line(deployment: Deployment) -> None:
    assert deployment.client_certificate is not None
    before = len(log_lines(deployment))
    with pytest.raises(ua.UaError):
        async with secure_session(deployment.endpoint, deployment.client_certificate, "machine1", "not-the-password"):
            pass
    await asyncio.sleep(1.0)  # anything asyncua would log about it has been written by now
    new = log_lines(deployment)[before:]
    assert len(new) == 1, "\n".join(new)
    (entry,) = entries(new)
    assert entry["level"] == "WARNING"
    assert entry["logger"].startswith("qualitybridge.")
    assert "machine1" in entry["message"]
    assert entry["user"] == "machine1"
    assert entry["status"] == "BadUserAccessDenied"


async def test_an_untrusted_client_certificate_is_exactly_one_warning_line(
    deployment: Deployment, tmp_path: Path
) -> None:
    stranger = make_client_certificate(tmp_path / "stranger", "urn:qualitybridge:stranger")
    before = len(log_lines(deployment))
    with pytest.raises(ua.UaError):
        async with secure_session(deployment.endpoint, stranger, "machine1", "machine1-secret"):
            pass
    await asyncio.sleep(1.0)
    new = log_lines(deployment)[before:]
    assert len(new) == 1, "\n".join(new)
    (entry,) = entries(new)
    assert entry["level"] == "WARNING"
    assert entry["message"].startswith("Refused client certificate")


async def test_a_call_the_role_may_not_make_is_exactly_one_warning_line(deployment: Deployment) -> None:
    async with deployment.session("observer") as client:
        idx = await client.get_namespace_index("https://qualitybridge.dev/UA/")
        before = len(log_lines(deployment))
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await client.get_node(ua.NodeId("QualityBridge", idx)).call_method(
                ua.NodeId("QualityBridge.StartOrder", idx), "1000418"
            )
        await asyncio.sleep(1.0)
        new = log_lines(deployment)[before:]
    assert len(new) == 1, "\n".join(new)
    assert entries(new)[0]["level"] == "WARNING"


async def test_a_refused_report_carries_its_business_keys(deployment: Deployment) -> None:
    from datetime import UTC, datetime

    await deployment.ensure_running("1000418")
    async with deployment.session("machine1") as client:
        idx = await client.get_namespace_index("https://qualitybridge.dev/UA/")
        before = len(log_lines(deployment))
        with pytest.raises(ua.uaerrors.BadNotFound):
            await client.get_node(ua.NodeId("QualityBridge", idx)).call_method(
                ua.NodeId("QualityBridge.ReportMeasurement", idx),
                "1000418",
                "9999",
                "NO-SUCH",
                ua.Variant(1.0, ua.VariantType.Double),
                "GA-CMM-0001",
                "SN-LOG",
                datetime.now(UTC),
                "",
            )

        def refusal() -> dict[str, Any] | None:
            found = [e for e in entries(log_lines(deployment)[before:]) if e.get("method") == "ReportMeasurement"]
            return found[0] if found else None

        entry = wait_for(refusal, 5, "the refusal's log line")
    assert entry["level"] == "WARNING"
    assert entry["order_no"] == "1000418"
    assert entry["operation_no"] == "9999"
    assert entry["user"] == "machine1"
    assert entry["status"] == "BadNotFound"
