"""Finding 2 of issue 9: an unauthenticated caller must not stop the audit trail.

A login over a forced None channel with a user name that is not valid UTF-8 is refused; its audit entry must be
written escaped (or set aside and counted), and every later entry must still be written. What is queued when the
server gets SIGTERM is written before it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from asyncua import Client, ua

from tests.harness import NAMESPACE_URI, Deployment, wait_for

pytestmark = pytest.mark.slow

# asyncua's client encodes with surrogateescape: \udcff goes on the wire as the byte 0xff, not valid UTF-8.
POISON_USER = "op\udcff\udcfeerator"


@pytest.fixture
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("audit-poison")
    deployment = Deployment(
        root,
        "sqlite",
        f"sqlite+aiosqlite:///{root / 'data' / 'qualitybridge.db'}",
        extra_config="\n[audit]\nflush_interval_seconds = 0.2\n",
    )
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


def audit_rows(deployment: Deployment) -> list[tuple[Any, ...]]:
    database = deployment.store_url.split("///", 1)[1]
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
        return [
            tuple(row)
            for row in connection.execute("SELECT id, kind, action, user_name, status_name FROM audit_log ORDER BY id")
        ]


async def none_channel_login(deployment: Deployment, user: str, password: str) -> str:
    """A hostile client: a None secure channel, below asyncua's client-side endpoint check."""
    client = Client(deployment.endpoint, timeout=5)
    await client.connect_socket()
    try:
        await client.send_hello()
        await client.open_secure_channel()
        await client.uaclient.create_session(
            ua.CreateSessionParameters(
                ClientDescription=ua.ApplicationDescription(
                    ApplicationUri="urn:qualitybridge:test-client", ApplicationType=ua.ApplicationType.Client
                ),
                ClientNonce=b"n" * 32,
                EndpointUrl=deployment.endpoint,
                SessionName="none-channel-probe",
                RequestedSessionTimeout=10_000,
            )
        )
        token = ua.UserNameIdentityToken(PolicyId="username", UserName=user, Password=password.encode())
        try:
            await client.uaclient.activate_session(ua.ActivateSessionParameters(UserIdentityToken=token))
        except ua.uaerrors.UaStatusCodeError as exc:
            return ua.StatusCode(ua.UInt32(exc.code)).name
        return "Good"
    finally:
        client.disconnect_socket()


async def good_login(deployment: Deployment) -> None:
    async with deployment.session("quality") as client:
        assert await client.get_namespace_index(NAMESPACE_URI) > 0


def _poison_accounted(rows: list[tuple[Any, ...]]) -> bool:
    """The refused login is written escaped, or its setting aside is written and counted."""
    escaped = any(user and "\\udcff" in user for _id, _kind, _action, user, _status in rows)
    set_aside = any("set aside" in (action or "") for _id, _kind, action, _user, _status in rows)
    return escaped or set_aside


async def test_a_login_with_a_non_utf8_user_name_does_not_stop_the_audit_trail(deployment: Deployment) -> None:
    assert await none_channel_login(deployment, POISON_USER, "whatever") != "Good"
    await good_login(deployment)

    def later_login_written() -> list[tuple[Any, ...]]:
        rows = audit_rows(deployment)
        return rows if any(user == "quality" and status == "Good" for *_, user, status in rows) else []

    rows = wait_for(later_login_written, 10, "the audit entry of a login after the poisoned one")
    assert _poison_accounted(rows), rows
    assert deployment.server is not None
    logs = deployment.server.logs()
    assert "Traceback" not in logs
    assert "surrogates not allowed" not in logs

    # SIGTERM with entries queued: written before the server exits. A long flush interval keeps them queued.
    deployment.server.stop()
    deployment.extra_config = "\n[audit]\nflush_interval_seconds = 60\n"
    deployment.write_config()
    deployment.server.start()
    before = len(audit_rows(deployment))
    assert await none_channel_login(deployment, POISON_USER, "again") != "Good"
    await good_login(deployment)
    await asyncio.sleep(0.5)
    queued = len(audit_rows(deployment)) - before
    deployment.server.stop()  # SIGTERM
    assert deployment.server.process is not None
    assert deployment.server.process.returncode == 0
    rows = audit_rows(deployment)[before:]
    assert len(rows) > queued, "what was queued at SIGTERM is written"
    assert any(user == "quality" and status == "Good" for *_, user, status in rows), rows
    assert _poison_accounted(rows), rows
