"""The server with `[limits]` enforced: `LimitedServer`, used in place of `asyncua.Server`, and its
`LimitedInternalServer`.

asyncua's own knobs — TCP connections, activation timeout, session timeout cap, total subscriptions, and the
transport limits (message size, chunk count) — are set on the InternalServer and `Server.limits`. The
InternalServer creates a `session.LimitedSession` for each client and counts them (BadTooManySessions at
CreateSession). `LimitedServer.start` repeats asyncua's `Server.start` only to use `transport.GuardedBinaryServer`.
The limits are published in ServerCapabilities so that clients can stay within them.

Given a cache folder, the InternalServer takes the standard address space from its cache (filled and stored on the
first start; address_space.standard_nodes) and keeps every node in a `NodesOnDemand` dict (address_space.node_dict).

asyncua internals: InternalServer subclass (create_session, load_standard_address_space, node_mgt_service, its
limit knobs), Server.start's steps and _policies
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto import uacrypto
from asyncua.crypto.permission_rules import User
from asyncua.server.internal_server import InternalServer
from asyncua.server.internal_session import InternalSession

from qualitybridge.config import LimitsSettings
from qualitybridge.server.address_space.node_dict import NodesOnDemand, OnDemandNodeManagement
from qualitybridge.server.address_space.standard_nodes import StandardNodeCache
from qualitybridge.server.limits import array_limits
from qualitybridge.server.limits.rate import LoginThrottle
from qualitybridge.server.limits.refusal_log import quiet_limit_faults
from qualitybridge.server.limits.session import ANONYMOUS, LimitedSession, client_address
from qualitybridge.server.limits.transport import GuardedBinaryServer, transport_limits

# The package's name, as before it was split into modules: docs/configuration.md and log configurations name it.
_log = logging.getLogger("qualitybridge.server.limits")

# ServerCapabilities.OperationLimits properties that all say: at most max_operations_per_request per request.
_OPERATION_LIMIT_NODES: tuple[int, ...] = (
    ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
    ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerHistoryReadData,
    ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerHistoryReadEvents,
    ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerWrite,
    ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerHistoryUpdateData,
    ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerHistoryUpdateEvents,
    ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerMethodCall,
    ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerBrowse,
    ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerTranslateBrowsePathsToNodeIds,
    ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerNodeManagement,
    ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
)


class LimitedInternalServer(InternalServer):
    """asyncua's InternalServer with the configured limits, creating `LimitedSession`s for clients."""

    def __init__(self, settings: LimitsSettings, standard_nodes_cache: Path | None = None) -> None:
        super().__init__()
        self.limit_settings = settings
        self.standard_nodes_cache = None if standard_nodes_cache is None else StandardNodeCache(standard_nodes_cache)
        # The same service as asyncua's, except that DeleteNodes does not make every node on demand to scan it.
        self.node_mgt_service = OnDemandNodeManagement(self.aspace)
        self.login_throttle = LoginThrottle(
            settings.login_penalty_base_seconds,
            settings.login_penalty_max_seconds,
            settings.login_failure_memory_seconds,
        )
        self._client_sessions: set[LimitedSession] = set()
        # Set while the start loads what method calls need (the stored master data); see hold_calls.
        self._calls_released: asyncio.Event | None = None
        # Below a second: asyncua clients probe their session every second and drop the connection when the probe,
        # which waits behind the held call, is not answered within it. A call held longer was lost to its client and
        # then ran unseen (a report stored, and stored again by a retry without client result id).
        self.calls_wait_seconds = 0.75
        self.calls_waiting = 0
        # asyncua's own knobs, see InternalServer.__init__.
        self.max_connections = settings.max_connections
        self.max_pending_activation_seconds = settings.activation_timeout_seconds
        self.max_pending_messages_per_connection = settings.max_queued_chunks_per_connection
        self.max_session_timeout_ms = settings.max_session_timeout_seconds * 1000
        self.min_session_timeout_ms = min(self.min_session_timeout_ms, self.max_session_timeout_ms)
        self.max_subscriptions = settings.max_sessions * settings.max_subscriptions_per_session

    async def load_standard_address_space(self, shelf_file: Path | None = None) -> None:
        """Namespace 0 from the cache, each node made on first access; filled as asyncua does (and stored for the
        next start) when there is no usable cache."""
        cache = self.standard_nodes_cache
        if cache is None or shelf_file is not None:
            await super().load_standard_address_space(shelf_file)
            return
        nodes = NodesOnDemand.installed_in(self.aspace)
        standard = await asyncio.to_thread(cache.load)
        if standard is not None:
            nodes.add_provider(standard)
            return
        await super().load_standard_address_space()
        # Stored as filled, before asyncua's fixes and settings, which every start applies on top.
        await asyncio.to_thread(
            cache.store, {node_id: dict.__getitem__(nodes, node_id) for node_id in nodes.made_ids()}
        )

    def hold_calls(self) -> None:
        """Clients' method calls wait from now until `release_calls`: the endpoint opens before the stored master
        data is in memory, and a report for an order not loaded yet must wait for it rather than be refused as
        unknown. A call not released within `calls_wait_seconds` is refused (`calls_admitted`). Other connections'
        Browse, Read and subscriptions answer meanwhile; the caller's own connection answers after its call."""
        self._calls_released = asyncio.Event()

    def release_calls(self) -> None:
        if self._calls_released is not None:
            self._calls_released.set()

    async def calls_admitted(self) -> bool:
        """Whether a client's method call may run now: at once outside the start's load, else once released; False
        when the load has not ended within `calls_wait_seconds` (the call is then refused, nothing runs)."""
        released = self._calls_released
        if released is None or released.is_set():
            return True
        self.calls_waiting += 1
        try:
            await asyncio.wait_for(released.wait(), self.calls_wait_seconds)
        except TimeoutError:
            return False
        finally:
            self.calls_waiting -= 1
        return True

    @property
    def client_session_count(self) -> int:
        return len(self._client_sessions)

    def create_session(
        self,
        name: str,
        user: User = ANONYMOUS,
        external: bool = False,
    ) -> InternalSession:
        if not external:
            return super().create_session(name, user, external)
        if len(self._client_sessions) >= self.limit_settings.max_sessions:
            _log.warning(
                "Refused CreateSession from %s with BadTooManySessions: %d sessions open",
                client_address(name),
                len(self._client_sessions),
            )
            raise ServiceError(ua.StatusCodes.BadTooManySessions)
        session = LimitedSession(self, self.aspace, self.subscription_service, name, user=user, external=True)
        self._client_sessions.add(session)
        return session

    def forget_session(self, session: LimitedSession) -> None:
        self._client_sessions.discard(session)


class LimitedServer(Server):
    """asyncua Server enforcing `[limits]`; use it in place of `asyncua.Server`."""

    def __init__(self, settings: LimitsSettings, standard_nodes_cache: Path | None = None) -> None:
        """`standard_nodes_cache`: the folder of the standard address space's cache; None fills it at every start."""
        self.limited_iserver = LimitedInternalServer(settings, standard_nodes_cache)
        super().__init__(iserver=self.limited_iserver)
        quiet_limit_faults()
        array_limits.install(settings.max_array_length)
        self.limit_settings = settings
        self.limits = transport_limits(settings)

    async def init(self, shelf_file: Any = None) -> None:
        await super().init(shelf_file)
        await self._publish_limits()

    async def _publish_limits(self) -> None:
        """Write the limits into ServerCapabilities so clients can stay within them (asyncua writes 10000 there)."""
        settings = self.limit_settings
        operations = ua.ObjectIds
        values = dict.fromkeys(_OPERATION_LIMIT_NODES, settings.max_operations_per_request)
        # OPC UA 1.05 capability properties; written only where asyncua's standard address space has them.
        values.update(
            {
                operations.Server_ServerCapabilities_MaxSessions: settings.max_sessions,
                operations.Server_ServerCapabilities_MaxSubscriptions: self.limited_iserver.max_subscriptions,
                operations.Server_ServerCapabilities_MaxSubscriptionsPerSession: settings.max_subscriptions_per_session,
                operations.Server_ServerCapabilities_MaxMonitoredItems: settings.max_sessions
                * settings.max_monitored_items_per_session,
                operations.Server_ServerCapabilities_MaxMonitoredItemsPerSubscription: (
                    settings.max_monitored_items_per_subscription
                ),
                operations.Server_ServerCapabilities_MaxArrayLength: settings.max_array_length,
            }
        )
        for node_id, value in values.items():
            node = self.get_node(ua.NodeId(ua.Int32(node_id)))
            try:
                await node.write_value(ua.Variant(value, ua.VariantType.UInt32))
            except ua.uaerrors.BadNodeIdUnknown:
                _log.debug("ServerCapabilities node %s not in the address space; not published", node_id)

    async def start(self) -> None:
        # The steps of asyncua 2.1's Server.start, with GuardedBinaryServer in place of BinaryServer; asyncua has
        # no factory for it. tests/e2e/test_limits.py checks both that the guard is active and that the server works.
        if self.iserver.certificate is not None:
            uacrypto.check_certificate(self.iserver.certificate, self._application_uri, socket.gethostname())
        await self._setup_server_nodes()
        await self.iserver.start()
        try:
            address, port = self._get_bind_socket_info()
            self.bserver = GuardedBinaryServer(
                self.iserver,
                address,
                port,
                self.limits,
                settings=self.limit_settings,
            )
            self.bserver.set_policies(self._policies)
            await self.bserver.start()
        except Exception:
            _log.exception("%s error starting server", self)
            await self.iserver.stop()
            raise
