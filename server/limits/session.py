"""Per-session limits: `LimitedSession`, a subclass of asyncua's InternalSession whose service methods (the ones
UaProcessor calls for each request) check the request rate and the request's size before doing the work.

Each session has its own request budget (`rate.TokenBucket`); keep-alive reads are never refused for it. Failed
logins from the session's address count against that address (`rate.LoginThrottle`). Subscriptions and
monitored items are counted per session and per subscription, and subscription services are confined to the
session's own subscriptions.

asyncua internals: InternalSession subclass (service methods), InternalSubscription.monitored_item_srv._monitored_items
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.address_space import AddressSpace
from asyncua.server.internal_session import InternalSession
from asyncua.server.internal_subscription import InternalSubscription
from asyncua.server.subscription_service import SubscriptionService

from qualitybridge.server.limits.rate import RATE_LIMITED, TokenBucket
from qualitybridge.server.limits.refusal_log import RefusalLog
from qualitybridge.server.methods.arguments import status_code

if TYPE_CHECKING:
    from qualitybridge.server.limits.limited_server import LimitedInternalServer

# The package's name, as before it was split into modules: docs/configuration.md and log configurations name it.
_log = logging.getLogger("qualitybridge.server.limits")

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
# A method call during the start that the load did not release in time: the resource (the loaded orders) is not
# there yet, retry later.
STILL_STARTING = ua.StatusCodes.BadResourceUnavailable

# asyncua's default session user before ActivateSession names one.
ANONYMOUS = User(role=UserRole.Anonymous)


def client_address(peer: Any) -> str:
    """UaProcessor names a session after the peer address tuple (host, port[, flow, scope])."""
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer)


def _monitored_item_count(subscription: InternalSubscription) -> int:
    # asyncua 2.1 offers no public count. Reading (never changing) this dict is pinned by tests/e2e/test_limits.py,
    # which fails if an asyncua upgrade renames it.
    return len(subscription.monitored_item_srv._monitored_items)


def _is_keepalive(params: ua.ReadParameters) -> bool:
    nodes = params.NodesToRead
    return 0 < len(nodes) <= _MAX_KEEPALIVE_NODES and all(item.NodeId in _KEEPALIVE_NODES for item in nodes)


def _invalid_subscription() -> ua.StatusCode:
    return status_code(ua.StatusCodes.BadSubscriptionIdInvalid)


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
        super().__init__(internal_server, aspace, submgr, name, user=user or ANONYMOUS, external=external)
        self.limited_server = internal_server
        self.limits = internal_server.limit_settings
        self.client_address = client_address(name)
        self._bucket = TokenBucket(self.limits.max_requests_per_second, self.limits.request_burst)
        self._refusals = RefusalLog(f"{self.client_address} {self.session_id.to_string()}")

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
        if not await self.limited_server.calls_admitted():  # during the start, until the stored data is loaded
            # Still loading: nothing runs, and BadResourceUnavailable tells the client to retry shortly.
            return [ua.CallMethodResult(StatusCode=ua.StatusCode(ua.UInt32(STILL_STARTING))) for _ in params]
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
