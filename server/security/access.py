"""Which role may use which OPC UA service, and who the caller of a method is.

asyncua asks the permission ruleset of the secure channel before it dispatches each request, in the
task that then runs the request (method handlers included). The ruleset therefore also records the
session user in a ContextVar, which ``caller()`` reads inside ``async def`` method handlers.
Plain ``def`` handlers run in asyncua's thread pool without this context and always see ``None``.

asyncua internals: UaProcessor calling PermissionRuleset.check_validity in the task that then runs the request
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from asyncua import ua
from asyncua.crypto.permission_rules import PermissionRuleset, User
from asyncua.ua.object_ids import ObjectIdNames, ObjectIds
from asyncua.ua.ua_binary import struct_from_binary

from qualitybridge.server.security.identity import QualityBridgeUser, Role

_logger = logging.getLogger(__name__)

current_user: ContextVar[QualityBridgeUser | None] = ContextVar("qualitybridge_current_user", default=None)


def caller() -> QualityBridgeUser | None:
    """The session user of the request being handled (None outside a request or for non-QualityBridge users)."""
    return current_user.get()


def _ids(*object_ids: int) -> frozenset[ua.NodeId]:
    return frozenset(ua.NodeId(ua.Int32(object_id)) for object_id in object_ids)


_ENC = ObjectIds

SESSION_REQUESTS = _ids(
    _ENC.CreateSessionRequest_Encoding_DefaultBinary,
    _ENC.ActivateSessionRequest_Encoding_DefaultBinary,
    _ENC.CloseSessionRequest_Encoding_DefaultBinary,
    _ENC.CancelRequest_Encoding_DefaultBinary,
    _ENC.CloseSecureChannelRequest_Encoding_DefaultBinary,
    _ENC.GetEndpointsRequest_Encoding_DefaultBinary,
    _ENC.FindServersRequest_Encoding_DefaultBinary,
)

READ_REQUESTS = _ids(
    _ENC.ReadRequest_Encoding_DefaultBinary,
    _ENC.HistoryReadRequest_Encoding_DefaultBinary,
    _ENC.BrowseRequest_Encoding_DefaultBinary,
    _ENC.BrowseNextRequest_Encoding_DefaultBinary,
    _ENC.TranslateBrowsePathsToNodeIdsRequest_Encoding_DefaultBinary,
    _ENC.RegisterNodesRequest_Encoding_DefaultBinary,
    _ENC.UnregisterNodesRequest_Encoding_DefaultBinary,
    _ENC.CreateSubscriptionRequest_Encoding_DefaultBinary,
    _ENC.ModifySubscriptionRequest_Encoding_DefaultBinary,
    _ENC.DeleteSubscriptionsRequest_Encoding_DefaultBinary,
    _ENC.TransferSubscriptionsRequest_Encoding_DefaultBinary,
    _ENC.SetPublishingModeRequest_Encoding_DefaultBinary,
    _ENC.CreateMonitoredItemsRequest_Encoding_DefaultBinary,
    _ENC.ModifyMonitoredItemsRequest_Encoding_DefaultBinary,
    _ENC.DeleteMonitoredItemsRequest_Encoding_DefaultBinary,
    _ENC.SetMonitoringModeRequest_Encoding_DefaultBinary,
    _ENC.SetTriggeringRequest_Encoding_DefaultBinary,
    _ENC.PublishRequest_Encoding_DefaultBinary,
    _ENC.RepublishRequest_Encoding_DefaultBinary,
)

CALL_REQUESTS = _ids(_ENC.CallRequest_Encoding_DefaultBinary)

WRITE_REQUESTS = _ids(
    _ENC.WriteRequest_Encoding_DefaultBinary,
    _ENC.HistoryUpdateRequest_Encoding_DefaultBinary,
)

# Listed only to document the decision: the address space is built by the server, never by clients.
NODE_MANAGEMENT_REQUESTS = _ids(
    _ENC.AddNodesRequest_Encoding_DefaultBinary,
    _ENC.AddReferencesRequest_Encoding_DefaultBinary,
    _ENC.DeleteNodesRequest_Encoding_DefaultBinary,
    _ENC.DeleteReferencesRequest_Encoding_DefaultBinary,
)

# OPC UA Part 9: with ConditionRefresh a client that subscribes to alarms asks for the conditions still retained
# (an HMI after a reconnect, an alarm list opened late); it changes nothing. So whoever may subscribe may call it,
# also without the Call service (an Observer) — in a Call of nothing else.
CONDITION_REFRESH_METHODS = _ids(ObjectIds.ConditionType_ConditionRefresh, ObjectIds.ConditionType_ConditionRefresh2)
_SUBSCRIBE = ua.NodeId(ua.Int32(_ENC.CreateSubscriptionRequest_Encoding_DefaultBinary))


def may_refresh_conditions(allowed_requests: frozenset[ua.NodeId]) -> bool:
    return _SUBSCRIBE in allowed_requests


def _calls_only_condition_refresh(body: Any) -> bool:
    try:
        methods = struct_from_binary(ua.CallParameters, body.copy()).MethodsToCall  # a copy: asyncua decodes it again
    except Exception:  # undecodable: refused like any Call this role may not make
        return False
    return bool(methods) and all(method.MethodId in CONDITION_REFRESH_METHODS for method in methods)


_CALLERS = READ_REQUESTS | CALL_REQUESTS
ROLE_PERMISSIONS: dict[Role, frozenset[ua.NodeId]] = {
    Role.OBSERVER: READ_REQUESTS,
    Role.MACHINE: _CALLERS,
    Role.OPERATOR: _CALLERS,
    Role.QUALITY_ENGINEER: _CALLERS,
    Role.ADMIN: _CALLERS | WRITE_REQUESTS,
}


def _request_name(typeid: ua.NodeId) -> str:
    identifier = typeid.Identifier
    if isinstance(identifier, int):
        return ObjectIdNames.get(identifier, str(typeid)).removesuffix("_Encoding_DefaultBinary")
    return str(typeid)


RefusalListener = Callable[[QualityBridgeUser | None, ua.NodeId, Any], None]


class RolePermissionRuleset(PermissionRuleset):
    """Default-deny service permissions per QualityBridge role.

    `on_refused` hears of every refused request (with the undecoded body) so it can be audited; it runs only
    on refusals, which keeps the check itself a set lookup on the report path.
    """

    def __init__(self, *, allow_anonymous_read: bool = False, on_refused: RefusalListener | None = None) -> None:
        self.allow_anonymous_read = allow_anonymous_read
        self.on_refused = on_refused

    def allowed_requests(self, user: QualityBridgeUser | None) -> frozenset[ua.NodeId]:
        if user is None or user.revoked:
            return frozenset()
        if user.account_role is None:
            return READ_REQUESTS if self.allow_anonymous_read else frozenset()
        return ROLE_PERMISSIONS.get(user.account_role, frozenset())

    def check_validity(self, user: User | None, action_type: ua.NodeId, body: Any) -> bool:
        qb_user = user if isinstance(user, QualityBridgeUser) else None
        current_user.set(qb_user)
        if action_type in SESSION_REQUESTS:
            return True
        allowed = self.allowed_requests(qb_user)
        if action_type in allowed:
            return True
        if action_type in CALL_REQUESTS and may_refresh_conditions(allowed) and _calls_only_condition_refresh(body):
            return True
        _logger.warning(
            "Denied %s for user %r (role %s)",
            _request_name(action_type),
            getattr(user, "name", None),
            qb_user.account_role.value if qb_user and qb_user.account_role else "anonymous",
        )
        if self.on_refused is not None:
            try:
                self.on_refused(qb_user, action_type, body)
            except Exception:
                _logger.exception("audit of a refused %s failed", _request_name(action_type))
        return False
