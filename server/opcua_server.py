"""Assembling the asyncua server: endpoint, limits, security and the QualityBridge model (methods are linked by
`methods.linking`, the view is driven by `address_space.publisher`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from qualitybridge.config import LimitsSettings, ServerSettings
from qualitybridge.domain.build import BuildIdentity, installed_build
from qualitybridge.server.address_space.namespace import QualityBridgeNamespace
from qualitybridge.server.address_space.standard_nodes import default_cache_dir
from qualitybridge.server.limits import LimitedServer
from qualitybridge.server.pki import PkiLayout
from qualitybridge.server.security.block_ciphers import install_fast_block_ciphers
from qualitybridge.server.security.identity import PasswordUserManager, UserAccount
from qualitybridge.server.security.message_signatures import install_fast_message_signatures
from qualitybridge.server.security.setup import SecurityOptions, ServerSecurity, apply_security

__all__ = ["OpcUaFace", "build_opcua_server", "quiet_asyncua_loggers"]


def quiet_asyncua_loggers() -> None:
    """asyncua logs every request at INFO (whole method calls included), which costs a third of throughput."""
    logging.getLogger("asyncua").setLevel(logging.WARNING)


@dataclass
class OpcUaFace:
    server: LimitedServer
    namespace: QualityBridgeNamespace
    users: PasswordUserManager
    security: ServerSecurity


async def build_opcua_server(
    settings: ServerSettings,
    pki: PkiLayout,
    accounts: Iterable[UserAccount],
    security_options: SecurityOptions | None = None,
    limits: LimitsSettings | None = None,
    build: BuildIdentity | None = None,
) -> OpcUaFace:
    quiet_asyncua_loggers()
    install_fast_message_signatures()  # every secured message's HMAC in one OpenSSL call (asyncua 2.1.0)
    install_fast_block_ciphers()  # its AES-CBC through one OpenSSL context kept per cipher (asyncua 2.1.0)
    # asyncua's Server with the [limits] enforced (sessions, subscriptions, request rate, message size, logins),
    # its standard address space read from the cache and decoded node by node as clients reach it.
    server = LimitedServer(limits or LimitsSettings(), standard_nodes_cache=default_cache_dir())
    await server.init()
    server.set_endpoint(f"opc.tcp://{settings.host}:{settings.port}/{settings.path}")
    build = build or installed_build()
    server.set_server_name(build.product_name)
    server.product_uri = build.product_uri
    server.manufacturer_name = build.manufacturer_name
    # Server.ServerStatus.BuildInfo: what UaExpert and asset inventories show as the product and its version.
    await server.set_build_info(
        product_uri=build.product_uri,
        manufacturer_name=build.manufacturer_name,
        product_name=build.product_name,
        software_version=build.software_version,
        build_number=build.build_number,
        build_date=build.build_date,
    )
    # ClientAndServer is asyncua's default; QualityBridge only serves.
    server.application_type = server.application_type.Server
    security = await apply_security(
        server,
        layout=pki,
        application_uri=settings.effective_application_uri,
        hostnames=sorted({settings.hostname, "localhost"}),
        accounts=accounts,
        allow_security_none=settings.allow_security_none,
        allow_anonymous_read=settings.allow_anonymous_read,
        options=security_options,
    )
    namespace = await QualityBridgeNamespace.load(server)
    return OpcUaFace(
        server=server,
        namespace=namespace,
        users=security.users,
        security=security,
    )
