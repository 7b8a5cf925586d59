"""`qualitybridge serve` relays from a process of its own ([erp] relay_process, the default): forked at the start, it
books what machines report, goes when the server stops, and when it dies the server relays itself from then on.
What the two ends say to each other is tested in tests/integration/test_relay_process.py."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.builders import first_characteristic, report, results_at_erp
from tests.harness import NAMESPACE_URI, Deployment, deployed, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    yield from deployed("sqlite", tmp_path_factory.mktemp("relay-process"))


def _server_pid(deployment: Deployment) -> int:
    assert deployment.server is not None
    assert deployment.server.process is not None
    return deployment.server.process.pid


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _announced_relay_pid(deployment: Deployment) -> int:
    """The pid the server's log names for its relay process (the last start's)."""
    assert deployment.server is not None
    found = re.findall(r"outbox relay running in its own process \(pid (\d+)\)", deployment.server.logs())
    assert found, "the server did not start a relay process"
    return int(found[-1])


def _process_name(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def _report_and_wait_booked(deployment: Deployment, tag: str, count: int = 3) -> None:
    async with deployment.session("machine1") as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        key = await first_characteristic(client, idx, "1000417")
        reported = {(await report(client, idx, key, 20.0, client_result_id=f"{tag}-{n}"))[0] for n in range(count)}

    def booked() -> bool:
        return reported <= {entry["body"]["result_id"] for entry in results_at_erp(deployment)}

    wait_for(booked, 30.0, f"the {tag} results booked at the ERP")


async def test_the_server_relays_from_a_process_of_its_own(deployment: Deployment) -> None:
    await deployment.ensure_running("1000417")
    relay = _announced_relay_pid(deployment)
    assert _children(_server_pid(deployment)) == [relay]
    assert _process_name(relay) == "qb-outbox-relay"  # plant IT tells the two apart in top and ps
    await _report_and_wait_booked(deployment, "own-process")
    assert deployment.server is not None
    assert "the server relays in its own process from now on" not in deployment.server.logs()
    assert _children(_server_pid(deployment)) == [relay]  # the same worker booked them


async def test_the_relay_process_stops_with_the_server(deployment: Deployment) -> None:
    assert deployment.server is not None
    relay = _announced_relay_pid(deployment)
    deployment.server.stop()  # SIGTERM: the server stops its relay process and reaps it
    assert deployment.server.process is not None
    assert deployment.server.process.returncode == 0
    assert not _alive(relay)
    assert "did not stop in time" not in deployment.server.logs()  # it ended its round and left, not killed
    deployment.server.start()
    assert _announced_relay_pid(deployment) != relay


async def test_a_relay_process_that_dies_leaves_the_relaying_to_the_server(deployment: Deployment) -> None:
    assert deployment.server is not None
    await deployment.ensure_running("1000417")
    relay = _announced_relay_pid(deployment)
    os.kill(relay, signal.SIGKILL)
    wait_for(
        lambda: "the server relays in its own process from now on" in deployment.server.logs(),  # type: ignore[union-attr]
        10.0,
        "the server's log of the lost relay process",
    )
    assert "killed by signal 9" in deployment.server.logs()
    assert _children(_server_pid(deployment)) == []  # reaped, no zombie left
    await _report_and_wait_booked(deployment, "after-the-loss")
