"""The operations endpoint of a real `qualitybridge serve`, read with a real HTTP client.

/readyz goes unready when the ERP or the store is down and ready again after; /metrics parses with
prometheus-client's own parser and counts exactly the calls this test made; the status page shows the same.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from asyncua import Client, ua
from prometheus_client.parser import text_string_to_metric_families

from qualitybridge.config import QualityBridgeConfig
from tests.harness import NAMESPACE_URI, Deployment, free_port, postgres_database, wait_for

pytestmark = pytest.mark.slow

ORDER = "1000418"
GAUGE_FOR_TYPE = {
    "CALIPER": "GA-CAL-0101",
    "MICROMETER": "GA-MIC-0207",
    "BORE_GAUGE": "GA-BOR-0312",
    "CMM": "GA-CMM-0001",
    "ROUGHNESS_TESTER": "GA-RGH-0402",
    "TORQUE_WRENCH": "GA-TRQ-0518",
    "THERMOMETER": "GA-TMP-0603",
}
POSTGRES_URL = os.environ.get("QB_TEST_POSTGRES_URL", "")
T = TypeVar("T")
# A server that runs no ERP sync round for this long has stopped syncing (it runs one every second).
SYNC_STALL_SECONDS = 30.0
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def operations_section(port: int) -> str:
    # A short sync interval and age limit so that an ERP outage shows within seconds.
    return f"\n[operations]\nenabled = true\nport = {port}\nmax_sync_age_seconds = 3\nstore_timeout_seconds = 2\n"


def ready(base: str) -> tuple[bool, dict[str, Any]]:
    answer = httpx.get(f"{base}/readyz", timeout=10)
    body: dict[str, Any] = answer.json()
    assert (answer.status_code == 200) == body["ready"]
    return body["ready"], body


def sync_rounds(base: str) -> float:
    """ERP sync rounds the server has run so far, failed ones included (a round runs every [erp]
    sync_interval_seconds, 1 s in the tests' deployment, as far as the machine lets it)."""
    return samples(base)[("qualitybridge_erp_sync_duration_seconds_count", ())]


def within_sync_rounds(base: str, predicate: Callable[[], T | None], rounds: int, what: str) -> T:
    """What `predicate` answers once it is truthy; it must be before the server has run `rounds` more ERP sync
    rounds. Counted in the server's own rounds, not in seconds: a busy machine runs fewer of them per second, and a
    server that stops syncing altogether fails after SYNC_STALL_SECONDS without a round."""
    first = sync_rounds(base)

    def answered() -> T | None:
        value = predicate()
        if not value:
            assert sync_rounds(base) - first <= rounds, f"{what}: not after {rounds} ERP sync rounds"
        return value

    found: T = wait_for(answered, SYNC_STALL_SECONDS, what, progress=lambda: sync_rounds(base))
    return found


def readiness_within_sync_rounds(base: str, want: bool, rounds: int, what: str) -> dict[str, Any]:
    """The /readyz body once it says `want`, within `rounds` ERP sync rounds (see within_sync_rounds)."""
    last: list[dict[str, Any]] = [{}]

    def answered() -> dict[str, Any] | None:
        is_ready, last[0] = ready(base)
        return last[0] if is_ready == want else None

    try:
        return within_sync_rounds(base, answered, rounds, what)
    except AssertionError as error:
        raise AssertionError(f"{error}; /readyz said {last[0]}") from None


def readiness_within_probes(base: str, want: bool, probes: int, what: str) -> dict[str, Any]:
    """The /readyz body once it says `want`, which must happen within `probes` requests (each checks the store
    afresh, with its own store_timeout_seconds): a count, not a time."""
    body: dict[str, Any] = {}
    for _ in range(probes):
        is_ready, body = ready(base)
        if is_ready == want:
            return body
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {probes} /readyz probes; the last said {body}")


def samples(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = httpx.get(f"{base}/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("operations")
    deployment = Deployment(root, "sqlite", f"sqlite+aiosqlite:///{root / 'data' / 'qualitybridge.db'}")
    deployment.extra_config = operations_section(free_port())
    try:
        started = time.monotonic()
        deployment.start()
        print(f"\nusers, trust and serve to 'ready' on SQLite: {time.monotonic() - started:.1f} s")
        yield deployment
    finally:
        deployment.stop()


def base_url(deployment: Deployment) -> str:
    assert deployment.server is not None
    line = next(text for text in deployment.server.logs().splitlines() if text.startswith("Operations endpoint:"))
    return line.split(": ", 1)[1].rstrip("/")


def test_healthz_and_readyz_after_start(deployment: Deployment) -> None:
    base = base_url(deployment)
    assert base.startswith("http://127.0.0.1:")  # loopback unless configured
    assert httpx.get(f"{base}/healthz").text == "ok\n"
    body = readiness_within_sync_rounds(base, True, 3, "readyz to report ready")
    assert set(body["checks"]) == {"store", "opcua", "erp"}
    assert httpx.get(f"{base}/nothing").status_code == 404
    assert httpx.post(f"{base}/readyz").status_code == 405


async def report(client: Client, idx: int, characteristic: tuple[str, str], value: float, gauge: str) -> Any:
    return await client.get_node(ua.NodeId("QualityBridge", idx)).call_method(
        ua.NodeId("QualityBridge.ReportMeasurement", idx),
        ORDER,
        characteristic[0],
        characteristic[1],
        ua.Variant(value, ua.VariantType.Double),
        gauge,
        "SN-OPS",
        datetime.now(UTC),
        "",
    )


async def test_metrics_count_what_the_test_did(deployment: Deployment) -> None:
    base = base_url(deployment)
    await deployment.ensure_running(ORDER)
    before = samples(base)
    accepted = ("qualitybridge_method_calls_total", (("method", "ReportMeasurement"), ("status", "Good")))
    refused = ("qualitybridge_method_calls_total", (("method", "ReportMeasurement"), ("status", "BadNotFound")))
    latency = ("qualitybridge_method_call_duration_seconds_count", (("method", "ReportMeasurement"),))
    sent = ("qualitybridge_relay_postings_total", (("outcome", "sent"), ("target", "measurement")))
    async with deployment.session("machine1") as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        operation = (await client.get_node(ua.NodeId(f"Order/{ORDER}.Operations", idx)).get_children())[0]
        operation_no = (await operation.read_browse_name()).Name
        folder = client.get_node(ua.NodeId(f"Order/{ORDER}/Op/{operation_no}.Characteristics", idx))
        characteristic_id = (await (await folder.get_children())[0].read_browse_name()).Name
        base_node = f"Order/{ORDER}/Op/{operation_no}/Char/{characteristic_id}"
        nominal = await client.get_node(ua.NodeId(f"{base_node}.Nominal", idx)).read_value()
        gauge_type = await client.get_node(ua.NodeId(f"{base_node}.GaugeType", idx)).read_value()
        gauge = GAUGE_FOR_TYPE[gauge_type]
        for _ in range(3):
            await report(client, idx, (operation_no, characteristic_id), nominal, gauge)
        with pytest.raises(ua.uaerrors.BadNotFound):
            await report(client, idx, (operation_no, "NO-SUCH-CHARACTERISTIC"), nominal, gauge)
        during = samples(base)
        assert during[("qualitybridge_opcua_sessions", ())] >= 1
    # The relay runs every 0.5 s and is woken by each report: the postings are sent within a few sync rounds (1 s).
    after = within_sync_rounds(
        base, lambda: (s := samples(base)).get(sent, 0) - before.get(sent, 0) >= 3 and s, 5, "three postings sent"
    )
    assert after[accepted] - before.get(accepted, 0) == 3
    assert after[refused] - before.get(refused, 0) == 1
    assert after[latency] - before.get(latency, 0) == 4
    assert after[("qualitybridge_erp_sync_duration_seconds_count", ())] >= 1
    assert ("qualitybridge_outbox_pending", ()) in after
    assert ("qualitybridge_outbox_oldest_pending_age_seconds", ()) in after
    assert ("qualitybridge_opcua_subscriptions", ()) in after
    async with httpx.AsyncClient() as http:
        page = await http.get(f"{base}/")
    assert page.headers["content-type"].startswith("text/html")
    assert "QualityBridge 0.1.0" in page.text
    assert "ReportMeasurement" in page.text
    assert "BadNotFound" in page.text


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium (Debian package chromium) is not installed here")
def test_the_status_page_renders_in_headless_chromium(deployment: Deployment, tmp_path: Path) -> None:
    base = base_url(deployment)
    readiness_within_sync_rounds(base, True, 3, "readyz to report ready")
    browser = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    browser += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    browser += [f"--user-data-dir={tmp_path / 'profile'}"]
    # The DOM as the browser built it: the page is plain HTML, so what a person sees is what this holds.
    dom = subprocess.run(
        [*browser, "--dump-dom", f"{base}/"], check=True, timeout=120, capture_output=True, text=True
    ).stdout
    assert "QualityBridge 0.1.0" in dom
    assert f":{deployment.opcua_port}/qualitybridge" in dom, "the page names the OPC UA endpoint"
    for check in ("store", "opcua", "erp"):
        assert check in dom
    shot = tmp_path / "status.png"
    subprocess.run(
        [*browser, "--hide-scrollbars", "--window-size=1000,900", f"--screenshot={shot}", f"{base}/"],
        check=True,
        timeout=120,
        capture_output=True,
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    # A blank page compresses to a few KiB; the page's tables and text make it larger.
    assert len(data) > 10_000, f"screenshot of {len(data)} bytes looks blank"


def test_the_compose_healthcheck_command_passes_when_ready(deployment: Deployment) -> None:
    compose = (Path(__file__).resolve().parents[2] / "docker" / "compose.yaml").read_text(encoding="utf-8")
    command = re.search(r'- "(import urllib\.request;[^"]+)"', compose)
    assert command, "compose.yaml's healthcheck is a python -c one-liner"
    port = base_url(deployment).rsplit(":", 1)[1]
    probe = command.group(1).replace("127.0.0.1:9840", f"127.0.0.1:{port}")
    readiness_within_sync_rounds(base_url(deployment), True, 3, "ready")
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=30, check=False)
    assert completed.returncode == 0, completed.stderr


def test_readyz_goes_unready_while_the_erp_is_down_and_ready_after(deployment: Deployment) -> None:
    base = base_url(deployment)
    assert deployment.simulator is not None
    readiness_within_sync_rounds(base, True, 3, "ready before the outage")
    errors_before = samples(base)[("qualitybridge_erp_sync_errors_total", ())]
    deployment.simulator.stop()
    try:
        # Unready once the last good sync is older than max_sync_age_seconds (3 s): 3 to 4 failed rounds of 1 s.
        body = readiness_within_sync_rounds(base, False, 10, "readyz to report the ERP outage")
        assert not body["checks"]["erp"]["ok"]
        assert body["checks"]["store"]["ok"]
        assert body["checks"]["opcua"]["ok"]
        assert samples(base)[("qualitybridge_erp_sync_errors_total", ())] > errors_before
    finally:
        deployment.simulator.start()
    readiness_within_sync_rounds(base, True, 3, "readyz to report ready after the ERP is back")


class TcpProxy:
    """A loopback TCP forwarder that a test can cut (listener and open connections closed) and restore."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            doomed, self._sockets = [*self._sockets, self._listener], []
        for sock in doomed:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                downstream, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                downstream.close()
                continue
            with self._lock:
                self._sockets += [downstream, upstream]
            for source, target in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@pytest.mark.postgres
def test_readyz_goes_unready_while_the_store_is_down_and_ready_after(tmp_path: Path) -> None:
    if not POSTGRES_URL:
        pytest.skip("needs QB_TEST_POSTGRES_URL (a PostgreSQL server to put a cuttable proxy in front of)")
    with postgres_database(POSTGRES_URL) as url:
        head, database = url.rsplit("/", 1)
        credentials, address = head.rsplit("@", 1)
        host, port = address.rsplit(":", 1)
        proxy = TcpProxy((host, int(port)))
        deployment = Deployment(tmp_path, "postgresql", f"{credentials}@127.0.0.1:{proxy.port}/{database}")
        deployment.extra_config = operations_section(free_port())
        try:
            started = time.monotonic()
            deployment.start()
            base = base_url(deployment)
            readiness_within_sync_rounds(base, True, 3, "ready on PostgreSQL")
            print(f"serve to /readyz ready on PostgreSQL: {time.monotonic() - started:.1f} s")
            proxy.cut()
            body = readiness_within_probes(base, False, 5, "readyz to report the store down")
            assert not body["checks"]["store"]["ok"]
            assert "PostgreSQL at 127.0.0.1" in body["checks"]["store"]["detail"]
            assert "secret" not in body["checks"]["store"]["detail"]
            proxy.restore()
            # Ready again once the store answers and a sync round has gone through (none could while it was down).
            readiness_within_sync_rounds(base, True, 5, "readyz to report ready after the store is back")
        finally:
            deployment.stop()
            proxy.cut()


def test_operations_endpoint_is_off_unless_configured_and_on_loopback() -> None:
    settings = QualityBridgeConfig().operations
    assert settings.enabled is False
    assert settings.host == "127.0.0.1"


def test_healthz_answers_while_the_store_is_waited_for(tmp_path: Path) -> None:
    operations_port, nobody_port = free_port(), free_port()
    config = tmp_path / "qualitybridge.toml"
    config.write_text(
        f'data_dir = "data"\n[server]\nhost = "127.0.0.1"\nport = {free_port()}\n'
        f'[store]\nurl = "postgresql+asyncpg://qb@127.0.0.1:{nobody_port}/plant"\nconnect_wait_seconds = 60\n'
        f"[operations]\nenabled = true\nport = {operations_port}\n",
        encoding="utf-8",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "qualitybridge", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{operations_port}"
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 30, "/healthz while the store is not up")
        is_ready, body = ready(base)
        assert not is_ready
        assert "not open yet" in body["checks"]["store"]["detail"]
        assert not body["checks"]["opcua"]["ok"]
    finally:
        process.send_signal(signal.SIGTERM)
        _out, stderr = process.communicate(timeout=30)
    assert "Traceback" not in stderr
