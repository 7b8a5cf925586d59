"""Limits against abuse: one client must not be able to starve the others or exhaust the server's memory.

Each limit of `[limits]` (qualitybridge.config.LimitsSettings) is enforced where asyncua 2.1 lets us do so
without patching it:

* asyncua's own knobs — TCP connections, activation timeout, session timeout cap, total subscriptions, and the
  transport limits (message size, chunk count) — are set on the InternalServer and `Server.limits`.
* Per-session limits live in `LimitedSession`, a subclass of asyncua's InternalSession whose service methods
  (the ones UaProcessor calls for each request) check the limit before doing the work. `LimitedInternalServer`
  creates these sessions and counts them (BadTooManySessions at CreateSession).
* `LimitedServer.start` repeats asyncua's `Server.start` only to install a protocol that refuses a chunk whose
  header declares more bytes than `max_chunk_size` *before* buffering it (asyncua buffers a whole chunk, up to
  4 GiB, and checks its size only afterwards), answering BadTcpMessageTooLarge as OPC UA Part 6 says.

Failed logins are slowed down per client address by `LoginThrottle`: the user manager's `get_user` is
synchronous and its scrypt check blocks the event loop, so a client still in its penalty is refused with
BadUserAccessDenied without checking the password at all, and a new CreateSession from that address is answered
only after the penalty (an async wait that blocks nobody else).

Refusals are logged at most once per `_LOG_INTERVAL_SECONDS` per session and kind, with a count, so a flood
cannot turn into a log flood.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from asyncua import Server, ua
from asyncua.common.connection import TransportLimits
from asyncua.common.utils import ServiceError
from asyncua.crypto import uacrypto
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.address_space import AddressSpace
from asyncua.server.binary_server_asyncio import BinaryServer, OPCUAProtocol
from asyncua.server.internal_server import InternalServer
from asyncua.server.internal_session import InternalSession
from asyncua.server.internal_subscription import InternalSubscription
from asyncua.server.subscription_service import SubscriptionService
from asyncua.ua.ua_binary import uatcp_to_binary

from qualitybridge.config import LimitsSettings
from qualitybridge.server.methods.arguments import status_code

__all__ = [
    "RATE_LIMITED",
    "LimitedInternalServer",
    "LimitedServer",
    "LimitedSession",
    "LoginThrottle",
    "TokenBucket",
    "transport_limits",
]

_log = logging.getLogger(__name__)

# A session over its request rate gets this. BadTooManyOperations means "this request is too big" and would tell
# the client not to retry; BadServerTooBusy would blame the whole server when only this session is throttled.
# BadResourceUnavailable says: the resource (this session's request budget) is used up for now — retry later.
RATE_LIMITED = ua.StatusCodes.BadResourceUnavailable

# What a refused login looks like to asyncua (user manager said no, or the token could not be used).
_LOGIN_FAILURES = frozenset(
    {
        ua.StatusCodes.BadUserAccessDenied,
        ua.StatusCodes.BadIdentityTokenInvalid,
        ua.StatusCodes.BadIdentityTokenRejected,
    }
)

# Reads of these alone are keep-alives (asyncua's client probes ServerStatus.State every second and reconnects
# when the probe fails): they are never refused for the request rate, or a throttled client would drop its
# session and come back with a new secure channel, the most expensive request there is.
_KEEPALIVE_NODES = frozenset(
    ua.NodeId(ua.Int32(node_id))
    for node_id in (
        ua.ObjectIds.Server_ServerStatus,
        ua.ObjectIds.Server_ServerStatus_CurrentTime,
        ua.ObjectIds.Server_ServerStatus_State,
    )
)
_MAX_KEEPALIVE_NODES = 2

# Refusals that asyncua would log at ERROR, one line each; LimitedSession logs them itself, counted.
_QUIETED_FAULTS = frozenset(
    ua.status_codes.get_name_and_doc(code)[0]
    for code in (
        ua.StatusCodes.BadTooManySessions,
        ua.StatusCodes.BadTooManySubscriptions,
        ua.StatusCodes.BadTooManyOperations,
        RATE_LIMITED,
    )
)

_LOG_INTERVAL_SECONDS = 10.0
# Addresses remembered by the login throttle; beyond this the oldest are forgotten so memory stays bounded.
_MAX_THROTTLED_ADDRESSES = 10_000

Clock = Callable[[], float]

# asyncua's default session user before ActivateSession names one.
_ANONYMOUS = User(role=UserRole.Anonymous)

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


class TokenBucket:
    """`burst` tokens, refilled at `rate` per second; each admitted request takes one."""

    def __init__(self, rate: float, burst: int, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def try_take(self) -> bool:
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def seconds_until_token(self) -> float:
        self._refill()
        return max(0.0, (1.0 - self._tokens) / self.rate)


class LoginThrottle:
    """Exponentially growing penalty per client address after failed logins, capped, forgotten after a while."""

    def __init__(
        self,
        base_seconds: float,
        max_seconds: float,
        memory_seconds: float,
        clock: Clock = time.monotonic,
        max_addresses: int = _MAX_THROTTLED_ADDRESSES,
    ) -> None:
        self.base_seconds = base_seconds
        self.max_seconds = max_seconds
        self.memory_seconds = memory_seconds
        self._clock = clock
        self._max_addresses = max_addresses
        # address -> (consecutive failures, time of the last one); oldest first
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def delay_after(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        # 2**60 already exceeds any sensible cap; the min() keeps the float from overflowing.
        return min(self.max_seconds, self.base_seconds * 2.0 ** min(failures - 1, 60))

    def penalty_remaining(self, address: str) -> float:
        entry = self._failures.get(address)
        if entry is None:
            return 0.0
        failures, last = entry
        elapsed = self._clock() - last
        if elapsed > self.memory_seconds:
            del self._failures[address]
            return 0.0
        return max(0.0, self.delay_after(failures) - elapsed)

    def record_failure(self, address: str) -> float:
        """Count a failed login; returns the penalty the address now has."""
        failures = 1
        entry = self._failures.pop(address, None)
        if entry is not None and self._clock() - entry[1] <= self.memory_seconds:
            failures = entry[0] + 1
        self._failures[address] = (failures, self._clock())
        while len(self._failures) > self._max_addresses:
            self._failures.popitem(last=False)
        return self.delay_after(failures)

    def record_success(self, address: str) -> None:
        self._failures.pop(address, None)

    def __len__(self) -> int:
        return len(self._failures)


def transport_limits(settings: LimitsSettings) -> TransportLimits:
    """asyncua's transport limits (checked per chunk and per message) from the configuration."""
    return TransportLimits(
        max_recv_buffer=settings.max_chunk_size,
        max_send_buffer=settings.max_chunk_size,
        max_chunk_count=settings.effective_max_chunk_count,
        max_message_size=settings.max_message_size,
    )


def _client_address(peer: Any) -> str:
    """UaProcessor names a session after the peer address tuple (host, port[, flow, scope])."""
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer)


def _monitored_item_count(subscription: InternalSubscription) -> int:
    # asyncua 2.1 offers no public count. Reading (never changing) this dict is pinned by tests/test_limits.py,
    # which fails if an asyncua upgrade renames it.
    return len(subscription.monitored_item_srv._monitored_items)


class _RefusalLog:
    """Logs refusals of one session at most once per interval and kind, with how many there were."""

    def __init__(self, session_name: str) -> None:
        self._session_name = session_name
        self._counts: dict[str, int] = {}
        self._logged_at: dict[str, float] = {}

    def refused(self, kind: str, status: int, detail: str = "") -> None:
        self._counts[kind] = self._counts.get(kind, 0) + 1
        now = time.monotonic()
        if now - self._logged_at.get(kind, -_LOG_INTERVAL_SECONDS) < _LOG_INTERVAL_SECONDS:
            return
        count = self._counts.pop(kind)
        self._logged_at[kind] = now
        _log.warning(
            "Limit %s exceeded by session %s: %d request(s) refused with %s%s",
            kind,
            self._session_name,
            count,
            _status_name(status),
            f" ({detail})" if detail else "",
        )


class _QuietLimitFaults(logging.Filter):
    """Drops asyncua's per-request ERROR line for limit refusals, so that a flood does not become a log flood."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (
            isinstance(args, tuple)
            and record.msg == "sending service fault response: %s (%s)"
            and args[-1] in _QUIETED_FAULTS
        )


def _quiet_limit_faults() -> None:
    processor_log = logging.getLogger("asyncua.server.uaprocessor")
    if not any(isinstance(existing, _QuietLimitFaults) for existing in processor_log.filters):
        processor_log.addFilter(_QuietLimitFaults())


def _is_keepalive(params: ua.ReadParameters) -> bool:
    nodes = params.NodesToRead
    return 0 < len(nodes) <= _MAX_KEEPALIVE_NODES and all(item.NodeId in _KEEPALIVE_NODES for item in nodes)


def _invalid_subscription() -> ua.StatusCode:
    return status_code(ua.StatusCodes.BadSubscriptionIdInvalid)


def _status_name(status: int) -> str:
    return ua.status_codes.get_name_and_doc(status)[0]


class LimitedSession(InternalSession):
    """An asyncua session whose services refuse work past the configured limits (see module docstring).

    Also confines subscription services to the session's own subscriptions: asyncua lets any session modify or
    delete any subscription by id, which would let one client use up or tear down another's quota.
    """

    def __init__(
        self,
        internal_server: LimitedInternalServer,
        aspace: AddressSpace,
        submgr: SubscriptionService,
        name: Any,
        user: User | None = None,
        external: bool = False,
    ) -> None:
        super().__init__(internal_server, aspace, submgr, name, user=user or _ANONYMOUS, external=external)
        self.limited_server = internal_server
        self.limits = internal_server.limit_settings
        self.client_address = _client_address(name)
        self._bucket = TokenBucket(self.limits.max_requests_per_second, self.limits.request_burst)
        self._refusals = _RefusalLog(f"{self.client_address} {self.session_id.to_string()}")

    # -- helpers -------------------------------------------------------------------------------------------------

    def _refuse(self, kind: str, status: int, detail: str = "") -> ServiceError:
        self._refusals.refused(kind, status, detail)
        return ServiceError(status)

    def _check_operations(self, count: int) -> None:
        if count > self.limits.max_operations_per_request:
            raise self._refuse(
                "max_operations_per_request",
                ua.StatusCodes.BadTooManyOperations,
                f"{count} > {self.limits.max_operations_per_request}",
            )

    async def _admit(self, operations: int = 1) -> None:
        """Take a request token and check the request's size; raise the matching Bad code if either is exceeded."""
        if not self._bucket.try_take():
            # Answered only once the bucket could admit a request again: a client that pipelines requests gets
            # its refusals at about the configured rate instead of as fast as the server can produce them.
            await asyncio.sleep(self._bucket.seconds_until_token())
            raise self._refuse("max_requests_per_second", RATE_LIMITED)
        self._check_operations(operations)

    def _admit_now(self, operations: int = 1) -> None:
        """`_admit` for asyncua's synchronous services, which cannot wait."""
        if not self._bucket.try_take():
            raise self._refuse("max_requests_per_second", RATE_LIMITED)
        self._check_operations(operations)

    def own_subscriptions(self) -> list[InternalSubscription]:
        return [sub for sub in self.subscription_service.subscriptions.values() if sub.session_id == self.session_id]

    def _owns(self, subscription_id: int) -> bool:
        sub = self.subscription_service.subscriptions.get(subscription_id)
        return sub is not None and sub.session_id == self.session_id

    def _own_subscription(self, subscription_id: int) -> InternalSubscription:
        sub = self.subscription_service.subscriptions.get(subscription_id)
        if sub is None or sub.session_id != self.session_id:
            raise ServiceError(ua.StatusCodes.BadSubscriptionIdInvalid)
        return sub

    def monitored_item_count(self) -> int:
        return sum(_monitored_item_count(sub) for sub in self.own_subscriptions())

    async def _for_own_ids(self, ids: Sequence[int], service: Callable[[list[int]], Any]) -> list[ua.StatusCode]:
        """Run a per-id subscription service on this session's ids; other ids get BadSubscriptionIdInvalid."""
        owned = [self._owns(sid) for sid in ids]
        own = [sid for sid, mine in zip(ids, owned, strict=True) if mine]
        own_results = iter(await service(own) if own else [])
        return [next(own_results) if mine else _invalid_subscription() for mine in owned]

    # -- sessions and logins -------------------------------------------------------------------------------------

    async def create_session(
        self, params: ua.CreateSessionParameters, sockname: tuple[str, int] | None = None
    ) -> ua.CreateSessionResult:
        penalty = self.limited_server.login_throttle.penalty_remaining(self.client_address)
        if penalty > 0:
            # Slows the next login attempt from an address that just failed; only this connection waits.
            _log.info("Delaying CreateSession from %s by %.1f s after failed logins", self.client_address, penalty)
            await asyncio.sleep(penalty)
        return await super().create_session(params, sockname)

    def activate_session(
        self, params: ua.ActivateSessionParameters, peer_certificate: bytes | None
    ) -> ua.ActivateSessionResult:
        throttle = self.limited_server.login_throttle
        penalty = throttle.penalty_remaining(self.client_address)
        if penalty > 0:
            # Refused without looking at the password: the scrypt check would block the event loop for everyone.
            raise self._refuse("failed_login_penalty", ua.StatusCodes.BadUserAccessDenied, f"{penalty:.1f} s left")
        try:
            result = super().activate_session(params, peer_certificate)
        except ServiceError as exc:
            if exc.code in _LOGIN_FAILURES:
                delay = throttle.record_failure(self.client_address)
                _log.debug("Failed login from %s; its next attempt waits %.1f s", self.client_address, delay)
            raise
        throttle.record_success(self.client_address)
        return result

    async def close_session(self, delete_subs: bool = True) -> None:
        self.limited_server.forget_session(self)
        if delete_subs:
            # Past this session's own delete_subscriptions (and its operations limit): closing frees everything.
            await super().delete_subscriptions([sub.data.SubscriptionId for sub in self.own_subscriptions()])
        await super().close_session(delete_subs)

    # -- attribute, view, method and node management services ----------------------------------------------------

    async def read(self, params: ua.ReadParameters) -> list[ua.DataValue]:
        if _is_keepalive(params):
            self._bucket.try_take()  # counts against the rate, but is never refused
        else:
            await self._admit(len(params.NodesToRead))
        return await super().read(params)

    async def write(self, params: ua.WriteParameters) -> list[ua.StatusCode]:
        await self._admit(len(params.NodesToWrite))
        return await super().write(params)

    async def history_read(self, params: ua.HistoryReadParameters) -> list[ua.HistoryReadResult]:
        await self._admit(len(params.NodesToRead))
        return await super().history_read(params)

    async def history_update(self, params: ua.HistoryUpdateParameters) -> list[ua.HistoryUpdateResult]:
        await self._admit(len(params.HistoryUpdateDetails))
        return await super().history_update(params)

    async def browse(self, params: ua.BrowseParameters) -> list[ua.BrowseResult]:
        await self._admit(len(params.NodesToBrowse))
        return await super().browse(params)

    async def translate_browsepaths_to_nodeids(self, params: list[ua.BrowsePath]) -> list[ua.BrowsePathResult]:
        await self._admit(len(params))
        return await super().translate_browsepaths_to_nodeids(params)

    async def call(self, params: list[ua.CallMethodRequest]) -> list[ua.CallMethodResult]:
        await self._admit(len(params))
        return await super().call(params)

    async def add_nodes(self, params: list[ua.AddNodesItem]) -> list[ua.AddNodesResult]:
        await self._admit(len(params))
        return await super().add_nodes(params)

    async def delete_nodes(self, params: ua.DeleteNodesParameters) -> list[ua.StatusCode]:
        await self._admit(len(params.NodesToDelete))
        return await super().delete_nodes(params)

    async def add_references(self, params: list[ua.AddReferencesItem]) -> list[ua.StatusCode]:
        await self._admit(len(params))
        return await super().add_references(params)

    async def delete_references(self, params: list[ua.DeleteReferencesItem]) -> list[ua.StatusCode]:
        await self._admit(len(params))
        return await super().delete_references(params)

    # -- subscriptions and monitored items -----------------------------------------------------------------------

    async def create_subscription(
        self,
        params: ua.CreateSubscriptionParameters,
        callback: Callable[..., Any],
        request_callback: Callable[..., Any] | None = None,
    ) -> ua.CreateSubscriptionResult:
        await self._admit()
        owned = len(self.own_subscriptions())
        if owned >= self.limits.max_subscriptions_per_session:
            raise self._refuse(
                "max_subscriptions_per_session",
                ua.StatusCodes.BadTooManySubscriptions,
                f"has {owned}",
            )
        return await super().create_subscription(params, callback, request_callback)

    def modify_subscription(self, params: ua.ModifySubscriptionParameters) -> ua.ModifySubscriptionResult:
        self._admit_now()
        self._own_subscription(params.SubscriptionId)
        return super().modify_subscription(params)

    async def set_publishing_mode(self, params: ua.SetPublishingModeParameters) -> list[ua.StatusCode]:
        await self._admit(len(params.SubscriptionIds))

        async def set_mode(ids: list[int]) -> list[ua.StatusCode]:
            own = ua.SetPublishingModeParameters(PublishingEnabled=params.PublishingEnabled, SubscriptionIds=ids)
            return await super(LimitedSession, self).set_publishing_mode(own)

        return await self._for_own_ids(params.SubscriptionIds, set_mode)

    async def delete_subscriptions(self, ids: list[int]) -> list[ua.StatusCode]:
        # Not rate limited: freeing resources must always be possible, above all for a client that hit a limit.
        self._check_operations(len(ids))

        async def delete(own: list[int]) -> list[ua.StatusCode]:
            return await super(LimitedSession, self).delete_subscriptions(own)

        return await self._for_own_ids(ids, delete)

    async def transfer_subscriptions(  # type: ignore[override]
        self, params: ua.TransferSubscriptionsParameters, callback: Callable[..., Any]
    ) -> list[ua.TransferResult]:
        await self._admit(len(params.SubscriptionIds))
        owned = len(self.own_subscriptions())
        subscriptions = self.subscription_service.subscriptions
        incoming = sum(1 for sid in params.SubscriptionIds if sid in subscriptions and not self._owns(sid))
        if owned + incoming > self.limits.max_subscriptions_per_session:
            raise self._refuse("max_subscriptions_per_session", ua.StatusCodes.BadTooManySubscriptions)
        return await super().transfer_subscriptions(params, callback)

    async def create_monitored_items(
        self, params: ua.CreateMonitoredItemsParameters
    ) -> list[ua.MonitoredItemCreateResult]:
        requested = list(params.ItemsToCreate)
        await self._admit(len(requested))
        subscription = self._own_subscription(params.SubscriptionId)
        room = max(
            0,
            min(
                self.limits.max_monitored_items_per_subscription - _monitored_item_count(subscription),
                self.limits.max_monitored_items_per_session - self.monitored_item_count(),
            ),
        )
        if room >= len(requested):
            return await super().create_monitored_items(params)
        # Per item, as OPC UA Part 4 wants: the items that fit are created, the rest get the Bad code.
        accepted: list[ua.MonitoredItemCreateResult] = []
        if room:
            fitting = copy.copy(params)
            fitting.ItemsToCreate = requested[:room]
            accepted = await super().create_monitored_items(fitting)
        refused = len(requested) - room
        self._refusals.refused(
            "max_monitored_items", ua.StatusCodes.BadTooManyMonitoredItems, f"{refused} of {len(requested)} items"
        )
        return accepted + [
            ua.MonitoredItemCreateResult(StatusCode=status_code(ua.StatusCodes.BadTooManyMonitoredItems))
            for _ in range(refused)
        ]

    async def modify_monitored_items(
        self, params: ua.ModifyMonitoredItemsParameters
    ) -> list[ua.MonitoredItemModifyResult]:
        await self._admit(len(params.ItemsToModify))
        self._own_subscription(params.SubscriptionId)
        return await super().modify_monitored_items(params)

    async def set_monitoring_mode(self, params: ua.SetMonitoringModeParameters) -> list[ua.StatusCode]:
        await self._admit(len(params.MonitoredItemIds))
        self._own_subscription(params.SubscriptionId)
        return await super().set_monitoring_mode(params)

    async def delete_monitored_items(self, params: ua.DeleteMonitoredItemsParameters) -> list[ua.StatusCode]:
        # Not rate limited, like delete_subscriptions.
        self._check_operations(len(params.MonitoredItemIds))
        self._own_subscription(params.SubscriptionId)
        return await super().delete_monitored_items(params)

    def publish(self, acks: Iterable[ua.SubscriptionAcknowledgement] | None = None) -> tuple[int, list[ua.StatusCode]]:
        # Publish is not rate limited: asyncua already bounds queued Publish requests per connection.
        # Acknowledgements for other sessions' subscriptions would discard their retransmission queues.
        acknowledgements = list(acks or [])
        owned = [self._owns(ack.SubscriptionId) for ack in acknowledgements]
        count, own_results = super().publish([ack for ack, mine in zip(acknowledgements, owned, strict=True) if mine])
        results = iter(own_results)
        return count, [next(results) if mine else _invalid_subscription() for mine in owned]

    def republish(self, params: ua.RepublishParameters) -> ua.NotificationMessage:
        self._admit_now()
        self._own_subscription(params.SubscriptionId)
        return super().republish(params)


class LimitedInternalServer(InternalServer):
    """asyncua's InternalServer with the configured limits, creating `LimitedSession`s for clients."""

    def __init__(self, settings: LimitsSettings) -> None:
        super().__init__()
        self.limit_settings = settings
        self.login_throttle = LoginThrottle(
            settings.login_penalty_base_seconds,
            settings.login_penalty_max_seconds,
            settings.login_failure_memory_seconds,
        )
        self._client_sessions: set[LimitedSession] = set()
        # asyncua's own knobs, see InternalServer.__init__.
        self.max_connections = settings.max_connections
        self.max_pending_activation_seconds = settings.activation_timeout_seconds
        self.max_pending_messages_per_connection = settings.max_queued_chunks_per_connection
        self.max_session_timeout_ms = settings.max_session_timeout_seconds * 1000
        self.min_session_timeout_ms = min(self.min_session_timeout_ms, self.max_session_timeout_ms)
        self.max_subscriptions = settings.max_sessions * settings.max_subscriptions_per_session

    @property
    def client_session_count(self) -> int:
        return len(self._client_sessions)

    def create_session(
        self,
        name: str,
        user: User = _ANONYMOUS,
        external: bool = False,
    ) -> InternalSession:
        if not external:
            return super().create_session(name, user, external)
        if len(self._client_sessions) >= self.limit_settings.max_sessions:
            _log.warning(
                "Refused CreateSession from %s with BadTooManySessions: %d sessions open",
                _client_address(name),
                len(self._client_sessions),
            )
            raise ServiceError(ua.StatusCodes.BadTooManySessions)
        session = LimitedSession(self, self.aspace, self.subscription_service, name, user=user, external=True)
        self._client_sessions.add(session)
        return session

    def forget_session(self, session: LimitedSession) -> None:
        self._client_sessions.discard(session)


def _send_tcp_error(transport: asyncio.Transport, status: int, reason: str) -> None:
    error = ua.ErrorMessage(status_code(status), ua.String(reason))
    # asyncua annotates the message type as MessageType, whose members are the bytes it actually wants.
    transport.write(uatcp_to_binary(ua.MessageType.Error, error))  # type: ignore[arg-type]


class _ChunkSizeGuardProtocol(OPCUAProtocol):
    """asyncua's connection protocol, refusing a chunk whose header declares more than the chunk size limit.

    asyncua collects all bytes a header announces (up to 4 GiB, re-copying the buffer on every read) before the
    size is checked; here the header is checked as soon as its first eight bytes are in.
    """

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # What is left in the buffer is the start of a chunk still incomplete: type (3), chunk type (1), size (4).
        if len(self._buffer) < 8 or self.transport is None:
            return
        declared = int.from_bytes(self._buffer[4:8], "little")
        if declared <= self.limits.max_recv_buffer:
            return
        _log.warning(
            "Closing connection from %s: chunk of %d bytes announced, max_chunk_size is %d",
            self.peer_name,
            declared,
            self.limits.max_recv_buffer,
        )
        self._buffer = b""
        _send_tcp_error(
            self.transport,
            ua.StatusCodes.BadTcpMessageTooLarge,
            f"chunk of {declared} bytes exceeds the limit of {self.limits.max_recv_buffer}",
        )
        self.transport.close()


class _GuardedBinaryServer(BinaryServer):
    def _make_protocol(self) -> OPCUAProtocol:
        return _ChunkSizeGuardProtocol(
            iserver=self.iserver,
            policies=self._policies,
            clients=self.clients,
            closing_tasks=self.closing_tasks,
            limits=self.limits,
        )


class LimitedServer(Server):
    """asyncua Server enforcing `[limits]`; use it in place of `asyncua.Server`."""

    def __init__(self, settings: LimitsSettings) -> None:
        self.limited_iserver = LimitedInternalServer(settings)
        super().__init__(iserver=self.limited_iserver)
        _quiet_limit_faults()
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
            }
        )
        for node_id, value in values.items():
            node = self.get_node(ua.NodeId(ua.Int32(node_id)))
            try:
                await node.write_value(ua.Variant(value, ua.VariantType.UInt32))
            except ua.uaerrors.BadNodeIdUnknown:
                _log.debug("ServerCapabilities node %s not in the address space; not published", node_id)

    async def start(self) -> None:
        # The steps of asyncua 2.1's Server.start, with _GuardedBinaryServer in place of BinaryServer; asyncua has
        # no factory for it. tests/test_limits.py checks both that the guard is active and that the server works.
        if self.iserver.certificate is not None:
            uacrypto.check_certificate(self.iserver.certificate, self._application_uri, socket.gethostname())
        await self._setup_server_nodes()
        await self.iserver.start()
        try:
            address, port = self._get_bind_socket_info()
            self.bserver = _GuardedBinaryServer(self.iserver, address, port, self.limits)  # type: ignore[arg-type]
            self.bserver.set_policies(self._policies)
            await self.bserver.start()
        except Exception:
            _log.exception("%s error starting server", self)
            await self.iserver.stop()
            raise
