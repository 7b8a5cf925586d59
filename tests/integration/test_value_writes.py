"""`write_values` repeats asyncua 2.1.0's `write_attribute_value` for the Value attribute: pinned by the source's
digest, and checked to leave every node, value and subscriber callback exactly as asyncua's own writes do."""

from __future__ import annotations

import hashlib
import inspect
import logging
from typing import Any

import pytest
from asyncua import Server, ua
from asyncua.server.address_space import AddressSpace

from qualitybridge.server.address_space import value_writes
from qualitybridge.server.address_space.value_writes import REPEATS_ASYNCUA, write_values
from tests.harness import standard_server

# sha256 of asyncua 2.1.0's `AddressSpace.write_attribute_value`, which `write_values` repeats for the Value
# attribute: a different asyncua fails here; compare, adjust write_values, then the digest.
_ASYNCUA_WRITE_ATTRIBUTE_VALUE = "5887d38687e80d6721ce9ea4ea23e74ad6d0254cfa21ee214b470ea1d4915c57"


def test_the_repeated_write_is_asyncuas() -> None:
    source = inspect.getsource(AddressSpace.write_attribute_value).encode()
    assert hashlib.sha256(source).hexdigest() == _ASYNCUA_WRITE_ATTRIBUTE_VALUE, "asyncua's write changed"
    assert REPEATS_ASYNCUA


async def _twins(server: Server, name: str, value: Any, variant_type: ua.VariantType) -> list[ua.NodeId]:
    objects = server.nodes.objects
    made = []
    for twin in ("asyncua", "ours"):
        node_id, browse_name = ua.NodeId(f"{name}.{twin}", 1), f"{name}.{twin}"
        if value is None:  # a Null value of a Double variable (how a type's instance starts)
            node = await objects.add_variable(
                node_id, browse_name, ua.Variant(), datatype=ua.NodeId(ua.ObjectIds.Double)
            )
        else:
            node = await objects.add_variable(node_id, browse_name, value, variant_type)
        made.append(node.nodeid)
    return made


def _shown(server: Server, node_id: ua.NodeId) -> Any:
    data_value = server.iserver.aspace.read_attribute_value(node_id, ua.AttributeIds.Value)
    return data_value.Value, data_value.StatusCode


@pytest.mark.parametrize("repeats", [True, False])
async def test_values_nodes_and_subscribers_end_as_with_asyncuas_writes(
    repeats: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(value_writes, "REPEATS_ASYNCUA", repeats)  # False: another asyncua's fallback
    server = await standard_server()
    aspace = server.iserver.aspace
    written = [
        ("double", 1.5, ua.VariantType.Double, ua.DataValue(ua.Variant(2.5, ua.VariantType.Double))),
        ("mismatch", 1.5, ua.VariantType.Double, ua.DataValue(ua.Variant("text", ua.VariantType.String))),
        (
            "bad",
            1.5,
            ua.VariantType.Double,
            ua.DataValue(StatusCode=ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData)),
        ),
        ("null", None, ua.VariantType.Double, ua.DataValue(ua.Variant(7.0, ua.VariantType.Double))),
        ("null-mismatch", None, ua.VariantType.Double, ua.DataValue(ua.Variant(7, ua.VariantType.Int32))),
        ("text", "a", ua.VariantType.String, ua.DataValue(ua.Variant("b", ua.VariantType.String))),
    ]
    pairs = {name: await _twins(server, name, value, vt) for name, value, vt, _ in written}
    seen: dict[str, list[Any]] = {"asyncua": [], "ours": []}
    for twin, index in (("asyncua", 0), ("ours", 1)):
        for name, ids in pairs.items():

            async def failing(_handle: Any, _value: ua.DataValue) -> None:
                raise RuntimeError("a broken subscription")

            async def watching(handle: Any, value: ua.DataValue, twin: str = twin, name: str = name) -> None:
                seen[twin].append((name, handle % 1000, value))

            node_attribute = aspace._nodes[ids[index]].attributes[ua.AttributeIds.Value]
            base = 1000 * (index + 1)
            node_attribute.datachange_callbacks[base + 1] = failing
            node_attribute.datachange_callbacks[base + 2] = watching
    setter_calls: list[Any] = []
    setter_twins = await _twins(server, "setter", 1.0, ua.VariantType.Double)
    for node_id in setter_twins:
        aspace._nodes[node_id].attributes[ua.AttributeIds.Value].value_setter = lambda node, attr, value: (
            setter_calls.append((str(node.nodeid.Identifier).split(".")[0], attr, value))
        )
    unknown = ua.NodeId("no-such-node", 1)
    no_value = server.nodes.objects.nodeid  # an Object: no Value attribute
    with caplog.at_level(logging.ERROR):
        for name, _value, _vt, data_value in written:
            await aspace.write_attribute_value(pairs[name][0], ua.AttributeIds.Value, data_value)
        await aspace.write_attribute_value(setter_twins[0], ua.AttributeIds.Value, written[0][3])
        await aspace.write_attribute_value(unknown, ua.AttributeIds.Value, written[0][3])
        await aspace.write_attribute_value(no_value, ua.AttributeIds.Value, written[0][3])
        await write_values(
            aspace,
            [
                *((pairs[name][1], data_value) for name, _value, _vt, data_value in written),
                (setter_twins[1], written[0][3]),
                (unknown, written[0][3]),
                (no_value, written[0][3]),
            ],
        )
    for name, ids in pairs.items():
        assert _shown(server, ids[1]) == _shown(server, ids[0]), name
    assert seen["ours"] == seen["asyncua"]
    assert [name for name, _, _ in seen["ours"]] == ["double", "bad", "null", "text"]  # the mismatch is not written
    assert setter_calls == [("setter", ua.AttributeIds.Value, written[0][3])] * 2
    failures = [record for record in caplog.records if "Error calling datachange callback" in record.getMessage()]
    assert len(failures) == 8  # each written twin's broken subscription logged, the next one still told
    assert unknown not in aspace
