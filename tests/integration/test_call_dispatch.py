"""The Call fast path of the connection processor (server/limits/transport.py, `_LoginAheadProcessor._call`).

asyncua 2.1's dispatcher builds a NodeId for every branch it compares the request type with, and Call is its 30th;
QualityBridge dispatches Call itself with asyncua's own code for that branch. These tests pin the copy to asyncua's
source (an asyncua that changes the branch fails here, not in production) and check that a call answers, is
refused by the permission ruleset with BadUserAccessDenied, and never reaches asyncua's chain; and that a Call of a
session that is not activated (not yet, or closed) is refused with BadSessionNotActivated as asyncua refuses it.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asyncua import Client, ua
from asyncua.server.uaprocessor import UaProcessor

from qualitybridge.server.limits import LimitedServer, transport
from qualitybridge.server.security.symmetric_chunks import FastSymmetricConnection
from tests.harness import standard_server

# asyncua 2.1.0's lines that `_LoginAheadProcessor._call` repeats (whitespace aside), in this order.
_ASYNCUA_LINES = (
    "user = self.session.user",
    "if self._connection.security_policy.permissions is not None:",
    "if self._connection.security_policy.permissions.check_validity(user, typeid, body) is False:",
    "raise ua.uaerrors.BadUserAccessDenied",
    "self.session_last_activity = time.monotonic()",
    "if self.session is not None:",
    "self.session.touch()",
    "if not self.session.is_activated():",  # the fast path's own guard: only an activated session's Call takes it
    "raise ServiceError(ua.StatusCodes.BadSessionNotActivated)",
    "elif typeid == ua.NodeId(ua.ObjectIds.CallRequest_Encoding_DefaultBinary):",
    '_logger.info("call request (%s)", user)',
    "params = struct_from_binary(ua.CallParameters, body)",
    "results = await self.session.call(params.MethodsToCall)",
    "response = ua.CallResponse()",
    "response.Results = results",
    "self.send_response(requesthdr.RequestHandle, seqhdr, response)",
)


# asyncua 2.1.0's `UaProcessor.send_response`, which `_call` repeats with the response encoded by hand.
_ASYNCUA_SEND_RESPONSE = (
    "def send_response(self, requesthandle, seqhdr, response, msgtype=ua.MessageType.SecureMessage):",
    "response.ResponseHeader.RequestHandle = requesthandle",
    "data = self._connection.message_to_binary(",
    "struct_to_binary(response), message_type=msgtype, request_id=seqhdr.RequestId",
    ")",
    "self._transport.write(data)",
)


# sha256 of asyncua 2.1.0's `UaProcessor.process_message`, which `_LoginAheadProcessor.process_message` repeats with
# the type id and request header decoded by hand: a different asyncua fails here; compare, adjust, then the digest.
_ASYNCUA_PROCESS_MESSAGE = "303c6a0c8e315eddc6b268ea3b86311c5b79a0a29390ce2459e35ed6d3427b9e"


def test_the_copied_call_branch_is_asyncuas() -> None:
    lines = [line.strip() for line in inspect.getsource(UaProcessor._process_message).splitlines()]
    position = 0
    for expected in _ASYNCUA_LINES:
        assert expected in lines[position:], f"asyncua's dispatcher changed: {expected!r} not found in order"
        position = lines.index(expected, position) + 1
    send_response = [line.strip() for line in inspect.getsource(UaProcessor.send_response).splitlines()]
    assert tuple(line for line in send_response if line) == _ASYNCUA_SEND_RESPONSE, "asyncua's send_response changed"
    process_message = inspect.getsource(UaProcessor.process_message).encode()
    assert hashlib.sha256(process_message).hexdigest() == _ASYNCUA_PROCESS_MESSAGE, "asyncua's process_message changed"


class _Ruleset:
    """Refuses every request while `deny` is set (asyncua calls check_validity before it dispatches)."""

    def __init__(self) -> None:
        self.deny = False
        self.checked: list[ua.NodeId] = []

    def check_validity(self, _user: Any, action_type: ua.NodeId, _body: Any) -> bool:
        self.checked.append(action_type)
        return not self.deny


@contextlib.asynccontextmanager
async def _serving(ruleset: _Ruleset, ran: list[int]) -> AsyncIterator[tuple[str, LimitedServer, ua.NodeId]]:
    """A LimitedServer (NoSecurity, the ruleset's verdicts) with a method Double that notes what it ran; its endpoint,
    the server and the method's NodeId."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = await standard_server()  # namespace 0 from the suite's standard-nodes cache, as `serve` builds it
    endpoint = f"opc.tcp://127.0.0.1:{port}/dispatch"
    server.set_endpoint(endpoint)
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity], permission_ruleset=ruleset)  # type: ignore[arg-type]

    async def double(_parent: ua.NodeId, value: ua.Variant) -> list[ua.Variant]:
        ran.append(value.Value)
        return [ua.Variant(value.Value * 2, ua.VariantType.Int64)]

    method = await server.nodes.objects.add_method(2, "Double", double, [ua.VariantType.Int64], [ua.VariantType.Int64])
    await server.start()
    try:
        yield endpoint, server, method.nodeid
    finally:
        await server.stop()


async def test_a_call_is_answered_and_refused_through_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    reached_asyncua: list[ua.NodeId] = []
    asyncua_dispatch = UaProcessor._process_message

    async def recording(self: UaProcessor, typeid: ua.NodeId, *args: Any) -> Any:
        reached_asyncua.append(typeid)
        return await asyncua_dispatch(self, typeid, *args)

    monkeypatch.setattr(UaProcessor, "_process_message", recording)
    decoded: list[ua.CallParameters] = []
    hand_decoder = transport.decode_call_parameters

    def decoding(body: Any) -> ua.CallParameters:
        decoded.append(hand_decoder(body))
        return decoded[-1]

    monkeypatch.setattr(transport, "decode_call_parameters", decoding)
    encoded: list[ua.CallResponse] = []
    hand_encoder = transport.encode_call_response

    def encoding(response: ua.CallResponse) -> bytes:
        encoded.append(response)
        return hand_encoder(response)

    monkeypatch.setattr(transport, "encode_call_response", encoding)
    started: list[ua.NodeId] = []
    hand_start = transport.decode_request_start

    def starting(body: Any) -> tuple[ua.NodeId, ua.RequestHeader]:
        type_id, header = hand_start(body)
        started.append(type_id)
        return type_id, header

    monkeypatch.setattr(transport, "decode_request_start", starting)
    ruleset = _Ruleset()
    async with _serving(ruleset, []) as (endpoint, _server, method), Client(endpoint, timeout=30) as client:
        assert await client.nodes.objects.call_method(method, ua.Variant(21, ua.VariantType.Int64)) == 42
        ruleset.deny = True
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await client.nodes.objects.call_method(method, ua.Variant(1, ua.VariantType.Int64))
        ruleset.deny = False
    assert transport._CALL_REQUEST in ruleset.checked  # the ruleset saw both calls
    assert transport._CALL_REQUEST not in reached_asyncua  # and asyncua's chain neither
    assert reached_asyncua  # while every other request still went through it (sessions, reads)
    # the answered call's parameters were decoded by the hand-written decoder (the refused one's never were)
    assert [p.MethodsToCall[0].InputArguments for p in decoded] == [[ua.Variant(21, ua.VariantType.Int64)]]
    # every request's start (the calls', and the session's requests before them) was decoded by hand
    assert started.count(transport._CALL_REQUEST) == 2
    assert len(started) == len(reached_asyncua) + 2
    # and the answer encoded by the hand-written encoder
    assert [r.Results[0].OutputArguments for r in encoded] == [[ua.Variant(42, ua.VariantType.Int64)]]


async def test_a_call_on_a_session_not_activated_or_closed_is_refused_as_asyncua_refuses_it() -> None:
    """asyncua answers BadSessionNotActivated to a Call on a session that was created but not activated, or closed
    (CloseSession keeps the secure channel); the fast path must neither run the method nor answer otherwise."""
    ran: list[int] = []
    async with _serving(_Ruleset(), ran) as (endpoint, server, method):  # the ruleset allows everything

        def request(value: int) -> ua.CallMethodRequest:
            arguments = [ua.Variant(value, ua.VariantType.Int64)]
            return ua.CallMethodRequest(ObjectId=server.nodes.objects.nodeid, MethodId=method, InputArguments=arguments)

        client = Client(endpoint, timeout=30)
        await client.connect_socket()
        try:
            await client.send_hello()
            await client.open_secure_channel()
            await client.create_session()
            with pytest.raises(ua.uaerrors.BadSessionNotActivated):
                await client.uaclient.call([request(1)])
            await client.activate_session()
            (answer,) = await client.uaclient.call([request(2)])
            assert answer.OutputArguments == [ua.Variant(4, ua.VariantType.Int64)]
            await client.uaclient.close_session(False)
            with pytest.raises(ua.uaerrors.BadSessionNotActivated):
                await client.uaclient.call([request(3)])
        finally:
            client.disconnect_socket()
    assert ran == [2], "only the call of the activated session ran"


async def test_every_connection_reads_and_writes_its_chunks_through_the_fast_symmetric_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server's connections use FastSymmetricConnection (server/security/symmetric_chunks.py) for the messages
    after OpenSecureChannel: without it nothing fails, the server is only slower, so the wiring is pinned here."""
    through: list[str] = []
    for name in ("message_to_binary", "receive_from_header_and_body"):
        original = getattr(FastSymmetricConnection, name)

        def counting(self: Any, *args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            through.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(FastSymmetricConnection, name, counting)
    ran: list[int] = []
    async with _serving(_Ruleset(), ran) as (endpoint, server, method), Client(endpoint, timeout=10) as client:
        assert await client.nodes.objects.call_method(method, ua.Variant(21, ua.VariantType.Int64)) == 42
        protocols = [protocol for protocol in server.bserver.clients if protocol.processor is not None]
        assert len(protocols) == 1
        assert type(protocols[0].processor._connection) is FastSymmetricConnection
    assert ran == [21]
    assert through.count("receive_from_header_and_body") >= 4  # OpenSecureChannel, CreateSession, Activate, Call
    assert through.count("message_to_binary") >= 4
