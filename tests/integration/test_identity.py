"""The server says who it is: BuildInfo read by a real OPC UA client, and `qualitybridge --version`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asyncua import Client, ua

from qualitybridge.app import QualityBridgeApp
from qualitybridge.config import QualityBridgeConfig, ServerSettings
from qualitybridge.domain.model import ErpSnapshot
from qualitybridge.domain.postings import OutboxEntry

VERSION = "0.1.0"


class QuietErp:
    """An ERP that releases nothing and takes every posting."""

    async def fetch_snapshot(self) -> ErpSnapshot:
        return ErpSnapshot(orders=(), equipment=())

    async def post(self, entry: OutboxEntry) -> str:
        return "DOC-1"

    async def aclose(self) -> None:
        return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def endpoint(tmp_path: Path) -> AsyncIterator[str]:
    config = QualityBridgeConfig(
        data_dir=tmp_path / "data",
        server=ServerSettings(
            host="127.0.0.1",
            port=free_port(),
            hostname="localhost",
            allow_security_none=True,
            allow_anonymous_read=True,
        ),
    )
    app = await QualityBridgeApp.create(config, erp=QuietErp())
    await app.start()
    try:
        yield config.server.endpoint_url("127.0.0.1")
    finally:
        await app.stop()


async def test_build_info_names_qualitybridge_and_its_version(endpoint: str) -> None:
    async with Client(endpoint) as client:
        build = await client.get_node(ua.NodeId(ua.ObjectIds.Server_ServerStatus_BuildInfo)).read_value()
        version = await client.get_node(
            ua.NodeId(ua.ObjectIds.Server_ServerStatus_BuildInfo_SoftwareVersion)
        ).read_value()
    assert build.ProductName == "QualityBridge"
    assert build.ProductUri == "https://qualitybridge.dev"
    assert "QualityBridge" in build.ManufacturerName
    assert build.SoftwareVersion == version == VERSION
    assert build.BuildNumber
    assert datetime(2020, 1, 1, tzinfo=UTC) < build.BuildDate.replace(tzinfo=UTC) <= datetime.now(UTC)


def test_version_option_prints_the_package_version() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "qualitybridge", "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0
    assert completed.stdout.startswith(f"qualitybridge {VERSION} (build ")


def test_build_number_and_date_come_from_the_build_environment() -> None:
    env = {"QUALITYBRIDGE_BUILD_NUMBER": "abc1234", "QUALITYBRIDGE_BUILD_DATE": "2026-03-04T05:06:07Z"}
    completed = subprocess.run(
        [sys.executable, "-m", "qualitybridge", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )
    assert completed.stdout.strip() == f"qualitybridge {VERSION} (build abc1234, 2026-03-04)"
