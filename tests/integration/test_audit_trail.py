"""Audit trail, X.509 user tokens, live account and trust-list changes, AuditEvents: one in-process server.

The server is asyncua with `apply_security` (as QualityBridge builds it) and an `AuditTrail` on SQLite;
clients are real asyncua clients over Basic256Sha256 SignAndEncrypt on loopback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from asyncua import Client, Server, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from qualitybridge.config import LimitsSettings
from qualitybridge.domain.audit import AuditEntry, AuditKind
from qualitybridge.server.pki import (
    PkiLayout,
    load_certificate_bytes,
    make_self_signed_certificate,
    reject_certificate,
    thumbprint,
    trust_certificate,
)
from qualitybridge.server.security.access import caller
from qualitybridge.server.security.identity import NO_PASSWORD, Role, UserAccount, hash_password
from qualitybridge.server.security.permissions import AccessDenied, Permission, authorize
from qualitybridge.server.security.setup import SecurityOptions, ServerSecurity, apply_security
from qualitybridge.services.audit_trail import AuditTrail
from qualitybridge.store import create_engine, migrate
from qualitybridge.store.audit_log import AuditLogStore
from tests.harness import free_port, standard_server
from tests.pki_helpers import IssuedCertificate, TestCa

module_loop = pytest.mark.asyncio(loop_scope="module")

SERVER_URI = "urn:qualitybridge:test:audit-server"
CLIENT_URI = "urn:qualitybridge:test:audit-client"
PASSWORDS = {"admin": "admin-secret", "watcher": "watch-secret", "machine": "machine-secret"}
GOOD = ua.StatusCodes.Good
DENIED = ua.StatusCodes.BadUserAccessDenied


@dataclass
class Env:
    url: str
    layout: PkiLayout
    server: Server
    security: ServerSecurity
    trail: AuditTrail
    audit: AuditLogStore
    probe: ua.NodeId
    echo: ua.NodeId
    limit: ua.NodeId
    setpoint: ua.NodeId
    client_cert: tuple[Path, Path]
    user_cert: IssuedCertificate
    user_cert_files: tuple[Path, Path]
    accounts: list[UserAccount]
    engine: AsyncEngine

    async def entries(self, **filters: Any) -> list[AuditEntry]:
        await self.trail.flush()
        return await self.audit.entries(limit=10_000, **filters)


def _client_cert(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = make_self_signed_certificate(CLIENT_URI, name, ["localhost"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.der").write_bytes(cert)
    (folder / f"{name}.pem").write_bytes(key)
    return folder / f"{name}.der", folder / f"{name}.pem"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    root = tmp_path_factory.mktemp("audit")
    engine = create_engine(f"sqlite+aiosqlite:///{root / 'store.db'}")
    await migrate(engine)
    audit = AuditLogStore(engine)
    trail = AuditTrail(audit, flush_interval=0.05)
    user_ca = TestCa.create("User CA")
    user_cert = user_ca.issue("operator-badge", "urn:qualitybridge:test:badge")
    accounts = [
        UserAccount("admin", Role.ADMIN, hash_password(PASSWORDS["admin"])),
        UserAccount("watcher", Role.OBSERVER, hash_password(PASSWORDS["watcher"])),
        UserAccount("machine", Role.MACHINE, hash_password(PASSWORDS["machine"]), ("WC-1",)),
        UserAccount("badge", Role.OPERATOR, NO_PASSWORD, (), user_cert.thumbprint),
    ]
    layout = PkiLayout(root / "pki")
    url = f"opc.tcp://127.0.0.1:{free_port()}"
    # No login penalty: the tests here fail logins on purpose and then log in from the same address at once.
    server = await standard_server(LimitsSettings(login_penalty_base_seconds=0))
    server.set_endpoint(url)
    security = await apply_security(
        server,
        layout=layout,
        application_uri=SERVER_URI,
        hostnames=["127.0.0.1", "localhost"],
        accounts=accounts,
        options=SecurityOptions(audit=trail),
    )
    idx = await server.register_namespace("urn:qualitybridge:test:audit")
    probe = await server.nodes.objects.add_object(idx, "Probe")

    async def echo(_parent: ua.NodeId, text: ua.Variant) -> list[ua.Variant]:
        try:
            user = authorize(Permission.REPORT, work_centre="WC-1")
        except AccessDenied:
            return ua.StatusCode(DENIED)  # type: ignore[return-value]
        return [ua.Variant(f"{user.name}:{text.Value}", ua.VariantType.String)]

    async def whoami(_parent: ua.NodeId) -> list[ua.Variant]:
        user = caller()
        return [ua.Variant(user.name if user and user.name else "", ua.VariantType.String)]

    echo_node = await probe.add_method(idx, "Echo", echo, [ua.VariantType.String], [ua.VariantType.String])
    await probe.add_method(idx, "WhoAmI", whoami, [], [ua.VariantType.String])
    limit = await probe.add_variable(idx, "UpperLimit", 10.0)
    setpoint = await probe.add_variable(idx, "Setpoint", 1.0)
    await setpoint.set_writable()
    await server.start()
    await security.started()
    trail.start()
    client_cert = _client_cert(root / "client", "trusted-client")
    trust_certificate(layout, str(client_cert[0]))
    try:
        yield Env(
            url,
            layout,
            server,
            security,
            trail,
            audit,
            probe.nodeid,
            echo_node.nodeid,
            limit.nodeid,
            setpoint.nodeid,
            client_cert,
            user_cert,
            user_cert.write(root / "badge", "badge"),
            accounts,
            engine,
        )
    finally:
        await security.stopping()
        await server.stop()
        await trail.stop()
        await engine.dispose()


async def _client(
    env: Env, user: str | None, password: str | None = None, *, cert: tuple[Path, Path] | None = None
) -> Client:
    client = Client(env.url, timeout=4)
    client.application_uri = CLIENT_URI
    cert_path, key_path = cert or env.client_cert
    await client.set_security(
        SecurityPolicyBasic256Sha256, str(cert_path), str(key_path), mode=ua.MessageSecurityMode.SignAndEncrypt
    )
    if user is not None:
        client.set_user(user)
        client.set_password(password if password is not None else PASSWORDS[user])
    return client


async def _call_echo(client: Client, env: Env, text: str) -> Any:
    return await client.get_node(env.probe).call_method(env.echo, ua.Variant(text, ua.VariantType.String))


def _thumbprint_of_file(path: Path) -> str:
    return thumbprint(load_certificate_bytes(path.read_bytes()))


def _newest(entries: list[AuditEntry], action: str) -> AuditEntry:
    matching = [entry for entry in entries if entry.action == action]
    assert matching, f"no {action!r} entry in {[e.action for e in entries]}"
    return matching[-1]


@module_loop
async def test_logins_are_audited_with_address_and_certificate(env: Env) -> None:
    client = await _client(env, "watcher")
    async with client:
        local_port = client.uaclient.protocol.transport.get_extra_info("sockname")[1]  # type: ignore[union-attr]
    bad = await _client(env, "watcher", "wrong-password")
    with pytest.raises(ua.uaerrors.BadUserAccessDenied):
        await bad.connect()
    await bad.disconnect()

    logins = [e for e in await env.entries(user_name="watcher") if e.action == "ActivateSession"]
    ok, refused = logins[-2], logins[-1]
    assert (ok.status_name, refused.status_name) == ("Good", "BadUserAccessDenied")
    assert ok.kind is AuditKind.SESSION
    assert ok.remote_address == f"127.0.0.1:{local_port}"
    assert ok.client_thumbprint is not None
    assert ok.client_thumbprint == refused.client_thumbprint
    assert ok.arguments == refused.arguments == "token=UserName"
    assert all(
        "watch-secret" not in (e.arguments or "") and "wrong-password" not in (e.arguments or "") for e in logins
    )


@module_loop
async def test_untrusted_certificate_is_audited(env: Env, tmp_path: Path) -> None:
    stranger = _client_cert(tmp_path, "stranger")
    client = await _client(env, "watcher", cert=stranger)
    client.session_timeout = 2000
    with pytest.raises((ua.uaerrors.BadCertificateUntrusted, asyncio.TimeoutError)):
        await client.connect()
    await client.disconnect()
    entry = _newest(await env.entries(), "CreateSession")
    assert entry.status_name == "BadCertificateUntrusted"
    assert entry.client_thumbprint == _thumbprint_of_file(stranger[0])
    assert (env.layout.rejected_certs / f"{entry.client_thumbprint}.der").exists()
    assert entry.arguments == f"ApplicationUri={CLIENT_URI!r}"


@module_loop
async def test_method_calls_are_audited_allowed_and_refused(env: Env) -> None:
    async with await _client(env, "machine") as machine:
        assert await _call_echo(machine, env, "hello") == "machine:hello"
    async with await _client(env, "watcher") as watcher:
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await _call_echo(watcher, env, "let me")
    calls = [e for e in await env.entries() if e.kind is AuditKind.CALL]
    allowed, refused = calls[-2], calls[-1]
    assert (allowed.user_name, allowed.action, allowed.status_name) == ("machine", "Call Echo", "Good")
    assert allowed.arguments == "#0='hello'"
    assert allowed.node == env.echo.to_string()
    assert (refused.user_name, refused.status_name, refused.arguments) == (
        "watcher",
        "BadUserAccessDenied",
        "#0='let me'",
    )
    assert refused.remote_address is not None
    assert refused.client_thumbprint == allowed.client_thumbprint


@module_loop
async def test_writes_are_audited_and_only_writable_nodes_change(env: Env) -> None:
    async with await _client(env, "watcher") as watcher:
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await watcher.get_node(env.setpoint).write_value(5.0)
    async with await _client(env, "admin") as admin:
        await admin.get_node(env.setpoint).write_value(7.0)
        # asyncua's own Admin role could overwrite any value; QualityBridge's Admin is bound by AccessLevel.
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await admin.get_node(env.limit).write_value(99.0)
        assert await admin.get_node(env.limit).read_value() == 10.0
    writes = [e for e in await env.entries() if e.kind is AuditKind.WRITE][-3:]
    assert [(e.user_name, e.status_name) for e in writes] == [
        ("watcher", "BadUserAccessDenied"),
        ("admin", "Good"),
        ("admin", "BadUserAccessDenied"),
    ]
    assert writes[1].node == f"{env.setpoint.to_string()} Value"
    assert writes[1].arguments == "value=7.0"


@module_loop
async def test_x509_user_token_logs_in_as_the_bound_user(env: Env, tmp_path: Path) -> None:
    client = await _client(env, None)
    await client.load_client_certificate(str(env.user_cert_files[0]))
    await client.load_private_key(env.user_cert_files[1])
    async with client:
        result = await client.get_node(env.probe).call_method(ua.QualifiedName("WhoAmI", env.echo.NamespaceIndex))
    assert result == "badge"

    unbound = TestCa.create("Other CA").issue("someone", "urn:x").write(tmp_path, "unbound")
    client = await _client(env, None)
    await client.load_client_certificate(str(unbound[0]))
    await client.load_private_key(unbound[1])
    with pytest.raises(ua.uaerrors.BadUserAccessDenied):
        await client.connect()
    await client.disconnect()
    logins = [e for e in await env.entries() if e.action == "ActivateSession"][-2:]
    assert [(e.user_name, e.status_name) for e in logins] == [
        ("badge", "Good"),
        (f"x509:{_thumbprint_of_file(unbound[0])}", "BadUserAccessDenied"),
    ]
    assert logins[0].arguments == f"token=X509 {env.user_cert.thumbprint}"


@module_loop
async def test_machine_limited_to_its_work_centre(env: Env) -> None:
    account = next(a for a in env.accounts if a.name == "machine")
    elsewhere = UserAccount("machine2", Role.MACHINE, account.password_hash, ("WC-2",))
    await env.security.apply_accounts([*env.accounts, elsewhere])
    try:
        async with await _client(env, "machine2", PASSWORDS["machine"]) as machine2:
            with pytest.raises(ua.uaerrors.BadUserAccessDenied):
                await _call_echo(machine2, env, "not my line")
    finally:
        await env.security.apply_accounts(env.accounts)
    entry = [e for e in await env.entries(user_name="machine2") if e.kind is AuditKind.CALL][-1]
    assert entry.status_name == "BadUserAccessDenied"


@module_loop
async def test_removed_user_loses_open_session(env: Env) -> None:
    extra = UserAccount("temp", Role.OBSERVER, hash_password("temp-secret"))
    await env.security.apply_accounts([*env.accounts, extra])
    client = await _client(env, "temp", "temp-secret")
    await client.connect()
    try:
        assert await client.nodes.server_state.read_value() == ua.ServerState.Running
        assert await env.security.apply_accounts(env.accounts) == ["temp"]
        with pytest.raises((ua.UaError, ConnectionError, asyncio.TimeoutError)):
            await client.nodes.server_state.read_value()
    finally:
        await client.disconnect()
    revoked = _newest(await env.entries(user_name="temp"), "session revoked")
    assert revoked.arguments == "account removed or changed"
    # And it cannot log in again.
    again = await _client(env, "temp", "temp-secret")
    with pytest.raises(ua.uaerrors.BadUserAccessDenied):
        await again.connect()
    await again.disconnect()


@module_loop
async def test_rejected_certificate_ends_its_sessions(env: Env, tmp_path: Path) -> None:
    cert = _client_cert(tmp_path, "short-lived-trust")
    trust_certificate(env.layout, str(cert[0]))
    client = await _client(env, "watcher", cert=cert)
    await client.connect()
    other = await _client(env, "watcher")
    await other.connect()
    try:
        assert await env.security.revalidate_sessions() == 0  # trust list changed, but nobody lost trust
        reject_certificate(env.layout, _thumbprint_of_file(cert[0]))
        assert await env.security.revalidate_sessions() == 1
        with pytest.raises((ua.UaError, ConnectionError, asyncio.TimeoutError)):
            await client.nodes.server_state.read_value()
        assert await other.nodes.server_state.read_value() == ua.ServerState.Running
    finally:
        await client.disconnect()
        await other.disconnect()


class _EventCollector:
    def __init__(self, awaited: str) -> None:
        self.events: list[Any] = []
        self.awaited = awaited
        self.seen = asyncio.Event()

    def event_notification(self, event: Any) -> None:
        self.events.append(event)
        if self.awaited in (event.Message.Text or ""):
            self.seen.set()


@module_loop
async def test_audit_events_reach_admins_only(env: Env) -> None:
    admin, watcher = await _client(env, "admin"), await _client(env, "watcher")
    async with admin, watcher:
        collected = {"admin": _EventCollector("Call Echo"), "watcher": _EventCollector("Call Echo")}
        for name, client in (("admin", admin), ("watcher", watcher)):
            subscription = await client.create_subscription(50, collected[name])
            audit_types = (ua.ObjectIds.AuditActivateSessionEventType, ua.ObjectIds.AuditUpdateMethodEventType)
            await subscription.subscribe_events(
                client.nodes.server, [ua.NodeId(ua.Int32(event_type)) for event_type in audit_types]
            )
        assert await admin.get_node(ua.NodeId(ua.Int32(ua.ObjectIds.Server_Auditing))).read_value() is True
        async with await _client(env, "machine") as machine:
            await _call_echo(machine, env, "audited")
        await asyncio.wait_for(collected["admin"].seen.wait(), 5)
        await asyncio.sleep(0.3)  # the watcher's subscription would have had its chance by now
    method_events = [e for e in collected["admin"].events if "Call Echo" in (e.Message.Text or "")]
    assert method_events, [e.Message.Text for e in collected["admin"].events]
    assert method_events[0].ClientUserId == "machine"
    assert method_events[0].Status is True
    assert method_events[0].EventType == ua.NodeId(ua.Int32(ua.ObjectIds.AuditUpdateMethodEventType))
    assert method_events[0].MethodId == env.echo
    logins = [e for e in collected["admin"].events if "ActivateSession" in (e.Message.Text or "")]
    machine_login = next(e for e in logins if e.ClientUserId == "machine")
    assert machine_login.CurrentRoleIds == [
        ua.NodeId(ua.Int32(ua.ObjectIds.WellKnownRole_AuthenticatedUser)),
        ua.NodeId(ua.Int32(ua.ObjectIds.WellKnownRole_Operator)),
    ]
    assert collected["watcher"].events == []


@module_loop
async def test_recording_is_cheap_and_batched(env: Env) -> None:
    # Cheap: record() only queues (no SQL while a request records); batched: the flush writes thousands of entries
    # in a statement per batch, not one per entry. Counted, not timed, so the verdict does not depend on the load.
    before = len(await env.entries())
    entry = AuditEntry(
        at=datetime.now(UTC), kind=AuditKind.CALL, action="Call Bench", status_code=GOOD, status_name="Good"
    )
    count = 5_000
    statements: list[str] = []

    def counted(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(env.engine.sync_engine, "before_cursor_execute", counted)
    try:
        started = time.perf_counter()
        for _ in range(count):
            env.trail.record(entry)
        record_us = (time.perf_counter() - started) / count * 1e6
        recorded_statements = len(statements)
        await env.trail.flush()
    finally:
        event.remove(env.engine.sync_engine, "before_cursor_execute", counted)
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
    print(f"\naudit: record() {record_us:.1f} µs/entry, flush of {count} entries in {len(inserts)} INSERTs")
    assert recorded_statements == 0, "record() must only queue; the writer task writes"
    assert 1 <= len(inserts) <= count // 100, f"{len(inserts)} INSERTs for {count} entries: not batched"
    assert len(await env.entries()) == before + count


@module_loop
async def test_purge_keeps_only_the_retention_period(env: Env) -> None:
    old = AuditEntry(
        at=datetime.now(UTC) - timedelta(days=400),
        kind=AuditKind.ADMIN,
        action="ancient",
        status_code=GOOD,
        status_name="Good",
    )
    env.trail.record(old)
    await env.trail.flush()
    assert any(e.action == "ancient" for e in await env.entries())
    assert await env.trail.purge(timedelta(days=365)) == 1
    assert not any(e.action == "ancient" for e in await env.entries())


@module_loop
async def test_no_session_is_kept_after_its_client_left(env: Env, tmp_path: Path) -> None:
    # Refused certificates and refused logins leave nothing behind either (a flood must not grow memory).
    for attempt in range(5):
        stranger = await _client(env, "watcher", cert=_client_cert(tmp_path, f"flood-{attempt}"))
        with pytest.raises((ua.uaerrors.BadCertificateUntrusted, asyncio.TimeoutError)):
            await stranger.connect()
        await stranger.disconnect()
        wrong = await _client(env, "watcher", "wrong-password")
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await wrong.connect()
        await wrong.disconnect()
    for _ in range(100):  # asyncua closes sessions of lost connections in a task of its own
        if not env.security.hooks.open_sessions():
            break
        await asyncio.sleep(0.05)
    assert env.security.hooks.open_sessions() == []


@module_loop
async def test_role_set_describes_the_role_mapping_without_user_names(env: Env) -> None:
    async with await _client(env, "watcher") as client:
        operator = await client.get_node(
            ua.NodeId(ua.Int32(ua.ObjectIds.WellKnownRole_Operator_Identities))
        ).read_value()
        authenticated = await client.get_node(
            ua.NodeId(ua.Int32(ua.ObjectIds.WellKnownRole_AuthenticatedUser_Identities))
        ).read_value()
        anonymous = await client.get_node(
            ua.NodeId(ua.Int32(ua.ObjectIds.WellKnownRole_Anonymous_Identities))
        ).read_value()
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):  # clients cannot change the mapping
            await client.get_node(ua.NodeId(ua.Int32(ua.ObjectIds.WellKnownRole_Operator_Identities))).write_value(
                ua.Variant([], ua.VariantType.ExtensionObject)
            )
    assert {(rule.CriteriaType, rule.Criteria) for rule in operator} == {
        (ua.IdentityCriteriaType.Role, "Machine"),
        (ua.IdentityCriteriaType.Role, "Operator"),
    }
    assert [rule.CriteriaType for rule in authenticated] == [ua.IdentityCriteriaType.AuthenticatedUser]
    assert anonymous == []  # anonymous access is off in this deployment
