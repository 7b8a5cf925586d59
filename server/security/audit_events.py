"""Audit entries as OPC UA AuditEvents (Part 5, 6.4.3), sent only to sessions allowed to read the audit trail.

asyncua 2.1 knows the AuditEvent types and can fill and send any event type from the Server object, but it
raises none itself and cannot restrict who receives an event: any session with a subscription on the Server
object would get every login, user name and client address. QualityBridge therefore raises them itself and
delivers each one only to subscriptions of sessions whose role has `Permission.READ_AUDIT`
(asyncua's per-subscription trigger). What asyncua does not allow: events for OpenSecureChannel (it offers no
hook there), the spec's ClientAuditEntryId (asyncua does not pass the request header on), and filling
InputArguments/OldValue with typed values (the audit summary text goes into Message instead).

asyncua internals: Server.iserver.subscription_service (subscriptions, trigger_event), Event.data_types
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from asyncua import Server, ua
from asyncua.common.ua_utils import data_type_to_variant_type

from qualitybridge.domain.audit import AuditEntry, AuditKind
from qualitybridge.server.security.identity import QualityBridgeUser, Role
from qualitybridge.server.security.permissions import ROLE_PERMISSIONS, Permission
from qualitybridge.server.security.role_set import role_ids
from qualitybridge.server.security.session_hooks import SessionHooks

__all__ = ["OpcUaAuditEvents"]

_log = logging.getLogger(__name__)
_O = ua.ObjectIds
_MAX_QUEUED = 10_000

_CERTIFICATE_EVENTS = {
    ua.StatusCodes.BadCertificateUntrusted: _O.AuditCertificateUntrustedEventType,
    ua.StatusCodes.BadCertificateTimeInvalid: _O.AuditCertificateExpiredEventType,
    ua.StatusCodes.BadCertificateRevoked: _O.AuditCertificateRevokedEventType,
    ua.StatusCodes.BadCertificateUriInvalid: _O.AuditCertificateDataMismatchEventType,
}


def _event_type(entry: AuditEntry) -> int:
    if entry.kind is AuditKind.SESSION:
        if entry.action == "ActivateSession":
            return _O.AuditActivateSessionEventType
        return _CERTIFICATE_EVENTS.get(entry.status_code, _O.AuditCreateSessionEventType)
    if entry.kind is AuditKind.CALL:
        return _O.AuditUpdateMethodEventType
    if entry.kind is AuditKind.WRITE:
        return _O.AuditWriteUpdateEventType
    return _O.AuditEventType


class OpcUaAuditEvents:
    """Listener for `AuditTrail`: turns each entry into an AuditEvent for the sessions allowed to see it."""

    def __init__(self, server: Server, hooks: SessionHooks, *, role_of: Callable[[str], Role | None]) -> None:
        self._server = server
        self._hooks = hooks
        self._role_of = role_of
        self._generators: dict[int, Any] = {}
        self._queue: deque[AuditEntry] = deque(maxlen=_MAX_QUEUED)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0

    async def init(self) -> None:
        types = {_O.AuditActivateSessionEventType, _O.AuditCreateSessionEventType, _O.AuditUpdateMethodEventType}
        types |= {_O.AuditWriteUpdateEventType, _O.AuditEventType, *_CERTIFICATE_EVENTS.values()}
        for event_type in types:
            generator = await self._server.get_event_generator(event_type, _O.Server)
            await self._resolve_field_types(generator.event)
            self._generators[event_type] = generator
        # Tells clients that this server raises AuditEvents (Part 5, Server.Auditing).
        await self._server.get_node(ua.NodeId(ua.Int32(_O.Server_Auditing))).write_value(True)

    async def _resolve_field_types(self, event: Any) -> None:
        """asyncua keeps a field's DataType NodeId when it is not a built-in type (ActionTimeStamp is UtcTime,
        RevisedSessionTimeout a Duration) and then fails to encode the field; give it the built-in base type."""
        for name, data_type in list(event.data_types.items()):
            if isinstance(data_type, ua.NodeId):
                event.data_types[name] = await data_type_to_variant_type(self._server.get_node(data_type))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="audit-events")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def __call__(self, entry: AuditEntry) -> None:
        self._queue.append(entry)
        self._wake.set()

    def _audit_subscriptions(self) -> list[int]:
        """Subscriptions of open sessions whose role may read the audit trail."""
        readers = set()
        for info in self._hooks.open_sessions():
            user = info.user
            if user is not None and _may_read_audit(user):
                readers.add(info.session.session_id)
        if not readers:
            return []
        subscriptions = self._server.iserver.subscription_service.subscriptions
        return [sub_id for sub_id, sub in subscriptions.items() if sub.session_id in readers]

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                targets = self._audit_subscriptions()
                if not targets:
                    # Nobody may listen (the report path's usual case): none of the queued entries is built. Until
                    # the next await nobody can subscribe either, so this is what asking once per entry answered,
                    # without a walk over every open session per method call.
                    self._queue.clear()
                    break
                entry = self._queue.popleft()
                try:
                    await self._send(entry, targets)
                except Exception:
                    _log.exception("could not raise AuditEvent for %s", entry.action)

    async def _send(self, entry: AuditEntry, subscription_ids: list[int]) -> None:
        event = self._generators[_event_type(entry)].event
        now = datetime.now(UTC)
        event.EventId = ua.Variant(uuid.uuid4().hex.encode("ascii"), ua.VariantType.ByteString)
        event.Time = entry.at
        event.ReceiveTime = now
        event.ActionTimeStamp = entry.at
        event.Status = entry.is_good
        event.ServerId = self._server.get_application_uri()
        event.ClientUserId = entry.user_name or ""
        event.Severity = 100 if entry.is_good else 500
        event.Message = ua.LocalizedText(_message(entry))
        if hasattr(event, "StatusCodeId"):
            event.StatusCodeId = ua.StatusCode(ua.UInt32(entry.status_code))
        if hasattr(event, "ClientCertificateThumbprint"):
            event.ClientCertificateThumbprint = entry.client_thumbprint or ""
        if hasattr(event, "CurrentRoleIds"):  # the generator's event is reused: set every field every time
            role = self._role_of(entry.user_name) if entry.user_name else None
            event.CurrentRoleIds = role_ids(QualityBridgeUser(account_role=role)) if role and entry.is_good else []
        if hasattr(event, "MethodId"):
            event.MethodId = _node_id(entry.node)
        for subscription_id in subscription_ids:
            await self._server.iserver.subscription_service.trigger_event(event, subscription_id=subscription_id)
        self.sent += 1


def _node_id(text: str | None) -> ua.NodeId | None:
    """The method's NodeId back from the audit text; None for what a client made up and asyncua cannot parse."""
    if not text:
        return None
    try:
        return ua.NodeId.from_string(text)
    except (ValueError, ua.UaError):
        return None


def _may_read_audit(user: QualityBridgeUser) -> bool:
    if user.revoked or user.account_role is None:
        return False
    return Permission.READ_AUDIT in ROLE_PERMISSIONS[user.account_role]


def _message(entry: AuditEntry) -> str:
    parts = [entry.action]
    if entry.node:
        parts.append(entry.node)
    parts.append(f"→ {entry.status_name}")
    if entry.remote_address:
        parts.append(f"from {entry.remote_address}")
    if entry.arguments:
        parts.append(f"({entry.arguments})")
    return " ".join(parts)
