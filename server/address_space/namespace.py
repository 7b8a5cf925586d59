"""The QualityBridge namespace: its URI, the NodeSet that defines it, and the NodeId scheme of its instances.

NodeIds are strings derived from business keys (order number, operation, characteristic id, gauge id), so a
PLC that stores a NodeId in its program finds the same node after every restart and every ERP resync.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import as_file, files

from asyncua import Server, ua

__all__ = [
    "NAMESPACE_URI",
    "NODESET_FILE",
    "QualityBridgeNamespace",
    "characteristic_key",
    "operation_key",
    "order_key",
]

NAMESPACE_URI = "https://qualitybridge.dev/UA/"
NODESET_FILE = "QualityBridge.NodeSet2.xml"


@dataclass(frozen=True)
class QualityBridgeNamespace:
    index: int

    @classmethod
    async def load(cls, server: Server) -> QualityBridgeNamespace:
        """Import the NodeSet2 model into the server and learn the namespace index it was given."""
        with as_file(files("qualitybridge.nodesets") / NODESET_FILE) as path:
            await server.import_xml(str(path))
        return cls(index=await server.get_namespace_index(NAMESPACE_URI))

    def node_id(self, identifier: str | int) -> ua.NodeId:
        key = ua.String(identifier) if isinstance(identifier, str) else ua.Int32(identifier)
        return ua.NodeId(key, ua.Int16(self.index))

    # ---- types (numeric ids fixed in the NodeSet) ----
    @property
    def production_order_type(self) -> ua.NodeId:
        return self.node_id(1001)

    @property
    def operation_type(self) -> ua.NodeId:
        return self.node_id(1002)

    @property
    def characteristic_type(self) -> ua.NodeId:
        return self.node_id(1003)

    @property
    def test_equipment_type(self) -> ua.NodeId:
        return self.node_id(1004)

    @property
    def measurement_reported_event_type(self) -> ua.NodeId:
        return self.node_id(1010)

    # ---- the fixed entry point ----
    @property
    def root(self) -> ua.NodeId:
        return self.node_id("QualityBridge")

    def root_child(self, name: str) -> ua.NodeId:
        return self.node_id(f"QualityBridge.{name}")

    # ---- instances, derived from business keys ----
    def order(self, order_no: str) -> ua.NodeId:
        return self.node_id(order_key(order_no))

    def operation(self, order_no: str, operation_no: str) -> ua.NodeId:
        return self.node_id(operation_key(order_no, operation_no))

    def characteristic(self, order_no: str, operation_no: str, characteristic_id: str) -> ua.NodeId:
        return self.node_id(characteristic_key(order_no, operation_no, characteristic_id))

    def equipment(self, equipment_id: str) -> ua.NodeId:
        return self.node_id(f"TestEquipment/{equipment_id}")

    def member(self, parent: ua.NodeId, browse_name: str) -> ua.NodeId:
        """A child created from the type's instance declaration (asyncua joins string ids with '.')."""
        return ua.NodeId(ua.String(f"{parent.Identifier!s}.{browse_name}"), parent.NamespaceIndex)


# The string identifiers themselves, for code that keys thousands of them without making NodeIds (the catalogue).
def order_key(order_no: str) -> str:
    return f"Order/{order_no}"


def operation_key(order_no: str, operation_no: str) -> str:
    return f"Order/{order_no}/Op/{operation_no}"


def characteristic_key(order_no: str, operation_no: str, characteristic_id: str) -> str:
    return f"Order/{order_no}/Op/{operation_no}/Char/{characteristic_id}"
