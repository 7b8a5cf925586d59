"""Finding 6 of issue 9: 200 idle TCP connections from one address must not lock everyone out.

An attacker on 127.0.0.2 opens 200 TCP connections to the server and sends nothing (no Hello), re-opening every
connection the server closes once a second. During the flood a legitimate client (from 127.0.0.1) opens a
SignAndEncrypt session with a user name, several times: each must succeed.

What makes the verdict independent of machine load is the property behind it, checked first: the server keeps at
most `max_unactivated_connections_per_address` of the attacker's connections open (the rest are closed at once),
and closes an accepted connection that sends no Hello after `hello_timeout_seconds`, well before the activation
timeout. The failure modes seen before the fix were a reset or the client's own timeout, so each session must open
without either within SESSION_DEADLINE; the set-up times (about 0.1 s on a quiet machine) are printed, not judged,
because how long an RSA handshake takes depends on what else the machine is doing.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.harness import NAMESPACE_URI, Deployment

pytestmark = pytest.mark.slow

ATTACKER = "127.0.0.2"
FLOOD = 200
# The documented defaults of [limits] (docs/configuration.md): the test runs the server as configured out of the box.
PER_ADDRESS = 16  # max_unactivated_connections_per_address
HELLO_TIMEOUT = 3.0  # hello_timeout_seconds
SESSION_DEADLINE = 10.0  # the request timeout of the test's client
RUNS = 8


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("flood")
    deployment = Deployment(root, "sqlite", f"sqlite+aiosqlite:///{root / 'data' / 'qualitybridge.db'}")
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


class Flood:
    """FLOOD idle connections from ATTACKER, each re-opened within a second of the server closing it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sockets: list[socket.socket | None] = [None] * FLOOD
        self.opened = 0
        self.closed_by_server = 0
        self.open_now = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _connect(self) -> socket.socket | None:
        sock = socket.socket()
        try:
            sock.bind((ATTACKER, 0))
            sock.connect(("127.0.0.1", self.port))
        except OSError:
            sock.close()
            return None
        sock.setblocking(False)
        self.opened += 1
        return sock

    @staticmethod
    def _closed(sock: socket.socket) -> bool:
        try:
            return sock.recv(64) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def sweep(self) -> None:
        """Re-open what the server closed; count what is open."""
        open_now = 0
        for i, sock in enumerate(self.sockets):
            if sock is not None and self._closed(sock):
                sock.close()
                self.closed_by_server += 1
                sock = None
            if sock is None and not self._stop.is_set():
                sock = self._connect()
            self.sockets[i] = sock
            open_now += sock is not None
        self.open_now = open_now

    def still_open(self) -> int:
        """Of the attacker's sockets, how many the server has not closed."""
        return sum(1 for sock in self.sockets if sock is not None and not self._closed(sock))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sweep()
            self._stop.wait(1.0)

    def __enter__(self) -> Flood:
        self.sweep()
        return self

    def keep_reconnecting(self) -> None:
        self._thread.start()

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        for sock in self.sockets:
            if sock is not None:
                sock.close()


async def _open_session(deployment: Deployment) -> float:
    started = time.monotonic()
    async with asyncio.timeout(SESSION_DEADLINE), deployment.session("machine1") as client:
        took = time.monotonic() - started
        assert await client.get_namespace_index(NAMESPACE_URI) > 0
    return took


def _seconds_until_closed_by_server(port: int) -> float:
    """One idle connection (from a third address, outside the flood's quota): how long the server keeps it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.3", 0))
        sock.connect(("127.0.0.1", port))
        sock.settimeout(30)
        started = time.monotonic()
        assert sock.recv(64) == b"", "the server sends nothing to a connection without a Hello"
        return time.monotonic() - started


async def test_an_idle_flood_from_one_address_leaves_room_for_others(deployment: Deployment) -> None:
    with Flood(deployment.opcua_port) as flood:
        await asyncio.sleep(0.5)
        # The property: at most PER_ADDRESS of the attacker's connections are held; the rest were closed at once.
        held = flood.still_open()
        assert held <= PER_ADDRESS, f"{held} of {FLOOD} idle connections from one address are held open"
        flood.keep_reconnecting()
        # Not a race: an idle connection is closed after the Hello deadline, not the activation timeout (10 s);
        # the margin covers a loaded machine.
        kept = await asyncio.to_thread(_seconds_until_closed_by_server, deployment.opcua_port)
        print(f"an idle connection was kept {kept:.2f} s")
        assert HELLO_TIMEOUT - 0.5 < kept < HELLO_TIMEOUT + 4, "idle connections are closed at the Hello deadline"

        took = []
        for _run in range(RUNS):  # a reset or a timeout raises here and fails the test
            took.append(await _open_session(deployment))
            await asyncio.sleep(0.3)
        print(f"legitimate session set-up during the flood, {RUNS} runs: {[round(t, 3) for t in took]} s")
        assert flood.opened >= FLOOD, "the flood ran"
        assert flood.closed_by_server >= FLOOD - PER_ADDRESS

    assert deployment.server is not None
    logs = deployment.server.logs()
    assert "Traceback" not in logs
    refusal_lines = [line for line in logs.splitlines() if ATTACKER in line and "WARNING" in line]
    assert len(refusal_lines) < 50, "refusals of one address are logged with a count, not one line each"
