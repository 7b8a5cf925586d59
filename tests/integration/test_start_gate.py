"""During the start, clients' method calls wait until the stored master data is loaded (LimitedServer.hold_calls):
the endpoint opens first, and a report for an order not loaded yet must not be refused as unknown meanwhile."""

from __future__ import annotations

import asyncio
import socket

import pytest
from asyncua import Client, ua

from tests.harness import standard_server, wait_until


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_call_during_the_load_waits_for_it_while_reads_are_answered() -> None:
    server = await standard_server()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{_free_port()}/gate")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    loaded: list[str] = []
    calls: list[list[str]] = []

    def known_orders(_parent: ua.NodeId) -> list[ua.Variant]:
        calls.append(list(loaded))
        return [ua.Variant(len(loaded), ua.VariantType.Int32)]

    objects = server.nodes.objects
    method = await objects.add_method(2, "KnownOrders", known_orders, [], [ua.VariantType.Int32])
    iserver = server.limited_iserver
    iserver.calls_wait_seconds = 60  # the bound is another test's; here the release must come first, however slow
    iserver.hold_calls()
    await server.start()
    try:
        async with (
            Client(server.endpoint.geturl(), timeout=60, watchdog_intervall=60) as caller,
            Client(server.endpoint.geturl(), timeout=60, watchdog_intervall=60) as reader,
        ):
            call = asyncio.create_task(caller.get_node(objects.nodeid).call_method(method.nodeid))
            await wait_until(lambda: iserver.calls_waiting == 1, "the call to wait", seconds=30, interval=0.01)
            state = await reader.get_node(ua.ObjectIds.Server_ServerStatus_State).read_value()
            assert state == ua.ServerState.Running  # the endpoint answers meanwhile
            assert calls == []
            loaded.append("1000417")
            iserver.release_calls()
            assert await asyncio.wait_for(call, 60) == 1
            assert calls == [["1000417"]]  # it ran on what was loaded
            assert iserver.calls_waiting == 0
            assert await caller.get_node(objects.nodeid).call_method(method.nodeid) == 1  # no wait once released
    finally:
        await server.stop()


async def test_a_call_the_load_does_not_release_in_time_is_refused_for_a_retry_and_never_runs() -> None:
    # A call held past the client's request timeout would be lost to the client (a timeout) and then run unseen:
    # a report stored whose retry, without a client result id, stores it again. Refused instead, nothing runs.
    server = await standard_server()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{_free_port()}/gate")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ran: list[str] = []

    def report(_parent: ua.NodeId) -> list[ua.Variant]:
        ran.append("report")
        return [ua.Variant(1, ua.VariantType.Int32)]

    objects = server.nodes.objects
    method = await objects.add_method(2, "Report", report, [], [ua.VariantType.Int32])
    iserver = server.limited_iserver
    assert iserver.calls_wait_seconds < 1, "below asyncua's session probe (1 s), so the client gets the answer"
    iserver.calls_wait_seconds = 0.2
    iserver.hold_calls()  # and never released: the load hangs
    await server.start()
    try:
        async with Client(server.endpoint.geturl(), timeout=60, watchdog_intervall=60) as caller:
            with pytest.raises(ua.uaerrors.BadResourceUnavailable):
                await caller.get_node(objects.nodeid).call_method(method.nodeid)
            assert ran == []
            assert iserver.calls_waiting == 0
            iserver.release_calls()
            assert await caller.get_node(objects.nodeid).call_method(method.nodeid) == 1  # the retry runs
            assert ran == ["report"]
    finally:
        await server.stop()
