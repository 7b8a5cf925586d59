"""Acceptance matrix of issue 3, asyncua half: a real deployment (simulator + `qualitybridge serve` processes),
admin changes through the real CLI while the server runs, real asyncua clients.

Rows: connection cases (None policy, untrusted / expired / wrong-URI certificates, `pki trust` without restart,
wrong password) and every role × every method of the QualityBridge object (enumerated at run time) and a write.
The expected outcome comes from the documented tables (server/permissions.py, server/access.py); the table is
printed (pytest -s) and written to <tmp>/security-matrix.txt. Finally every case must be in the audit log with
the StatusCode the client got.
"""

from __future__ import annotations

import asyncio
import datetime
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from asyncua import Client, ua

from qualitybridge.domain.audit import AuditEntry
from qualitybridge.server.pki import make_self_signed_certificate, thumbprint
from qualitybridge.server.security.access import ROLE_PERMISSIONS as SERVICE_PERMISSIONS
from qualitybridge.server.security.access import WRITE_REQUESTS
from qualitybridge.server.security.identity import Role, hash_password
from qualitybridge.server.security.permissions import METHOD_PERMISSIONS, ROLE_PERMISSIONS
from qualitybridge.store import StoredUser, open_store
from qualitybridge.store.audit_log import AuditLogStore
from qualitybridge.store.database import create_engine
from tests.harness import (
    NAMESPACE_URI,
    TEST_USERS,
    ClientCertificate,
    Deployment,
    make_client_certificate,
    run_cli,
    secure_session,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

GOOD = ua.StatusCodes.Good
DENIED = ua.StatusCodes.BadUserAccessDenied
ORDER = "1000418"
REFUSED_TIMEOUT = 3.0
EXTRA_CONFIG = """
[security]
reload_interval_seconds = 1

[audit]
flush_interval_seconds = 0.2

[limits]
# This module provokes failed logins on purpose; the penalty for them is tested in test_limits.py.
login_penalty_base_seconds = 0
login_penalty_max_seconds = 0
"""


@dataclass(frozen=True)
class Account:
    name: str
    role: Role
    password: str
    work_centres: tuple[str, ...] = ()


@dataclass
class Case:
    """One row of the matrix: what was tried, what the documented outcome is, what happened."""

    group: str
    who: str
    what: str
    expected: str  # a status name, or "allowed" (anything but BadUserAccessDenied)
    got: str = ""
    audit_action: str = ""
    audit_user: str | None = None
    audit_thumbprint: str | None = None
    audit_node: str | None = None
    audited: str = ""

    @property
    def passed(self) -> bool:
        if self.expected == "allowed":
            return self.got not in ("", "BadUserAccessDenied")
        return self.got == self.expected


@dataclass
class Matrix:
    cases: list[Case] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def add(self, case: Case) -> Case:
        self.cases.append(case)
        return case

    def render(self) -> str:
        header = ("group", "who", "what", "expected", "got", "audit log")
        rows = [header] + [(c.group, c.who, c.what, c.expected, c.got, c.audited or "-") for c in self.cases]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * width for width in widths))
        lines.append("")
        lines += [f"{name}: {seconds:.2f} s" for name, seconds in self.timings.items()]
        return "\n".join(lines)


@dataclass
class Env:
    deployment: Deployment
    accounts: dict[str, Account]
    matrix: Matrix
    out_dir: Path

    def certificate(self) -> ClientCertificate:
        assert self.deployment.client_certificate is not None
        return self.deployment.client_certificate

    def session(self, user: str, certificate: ClientCertificate | None = None) -> Any:
        account = self.accounts[user]
        return secure_session(
            self.deployment.endpoint, certificate or self.certificate(), account.name, account.password
        )


def _cli(deployment: Deployment, *args: str) -> str:
    return run_cli(*args, "--config", str(deployment.config_path))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("security-matrix")
    running = Deployment(root, "sqlite", f"sqlite+aiosqlite:///{root / 'data' / 'qualitybridge.db'}")
    running.extra_config = EXTRA_CONFIG
    try:
        running.start()
        yield running
    finally:
        running.stop()


async def _wait_for_login(deployment: Deployment, account: Account, give_up_after: float) -> float:
    """Seconds until the running server accepts the account (added by the CLI while it runs)."""
    assert deployment.client_certificate is not None
    started = time.monotonic()
    while True:
        try:
            async with secure_session(
                deployment.endpoint, deployment.client_certificate, account.name, account.password
            ):
                return time.monotonic() - started
        except ua.uaerrors.BadUserAccessDenied:
            if time.monotonic() - started > give_up_after:
                raise
            await asyncio.sleep(0.05)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    accounts = {name: Account(name, role, password) for name, (role, password) in TEST_USERS.items()}
    async with secure_session(
        deployment.endpoint,
        deployment.client_certificate,
        "observer",
        TEST_USERS["observer"][1],  # type: ignore[arg-type]
    ) as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        work_centre = await _order_work_centre(client, idx)
    added = [
        Account("operator", Role.OPERATOR, "operator-secret"),
        Account("admin", Role.ADMIN, "admin-secret"),
        Account("machine-here", Role.MACHINE, "machine-here-secret", (work_centre,)),
        Account("machine-away", Role.MACHINE, "machine-away-secret", ("WC-ELSEWHERE",)),
    ]
    matrix = Matrix()
    # The first account through the real CLI, timed: how long until the running server lets it in.
    first, *others = added
    started = time.monotonic()
    _cli(deployment, "users", "add", first.name, "--role", first.role.value, "--password", first.password)
    matrix.timings["users add (CLI process incl. scrypt)"] = time.monotonic() - started
    matrix.timings["users add returned → first login accepted (reload_interval_seconds = 1)"] = await _wait_for_login(
        deployment, first, give_up_after=10
    )
    # The others straight into the store (the CLI costs ~2 s of interpreter start each); same reload path.
    await _save_users(deployment, others)
    for account in added:
        accounts[account.name] = account
    await _wait_for_login(deployment, others[-1], give_up_after=10)
    yield Env(deployment, accounts, matrix, tmp_path_factory.mktemp("security-matrix-report"))


async def _save_users(deployment: Deployment, accounts: list[Account]) -> None:
    store = await open_store(deployment.store_url)
    try:
        for account in accounts:
            await store.save_user(
                StoredUser(account.name, account.role.value, hash_password(account.password), account.work_centres)
            )
    finally:
        await store.aclose()


async def _order_work_centre(client: Client, idx: int) -> str:
    operations = await client.get_node(ua.NodeId(f"Order/{ORDER}.Operations", idx)).get_children()
    operation_no = (await operations[0].read_browse_name()).Name
    operation = client.get_node(ua.NodeId(f"Order/{ORDER}/Op/{operation_no}", idx))
    for child in await operation.get_children():
        if (await child.read_browse_name()).Name == "WorkCentre":
            return str(await child.read_value())
    order = client.get_node(ua.NodeId(f"Order/{ORDER}", idx))
    for child in await order.get_children():
        if (await child.read_browse_name()).Name == "WorkCentre":
            return str(await child.read_value())
    raise AssertionError(f"order {ORDER} shows no WorkCentre")


def _status_name(code: int) -> str:
    return ua.StatusCode(ua.UInt32(code)).name


async def _expect_refusal(connect: Any) -> str:
    try:
        await connect()
    except ua.uaerrors.UaStatusCodeError as exc:
        return _status_name(exc.code)
    except TimeoutError:
        return "timeout"
    return "Good"


# ---- connection cases ---------------------------------------------------------------------------------


async def test_connection_cases(env: Env, tmp_path: Path) -> None:
    deployment, matrix = env.deployment, env.matrix

    # 1. SecurityPolicy None: no None endpoint, and a hostile client's session on a None channel is refused.
    async with env.session("observer") as client:
        endpoints = await client.get_endpoints()
    assert all(endpoint.SecurityMode != ua.MessageSecurityMode.None_ for endpoint in endpoints)
    case = matrix.add(
        Case(
            "connect",
            "observer",
            "SecurityPolicy None channel",
            "BadUserAccessDenied",
            audit_action="ActivateSession",
            audit_user="observer",
        )
    )
    case.got = await _none_channel_login(deployment, env.accounts["observer"])

    # 2. Untrusted certificate: refused, and parked in rejected/ for the admin.
    stranger = make_client_certificate(tmp_path / "stranger")
    stranger_thumbprint = thumbprint_of(stranger.cert)
    case = matrix.add(
        Case(
            "connect",
            "observer",
            "untrusted client certificate",
            "BadCertificateUntrusted",
            audit_action="CreateSession",
            audit_thumbprint=stranger_thumbprint,
        )
    )
    case.got = await _expect_refusal(lambda: _login(env, "observer", stranger))
    rejected = deployment.data_dir / "pki" / "rejected" / "certs" / f"{stranger_thumbprint}.der"
    assert rejected.read_bytes() == stranger.cert.read_bytes()

    # 3. `pki trust <thumbprint>` from rejected/, while the server runs: the next connection gets in.
    started = time.monotonic()
    _cli(deployment, "pki", "trust", stranger_thumbprint)
    case = matrix.add(
        Case(
            "connect",
            "observer",
            "same certificate after `pki trust` (no restart)",
            "Good",
            audit_action="ActivateSession",
            audit_user="observer",
            audit_thumbprint=stranger_thumbprint,
        )
    )
    case.got = await _expect_refusal(lambda: _login(env, "observer", stranger))
    matrix.timings["pki trust (CLI) → trusted connection"] = time.monotonic() - started

    # 4. Expired certificate, even though trusted.
    now = datetime.datetime.now(datetime.UTC)
    expired = _certificate(
        tmp_path / "expired", not_before=now - datetime.timedelta(days=60), not_after=now - datetime.timedelta(days=1)
    )
    _cli(deployment, "pki", "trust", str(expired.cert))
    case = matrix.add(
        Case(
            "connect",
            "observer",
            "expired client certificate (trusted)",
            "BadCertificateTimeInvalid",
            audit_action="CreateSession",
            audit_thumbprint=thumbprint_of(expired.cert),
        )
    )
    case.got = await _expect_refusal(lambda: _login(env, "observer", expired))

    # 5. Certificate whose SubjectAltName URI is not the client's ApplicationUri.
    wrong_uri = make_client_certificate(tmp_path / "wrong-uri", uri="urn:someone:else")
    _cli(deployment, "pki", "trust", str(wrong_uri.cert))
    impostor = ClientCertificate(wrong_uri.cert, wrong_uri.key, uri="urn:qualitybridge:test-client")
    case = matrix.add(
        Case(
            "connect",
            "observer",
            "certificate URI ≠ ApplicationUri (trusted)",
            "BadCertificateUriInvalid",
            audit_action="CreateSession",
            audit_thumbprint=thumbprint_of(wrong_uri.cert),
        )
    )
    case.got = await _expect_refusal(lambda: _login(env, "observer", impostor))

    # 6. Wrong password.
    case = matrix.add(
        Case(
            "connect",
            "quality",
            "wrong password",
            "BadUserAccessDenied",
            audit_action="ActivateSession",
            audit_user="quality",
        )
    )
    case.got = await _expect_refusal(lambda: _login(env, "quality", password="not-the-password"))

    failed = [c for c in matrix.cases if c.group == "connect" and not c.passed]
    assert not failed, "\n" + matrix.render()


def thumbprint_of(path: Path) -> str:
    from cryptography import x509

    return str(thumbprint(x509.load_der_x509_certificate(path.read_bytes())))


def _certificate(folder: Path, **validity: datetime.datetime) -> ClientCertificate:
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = make_self_signed_certificate("urn:qualitybridge:test-client", "old client", ["localhost"], **validity)
    (folder / "client.der").write_bytes(cert)
    (folder / "client.pem").write_bytes(key)
    return ClientCertificate(folder / "client.der", folder / "client.pem")


async def _login(
    env: Env, user: str, certificate: ClientCertificate | None = None, password: str | None = None
) -> None:
    account = env.accounts[user]
    async with secure_session(
        env.deployment.endpoint,
        certificate or env.certificate(),
        account.name,
        password or account.password,
        request_timeout=REFUSED_TIMEOUT,
    ):
        pass


async def _none_channel_login(deployment: Deployment, account: Account) -> str:
    """Talk like a hostile client: a None secure channel, below asyncua's client-side endpoint check."""
    client = Client(deployment.endpoint, timeout=REFUSED_TIMEOUT)
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
        token = ua.UserNameIdentityToken(
            PolicyId="username", UserName=account.name, Password=account.password.encode("utf-8")
        )
        try:
            await client.uaclient.activate_session(ua.ActivateSessionParameters(UserIdentityToken=token))
        except ua.uaerrors.UaStatusCodeError as exc:
            return _status_name(exc.code)
        return "Good"
    finally:
        client.disconnect_socket()


# ---- role × method / write ----------------------------------------------------------------------------


async def _methods(client: Client, idx: int) -> list[tuple[str, ua.NodeId]]:
    bridge = client.get_node(ua.NodeId("QualityBridge", idx))
    methods = await bridge.get_children(refs=ua.ObjectIds.HasComponent, nodeclassmask=ua.NodeClass.Method)
    return sorted([((await m.read_browse_name()).Name, m.nodeid) for m in methods])


async def _report_arguments(client: Client, idx: int) -> list[ua.Variant]:
    operations = await client.get_node(ua.NodeId(f"Order/{ORDER}.Operations", idx)).get_children()
    operation_no = (await operations[0].read_browse_name()).Name
    chars = await client.get_node(ua.NodeId(f"Order/{ORDER}/Op/{operation_no}.Characteristics", idx)).get_children()
    characteristic = (await chars[0].read_browse_name()).Name
    base = f"Order/{ORDER}/Op/{operation_no}/Char/{characteristic}"
    nominal = await client.get_node(ua.NodeId(f"{base}.Nominal", idx)).read_value()
    strings = ua.VariantType.String
    return [
        ua.Variant(ORDER, strings),
        ua.Variant(operation_no, strings),
        ua.Variant(characteristic, strings),
        ua.Variant(float(nominal), ua.VariantType.Double),
        ua.Variant("", strings),  # replaced by a gauge that fits
        ua.Variant("SN-MATRIX", strings),
        ua.Variant(datetime.datetime.now(datetime.UTC), ua.VariantType.DateTime),
        ua.Variant(f"matrix-{uuid.uuid4()}", strings),
    ]


async def _fitting_gauge(
    env: Env, idx: int, bridge: ua.NodeId, method_id: ua.NodeId, arguments: list[ua.Variant]
) -> ua.Variant:
    """A gauge the characteristic accepts (valid calibration, right kind): the first one Admin can report with."""
    async with env.session("admin") as client:
        gauges = await client.get_node(ua.NodeId("QualityBridge.TestEquipment", idx)).get_children()
        tried = {}
        for gauge in gauges:
            gauge_id = ua.Variant((await gauge.read_browse_name()).Name, ua.VariantType.String)
            attempt = list(arguments)
            attempt[4] = gauge_id
            attempt[7] = ua.Variant(f"matrix-probe-{uuid.uuid4()}", ua.VariantType.String)
            tried[gauge_id.Value] = await _call(client, bridge, method_id, attempt)
            if tried[gauge_id.Value] == "Good":
                return gauge_id
    raise AssertionError(f"no gauge fits order {ORDER}: {tried}")


async def _call(client: Client, object_id: ua.NodeId, method_id: ua.NodeId, arguments: list[ua.Variant]) -> str:
    request = ua.CallMethodRequest(ObjectId=object_id, MethodId=method_id, InputArguments=arguments)
    try:
        (result,) = await client.uaclient.call([request])
    except ua.uaerrors.UaStatusCodeError as exc:  # refused for the whole request (service level)
        return _status_name(exc.code)
    return _status_name(result.StatusCode.value)


def _expected_for_method(account: Account, method: str, order_work_centre: str | None) -> str:
    """Documented outcome; `order_work_centre` None when called without arguments (no order to check against)."""
    assert method in METHOD_PERMISSIONS, (
        f"QualityBridge.{method} is not in server/permissions.py METHOD_PERMISSIONS: its permission is undocumented"
    )
    permitted = METHOD_PERMISSIONS[method] in ROLE_PERMISSIONS[account.role]
    if permitted and order_work_centre and account.work_centres and order_work_centre not in account.work_centres:
        permitted = False
    return "allowed" if permitted else "BadUserAccessDenied"


async def _start_order_if_possible(env: Env, idx_methods: list[tuple[str, ua.NodeId]], bridge: ua.NodeId) -> None:
    """Reports may need a Running order; StartOrder (if the server has it) as Admin, outcome irrelevant."""
    start = dict(idx_methods).get("StartOrder")
    if start is None:
        return
    async with env.session("admin") as client:
        await _call(client, bridge, start, [ua.Variant(ORDER, ua.VariantType.String)])


async def test_every_role_and_method_and_write(env: Env) -> None:
    deployment, matrix = env.deployment, env.matrix
    async with env.session("admin") as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        methods = await _methods(client, idx)
        work_centre = await _order_work_centre(client, idx)
        report_arguments = await _report_arguments(client, idx)
        limit_node = ua.NodeId(
            f"Order/{ORDER}/Op/{report_arguments[1].Value}/Char/{report_arguments[2].Value}.UpperLimit", idx
        )
        upper_before = await client.get_node(limit_node).read_value()
    bridge = ua.NodeId("QualityBridge", idx)
    assert "ReportMeasurement" in dict(methods)
    await _start_order_if_possible(env, methods, bridge)
    report_arguments[4] = await _fitting_gauge(env, idx, bridge, dict(methods)["ReportMeasurement"], report_arguments)

    order = ["observer", "machine1", "machine-here", "machine-away", "operator", "quality", "admin"]
    for user in order:
        account = env.accounts[user]
        results_before = await deployment.stored_result_count()
        async with env.session(user) as client:
            for method, method_id in methods:
                # ReportMeasurement with valid arguments shows the real effect, work-centre restriction included.
                # The other methods are called without arguments: that exercises the role check (made before the
                # arguments are parsed) and changes nothing; their work-centre check needs an order and is not hit.
                if method == "ReportMeasurement":
                    arguments = list(report_arguments)
                    arguments[7] = ua.Variant(f"matrix-{user}-{uuid.uuid4()}", ua.VariantType.String)
                    expected = _expected_for_method(account, method, work_centre)
                    expected = "Good" if expected == "allowed" else expected
                else:
                    arguments = []
                    expected = _expected_for_method(account, method, None)
                case = matrix.add(
                    Case(
                        account.role.value,
                        user,
                        f"call {method}",
                        expected,
                        audit_action=f"Call {method}",
                        audit_user=user,
                        audit_node=method_id.to_string(),
                    )
                )
                case.got = await _call(client, bridge, method_id, arguments)
            write_expected = "BadUserAccessDenied"  # every QualityBridge variable is read-only (ERP master data)
            case = matrix.add(
                Case(
                    account.role.value,
                    user,
                    "write UpperLimit",
                    write_expected,
                    audit_action="Write",
                    audit_user=user,
                    audit_node=f"{limit_node.to_string()} Value",
                )
            )
            try:
                await client.get_node(limit_node).write_value(ua.Variant(upper_before + 1, ua.VariantType.Double))
                case.got = "Good"
            except ua.uaerrors.UaStatusCodeError as exc:
                case.got = _status_name(exc.code)
            case.what += " (service allowed)" if SERVICE_PERMISSIONS[account.role] >= WRITE_REQUESTS else ""
            assert await client.get_node(limit_node).read_value() == upper_before
        if account.role is Role.OBSERVER:
            # An Observer changes nothing: no result stored, no limit changed.
            assert await deployment.stored_result_count() == results_before

    failed = [c for c in matrix.cases if not c.passed]
    assert not failed, "\n" + matrix.render()


# ---- the audit log has every case -------------------------------------------------------------------------


def _audit_entries(deployment: Deployment) -> list[AuditEntry]:
    async def read() -> list[AuditEntry]:
        engine = create_engine(deployment.store_url)
        try:
            return await AuditLogStore(engine).entries(limit=100_000)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _find(entries: list[AuditEntry], case: Case) -> AuditEntry | None:
    for entry in reversed(entries):
        if entry.action != case.audit_action or entry.status_name != case.got:
            continue
        if case.audit_user is not None and entry.user_name != case.audit_user:
            continue
        if case.audit_thumbprint is not None and entry.client_thumbprint != case.audit_thumbprint:
            continue
        if case.audit_node is not None and entry.node != case.audit_node:
            continue
        return entry
    return None


async def test_audit_log_shows_every_case_with_its_status(env: Env) -> None:
    matrix = env.matrix
    assert matrix.cases, "run with the matrix tests before this one"
    deadline = time.monotonic() + 10
    while True:
        entries = await asyncio.to_thread(_audit_entries, env.deployment)
        missing = [case for case in matrix.cases if _find(entries, case) is None]
        if not missing or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    for case in matrix.cases:
        entry = _find(entries, case)
        case.audited = f"#{entry.id} {entry.status_name}" if entry else "MISSING"
    admin_changes = [e for e in entries if e.kind.value == "admin" and e.action in ("users add", "pki trust")]
    assert len(admin_changes) >= 4 + 3, [e.action for e in admin_changes]
    report = matrix.render()
    (env.out_dir / "security-matrix.txt").write_text(report + "\n", encoding="utf-8")
    print(f"\nSecurity matrix (also in {env.out_dir / 'security-matrix.txt'}):\n{report}")
    assert not missing, "\n" + report
    revealing = [e for e in entries if e.arguments and any(a.password in e.arguments for a in env.accounts.values())]
    assert not revealing, "passwords must never reach the audit log"
