"""Writing several Value attributes in one call: a report's four Last* values and its two or three Spc values.

`AddressSpace.write_attribute_value` is one coroutine per value that answers a new StatusCode object nobody reads
here; a report writes up to seven values, so `write_values` takes them all in one call and repeats, for each,
exactly what asyncua 2.1.0's `write_attribute_value` does for the Value attribute: an unknown node or attribute is
left alone, a bad StatusCode empties the value, a value of another type than the node's is not written
(BadTypeMismatch), a value setter is used if there is one, and every data-change callback (each subscriber) is
awaited in turn, a failing one logged.

asyncua internals: AddressSpace._nodes, AddressSpace._is_expected_variant_type, AttributeValue (value,
value_callback, value_setter, datachange_callbacks), AddressSpace.logger. Pinned to asyncua 2.1.0 by
tests/integration/test_value_writes.py (the source digest of the function repeated here); with any other asyncua
each value goes through `write_attribute_value` itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from asyncua import ua
from asyncua.server.address_space import AddressSpace

from qualitybridge.server.asyncua_pin import asyncua_is_pinned

__all__ = ["REPEATS_ASYNCUA", "write_values"]

REPEATS_ASYNCUA = asyncua_is_pinned() and hasattr(AddressSpace, "_is_expected_variant_type")
_VALUE = ua.AttributeIds.Value


async def write_values(address_space: AddressSpace, writes: Iterable[tuple[ua.NodeId, ua.DataValue]]) -> None:
    """Write each (node, value) into the node's Value attribute, in order, as `write_attribute_value` would."""
    if not REPEATS_ASYNCUA:
        for node_id, value in writes:
            await address_space.write_attribute_value(node_id, _VALUE, value)
        return
    nodes = address_space._nodes
    for node_id, value in writes:
        node = nodes.get(node_id, None)
        if node is None:
            continue  # BadNodeIdUnknown
        attval = node.attributes.get(_VALUE, None)
        if attval is None:
            continue  # BadAttributeIdInvalid
        if value.StatusCode is not None and value.StatusCode.is_bad():
            value = dataclasses.replace(value, Value=ua.Variant(None, ua.VariantType.Null))
        elif not address_space._is_expected_variant_type(value, attval, node):
            continue  # BadTypeMismatch
        if attval.value_setter is not None:
            attval.value_setter(node, _VALUE, value)
        else:
            attval.value = value
            attval.value_callback = None
        for handle, callback in attval.datachange_callbacks.items():
            try:
                await callback(handle, value)
            except Exception as ex:
                address_space.logger.exception("Error calling datachange callback %s, %s, %s", handle, callback, ex)
