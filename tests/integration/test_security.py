"""Security foundations against a real asyncua server and client on loopback."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_asyncio
from asyncua import Client, Server, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from qualitybridge.server.pki import (
    PkiLayout,
    TrustListValidator,
    ensure_own_certificate,
    list_certificates,
    make_self_signed_certificate,
    thumbprint,
    trust_certificate,
)
from qualitybridge.server.security.access import caller
from qualitybridge.server.security.identity import (
    PasswordUserManager,
    QualityBridgeUser,
    Role,
    UserAccount,
    hash_password,
    verify_password,
)
from qualitybridge.server.security.setup import apply_security

# One server for the whole module: starting and stopping asyncua costs seconds each time.
module_loop = pytest.mark.asyncio(loop_scope="module")

SERVER_URI = "urn:qualitybridge:test:server"
CLIENT_URI = "urn:qualitybridge:test:client"
NAMESPACE = "urn:qualitybridge:test"
# PasswordUserManager never looks at asyncua's InternalServer argument.
NO_SERVER = cast(Any, None)
PASSWORDS = {"qe": "qe-secret", "watcher": "watch-secret"}
# Older asyncua clients waited for a response that never came on refused certificates (asyncua #1254);
# 2.1 reports the status code, a short timeout keeps the test fast should that regress.
REFUSED_CLIENT_TIMEOUT = 1.5


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    layout: PkiLayout
    server: Server
    method_parent: ua.NodeId
    method: ua.NodeId


@dataclass
class ClientCert:
    cert: Path
    key: Path

    @property
    def thumbprint(self) -> str:
        return str(thumbprint(x509.load_der_x509_certificate(self.cert.read_bytes())))


def _write_client_cert(folder: Path, name: str, **validity: datetime.datetime) -> ClientCert:
    cert_der, key_pem = make_self_signed_certificate(CLIENT_URI, name, ["localhost"], **validity)
    cert_path, key_path = folder / f"{name}.der", folder / f"{name}.pem"
    cert_path.write_bytes(cert_der)
    key_path.write_bytes(key_pem)
    return ClientCert(cert_path, key_path)


@pytest.fixture(scope="module")
def accounts() -> list[UserAccount]:
    return [
        UserAccount("qe", Role.QUALITY_ENGINEER, hash_password(PASSWORDS["qe"]), ("WC-10",)),
        UserAccount("watcher", Role.OBSERVER, hash_password(PASSWORDS["watcher"])),
    ]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running(
    tmp_path_factory: pytest.TempPathFactory, accounts: list[UserAccount]
) -> AsyncIterator[RunningServer]:
    layout = PkiLayout(tmp_path_factory.mktemp("server") / "pki")
    port = _free_port()
    url = f"opc.tcp://127.0.0.1:{port}"
    server = Server()
    await server.init()
    server.set_endpoint(url)
    await apply_security(
        server, layout=layout, application_uri=SERVER_URI, hostnames=["127.0.0.1", "localhost"], accounts=accounts
    )
    idx = await server.register_namespace(NAMESPACE)
    parent = await server.nodes.objects.add_object(idx, "Probe")

    async def who_am_i(parent_id: ua.NodeId) -> list[ua.Variant]:
        await asyncio.sleep(0)  # caller() must survive a suspension inside the handler
        user = caller()
        role = user.account_role.value if user and user.account_role else ""
        name = user.name if user and user.name else ""
        return [ua.Variant(name, ua.VariantType.String), ua.Variant(role, ua.VariantType.String)]

    method = await parent.add_method(idx, "WhoAmI", who_am_i, [], [ua.VariantType.String, ua.VariantType.String])
    await server.start()
    try:
        yield RunningServer(url, layout, server, parent.nodeid, method.nodeid)
    finally:
        await server.stop()


async def _secure_client(
    running: RunningServer, cert: ClientCert, user: str | None, password: str | None, client_timeout: float = 4
) -> Client:
    client = Client(running.url, timeout=client_timeout)
    client.application_uri = CLIENT_URI
    await client.set_security(
        SecurityPolicyBasic256Sha256,
        str(cert.cert),
        str(cert.key),
        server_certificate=str(running.layout.own_certificate_path),
        mode=ua.MessageSecurityMode.SignAndEncrypt,
    )
    if user is not None:
        client.set_user(user)
    if password is not None:
        client.set_password(password)
    return client


@pytest.fixture
def trusted_cert(running: RunningServer, tmp_path: Path) -> ClientCert:
    cert = _write_client_cert(tmp_path, "trusted-client")
    trust_certificate(running.layout, str(cert.cert))
    return cert


@module_loop
async def test_signed_and_encrypted_login_calls_method_as_that_user(
    running: RunningServer, trusted_cert: ClientCert
) -> None:
    client = await _secure_client(running, trusted_cert, "qe", PASSWORDS["qe"])
    async with client:
        result = await client.get_node(running.method_parent).call_method(running.method)
    assert result == ["qe", Role.QUALITY_ENGINEER.value]


@module_loop
async def test_observer_may_read_but_not_call(running: RunningServer, trusted_cert: ClientCert) -> None:
    client = await _secure_client(running, trusted_cert, "watcher", PASSWORDS["watcher"])
    async with client:
        assert await client.nodes.server_state.read_value() == ua.ServerState.Running
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await client.get_node(running.method_parent).call_method(running.method)


@module_loop
async def test_observer_may_not_write(running: RunningServer, trusted_cert: ClientCert) -> None:
    client = await _secure_client(running, trusted_cert, "watcher", PASSWORDS["watcher"])
    async with client:
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await client.get_node(running.method_parent).write_attribute(
                ua.AttributeIds.DisplayName, ua.DataValue(ua.Variant(ua.LocalizedText("x")))
            )


@module_loop
async def test_wrong_password_refused(running: RunningServer, trusted_cert: ClientCert) -> None:
    client = await _secure_client(running, trusted_cert, "qe", "not-the-password")
    with pytest.raises(ua.uaerrors.BadUserAccessDenied):
        await client.connect()
    await client.disconnect()


@module_loop
async def test_anonymous_refused_by_default(running: RunningServer, trusted_cert: ClientCert) -> None:
    client = await _secure_client(running, trusted_cert, None, None)
    with pytest.raises(ua.uaerrors.BadIdentityTokenRejected):
        await client.connect()
    await client.disconnect()


@module_loop
async def test_security_none_refused_by_default(running: RunningServer) -> None:
    endpoints = await running.server.get_endpoints()
    assert all(ep.SecurityMode != ua.MessageSecurityMode.None_ for ep in endpoints)
    # asyncua's server accepts a None secure channel even without a None endpoint, and its client would stop
    # at the endpoint check; so talk to the server the way a hostile client would, below that check.
    client = Client(running.url, timeout=2)
    await client.connect_socket()
    try:
        await client.send_hello()
        await client.open_secure_channel()
        await client.uaclient.create_session(
            ua.CreateSessionParameters(
                ClientDescription=ua.ApplicationDescription(
                    ApplicationUri=CLIENT_URI, ApplicationType=ua.ApplicationType.Client
                ),
                ClientNonce=b"n" * 32,
                EndpointUrl=running.url,
                SessionName="none-channel-probe",
                RequestedSessionTimeout=10_000,
            )
        )
        token = ua.UserNameIdentityToken(PolicyId="username", UserName="qe", Password=PASSWORDS["qe"].encode("utf-8"))
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await client.uaclient.activate_session(ua.ActivateSessionParameters(UserIdentityToken=token))
    finally:
        client.disconnect_socket()


@module_loop
async def test_untrusted_cert_is_rejected_then_trusted_without_restart(running: RunningServer, tmp_path: Path) -> None:
    cert = _write_client_cert(tmp_path, "newcomer")
    rejected_file = running.layout.rejected_certs / f"{cert.thumbprint}.der"

    client = await _secure_client(running, cert, "qe", PASSWORDS["qe"], client_timeout=REFUSED_CLIENT_TIMEOUT)
    with pytest.raises((ua.uaerrors.BadCertificateUntrusted, asyncio.TimeoutError)):
        await client.connect()
    await client.disconnect()
    assert rejected_file.read_bytes() == cert.cert.read_bytes()
    assert cert.thumbprint in [info.thumbprint for info in list_certificates(running.layout)["rejected"]]

    trusted_path = trust_certificate(running.layout, cert.thumbprint.upper())
    assert trusted_path.parent == running.layout.trusted_certs
    assert not rejected_file.exists()

    client = await _secure_client(running, cert, "qe", PASSWORDS["qe"])
    async with client:
        assert await client.get_node(running.method_parent).call_method(running.method) == [
            "qe",
            Role.QUALITY_ENGINEER.value,
        ]


@module_loop
async def test_expired_trusted_cert_refused(
    running: RunningServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    cert = _write_client_cert(
        tmp_path, "expired", not_before=now - datetime.timedelta(days=30), not_after=now - datetime.timedelta(days=1)
    )
    trust_certificate(running.layout, str(cert.cert))
    client = await _secure_client(running, cert, "qe", PASSWORDS["qe"], client_timeout=REFUSED_CLIENT_TIMEOUT)
    with (
        caplog.at_level(logging.WARNING, logger="qualitybridge.server.pki"),
        pytest.raises((ua.uaerrors.BadCertificateTimeInvalid, asyncio.TimeoutError)),
    ):
        await client.connect()
    await client.disconnect()
    refusals = [
        record.getMessage()
        for record in caplog.records
        if record.name == "qualitybridge.server.pki" and record.levelno == logging.WARNING
    ]
    assert any("BadCertificateTimeInvalid" in msg and cert.thumbprint in msg for msg in refusals), refusals


@module_loop
async def test_validator_checks_uri_and_time(tmp_path: Path) -> None:
    layout = PkiLayout(tmp_path / "pki")
    layout.ensure()
    validator = TrustListValidator(layout)
    description = ua.ApplicationDescription(ApplicationUri=CLIENT_URI)
    cert = _write_client_cert(tmp_path, "c")
    certificate = x509.load_der_x509_certificate(cert.cert.read_bytes())

    with pytest.raises(ServiceError) as untrusted:
        await validator(certificate, description)
    assert untrusted.value.code == ua.StatusCodes.BadCertificateUntrusted

    trust_certificate(layout, str(cert.cert))
    await validator(certificate, description)  # trusted now, picked up without a new validator

    with pytest.raises(ServiceError) as wrong_uri:
        await validator(certificate, ua.ApplicationDescription(ApplicationUri="urn:someone:else"))
    assert wrong_uri.value.code == ua.StatusCodes.BadCertificateUriInvalid


@module_loop
async def test_trust_unknown_thumbprint_names_it(tmp_path: Path) -> None:
    layout = PkiLayout(tmp_path / "pki")
    with pytest.raises(FileNotFoundError, match="deadbeef"):
        trust_certificate(layout, "deadbeef")


def test_password_hash_roundtrip() -> None:
    encoded = hash_password("s3cret")
    scheme, n, r, p, _salt, _digest = encoded.split("$")
    assert (scheme, n, r, p) == ("scrypt", str(2**14), "8", "1")
    assert verify_password("s3cret", encoded)
    assert not verify_password("s3cret ", encoded)
    assert not verify_password("s3cret", "scrypt$garbage")
    assert hash_password("s3cret") != encoded  # salted


def test_user_manager_rules(accounts: list[UserAccount]) -> None:
    manager = PasswordUserManager(accounts)
    channel_cert = b"\x30\x82"  # any non-empty DER marks a secured channel
    user = manager.get_user(NO_SERVER, "qe", PASSWORDS["qe"], channel_cert)
    assert isinstance(user, QualityBridgeUser)
    assert user.account_role is Role.QUALITY_ENGINEER
    assert user.work_centres == ("WC-10",)
    assert manager.get_user(NO_SERVER, "qe", PASSWORDS["qe"], b"") is None
    assert manager.get_user(NO_SERVER, "nobody", "x", channel_cert) is None
    assert manager.get_user(NO_SERVER, None, None, channel_cert) is None
    anonymous = PasswordUserManager(accounts, allow_anonymous=True).get_user(
        NO_SERVER,
        None,
        None,
        channel_cert,
    )
    assert isinstance(anonymous, QualityBridgeUser)
    assert anonymous.account_role is None
    manager.replace_accounts([])
    assert manager.get_user(NO_SERVER, "qe", PASSWORDS["qe"], channel_cert) is None


def test_own_certificate_contents_and_reuse(tmp_path: Path) -> None:
    layout = PkiLayout(tmp_path / "pki")
    cert_path, key_path = ensure_own_certificate(layout, SERVER_URI, ["qb-host", "10.1.2.3"])
    certificate = x509.load_der_x509_certificate(cert_path.read_bytes())
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [SERVER_URI]
    assert set(san.get_values_for_type(x509.DNSName)) == {"qb-host", "10.1.2.3"}
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.1.2.3")]
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert usage.content_commitment
    assert usage.key_encipherment
    assert usage.data_encipherment
    assert usage.key_cert_sign
    extended = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(extended) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert certificate.public_key().key_size == 2048  # type: ignore[union-attr]
    assert key_path.stat().st_mode & 0o777 == 0o600

    assert ensure_own_certificate(layout, SERVER_URI, ["qb-host"]) == (cert_path, key_path)
    assert cert_path.read_bytes() == certificate.public_bytes(serialization.Encoding.DER)

    ensure_own_certificate(layout, "urn:qualitybridge:renamed", ["qb-host"])
    renewed = x509.load_der_x509_certificate(cert_path.read_bytes())
    renewed_san = renewed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert renewed_san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:qualitybridge:renamed"]
