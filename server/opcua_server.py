"""Assembling the asyncua server: endpoint, security, the QualityBridge model and its methods."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from asyncua import Server

from qualitybridge.config import LimitsSettings, ServerSettings
from qualitybridge.server.address_space.namespace import QualityBridgeNamespace
from qualitybridge.server.address_space.view import AddressSpaceView
from qualitybridge.server.limits import LimitedServer
from qualitybridge.server.methods.measurement import ReportMeasurementMethod
from qualitybridge.server.pki import PkiLayout
from qualitybridge.server.security.identity import PasswordUserManager, UserAccount
from qualitybridge.server.security.setup import SecurityOptions, ServerSecurity, apply_security
from qualitybridge.services.reporting import ReportingService

__all__ = ["OpcUaFace", "build_opcua_server", "quiet_asyncua_loggers"]


def quiet_asyncua_loggers() -> None:
    """asyncua logs every request at INFO (whole method calls included), which costs a third of throughput."""
    logging.getLogger("asyncua").setLevel(logging.WARNING)


@dataclass
class OpcUaFace:
    server: Server
    namespace: QualityBridgeNamespace
    view: AddressSpaceView
    users: PasswordUserManager
    security: ServerSecurity


async def build_opcua_server(
    settings: ServerSettings,
    pki: PkiLayout,
    accounts: Iterable[UserAccount],
    reporting: ReportingService,
    security_options: SecurityOptions | None = None,
    limits: LimitsSettings | None = None,
) -> OpcUaFace:
    quiet_asyncua_loggers()
    # asyncua's Server with the [limits] enforced (sessions, subscriptions, request rate, message size, logins).
    server = LimitedServer(limits or LimitsSettings())
    await server.init()
    server.set_endpoint(f"opc.tcp://{settings.host}:{settings.port}/{settings.path}")
    server.set_server_name("QualityBridge")
    server.product_uri = "https://qualitybridge.dev"
    server.manufacturer_name = "QualityBridge"
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
    server.link_method(
        server.get_node(namespace.root_child("ReportMeasurement")), ReportMeasurementMethod(reporting).call
    )
    return OpcUaFace(
        server=server,
        namespace=namespace,
        view=AddressSpaceView(server, namespace),
        users=security.users,
        security=security,
    )
