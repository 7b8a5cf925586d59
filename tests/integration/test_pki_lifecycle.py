"""PKI beyond the basics: a plant CA, CRLs, reject/remove, a CA-signed own certificate and renewal while running.

One in-process asyncua server (secured by `apply_security`) for the module; clients are real asyncua clients.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from asyncua import Client, Server, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography import x509

from qualitybridge.server.pki import (
    PkiLayout,
    TrustListValidator,
    describe_own_certificate,
    ensure_own_certificate,
    install_own_certificate,
    list_certificates,
    make_self_signed_certificate,
    own_certificate_warnings,
    reject_certificate,
    remove_certificate,
    thumbprint,
    trust_certificate,
)
from qualitybridge.server.security.identity import Role, UserAccount, hash_password
from qualitybridge.server.security.setup import ServerSecurity, apply_security
from tests.harness import free_port, standard_server
from tests.pki_helpers import IssuedCertificate, TestCa

module_loop = pytest.mark.asyncio(loop_scope="module")

SERVER_URI = "urn:qualitybridge:test:pki-server"
CLIENT_URI = "urn:qualitybridge:test:pki-client"
PASSWORD = "observer-secret"
REFUSED_TIMEOUT = 2.0


@dataclass
class Env:
    url: str
    layout: PkiLayout
    server: Server
    security: ServerSecurity


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    layout = PkiLayout(tmp_path_factory.mktemp("pki-server") / "pki")
    url = f"opc.tcp://127.0.0.1:{free_port()}"
    server = await standard_server()
    server.set_endpoint(url)
    security = await apply_security(
        server,
        layout=layout,
        application_uri=SERVER_URI,
        hostnames=["127.0.0.1", "localhost"],
        accounts=[UserAccount("observer", Role.OBSERVER, hash_password(PASSWORD))],
    )
    await server.start()
    await security.started()
    try:
        yield Env(url, layout, server, security)
    finally:
        await security.stopping()
        await server.stop()


async def _connect(env: Env, cert: Path, key: Path, *, request_timeout: float = 4) -> Client:
    client = Client(env.url, timeout=request_timeout)
    client.application_uri = CLIENT_URI
    await client.set_security(
        SecurityPolicyBasic256Sha256, str(cert), str(key), mode=ua.MessageSecurityMode.SignAndEncrypt
    )
    client.set_user("observer")
    client.set_password(PASSWORD)
    return client


async def _refused_with(env: Env, cert: Path, key: Path) -> None:
    client = await _connect(env, cert, key, request_timeout=REFUSED_TIMEOUT)
    try:
        await client.connect()
    finally:
        await client.disconnect()


async def _served_thumbprint(env: Env, cert: Path, key: Path) -> str:
    """The server certificate a new client sees in the endpoints and then talks to."""
    client = await _connect(env, cert, key)
    async with client:
        endpoints = await client.get_endpoints()
        peer = client.security_policy.peer_certificate
    served = {thumbprint(x509.load_der_x509_certificate(endpoint.ServerCertificate)) for endpoint in endpoints}
    assert peer is not None
    assert served == {thumbprint(x509.load_der_x509_certificate(peer))}
    return served.pop()


@pytest.fixture(scope="module")
def plant_ca() -> TestCa:
    return TestCa.create("Plant CA")


def _client_files(issued: IssuedCertificate, folder: Path, name: str) -> tuple[Path, Path]:
    return issued.write(folder, name)


@module_loop
async def test_ca_signed_client_accepted_once_its_ca_is_trusted(env: Env, plant_ca: TestCa, tmp_path: Path) -> None:
    cert, key = _client_files(plant_ca.issue("cmm-07", CLIENT_URI), tmp_path, "cmm-07")
    with pytest.raises((ua.uaerrors.BadCertificateUntrusted, asyncio.TimeoutError)):
        await _refused_with(env, cert, key)
    (env.layout.trusted_certs / "plant-ca.der").write_bytes(plant_ca.der)
    async with await _connect(env, cert, key) as client:
        assert await client.nodes.server_state.read_value() == ua.ServerState.Running


@module_loop
async def test_intermediate_ca_from_issuer_folder_completes_the_chain(
    env: Env, plant_ca: TestCa, tmp_path: Path
) -> None:
    (env.layout.trusted_certs / "plant-ca.der").write_bytes(plant_ca.der)
    line_ca = TestCa.create("Line 3 CA", issuer=plant_ca)
    cert, key = _client_files(line_ca.issue("gauge-pc", CLIENT_URI), tmp_path, "gauge-pc")
    with pytest.raises((ua.uaerrors.BadCertificateUntrusted, asyncio.TimeoutError)):
        await _refused_with(env, cert, key)  # the intermediate is unknown: no chain to the plant CA
    (env.layout.issuer_certs / "line3-ca.der").write_bytes(line_ca.der)
    async with await _connect(env, cert, key) as client:
        assert await client.nodes.server_state.read_value() == ua.ServerState.Running


@module_loop
async def test_crl_of_a_trusted_ca_revokes_its_certificate(env: Env, plant_ca: TestCa, tmp_path: Path) -> None:
    (env.layout.trusted_certs / "plant-ca.der").write_bytes(plant_ca.der)
    stolen = plant_ca.issue("stolen-laptop", CLIENT_URI)
    cert, key = _client_files(stolen, tmp_path, "stolen")
    async with await _connect(env, cert, key) as client:
        assert await client.nodes.server_state.read_value() == ua.ServerState.Running
    plant_ca.revoke(stolen)
    (env.layout.trusted_crl / "plant-ca.crl").write_bytes(plant_ca.crl_der())
    with pytest.raises((ua.uaerrors.BadCertificateRevoked, asyncio.TimeoutError)):
        await _refused_with(env, cert, key)
    validator = TrustListValidator(env.layout)
    with pytest.raises(ServiceError) as refused:
        validator.validate(stolen.certificate, ua.ApplicationDescription(ApplicationUri=CLIENT_URI))
    assert refused.value.code == ua.StatusCodes.BadCertificateRevoked
    # Other certificates of the same CA stay good.
    validator.validate(
        plant_ca.issue("honest", CLIENT_URI).certificate, ua.ApplicationDescription(ApplicationUri=CLIENT_URI)
    )


def test_reject_and_remove(tmp_path: Path) -> None:
    layout = PkiLayout(tmp_path / "pki")
    cert_der, _ = make_self_signed_certificate(CLIENT_URI, "panel", ["localhost"])
    (tmp_path / "panel.der").write_bytes(cert_der)
    fingerprint = thumbprint(x509.load_der_x509_certificate(cert_der))
    trust_certificate(layout, str(tmp_path / "panel.der"))

    moved = reject_certificate(layout, fingerprint.upper())
    assert moved == layout.rejected_certs / f"{fingerprint}.der"
    listing = list_certificates(layout)
    assert [info.thumbprint for info in listing["rejected"]] == [fingerprint]
    assert listing["trusted"] == []
    with pytest.raises(FileNotFoundError, match="no trusted certificate"):
        reject_certificate(layout, fingerprint)

    assert remove_certificate(layout, fingerprint) == [moved]
    assert not any(list_certificates(layout).values())
    with pytest.raises(FileNotFoundError):
        remove_certificate(layout, fingerprint)


def test_install_own_refuses_what_the_server_could_not_use(tmp_path: Path, plant_ca: TestCa) -> None:
    layout = PkiLayout(tmp_path / "pki")
    good = plant_ca.issue("qb-host", SERVER_URI)
    cert, key = good.write(tmp_path, "good", pem=True)
    _, other_key = plant_ca.issue("qb-host", SERVER_URI).write(tmp_path, "other")
    with pytest.raises(ValueError, match="does not belong"):
        install_own_certificate(layout, cert, other_key, application_uri=SERVER_URI)
    with pytest.raises(ValueError, match="lack the server's application URI"):
        install_own_certificate(layout, cert, key, application_uri="urn:somewhere:else")
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=400)
    expired_cert, expired_key = plant_ca.issue("qb-host", SERVER_URI, not_before=old).write(tmp_path, "expired")
    with pytest.raises(ValueError, match="not now"):
        install_own_certificate(layout, expired_cert, expired_key, application_uri=SERVER_URI)
    assert not layout.own_certificate_path.exists()
    info = install_own_certificate(layout, cert, key, application_uri=SERVER_URI)
    assert (info.thumbprint, info.self_signed) == (good.thumbprint, False)


def test_start_keeps_a_ca_signed_certificate_and_warns_before_it_expires(tmp_path: Path, plant_ca: TestCa) -> None:
    layout = PkiLayout(tmp_path / "pki")
    # The plant's certificate lacks the host name the server would put into a self-signed one: still kept.
    cert, key = plant_ca.issue("qb-host", SERVER_URI, dns_names=("qb-host.plant",), days=40).write(tmp_path, "p")
    install_own_certificate(layout, cert, key, application_uri=SERVER_URI)
    ensure_own_certificate(layout, SERVER_URI, ["localhost", "qb-host"])
    assert describe_own_certificate(layout).issuer == plant_ca.certificate.subject.rfc4514_string()
    assert own_certificate_warnings(layout, SERVER_URI) == []
    in_20_days = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=20)
    (warning,) = own_certificate_warnings(layout, SERVER_URI, now=in_20_days)
    assert "pki install-own" in warning


@module_loop
async def test_self_signed_own_certificate_renewed_while_running(env: Env, tmp_path: Path) -> None:
    client_cert, client_key = _client_files(TestCa.create("C").issue("c", CLIENT_URI), tmp_path, "c")
    trust_certificate(env.layout, str(client_cert))
    before = await _served_thumbprint(env, client_cert, client_key)
    assert await env.security.own_certificate.check() is None  # not due: nothing happens

    in_two_years = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=720)
    assert await env.security.own_certificate.check(now=in_two_years) == "own certificate renewed"
    after = await _served_thumbprint(env, client_cert, client_key)
    assert after != before
    assert after == describe_own_certificate(env.layout).thumbprint
    kept = [p.name for p in env.layout.own_certs.iterdir() if ".replaced-" in p.name]
    assert kept, "the replaced certificate is kept next to the new one"


@module_loop
async def test_plant_ca_certificate_installed_while_running(env: Env, plant_ca: TestCa, tmp_path: Path) -> None:
    client_cert, client_key = _client_files(TestCa.create("C2").issue("c2", CLIENT_URI), tmp_path, "c2")
    trust_certificate(env.layout, str(client_cert))
    plant_signed = plant_ca.issue("qb-host", SERVER_URI, dns_names=("localhost", "127.0.0.1"))
    cert, key = plant_signed.write(tmp_path, "qb-plant", pem=True)
    keeper = env.security.own_certificate
    assert await keeper.check_if_files_changed() is None
    install_own_certificate(env.layout, cert, key, application_uri=SERVER_URI)
    # The security-refresh job (every few seconds) notices the new files and serves them.
    assert await keeper.check_if_files_changed() == "own certificate loaded"
    assert await keeper.check_if_files_changed() is None
    assert await _served_thumbprint(env, client_cert, client_key) == plant_signed.thumbprint
    # A CA-signed certificate is never renewed by the server, however close its end.
    in_a_year = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=360)
    assert await env.security.own_certificate.check(now=in_a_year) is None
    assert describe_own_certificate(env.layout).thumbprint == plant_signed.thumbprint
