"""A request declaring a huge array of elements that take no bytes (Null) is refused with BadEncodingLimitsExceeded
before its elements are decoded, in a Call of an activated session and before any session exists (an
ExtensionObject in CreateSession's or OpenSecureChannel's request header), and the server answers others after it.

asyncua 2.1.0 alone builds a Python object per declared element on the server's event loop: 50 million Nulls are
a request of a few dozen bytes and several seconds of the loop (server/limits/array_limits.py).
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from asyncua import Client, ua
from asyncua.client import ua_client

from qualitybridge.config import LimitsSettings
from qualitybridge.server.limits import LimitedServer
from tests.harness import standard_server

_DECLARED = 50_000_000
# A Variant array (encoding byte 0x80: array flag, type Null) of 50 million Nulls: five bytes in all.
_NULL_ARRAY = b"\x80" + struct.pack("<i", _DECLARED)
_PLACEHOLDER = "placeholder for the crafted array"
_PLACEHOLDER_BYTES = b"\x0c" + struct.pack("<i", len(_PLACEHOLDER)) + _PLACEHOLDER.encode()


@contextlib.asynccontextmanager
async def _serving() -> AsyncIterator[tuple[str, LimitedServer, ua.NodeId]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = await standard_server()  # namespace 0 from the suite's standard-nodes cache, as `serve` builds it
    endpoint = f"opc.tcp://127.0.0.1:{port}/arrays"
    server.set_endpoint(endpoint)
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])

    async def double(_parent: ua.NodeId, value: ua.Variant) -> list[ua.Variant]:
        return [ua.Variant(value.Value * 2, ua.VariantType.Int64)]

    method = await server.nodes.objects.add_method(2, "Double", double, [ua.VariantType.Int64], [ua.VariantType.Int64])
    await server.start()
    try:
        yield endpoint, server, method.nodeid
    finally:
        await server.stop()


def _crafting(monkeypatch: pytest.MonkeyPatch, craft: Callable[[Any], None]) -> None:
    """The client's requests encoded as asyncua encodes them, with the placeholder String Variant replaced by the
    Null array; `craft` may change a request before it is encoded."""
    encode = ua_client.struct_to_binary

    def crafted(request: Any) -> bytes:
        craft(request)
        return encode(request).replace(_PLACEHOLDER_BYTES, _NULL_ARRAY)

    monkeypatch.setattr(ua_client, "struct_to_binary", crafted)


async def _double(endpoint: str, method: ua.NodeId, value: int) -> int:
    async with Client(endpoint, timeout=10) as client:
        answer = await client.nodes.objects.call_method(method, ua.Variant(value, ua.VariantType.Int64))
        return int(answer)


def _placeholder_call(server: LimitedServer, method: ua.NodeId) -> ua.CallMethodRequest:
    return ua.CallMethodRequest(
        ObjectId=server.nodes.objects.nodeid, MethodId=method, InputArguments=[ua.Variant(_PLACEHOLDER)]
    )


async def test_a_call_declaring_fifty_million_nulls_is_refused_and_others_are_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with _serving() as (endpoint, server, method):
        other = Client(endpoint, timeout=10)
        await other.connect()
        try:
            async with Client(endpoint, timeout=10) as client:
                _crafting(monkeypatch, lambda _request: None)
                with pytest.raises(ua.uaerrors.BadEncodingLimitsExceeded):
                    await client.uaclient.call([_placeholder_call(server, method)])
                monkeypatch.undo()
                # the same session, and another client's, are answered after it
                assert await client.nodes.objects.call_method(method, ua.Variant(4, ua.VariantType.Int64)) == 8
                assert await other.nodes.objects.call_method(method, ua.Variant(5, ua.VariantType.Int64)) == 10
        finally:
            await other.disconnect()


def _header_carrying_null_array(request: Any, request_type: type) -> None:
    """Any request's header may carry an ExtensionObject of any known structure, which asyncua decodes: here a
    CallMethodRequest whose one argument is the Null array."""
    if isinstance(request, request_type):
        body = b"\x00\x00\x00\x00" + struct.pack("<i", 1) + _NULL_ARRAY  # ObjectId, MethodId (TwoByte 0), 1 argument
        request.RequestHeader.AdditionalHeader = ua.ExtensionObject(
            TypeId=ua.NodeId(ua.ObjectIds.CallMethodRequest_Encoding_DefaultBinary), Body=body
        )


async def test_a_create_session_declaring_fifty_million_nulls_is_refused_before_any_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with _serving() as (endpoint, _server, method):
        client = Client(endpoint, timeout=10)
        await client.connect_socket()
        try:
            await client.send_hello()
            await client.open_secure_channel()
            _crafting(monkeypatch, lambda request: _header_carrying_null_array(request, ua.CreateSessionRequest))
            with pytest.raises(ua.uaerrors.BadEncodingLimitsExceeded):
                await client.create_session()
            monkeypatch.undo()
        finally:
            client.disconnect_socket()
        assert await _double(endpoint, method, 6) == 12


async def test_an_open_secure_channel_declaring_fifty_million_nulls_is_answered_with_the_error_and_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with _serving() as (endpoint, _server, method):
        client = Client(endpoint, timeout=10)
        await client.connect_socket()
        try:
            await client.send_hello()
            _crafting(monkeypatch, lambda request: _header_carrying_null_array(request, ua.OpenSecureChannelRequest))
            with pytest.raises(ua.uaerrors.BadEncodingLimitsExceeded):
                await client.open_secure_channel()
            monkeypatch.undo()
        finally:
            client.disconnect_socket()
        assert await _double(endpoint, method, 7) == 14


async def test_the_limit_is_published_in_server_capabilities() -> None:
    async with _serving() as (endpoint, _server, _method), Client(endpoint, timeout=10) as client:
        node = client.get_node(ua.NodeId(ua.ObjectIds.Server_ServerCapabilities_MaxArrayLength))
        assert await node.read_value() == LimitsSettings().max_array_length
