"""The catalogue's nodes are the nodes `instantiate` made, node for node, and they behave like them for a client.

Two in-process asyncua servers with the QualityBridge model: one gets an order made the way the view made every
order before the catalogue (instantiate per order, operation and characteristic, then the member values written),
the other publishes it through AddressSpaceView, whose nodes are built on first access from node templates. Every
node of the first must exist in the second with equal attributes (timestamps aside) and equal references in the
same order, and no other node may exist. Then the view's answers to a real client are checked: browse, read,
TranslateBrowsePaths, a subscription through an update, and withdrawal.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from asyncua import Client, Server, ua
from asyncua.server.address_space import NodeData

from qualitybridge.domain.model import InspectionCharacteristic, Operation, OrderState, ProductionOrder
from qualitybridge.domain.publication import PublicationScope
from qualitybridge.server.address_space.catalogue import instantiate
from qualitybridge.server.address_space.members import (
    HISTORIZING,
    WAITING,
    characteristic_members,
    operation_members,
    order_members,
    spc_members,
)
from qualitybridge.server.address_space.namespace import QualityBridgeNamespace
from qualitybridge.server.address_space.view import AddressSpaceView
from tests.builders import gauge
from tests.harness import standard_server

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _char(char_id: str, upper: float = 12.018, name: str = "Bore diameter") -> InspectionCharacteristic:
    return InspectionCharacteristic(
        characteristic_id=char_id,
        name=name,
        nominal=12.009,
        lower_limit=12.0,
        upper_limit=upper,
        unit="MMT",
        plan_version="3",
        center_line=12.009,
        upper_control_limit=12.015,
        lower_control_limit=12.003,
    )


def _order(order_no: str = "4711", *, upper: float = 12.018, extra_char: bool = False) -> ProductionOrder:
    chars = (_char("C010", upper), _char("C020", name="Depth"))
    return ProductionOrder(
        order_no=order_no,
        material_no="MAT-1",
        work_centre="WC-1",
        planned_quantity=10,
        state=OrderState.ALLOWED_TO_START,
        plan_version="3",
        planned_start=NOW,  # planned_end stays unset: its node keeps the type's Null
        operations=(
            Operation(operation_no="0010", work_centre="WC-1", characteristics=chars),
            Operation(
                operation_no="0020",
                description="drill",
                characteristics=(_char("C030"), *((_char("C040"),) if extra_char else ())),
            ),
        ),
    )


async def _instantiated_as_before(server: Server, ns: QualityBridgeNamespace, order: ProductionOrder) -> None:
    """The order made exactly as the view made every order before the catalogue (its code, step by step)."""

    async def write(parent: ua.NodeId, members: list[Any]) -> None:
        for path, value, variant_type in members:
            if value is not None:
                await server.write_attribute_value(
                    ns.member(parent, path), ua.DataValue(ua.Variant(value, variant_type))
                )

    order_id = ns.order(order.order_no)
    await instantiate(
        server, ns, ns.root_child("Orders"), order_id, order.order_no, ns.production_order_type, event_source=True
    )
    await write(order_id, order_members(order))
    for operation in order.operations:
        op_id = ns.operation(order.order_no, operation.operation_no)
        await instantiate(
            server, ns, ns.member(order_id, "Operations"), op_id, operation.operation_no, ns.operation_type
        )
        await write(op_id, operation_members(operation))
        for char in operation.characteristics:
            char_id = ns.characteristic(order.order_no, operation.operation_no, char.characteristic_id)
            await instantiate(
                server,
                ns,
                ns.member(op_id, "Characteristics"),
                char_id,
                char.characteristic_id,
                ns.characteristic_type,
                display_name=f"{char.characteristic_id} {char.name}",
                event_source=True,
            )
            await write(char_id, characteristic_members(char))
            await server.write_attribute_value(
                ns.member(char_id, "LastValue"), HISTORIZING, ua.AttributeIds.Historizing
            )
            for path, (value, variant_type) in spc_members(None, char).items():
                data_value = WAITING if value is None else ua.DataValue(ua.Variant(value, variant_type))
                await server.write_attribute_value(ns.member(char_id, path), data_value)


async def _server() -> tuple[Server, QualityBridgeNamespace]:
    server = await standard_server()
    return server, await QualityBridgeNamespace.load(server)


def _subtree(nodes: Any, root: ua.NodeId) -> dict[ua.NodeId, NodeData]:
    """Every node reachable from `root` by forward references within the QualityBridge namespace's instance ids."""
    found: dict[ua.NodeId, NodeData] = {}
    pending = [root]
    prefix = str(root.Identifier)
    while pending:
        node_id = pending.pop()
        if node_id in found:
            continue
        found[node_id] = nodes[node_id]
        pending.extend(
            ref.NodeId
            for ref in found[node_id].references
            if ref.IsForward and isinstance(ref.NodeId.Identifier, str) and ref.NodeId.Identifier.startswith(prefix)
        )
    return found


def _without_time(value: ua.DataValue) -> ua.DataValue:
    return dataclasses.replace(value, SourceTimestamp=None, ServerTimestamp=None)


async def test_published_nodes_equal_instantiated_ones_attribute_for_attribute_and_reference_for_reference() -> None:
    before, ns_before = await _server()
    after, ns_after = await _server()
    assert ns_before.index == ns_after.index
    order = _order()
    await _instantiated_as_before(before, ns_before, order)
    view = AddressSpaceView(after, ns_after)
    await view.show([order], [])

    root = ns_before.order(order.order_no)
    expected = _subtree(before.iserver.aspace, root)
    actual = _subtree(after.iserver.aspace, root)
    assert len(expected) == 5 + 2 * 5 + 4 * 27 - 4 + 4 or len(expected) > 100  # ~27 nodes per characteristic
    assert sorted(map(str, actual)) == sorted(map(str, expected))
    for node_id, node in expected.items():
        built = actual[node_id]
        assert built.attributes.keys() == node.attributes.keys(), node_id
        for attribute, value in node.attributes.items():
            assert value.value is not None
            assert _without_time(built.attributes[attribute].value) == _without_time(value.value), (node_id, attribute)
            had_time = value.value.SourceTimestamp is not None
            assert (built.attributes[attribute].value.SourceTimestamp is not None) == had_time, (node_id, attribute)
        assert built.references == node.references, node_id

    orders_folder = ns_before.root_child("Orders")
    link = [ref for ref in before.iserver.aspace[orders_folder].references if ref.NodeId == root]
    assert [ref for ref in after.iserver.aspace[orders_folder].references if ref.NodeId == root] == link


async def test_a_node_is_built_only_when_reached_and_no_other_id_exists() -> None:
    server, ns = await _server()
    view = AddressSpaceView(server, ns)
    await view.show([_order(str(n)) for n in range(100)], [])
    assert view.published_orders == 100
    assert view.built_nodes == 0
    address_space = server.iserver.aspace
    nominal = ns.member(ns.characteristic("42", "0010", "C010"), "Nominal")
    assert nominal in address_space
    assert view.built_nodes == 0  # asking whether it exists builds nothing
    assert address_space.read_attribute_value(nominal, ua.AttributeIds.Value).Value.Value == 12.009
    assert view.built_nodes == 1
    for unknown in (
        ns.member(ns.characteristic("42", "0010", "C010"), "NoSuchMember"),
        ns.characteristic("42", "0010", "C999"),
        ns.order("100"),
        ns.node_id("Order/42.Operations.Nominal"),
        ns.node_id("Prototype"),
    ):
        assert unknown not in address_space
        assert address_space.get(unknown) is None
        assert address_space.read_attribute_value(unknown, ua.AttributeIds.Value).StatusCode.value == (
            ua.StatusCodes.BadNodeIdUnknown
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def running() -> AsyncIterator[tuple[Server, QualityBridgeNamespace, AddressSpaceView, str]]:
    server, ns = await _server()
    url = f"opc.tcp://127.0.0.1:{_free_port()}/qb"
    server.set_endpoint(url)
    view = AddressSpaceView(server, ns)
    await view.show([_order(str(n)) for n in range(50)], [gauge()])
    await server.start()
    try:
        yield server, ns, view, url
    finally:
        await server.stop()


async def test_a_client_browses_reads_translates_and_subscribes_through_changes_and_withdrawal(
    running: tuple[Server, QualityBridgeNamespace, AddressSpaceView, str],
) -> None:
    server, _ns, view, url = running
    async with Client(url, timeout=10) as client:
        idx = await client.get_namespace_index("https://qualitybridge.dev/UA/")
        orders = client.get_node(ua.NodeId("QualityBridge.Orders", idx))
        assert len(await orders.get_children()) == 50
        order = client.get_node(ua.NodeId("Order/7", idx))
        char = await order.get_child([f"{idx}:Operations", f"{idx}:0010", f"{idx}:Characteristics", f"{idx}:C010"])
        assert char.nodeid == ua.NodeId("Order/7/Op/0010/Char/C010", idx)
        assert (await char.read_display_name()).Text == "C010 Bore diameter"
        upper = await char.get_child([f"{idx}:UpperLimit"])
        eu_range = await char.get_child([f"{idx}:LastValue", "0:EURange"])
        assert await upper.read_value() == 12.018
        assert (await eu_range.read_value()).High == 12.018
        assert await (await char.get_child([f"{idx}:Spc", f"{idx}:UCL"])).read_value() == 12.015
        released = await client.get_node(ua.NodeId("QualityBridge.ReleasedOrders", idx)).read_value()
        assert len(released) == 50

        changes: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        class Handler:
            def datachange_notification(self, node: Any, value: Any, _data: Any) -> None:
                changes.put_nowait((node.nodeid.Identifier, value))

            def status_change_notification(self, status: Any) -> None:
                changes.put_nowait(("status", status))

        subscription = await client.create_subscription(50, Handler())
        await subscription.subscribe_data_change(
            [upper, client.get_node(ua.NodeId("Order/9/Op/0020.Description", idx))]
        )
        initial = {await asyncio.wait_for(changes.get(), 5), await asyncio.wait_for(changes.get(), 5)}
        assert initial == {("Order/7/Op/0010/Char/C010.UpperLimit", 12.018), ("Order/9/Op/0020.Description", "drill")}

        # A sync changes order 7 (a limit, a new characteristic) and withdraws order 9; the rest are the same objects.
        kept = [_order(str(n)) for n in range(50) if n not in (7, 9)]
        await view.show([*kept, _order("7", upper=12.02, extra_char=True)], [gauge()])
        seen = dict([await asyncio.wait_for(changes.get(), 5), await asyncio.wait_for(changes.get(), 5)])
        assert seen == {
            "Order/7/Op/0010/Char/C010.UpperLimit": 12.02,
            "Order/9/Op/0020.Description": None,  # told it is gone (BadNodeIdUnknown); the subscription stays
        }
        assert (await eu_range.read_value()).High == 12.02
        op20 = client.get_node(ua.NodeId("Order/7/Op/0020.Characteristics", idx))
        assert [c.nodeid.Identifier for c in await op20.get_children()] == [
            "Order/7/Op/0020/Char/C030",
            "Order/7/Op/0020/Char/C040",
        ]
        assert len(await orders.get_children()) == 49
        with pytest.raises(ua.uaerrors.BadNodeIdUnknown):
            await client.get_node(ua.NodeId("Order/9.OrderNumber", idx)).read_value()
        assert "9" not in await client.get_node(ua.NodeId("QualityBridge.ReleasedOrders", idx)).read_value()
        assert not any(str(key.Identifier).startswith("Order/9") for key in server.iserver.aspace.keys())  # noqa: SIM118 - built nodes only
        await subscription.delete()


async def test_the_scope_leaves_orders_of_other_work_centres_in_the_store_only() -> None:
    server, ns = await _server()
    other = _order("2").model_copy(update={"work_centre": "WC-2", "operations": ()})
    view = AddressSpaceView(server, ns, scope=PublicationScope(work_centres=frozenset({"WC-1"})))
    await view.show([_order("1"), other], [])
    assert ns.order("1") in server.iserver.aspace
    assert ns.order("2") not in server.iserver.aspace
    released = server.iserver.aspace.read_attribute_value(ns.root_child("ReleasedOrders"), ua.AttributeIds.Value)
    assert released.Value.Value == ["1"]


async def test_a_state_change_during_a_publishing_sync_waits_for_it_instead_of_adding_the_order_twice() -> None:
    """StartOrder answered while a large sync is still publishing used to add the same order a second time
    ("AddNodesItem already exists") and set it aside; now the second change waits for the first."""
    server, ns = await _server()
    view = AddressSpaceView(server, ns)
    orders = [_order(str(n)) for n in range(2000)]
    running = [*orders[:-1], orders[-1].model_copy(update={"state": OrderState.RUNNING})]
    await asyncio.gather(view.show(orders, []), view.show(running, []))
    assert view.unshown == {}
    assert view.published_orders == 2000
    state = server.iserver.aspace.read_attribute_value(ns.member(ns.order("1999"), "State"), ua.AttributeIds.Value)
    assert state.Value.Value == int(OrderState.RUNNING)
