"""A login's scrypt check runs in a worker thread before asyncua asks the user manager on the event loop (about
0.4 s each: a storm of first logins after a restart stalled every session), and its verdict is used once."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest
from asyncua import Client, ua

from qualitybridge.server.security import identity
from qualitybridge.server.security.identity import PasswordUserManager, Role, UserAccount, hash_password
from tests.harness import standard_server

ACCOUNT = UserAccount(name="machine7", role=Role.MACHINE, password_hash=hash_password("right password"))


@pytest.fixture
def scrypt_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The thread each scrypt check of the accounts' passwords ran in."""
    threads: list[str] = []
    real = identity.verify_password

    def recording(password: str, encoded: str) -> bool:
        if encoded == ACCOUNT.password_hash:
            threads.append(threading.current_thread().name)
        return real(password, encoded)

    monkeypatch.setattr(identity, "verify_password", recording)
    return threads


def test_a_verdict_found_ahead_is_used_by_the_next_login_check_once(scrypt_threads: list[str]) -> None:
    users = PasswordUserManager([ACCOUNT], allow_security_none=True)
    users.verify_ahead("machine7", "right password")
    assert users.get_user(None, username="machine7", password="right password", certificate=b"c") is not None
    users.verify_ahead("machine7", "wrong")
    assert users.get_user(None, username="machine7", password="wrong", certificate=b"c") is None
    assert len(scrypt_threads) == 2  # one check each, none repeated by get_user
    assert users.get_user(None, username="machine7", password="wrong", certificate=b"c") is None
    assert len(scrypt_threads) == 3  # a refusal is remembered for one get_user only
    users.verify_ahead("nobody", "x")
    users.replace_accounts([ACCOUNT])
    assert users.get_user(None, username="machine7", password="right password", certificate=b"c") is not None
    assert len(scrypt_threads) == 4  # changed accounts forget every verdict


async def test_a_client_login_is_checked_off_the_event_loop(scrypt_threads: list[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = await standard_server()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/login")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    server.set_security_IDs(["Username"])
    server.iserver.set_user_manager(PasswordUserManager([ACCOUNT], allow_security_none=True))
    await server.start()
    try:
        client = Client(f"opc.tcp://127.0.0.1:{port}/login", timeout=60, watchdog_intervall=60)
        client.set_user("machine7")
        client.set_password("right password")
        async with client:
            state: Any = await client.get_node(ua.ObjectIds.Server_ServerStatus_State).read_value()
            assert state == ua.ServerState.Running
        assert len(scrypt_threads) == 1
        assert scrypt_threads[0] != threading.main_thread().name
        wrong = Client(f"opc.tcp://127.0.0.1:{port}/login", timeout=60, watchdog_intervall=60)
        wrong.set_user("machine7")
        wrong.set_password("wrong password")
        with pytest.raises(ua.UaError):
            async with wrong:
                pass
        assert len(scrypt_threads) == 2
        assert threading.main_thread().name not in scrypt_threads
    finally:
        await server.stop()
