"""The ceiling: a bare asyncua server with one no-op method, secured like QualityBridge, nothing else.

Started by bench/report_throughput.py in a process of its own; prints 'bare server ready' when listening.
Usage: python bench/bare_server.py PORT CERT_DIR CLIENT_CERT
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from asyncua import Server, ua
from asyncua.crypto.permission_rules import SimpleRoleRuleset
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.server.user_managers import UserManager

from qualitybridge.server.pki import make_self_signed_certificate


class _OneUser(UserManager):
    def get_user(self, iserver, username=None, password=None, certificate=None):  # type: ignore[no-untyped-def]
        from asyncua.crypto.permission_rules import User, UserRole

        return User(role=UserRole.User, name=username) if username == "bench" and password == "bench-secret" else None


URI = "urn:bench:bare-asyncua"


def prepare(cert_dir: Path, client_cert: Path) -> Path:
    """Own certificate and a trust list holding the benchmark client's certificate."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    certificate, key = make_self_signed_certificate(URI, "bare asyncua", ["localhost"])
    (cert_dir / "server.der").write_bytes(certificate)
    (cert_dir / "server.pem").write_bytes(key)
    trusted = cert_dir / "trusted"
    trusted.mkdir(exist_ok=True)
    (trusted / "client.der").write_bytes(client_cert.read_bytes())
    return trusted


async def main(port: int, cert_dir: Path, trusted: Path) -> None:
    uri = URI
    server = Server(user_manager=_OneUser())
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/bare")
    await server.set_application_uri(uri)
    server.set_security_policy(
        [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt], permission_ruleset=SimpleRoleRuleset()
    )
    server.set_identity_tokens([ua.UserNameIdentityToken])
    await server.load_certificate(str(cert_dir / "server.der"))
    await server.load_private_key(str(cert_dir / "server.pem"))
    store = TrustStore([trusted], [])
    await store.load()
    server.set_certificate_validator(CertificateValidator(CertificateValidatorOptions.BASIC_VALIDATION, store))
    idx = await server.register_namespace("urn:bench")
    objects = server.nodes.objects

    async def noop(_parent: ua.NodeId, *_args: ua.Variant) -> list[ua.Variant]:
        return [ua.Variant("ok", ua.VariantType.String)]

    await objects.add_method(ua.NodeId("Noop", idx), "Noop", noop, [ua.VariantType.String], [ua.VariantType.String])

    async def noop_shaped(_parent: ua.NodeId, *_args: ua.Variant) -> list[ua.Variant]:
        return [ua.Variant("ok", ua.VariantType.String), ua.Variant(0, ua.VariantType.Int32)]

    # ReportMeasurement's arguments and outputs, doing nothing: what the stack carries for calls of that shape.
    _s, _d = ua.VariantType.String, ua.VariantType.Double
    shape = [_s, _s, _s, _d, _s, _s, ua.VariantType.DateTime, _s]
    outputs = [ua.VariantType.String, ua.VariantType.Int32]
    await objects.add_method(ua.NodeId("NoopShaped", idx), "NoopShaped", noop_shaped, shape, outputs)
    logging.getLogger("asyncua").setLevel(logging.WARNING)
    # The deployment's test certificate names the loopback address, not this machine's hostname, which asyncua
    # checks when the server starts: one warning per run, printed between the bench's figures.
    logging.getLogger("asyncua.crypto.uacrypto").setLevel(logging.ERROR)
    async with server:
        print("bare server ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    trust_list = prepare(Path(sys.argv[2]), Path(sys.argv[3]))
    asyncio.run(main(int(sys.argv[1]), Path(sys.argv[2]), trust_list))
