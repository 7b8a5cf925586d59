"""Limits on the wire: asyncua's transport limits (message size, chunk count) from `[limits]`, and a connection
protocol that refuses an oversized chunk as soon as its header is in, closes a connection that sends no Hello
within `hello_timeout_seconds`, and refuses a connection from an address that already holds
`max_unactivated_connections_per_address` connections without an activated session (an idle flood from one
address must leave room in `max_connections` for everyone else).

asyncua buffers a whole chunk (up to 4 GiB) and checks its size only afterwards; `GuardedBinaryServer` creates
connections whose protocol refuses a chunk whose header declares more bytes than `max_chunk_size` *before*
buffering it, answering BadTcpMessageTooLarge as OPC UA Part 6 says.

Its connections also check a user name and password ahead, in a worker thread (`_LoginAheadProcessor`): asyncua
asks the user manager on the event loop, and scrypt takes about 0.4 s, so a storm of first logins after a restart
stalled every session; checked ahead, asyncua's own check answers from the user manager's memory.

asyncua internals: OPCUAProtocol subclass (connection_made, connection_lost, data_received, _buffer, clients,
processor.session), BinaryServer._make_protocol, uatcp_to_binary, UaProcessor.process_message and _process_message,
UaProcessor.send_response (_connection.message_to_binary, _transport), InternalServer.decrypt_user_token
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from asyncua import ua
from asyncua.common.connection import TransportLimits
from asyncua.common.utils import ServiceError
from asyncua.crypto.security_policies import SecurityPolicyNone
from asyncua.server.binary_server_asyncio import BinaryServer, OPCUAProtocol
from asyncua.server.uaprocessor import UaProcessor
from asyncua.ua.ua_binary import struct_from_binary, uatcp_to_binary

from qualitybridge.config import LimitsSettings
from qualitybridge.server.asyncua_pin import asyncua_is_pinned
from qualitybridge.server.limits.array_limits import array_limit
from qualitybridge.server.limits.call_codec import decode_call_parameters, decode_request_start, encode_call_response
from qualitybridge.server.limits.session import client_address
from qualitybridge.server.methods.arguments import status_code
from qualitybridge.server.security.symmetric_chunks import FastSymmetricConnection

# The package's name, as before it was split into modules: docs/configuration.md and log configurations name it.
_log = logging.getLogger("qualitybridge.server.limits")


def transport_limits(settings: LimitsSettings) -> TransportLimits:
    """asyncua's transport limits (checked per chunk and per message) from the configuration."""
    return TransportLimits(
        max_recv_buffer=settings.max_chunk_size,
        max_send_buffer=settings.max_chunk_size,
        max_chunk_count=settings.effective_max_chunk_count,
        max_message_size=settings.max_message_size,
    )


def _send_tcp_error(transport: asyncio.Transport, status: int, reason: str) -> None:
    error = ua.ErrorMessage(status_code(status), ua.String(reason))
    # asyncua annotates the message type as MessageType, whose members are the bytes it actually wants.
    transport.write(uatcp_to_binary(ua.MessageType.Error, error))  # type: ignore[arg-type]


_LOG_INTERVAL_SECONDS = 10.0


class AddressRefusals:
    """Connection refusals of one kind logged at most once per interval per address, with a count."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._counts: dict[str, int] = {}
        self._logged_at: dict[str, float] = {}

    def refused(self, address: str, detail: str) -> None:
        self._counts[address] = self._counts.get(address, 0) + 1
        now = time.monotonic()
        if now - self._logged_at.get(address, -_LOG_INTERVAL_SECONDS) < _LOG_INTERVAL_SECONDS:
            return
        self._logged_at[address] = now
        count = self._counts.pop(address)
        _log.warning("%d connection(s) from %s %s (%s)", count, address, self._what, detail)
        if len(self._logged_at) > 10_000:  # a scan from many addresses must not grow this without bound
            self._logged_at.clear()


_ACTIVATE_SESSION = ua.NodeId(ua.Int32(ua.ObjectIds.ActivateSessionRequest_Encoding_DefaultBinary))
_CALL_REQUEST = ua.NodeId(ua.Int32(ua.ObjectIds.CallRequest_Encoding_DefaultBinary))
# asyncua's own logger of the request path, so that its INFO line per call is kept where it was.
_uaprocessor_log = logging.getLogger("asyncua.server.uaprocessor")


class _LoginAheadProcessor(UaProcessor):
    """asyncua's processor with four changes (asyncua 2.1.0):

    - its secure connection reads and writes the symmetric chunks by hand (server/security/symmetric_chunks.py);
    - every request's type id and RequestHeader are decoded by hand (`process_message`, asyncua's otherwise);

    and two of its dispatcher (`UaProcessor._process_message`):

    - an ActivateSession with a user name has its password checked in a worker thread first (the user manager's
      `verify_ahead`), so that asyncua's check on the event loop finds the verdict ready;
    - a Call request, the shop floor's request, is dispatched first: asyncua compares the request type against
      a NodeId it builds anew for every branch of its `if`/`elif` chain, and Call is the 30th, so each method call
      built about 35 NodeIds before it got to work (docs/performance.md, issue 11). `_call` is asyncua's session
      check and Call branch, with the parameters decoded by `decode_call_parameters` and the response encoded by
      `encode_call_response` (server/limits/call_codec.py: the same objects and bytes in a half and a quarter of
      asyncua's time; asyncua's decoder and encoder for unusual shapes);
      tests/integration/test_call_dispatch.py pins it to asyncua's behaviour.
      Only a Call of an activated session takes it: one created but not activated yet, or closed (CloseSession
      keeps the secure channel), goes through asyncua's chain, which refuses it (BadSessionNotActivated).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if asyncua_is_pinned():  # asyncua's own connection, made the same way, over any other asyncua
            self._connection = FastSymmetricConnection(SecurityPolicyNone(), self._limits)  # type: ignore[no-untyped-call]

    async def process_message(self, seqhdr: Any, body: Any) -> Any:
        """asyncua 2.1.0's `process_message`, with the request's type id and header decoded by hand
        (`decode_request_start`, the same objects in half of asyncua's time); the rest is asyncua's, line by line
        (pinned by tests/integration/test_call_dispatch.py)."""
        try:
            typeid, requesthdr = decode_request_start(body)
        except ua.uaerrors.BadEncodingLimitsExceeded:
            # asyncua lets a header it cannot decode close the connection; this one is answered with the precise
            # code (the client matches the answer by its request id: the handle is in the header not decoded)
            response = ua.ServiceFault()
            response.ResponseHeader.ServiceResult = status_code(ua.StatusCodes.BadEncodingLimitsExceeded)
            self.send_response(0, seqhdr, response)  # type: ignore[no-untyped-call]
            return True
        _uaprocessor_log.debug("process_message %r %r", typeid, requesthdr)
        try:
            return await self._process_message(typeid, requesthdr, seqhdr, body)
        except (ServiceError, ua.uaerrors.UaStatusCodeError) as e:
            status = ua.StatusCode(ua.UInt32(e.code))
            response = ua.ServiceFault()
            response.ResponseHeader.ServiceResult = status
            _uaprocessor_log.error("sending service fault response: %s (%s)", status.doc, status.name)
            self.send_response(requesthdr.RequestHandle, seqhdr, response)  # type: ignore[no-untyped-call]
            return True
        except ua.uaerrors.BadUserAccessDenied:
            user: Any = self.session.user if self.session else "Someone"
            _uaprocessor_log.warning("%s attempted to do something they are not permitted to do", user)
            response = ua.ServiceFault()
            response.ResponseHeader.ServiceResult = status_code(ua.StatusCodes.BadUserAccessDenied)
            self.send_response(requesthdr.RequestHandle, seqhdr, response)  # type: ignore[no-untyped-call]
        except Exception:
            _uaprocessor_log.exception("Error while processing message")
            response = ua.ServiceFault()
            response.ResponseHeader.ServiceResult = status_code(ua.StatusCodes.BadInternalError)
            self.send_response(requesthdr.RequestHandle, seqhdr, response)  # type: ignore[no-untyped-call]
            return True

    async def _process_message(self, typeid: Any, requesthdr: Any, seqhdr: Any, body: Any) -> Any:
        session = self.session
        if typeid == _CALL_REQUEST and session is not None and session.is_activated():
            return await self._call(requesthdr, seqhdr, body)
        if typeid == _ACTIVATE_SESSION and self.session is not None:
            await self._verify_ahead(body.copy())
        return await super()._process_message(typeid, requesthdr, seqhdr, body)  # type: ignore[no-untyped-call]

    async def _call(self, requesthdr: Any, seqhdr: Any, body: Any) -> bool:
        """asyncua 2.1.0's `_process_message` for a CallRequest of an activated session: the permission check, the
        session's activity mark, then its Call branch and `send_response` (the parameters decoded and the response
        encoded by hand, as asyncua decodes and encodes them).
        Errors propagate to `process_message` as from asyncua's own."""
        session = self.session
        assert session is not None  # noqa: S101 - checked by the caller
        user = session.user
        permissions = self._connection.security_policy.permissions
        allowed = permissions is None or permissions.check_validity(user, _CALL_REQUEST, body)  # type: ignore[no-untyped-call]
        if allowed is False:
            raise ua.uaerrors.BadUserAccessDenied
        self.session_last_activity = time.monotonic()
        session.touch()
        _uaprocessor_log.info("call request (%s)", user)
        params = decode_call_parameters(body)
        response = ua.CallResponse()
        response.Results = await session.call(params.MethodsToCall)
        # asyncua's send_response, with the response encoded by hand
        response.ResponseHeader.RequestHandle = requesthdr.RequestHandle
        data = self._connection.message_to_binary(
            encode_call_response(response),
            message_type=ua.MessageType.SecureMessage,  # type: ignore[arg-type]  # the bytes it wants (see above)
            request_id=seqhdr.RequestId,
        )
        self._transport.write(data)
        return True

    async def _verify_ahead(self, body: Any) -> None:
        verify_ahead = getattr(self.iserver.user_manager, "verify_ahead", None)
        throttle = getattr(self.iserver, "login_throttle", None)
        address = getattr(self.session, "client_address", None)
        if verify_ahead is None or (throttle is not None and throttle.penalty_remaining(address) > 0):
            return  # a penalised address is refused without a password check (LimitedSession.activate_session)
        try:
            token = struct_from_binary(ua.ActivateSessionParameters, body).UserIdentityToken
            if not isinstance(token, ua.UserNameIdentityToken):
                return
            username, password = self.iserver.decrypt_user_token(self.session, token)
        except Exception:  # whatever is wrong with the token, asyncua's own path answers it as before
            return
        await asyncio.to_thread(verify_ahead, username, password)


class _GuardedProtocol(OPCUAProtocol):
    """asyncua's connection protocol with three guards asyncua lacks.

    - A chunk whose header declares more than the chunk size limit is refused as soon as the header is in;
      asyncua collects all bytes a header announces (up to 4 GiB, re-copying the buffer on every read) first.
    - A connection from an address that already holds `max_unactivated_connections_per_address` connections
      without an activated session is closed at once, before it takes a place in `max_connections`.
    - A connection that sends no Hello within `hello_timeout_seconds` is closed; the activation timeout (longer)
      still applies to the rest of the handshake.
    """

    def __init__(self, *args: Any, settings: LimitsSettings, refusals: dict[str, AddressRefusals], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._settings = settings
        self._refusals = refusals
        self._hello_seen = False
        self._hello_watchdog: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return client_address(self.peer_name)

    @property
    def activated(self) -> bool:
        session = self.processor.session if self.processor is not None else None
        return session is not None and bool(session.is_activated())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        address = client_address(transport.get_extra_info("peername"))
        waiting = sum(
            1 for c in self.clients if isinstance(c, _GuardedProtocol) and c.address == address and not c.activated
        )
        limit = self._settings.max_unactivated_connections_per_address
        if waiting >= limit:
            self.peer_name = transport.get_extra_info("peername")
            self._refusals["unactivated"].refused(
                address, f"closed at once: {waiting} connections without an activated session, limit {limit}"
            )
            transport.close()
            return
        super().connection_made(transport)
        if self.processor is not None:
            # asyncua makes its processor inline in connection_made; nothing has used this one yet.
            self.processor = _LoginAheadProcessor(self.iserver, self.transport, self.limits)
            self.processor.set_policies(self.policies)  # type: ignore[no-untyped-call]
        if self.transport is not None:
            self._hello_watchdog = asyncio.create_task(self._close_without_hello())

    def connection_lost(self, ex: BaseException | None) -> None:
        if self._hello_watchdog is not None:
            self._hello_watchdog.cancel()
        super().connection_lost(ex)

    async def _close_without_hello(self) -> None:
        await asyncio.sleep(self._settings.hello_timeout_seconds)
        if not self._hello_seen and self.transport is not None:
            self._refusals["hello"].refused(
                self.address, f"closed: no Hello within {self._settings.hello_timeout_seconds:g} s"
            )
            self.transport.close()

    async def _process_one_msg(self, header: Any, buf: Any) -> bool:
        """asyncua's message processing; a message it cannot parse closes the connection with one WARNING line
        naming the peer and the reason, instead of asyncua's traceback per message."""
        try:
            return await super()._process_one_msg(header, buf)
        except ua.uaerrors.BadEncodingLimitsExceeded:
            # before a secure channel (OpenSecureChannel's header): the transport's Error message, then close
            _log.warning("Closing connection from %s: array elements past max_array_length", self.peer_name)
            if self.transport is not None:
                _send_tcp_error(
                    self.transport,
                    ua.StatusCodes.BadEncodingLimitsExceeded,
                    f"more array elements than the {array_limit()} allowed in one message",
                )
                self.transport.close()
            return False
        except Exception as exc:
            kind = getattr(header, "MessageType", b"?")
            _log.warning(
                "Closing connection from %s: malformed %s message: %s: %s",
                self.peer_name,
                kind.decode(errors="replace") if isinstance(kind, bytes) else kind,
                type(exc).__name__,
                str(exc)[:200] or "no detail",
            )
            if self.transport is not None:
                self.transport.close()
            return False

    def data_received(self, data: bytes) -> None:
        if not self._hello_seen and len(self._buffer) + len(data) >= 3:
            # The first message of a connection must be a Hello; anything else is asyncua's to refuse.
            self._hello_seen = (self._buffer + data)[:3] == b"HEL"
            if self._hello_seen and self._hello_watchdog is not None:
                self._hello_watchdog.cancel()
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


class GuardedBinaryServer(BinaryServer):
    """asyncua's binary server, creating connections with the guards of `_GuardedProtocol`."""

    def __init__(self, *args: Any, settings: LimitsSettings, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._settings = settings
        self._refusals = {
            "unactivated": AddressRefusals("refused"),
            "hello": AddressRefusals("without a Hello"),
        }

    def _make_protocol(self) -> OPCUAProtocol:
        return _GuardedProtocol(
            iserver=self.iserver,
            policies=self._policies,
            clients=self.clients,
            closing_tasks=self.closing_tasks,
            limits=self.limits,
            settings=self._settings,
            refusals=self._refusals,
        )
