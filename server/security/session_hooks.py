"""What QualityBridge needs to see of every client session that asyncua does not offer as an API.

asyncua creates one `InternalSession` per client session through `InternalServer.create_session`. That
factory is wrapped (chaining to whatever was installed before, so other hooks compose) and each new session
gets four of its methods wrapped:

- ``create_session``: remembers the client certificate and ApplicationDescription; a refused certificate
  (untrusted, expired, wrong URI, revoked) is audited with its StatusCode;
- ``activate_session``: publishes `identity.activation_context` for the user manager (token kind, channel
  certificate, remote address) and audits the login, failed ones included;
- ``call`` and ``write``: audit each method call and each written node with the StatusCode it got.

Requests the permission ruleset refuses before they reach the session are audited by
`audit_refused_request`, which the ruleset calls. The hooks also keep the list of open sessions, so that
removing a user or distrusting a certificate ends that user's or certificate's sessions (`revoke_where`).

asyncua internals: InternalServer.create_session, InternalSession services (wrapped), iserver.aspace, asyncio_transports
"""

from __future__ import annotations

import datetime
import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from asyncua import Server, ua
from asyncua.common.utils import Buffer, ServiceError
from asyncua.server.internal_server import InternalServer
from asyncua.server.internal_session import InternalSession
from asyncua.ua.object_ids import ObjectIdNames
from asyncua.ua.ua_binary import struct_from_binary
from cryptography import x509

from qualitybridge.domain.audit import AuditEntry, AuditKind
from qualitybridge.server.pki import thumbprint_of_der
from qualitybridge.server.security.identity import ActivationContext, QualityBridgeUser, TokenKind, activating

__all__ = [
    "AuditSink",
    "MethodInfo",
    "OpenSession",
    "SessionHooks",
    "format_peer",
    "summarize_arguments",
    "summarize_value",
]

_log = logging.getLogger(__name__)

ARGUMENTS_SUMMARY_LIMIT = 400
_METHOD_CACHE_LIMIT = 1_000
_VALUE_LIMIT = 80
_SECRET_WORDS = ("password", "secret", "token", "key")


class AuditSink(Protocol):
    def record(self, entry: AuditEntry) -> None: ...


class NullAuditSink:
    def record(self, entry: AuditEntry) -> None:
        del entry


@functools.cache
def status_name(code: int) -> str:
    return ua.StatusCode(ua.UInt32(code)).name


def format_peer(peer: Any) -> str | None:
    """asyncua names a session by the peer address tuple; render it as host:port ([v6]:port)."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return None if peer is None else str(peer)


def summarize_value(value: Any) -> str:
    """A short, log-safe rendering of one argument value (byte strings by length only).

    On the report path for every argument of every call: exact type checks first, the common cases cheap.
    """
    if type(value) is ua.Variant:
        value = value.Value
    kind = type(value)
    if kind is str or kind is float or kind is int or kind is bool:
        text = repr(value)
    elif kind is datetime.datetime:
        text = value.isoformat()
    elif isinstance(value, bytes | bytearray):
        text = f"<{len(value)} bytes>"
    elif isinstance(value, list):
        text = "[" + ", ".join(summarize_value(item) for item in value[:5]) + (", …]" if len(value) > 5 else "]")
    else:
        text = repr(value)
    return text if len(text) <= _VALUE_LIMIT else text[: _VALUE_LIMIT - 1] + "…"


def is_secret(argument_name: str) -> bool:
    lowered = argument_name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


@dataclass(frozen=True)
class MethodInfo:
    """What the audit needs of a method node, looked up once per method."""

    node: str
    name: str
    argument_names: tuple[str, ...] = ()
    secret: tuple[bool, ...] = ()

    @classmethod
    def of(cls, node: str, name: str, argument_names: Sequence[str]) -> MethodInfo:
        names = tuple(argument or f"#{index}" for index, argument in enumerate(argument_names))
        return cls(node, name, names, tuple(is_secret(argument) for argument in names))


def summarize_arguments(method: MethodInfo, values: Sequence[Any]) -> str:
    parts = []
    names, secret = method.argument_names, method.secret
    for index, value in enumerate(values):
        if index < len(names):
            parts.append(f"{names[index]}={'***' if secret[index] else summarize_value(value)}")
        else:
            parts.append(f"#{index}={summarize_value(value)}")
    text = ", ".join(parts)
    return text if len(text) <= ARGUMENTS_SUMMARY_LIMIT else text[: ARGUMENTS_SUMMARY_LIMIT - 1] + "…"


def _token_kind(token: Any) -> TokenKind:
    if isinstance(token, ua.UserNameIdentityToken):
        return TokenKind.USER_NAME
    if isinstance(token, ua.X509IdentityToken):
        return TokenKind.X509
    return TokenKind.ANONYMOUS


def _claimed_identity(token: Any) -> tuple[str | None, str]:
    """(who the token claims to be, a password-free description of the token) for the audit log."""
    if isinstance(token, ua.UserNameIdentityToken):
        return token.UserName, "token=UserName"
    if isinstance(token, ua.X509IdentityToken):
        try:
            fingerprint = thumbprint_of_der(bytes(token.CertificateData or b""))
        except ValueError:
            fingerprint = "unreadable"
        return f"x509:{fingerprint}", f"token=X509 {fingerprint}"
    return None, "token=Anonymous"


@dataclass
class OpenSession:
    """What QualityBridge knows about one asyncua session."""

    session: InternalSession
    remote_address: str | None
    client_certificate: x509.Certificate | None = None
    client_thumbprint: str | None = None
    client_description: ua.ApplicationDescription | None = None
    revoked: bool = field(default=False)

    @property
    def user(self) -> QualityBridgeUser | None:
        user = self.session.user
        return user if isinstance(user, QualityBridgeUser) else None


class SessionHooks:
    """Installs the session wrappers and keeps the open sessions (see module docstring)."""

    def __init__(self, sink: AuditSink | None = None) -> None:
        self.sink: AuditSink = sink if sink is not None else NullAuditSink()
        self._server: Server | None = None
        # Removed by the close_session wrapper, which asyncua calls on close requests, timeouts and lost links.
        self._open: dict[int, OpenSession] = {}
        self._method_info: dict[ua.NodeId, MethodInfo] = {}

    # ---- installation ------------------------------------------------------------------------------

    def install(self, server: Server) -> None:
        self._server = server
        iserver = server.iserver
        previous: Callable[..., InternalSession] = iserver.create_session

        def create_session(name: str, *args: Any, **kwargs: Any) -> InternalSession:
            try:
                session = previous(name, *args, **kwargs)
            except (ServiceError, ua.uaerrors.UaStatusCodeError) as exc:  # e.g. BadTooManySessions
                self._emit(AuditKind.SESSION, "CreateSession", exc.code, None, remote_address=format_peer(name))
                raise
            if kwargs.get("external"):
                self._instrument(session)
            return session

        # asyncua has no hook for session creation; replacing the bound factory on this instance is the
        # narrowest change (the class and other servers in the process stay untouched).
        setattr(iserver, "create_session", create_session)  # noqa: B010

    def _instrument(self, session: InternalSession) -> None:
        info = OpenSession(session=session, remote_address=format_peer(session.name))
        key = id(session)
        self._open[key] = info
        original_create = session.create_session
        original_activate = session.activate_session
        original_close = session.close_session
        original_call = session.call
        original_write = session.write

        async def create(params: ua.CreateSessionParameters, sockname: Any = None) -> ua.CreateSessionResult:
            info.client_description = params.ClientDescription
            if params.ClientCertificate:
                try:
                    info.client_certificate = x509.load_der_x509_certificate(params.ClientCertificate)
                    info.client_thumbprint = thumbprint_of_der(params.ClientCertificate)
                except ValueError:
                    info.client_thumbprint = None
            try:
                return await original_create(params, sockname=sockname)
            except (ServiceError, ua.uaerrors.UaStatusCodeError) as exc:
                uri = params.ClientDescription.ApplicationUri if params.ClientDescription else None
                self._emit(AuditKind.SESSION, "CreateSession", exc.code, info, arguments=f"ApplicationUri={uri!r}")
                raise

        def activate(params: ua.ActivateSessionParameters, peer_certificate: bytes | None) -> Any:
            token = params.UserIdentityToken
            claimed, token_text = _claimed_identity(token)
            context = ActivationContext(
                token_kind=_token_kind(token),
                channel_certificate=peer_certificate,
                client_thumbprint=info.client_thumbprint,
                remote_address=info.remote_address,
            )
            try:
                with activating(context):
                    result = original_activate(params, peer_certificate)
            except (ServiceError, ua.uaerrors.UaStatusCodeError) as exc:
                self._emit(AuditKind.SESSION, "ActivateSession", exc.code, info, user=claimed, arguments=token_text)
                raise
            user = info.user
            self._emit(
                AuditKind.SESSION,
                "ActivateSession",
                ua.StatusCodes.Good,
                info,
                user=(user.name if user else None) or claimed or "anonymous",
                arguments=token_text,
            )
            return result

        async def close(delete_subs: bool = True) -> None:
            self._open.pop(key, None)
            await original_close(delete_subs)

        async def call(params: list[ua.CallMethodRequest]) -> list[ua.CallMethodResult]:
            results = await original_call(params)
            for request, result in zip(params, results, strict=False):
                self._audit_call(info, request, result.StatusCode.value)
            return results

        async def write(params: ua.WriteParameters) -> list[ua.StatusCode]:
            results = await original_write(params)
            for item, status in zip(params.NodesToWrite, results, strict=False):
                self._audit_write(info, item, status.value)
            return results

        for name, wrapper in (
            ("create_session", create),
            ("activate_session", activate),
            ("close_session", close),
            ("call", call),
            ("write", write),
        ):
            setattr(session, name, wrapper)

    # ---- audit records ----------------------------------------------------------------------------

    def _emit(
        self,
        kind: AuditKind,
        action: str,
        code: int,
        info: OpenSession | None,
        *,
        user: str | None = None,
        node: str | None = None,
        arguments: str | None = None,
        user_object: QualityBridgeUser | None = None,
        remote_address: str | None = None,
    ) -> None:
        session_user = user_object or (info.user if info else None)
        if user is None and session_user is not None:
            user = session_user.name or "anonymous"
        thumb = info.client_thumbprint if info else (session_user.client_thumbprint if session_user else None)
        remote = info.remote_address if info else (session_user.remote_address if session_user else remote_address)
        self.sink.record(
            AuditEntry(
                at=datetime.datetime.now(datetime.UTC),
                kind=kind,
                action=action,
                status_code=int(code),
                status_name=status_name(code),
                user_name=user,
                client_thumbprint=thumb,
                remote_address=remote,
                node=node,
                arguments=arguments,
            )
        )

    def method_info(self, method_id: ua.NodeId) -> MethodInfo:
        """Browse name and input argument names of a method node, cached; the NodeId text when unknown."""
        cached = self._method_info.get(method_id)
        if cached is not None:
            return cached
        node_text = method_id.to_string()
        name = node_text
        arguments: tuple[str, ...] = ()
        if self._server is not None:
            aspace = self._server.iserver.aspace
            node = aspace.get(method_id)
            if node is not None:
                browse = aspace.read_attribute_value(method_id, ua.AttributeIds.BrowseName)
                if browse.Value is not None and browse.Value.Value is not None:
                    name = browse.Value.Value.Name
                arguments = self._input_argument_names(node.references)
        info = MethodInfo.of(node_text, name, arguments)
        if len(self._method_info) < _METHOD_CACHE_LIMIT:  # a client could name arbitrary NodeIds
            self._method_info[method_id] = info
        return info

    def _input_argument_names(self, references: Iterable[ua.ReferenceDescription]) -> tuple[str, ...]:
        assert self._server is not None  # noqa: S101 - only called once installed
        for reference in references:
            if reference.IsForward and reference.BrowseName.Name == "InputArguments":
                value = self._server.iserver.aspace.read_attribute_value(reference.NodeId, ua.AttributeIds.Value)
                arguments = value.Value.Value if value.Value is not None else None
                if isinstance(arguments, list):
                    return tuple(str(getattr(argument, "Name", None) or "") for argument in arguments)
        return ()

    def _audit_call(
        self,
        info: OpenSession | None,
        request: ua.CallMethodRequest,
        code: int,
        user_object: QualityBridgeUser | None = None,
    ) -> None:
        method = self.method_info(request.MethodId)
        self._emit(
            AuditKind.CALL,
            f"Call {method.name}",
            code,
            info,
            node=method.node,
            arguments=summarize_arguments(method, request.InputArguments or []),
            user_object=user_object,
        )

    def _audit_write(
        self,
        info: OpenSession | None,
        item: ua.WriteValue,
        code: int,
        user_object: QualityBridgeUser | None = None,
    ) -> None:
        attribute = ua.AttributeIds(item.AttributeId).name if item.AttributeId in _ATTRIBUTE_IDS else item.AttributeId
        value = item.Value.Value if item.Value is not None else None
        self._emit(
            AuditKind.WRITE,
            "Write",
            code,
            info,
            node=f"{item.NodeId.to_string()} {attribute}",
            arguments=f"value={summarize_value(value)}",
            user_object=user_object,
        )

    def audit_refused_request(self, user: QualityBridgeUser | None, request_type: ua.NodeId, body: Buffer) -> None:
        """Called by the permission ruleset for a request it refuses: one entry per method or node in it."""
        code = ua.StatusCodes.BadUserAccessDenied
        info = self._session_of(user)
        try:
            if request_type == _CALL_REQUEST:
                for request in struct_from_binary(ua.CallParameters, body.copy()).MethodsToCall:
                    self._audit_call(info, request, code, user)
                return
            if request_type == _WRITE_REQUEST:
                for item in struct_from_binary(ua.WriteParameters, body.copy()).NodesToWrite:
                    self._audit_write(info, item, code, user)
                return
        except Exception:  # a malformed body is refused anyway; the entry below still records the attempt
            _log.debug("could not decode refused %s", request_type, exc_info=True)
        identifier = request_type.Identifier
        name = ObjectIdNames.get(identifier, str(request_type)) if isinstance(identifier, int) else str(request_type)
        self._emit(AuditKind.SERVICE, name.removesuffix("Request_Encoding_DefaultBinary"), code, info, user_object=user)

    def record_admin(self, action: str, *, code: int = ua.StatusCodes.Good, arguments: str | None = None) -> None:
        """An administrative change made by the server itself (e.g. certificate renewal)."""
        self._emit(AuditKind.ADMIN, action, code, None, user="qualitybridge", arguments=arguments)

    # ---- open sessions ----------------------------------------------------------------------------

    def _session_of(self, user: QualityBridgeUser | None) -> OpenSession | None:
        if user is None:
            return None
        for info in self._open.values():
            if info.session.user is user:
                return info
        return None

    def open_sessions(self) -> list[OpenSession]:
        return [info for info in self._open.values() if info.session.state.name != "Closed"]

    async def revoke_where(self, predicate: Callable[[OpenSession], bool], reason: str) -> int:
        """End every open session the predicate picks: user marked revoked, session closed, connection dropped."""
        doomed = [info for info in self.open_sessions() if predicate(info)]
        for info in doomed:
            info.revoked = True
            user = info.user
            if user is not None:
                user.revoked = True
            _log.warning("Ending session of %s from %s: %s", user.name if user else None, info.remote_address, reason)
            self._emit(
                AuditKind.ADMIN,
                "session revoked",
                ua.StatusCodes.BadSessionClosed,
                info,
                arguments=reason,
            )
            await info.session.close_session(True)
            self._drop_connection(info)
        return len(doomed)

    def _drop_connection(self, info: OpenSession) -> None:
        if self._server is None:
            return
        transports: InternalServer = self._server.iserver
        for transport in list(transports.asyncio_transports):
            if format_peer(transport.get_extra_info("peername")) == info.remote_address:
                transport.close()


_CALL_REQUEST = ua.NodeId(ua.Int32(ua.ObjectIds.CallRequest_Encoding_DefaultBinary))
_WRITE_REQUEST = ua.NodeId(ua.Int32(ua.ObjectIds.WriteRequest_Encoding_DefaultBinary))
_ATTRIBUTE_IDS = frozenset(int(attribute) for attribute in ua.AttributeIds)
