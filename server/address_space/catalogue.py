"""The published orders as OPC UA nodes that exist on first access: a plant's catalogue in little memory.

asyncua keeps every node in one dict, `AddressSpace._nodes`, and every service (Browse, Read, Write,
TranslateBrowsePaths, Call, CreateMonitoredItems, AddNodes) reaches node data only through it. An order of 30
characteristics is about 800 nodes at about 5 KiB each, so 2,000 orders made eagerly would take gigabytes. That
dict is replaced by `node_dict.NodesOnDemand`, which asks its providers for the nodes it does not hold; the catalogue
is one (the standard address space's cache another): it knows which NodeIds the published orders have and builds a
node the first time a service asks for it, from node templates (node_templates.py) and the order as master data has
it now.
What a client sees is the same as when every node was made through `instantiate`: the same NodeIds, attributes and
references; a node that was never asked for simply has not been built yet.

A node once built stays until its order (operation, characteristic) is withdrawn: it may carry a monitored item,
a value written since (a result, SPC figures) or nodes others added below it (an SpcAlarm condition, KPIs).
Publishing an order costs a few dictionary entries; withdrawing it removes exactly the nodes built for it, found in
an index kept per order, never by a scan of the address space.

asyncua internals: AddressSpace._nodes (through node_dict.NodesOnDemand), NodeData, ReferenceDescription; see
/work/shared/reference/asyncua-address-space.md §1.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from asyncua import Server, ua
from asyncua.server.address_space import AttributeValue, NodeData

from qualitybridge.domain.model import InspectionCharacteristic, Operation, ProductionOrder
from qualitybridge.server.address_space.members import (
    HISTORIZING,
    WAITING,
    characteristic_members,
    operation_members,
    order_members,
    spc_members,
)
from qualitybridge.server.address_space.namespace import (
    QualityBridgeNamespace,
    characteristic_key,
    operation_key,
    order_key,
)
from qualitybridge.server.address_space.node_dict import NodesOnDemand
from qualitybridge.server.address_space.node_templates import TypeTemplate

__all__ = ["Catalogue", "instantiate"]

_ORDER, _OPERATION, _CHARACTERISTIC = "order", "operation", "characteristic"
# The member of each kind that holds the next level's instances (as `instantiate` left it: a FolderType).
_CHILD_FOLDER = {_ORDER: ".Operations", _OPERATION: ".Characteristics"}
_Attributes = dict[ua.AttributeIds, ua.DataValue]
_Raw = tuple[Any, ua.VariantType]


@dataclass(eq=False)
class _Entity:
    """An order, operation or characteristic that is published: where it hangs and what it shows.

    Keyed by NodeId identifier strings: making a NodeId costs microseconds, and a plant has hundreds of thousands.
    """

    kind: str
    order_no: str
    key: str
    parent_key: str
    data: ProductionOrder | Operation | InspectionCharacteristic
    values: dict[str, ua.DataValue | _Raw] | None = field(default=None)  # by member path, made on first build


class Catalogue:
    """The published orders, their NodeIds, and the nodes built for them so far."""

    def __init__(self, server: Server, namespace: QualityBridgeNamespace) -> None:
        self._server = server
        self._ns = namespace
        self._templates: dict[str, TypeTemplate] = {}
        self._entities: dict[str, _Entity] = {}  # by NodeId identifier
        self._built: dict[str, set[ua.NodeId]] = {}  # order number -> nodes built for it (by anyone)
        self._owner: dict[ua.NodeId, str] = {}
        self._nodes: NodesOnDemand | None = None
        self._max_member_depth = 0

    # ---- setting up --------------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Capture the templates (one instantiate per type) and take over the address space's node dict; once."""
        if self._nodes is not None:
            return
        address_space = self._server.iserver.aspace
        self._templates = await _capture_templates(self._server, self._ns)
        self._max_member_depth = max(path.count(".") for t in self._templates.values() for path in t.nodes)
        # Asked for nodes only after the templates: the prototypes were made (and removed) through asyncua's path.
        self._nodes = NodesOnDemand.installed_in(address_space)
        self._nodes.add_provider(self)

    @property
    def _node_dict(self) -> NodesOnDemand:
        if self._nodes is None:
            raise RuntimeError("the catalogue is used before prepare()")
        return self._nodes

    @property
    def _orders_folder(self) -> NodeData:
        return self._node_dict[self._ns.root_child("Orders")]

    # ---- what is published ---------------------------------------------------------------------------

    def add(self, order: ProductionOrder) -> None:
        """Publish an order: its nodes exist from now on (and are built when asked for)."""
        key = order_key(order.order_no)
        self._register(_Entity(_ORDER, order.order_no, key, self._orders_folder_key, order))
        for operation in order.operations:
            self._add_operation(order.order_no, operation)
        self._orders_folder.references.append(self._link(_ORDER, key, order.order_no, order.order_no))

    def withdraw(self, order_nos: Iterable[str]) -> list[NodeData]:
        """Unpublish these orders; answers the nodes that were built for them (the caller removes them)."""
        gone = {order_key(order_no): order_no for order_no in order_nos}
        if not gone:
            return []
        folder = self._orders_folder
        folder.references = [ref for ref in folder.references if ref.NodeId.Identifier not in gone]
        built: list[NodeData] = []
        for key, order_no in gone.items():
            entity = self._entities.get(key)
            if entity is not None and isinstance(entity.data, ProductionOrder):
                self._unregister_order(entity.data)
            built.extend(self._take_built(order_no, prefix=None))
        return built

    def update(self, previous: ProductionOrder, order: ProductionOrder) -> list[NodeData]:
        """Take over a changed order: operations and characteristics added or removed, new data for the rest.

        Answers the built nodes of what was removed (the caller removes them). Member values of nodes already
        built are the caller's to write (a subscriber then sees a data change); nodes built later show the new data.
        """
        order_no = order.order_no
        removed: list[NodeData] = []
        self._refresh(order_key(order_no), order)
        new_operations = {op.operation_no for op in order.operations}
        old_operations = {op.operation_no: op for op in previous.operations}
        for operation_no, gone in old_operations.items():
            if operation_no not in new_operations:
                removed.extend(self._remove_child(order_no, operation_key(order_no, operation_no)))
                for char in gone.characteristics:
                    self._entities.pop(characteristic_key(order_no, operation_no, char.characteristic_id), None)
        for operation in order.operations:
            operation_no = operation.operation_no
            op_key = operation_key(order_no, operation_no)
            old = old_operations.get(operation_no)
            if old is None:
                self._add_operation(order_no, operation)
                self._link_if_built(order_key(order_no), operation)
                continue
            self._refresh(op_key, operation)
            new_chars = {c.characteristic_id for c in operation.characteristics}
            for char in old.characteristics:
                if char.characteristic_id not in new_chars:
                    removed.extend(
                        self._remove_child(order_no, characteristic_key(order_no, operation_no, char.characteristic_id))
                    )
            for char in operation.characteristics:
                char_key = characteristic_key(order_no, operation_no, char.characteristic_id)
                if char_key in self._entities:
                    self._refresh(char_key, char)
                else:
                    self._add_characteristic(order_no, operation_no, char)
                    self._link_if_built(op_key, char)
        return removed

    def is_built(self, node_id: ua.NodeId) -> bool:
        """Whether a node exists already (not only as a published id); asking builds nothing."""
        return self._nodes is not None and self._nodes.is_made(node_id)

    def built_count(self) -> int:
        return len(self._owner)

    # ---- the node dict's side (node_dict.NodeProvider) ----------------------------------------------------

    def provides(self, node_id: ua.NodeId) -> bool:
        return self.resolve(node_id) is not None

    def pending(self) -> tuple[ua.NodeId, ...]:
        """None listed: the ids of thousands of orders would make a listing of the address space useless."""
        return ()

    def referrers(self, node_id: ua.NodeId) -> tuple[ua.NodeId, ...]:
        """A node not built yet is made afresh when asked for, so it never keeps a reference to a deleted node."""
        return ()

    def placed(self, node_id: ua.NodeId) -> None:
        self.note_built(node_id)

    def removed(self, node_id: ua.NodeId) -> bool:
        self.forget_built(node_id)
        return False

    def resolve(self, node_id: ua.NodeId) -> tuple[_Entity, str] | None:
        """The published entity a NodeId belongs to and the member path below it; None if it names no such node."""
        if node_id.NamespaceIndex != self._ns.index:
            return None
        if not isinstance(node_id.Identifier, str) or not node_id.Identifier.startswith("Order/"):
            return None
        identifier = str(node_id.Identifier)
        entity = self._entities.get(identifier)
        if entity is not None:
            return entity, ""
        head = identifier
        for _ in range(self._max_member_depth):
            head, dot, _tail = head.rpartition(".")
            if not dot:
                return None
            entity = self._entities.get(head)
            if entity is not None:
                path = identifier[len(head) :]
                return (entity, path) if path in self._templates[entity.kind].nodes else None
        return None

    def make(self, node_id: ua.NodeId) -> NodeData | None:
        """Make a published node that was not asked for before; None if no published node has this id."""
        found = self.resolve(node_id)
        if found is None:
            return None
        entity, path = found
        name, display = _names(entity.data)
        names = (ua.QualifiedName(name, self._ns.index), ua.LocalizedText(display))
        node = self._templates[entity.kind].build(
            path,
            self._id(entity.key),
            self._id(entity.parent_key),
            names,
            self._overrides(entity, path, names),
            datetime.now(UTC),
        )
        if path == _CHILD_FOLDER.get(entity.kind):
            for child in _children(entity.data):
                node.references.append(self._child_link(entity, child))
        self._note(node_id, entity.order_no)  # the node dict keeps it
        return node

    def note_built(self, node_id: ua.NodeId) -> None:
        """A node added through asyncua (e.g. an SpcAlarm condition below a characteristic) is indexed with its
        order, so that withdrawing the order removes it too."""
        owner = self._owner_of(node_id)
        if owner is not None:
            self._note(node_id, owner)

    def forget_built(self, node_id: ua.NodeId) -> None:
        owner = self._owner.pop(node_id, None)
        if owner is not None:
            self._built[owner].discard(node_id)

    # ---- internals ----------------------------------------------------------------------------------------

    @property
    def _orders_folder_key(self) -> str:
        return str(self._ns.root_child("Orders").Identifier)

    def _id(self, key: str) -> ua.NodeId:
        return ua.NodeId(cast(ua.String, key), cast(ua.Int16, self._ns.index))

    def _register(self, entity: _Entity) -> None:
        self._entities[entity.key] = entity

    def _refresh(self, key: str, data: ProductionOrder | Operation | InspectionCharacteristic) -> None:
        entity = self._entities[key]
        entity.data, entity.values = data, None

    def _add_operation(self, order_no: str, operation: Operation) -> None:
        key = operation_key(order_no, operation.operation_no)
        folder = f"{order_key(order_no)}{_CHILD_FOLDER[_ORDER]}"
        self._register(_Entity(_OPERATION, order_no, key, folder, operation))
        for characteristic in operation.characteristics:
            self._add_characteristic(order_no, operation.operation_no, characteristic)

    def _add_characteristic(self, order_no: str, operation_no: str, char: InspectionCharacteristic) -> None:
        key = characteristic_key(order_no, operation_no, char.characteristic_id)
        folder = f"{operation_key(order_no, operation_no)}{_CHILD_FOLDER[_OPERATION]}"
        self._register(_Entity(_CHARACTERISTIC, order_no, key, folder, char))

    def _unregister_order(self, order: ProductionOrder) -> None:
        order_no = order.order_no
        self._entities.pop(order_key(order_no), None)
        for operation in order.operations:
            self._entities.pop(operation_key(order_no, operation.operation_no), None)
            for char in operation.characteristics:
                self._entities.pop(characteristic_key(order_no, operation.operation_no, char.characteristic_id), None)

    def _remove_child(self, order_no: str, key: str) -> list[NodeData]:
        """Unpublish an operation or characteristic of a published order; answers its built nodes."""
        entity = self._entities.pop(key, None)
        if entity is None:
            return []
        parent = dict.get(self._node_dict, self._id(entity.parent_key))
        if parent is not None:
            parent.references = [ref for ref in parent.references if ref.NodeId.Identifier != key]
        return self._take_built(order_no, prefix=key)

    def _link_if_built(self, owner_key: str, child: Operation | InspectionCharacteristic) -> None:
        """A child added to an order whose folder node is built already gets its link there, as a new node would."""
        owner = self._entities[owner_key]
        folder = dict.get(self._node_dict, self._id(f"{owner_key}{_CHILD_FOLDER[owner.kind]}"))
        if folder is not None:
            folder.references.append(self._child_link(owner, child))

    def _take_built(self, order_no: str, prefix: str | None) -> list[NodeData]:
        """Remove from the index (not yet from the dict) the built nodes of an order, or of one part of it."""
        built = self._built.get(order_no, set())
        if prefix is None:
            taken = built
            self._built.pop(order_no, None)
        else:
            below = (f"{prefix}.", f"{prefix}/")
            taken = {
                node_id
                for node_id in built
                if (identifier := str(node_id.Identifier)) == prefix or identifier.startswith(below)
            }
            built -= taken
        nodes = []
        for node_id in taken:
            self._owner.pop(node_id, None)
            node = dict.get(self._node_dict, node_id)
            if node is not None:
                nodes.append(node)
        return nodes

    def _note(self, node_id: ua.NodeId, order_no: str) -> None:
        self._owner[node_id] = order_no
        self._built.setdefault(order_no, set()).add(node_id)

    def _owner_of(self, node_id: ua.NodeId) -> str | None:
        """The published order a NodeId lies below (`Order/<no>`, `Order/<no>.…`, `Order/<no>/…`), if any."""
        if node_id.NamespaceIndex != self._ns.index:
            return None
        identifier = node_id.Identifier
        if not isinstance(identifier, str) or not identifier.startswith("Order/"):
            return None
        # Order numbers may themselves contain '/' or '.': the longest published one that fits wins.
        cut = len(identifier)
        while cut > len("Order/"):
            entity = self._entities.get(identifier[:cut])
            if entity is not None and entity.kind == _ORDER:
                return entity.order_no
            cut = max(identifier.rfind("/", 0, cut), identifier.rfind(".", 0, cut))
        return None

    def _link(self, kind: str, key: str, name: str, display: str) -> ua.ReferenceDescription:
        return self._templates[kind].link.to(
            self._id(key), ua.QualifiedName(name, self._ns.index), ua.LocalizedText(display)
        )

    def _child_link(self, owner: _Entity, child: Operation | InspectionCharacteristic) -> ua.ReferenceDescription:
        if isinstance(child, Operation):
            key = operation_key(owner.order_no, child.operation_no)
            return self._link(_OPERATION, key, child.operation_no, child.operation_no)
        operation_no = owner.data.operation_no if isinstance(owner.data, Operation) else ""
        key = characteristic_key(owner.order_no, operation_no, child.characteristic_id)
        return self._link(_CHARACTERISTIC, key, child.characteristic_id, _display_name(child))

    def _overrides(self, entity: _Entity, path: str, names: tuple[ua.QualifiedName, ua.LocalizedText]) -> _Attributes:
        if path == "":
            browse_name, display_name = names
            return {
                ua.AttributeIds.BrowseName: ua.DataValue(ua.Variant(browse_name, ua.VariantType.QualifiedName)),
                ua.AttributeIds.DisplayName: ua.DataValue(ua.Variant(display_name, ua.VariantType.LocalizedText)),
            }
        if entity.values is None:
            entity.values = _member_values(entity.data)
        overrides: _Attributes = {}
        value = entity.values.get(path)
        if isinstance(value, ua.DataValue):
            overrides[ua.AttributeIds.Value] = value
        elif value is not None:
            overrides[ua.AttributeIds.Value] = ua.DataValue(ua.Variant(value[0], value[1]))
        if entity.kind == _CHARACTERISTIC and path == ".LastValue":
            # asyncua's instantiate does not copy Historizing from the type; AccessLevel (HistoryRead) it does.
            overrides[ua.AttributeIds.Historizing] = HISTORIZING
        return overrides


def _children(data: Any) -> tuple[Any, ...]:
    if isinstance(data, ProductionOrder):
        return data.operations
    if isinstance(data, Operation):
        return data.characteristics
    return ()


def _display_name(char: InspectionCharacteristic) -> str:
    return f"{char.characteristic_id} {char.name}"


def _names(data: ProductionOrder | Operation | InspectionCharacteristic) -> tuple[str, str]:
    """Browse name and display name of an instance's root, as the view named them when instantiating."""
    if isinstance(data, ProductionOrder):
        return data.order_no, data.order_no
    if isinstance(data, Operation):
        return data.operation_no, data.operation_no
    return data.characteristic_id, _display_name(data)


def _member_values(data: ProductionOrder | Operation | InspectionCharacteristic) -> dict[str, ua.DataValue | _Raw]:
    """The values an instance's members show, by member path, as the view writes them after instantiating; left raw
    (value, Variant type) until a node needs one, since most members of most instances are never built."""
    if isinstance(data, ProductionOrder):
        members = order_members(data)
    elif isinstance(data, Operation):
        members = operation_members(data)
    else:
        members = characteristic_members(data)
    values: dict[str, ua.DataValue | _Raw] = {
        f".{path}": (value, variant_type)
        for path, value, variant_type in members
        if value is not None  # an unset date stays Null rather than pretending to be 1601-01-01
    }
    if isinstance(data, InspectionCharacteristic):
        for path, (value, variant_type) in spc_members(None, data).items():
            values[f".{path}"] = WAITING if value is None else (value, variant_type)
    return values


async def _capture_templates(server: Server, ns: QualityBridgeNamespace) -> dict[str, TypeTemplate]:
    """Instantiate one order with one operation and one characteristic, as the view did for every order, capture
    each level as a template and remove the prototype again.

    The prototype hangs under a node that nothing references, so no client can browse to it meanwhile.
    """
    address_space = server.iserver.aspace
    holder = ns.node_id("QualityBridge.Prototypes")
    holder_data = NodeData(holder)
    # A copy of the Orders folder (instantiate links an order to a folder by Organizes), which nothing references.
    orders_folder = address_space[ns.root_child("Orders")]
    for attribute, value in orders_folder.attributes.items():
        if value.value is not None:
            holder_data.attributes[attribute] = AttributeValue(value.value)
    holder_data.references = list(orders_folder.references)
    address_space[holder] = holder_data
    order_id = ns.node_id("Prototype")
    operation_id = ns.node_id("Prototype/Op/P")
    char_id = ns.node_id("Prototype/Op/P/Char/P")
    operations = ns.member(order_id, "Operations")
    characteristics = ns.member(operation_id, "Characteristics")
    try:
        await instantiate(server, ns, holder, order_id, "P", ns.production_order_type, event_source=True)
        await instantiate(server, ns, operations, operation_id, "P", ns.operation_type)
        await instantiate(
            server, ns, characteristics, char_id, "P", ns.characteristic_type, display_name="P P", event_source=True
        )
        templates = {
            _ORDER: TypeTemplate.capture(address_space, order_id, holder),
            _OPERATION: TypeTemplate.capture(address_space, operation_id, operations),
            _CHARACTERISTIC: TypeTemplate.capture(address_space, char_id, characteristics),
        }
    finally:
        for node_id in [key for key in address_space.keys() if _below(key, order_id)]:  # noqa: SIM118 - a view of a dict that is not ours
            del address_space[node_id]
        del address_space[holder]
    return templates


def _below(node_id: ua.NodeId, root: ua.NodeId) -> bool:
    identifier = node_id.Identifier
    return (
        node_id.NamespaceIndex == root.NamespaceIndex
        and isinstance(identifier, str)
        and (identifier == root.Identifier or identifier.startswith((f"{root.Identifier!s}.", f"{root.Identifier!s}/")))
    )


async def instantiate(
    server: Server,
    ns: QualityBridgeNamespace,
    parent: ua.NodeId,
    node_id: ua.NodeId,
    name: str,
    type_id: ua.NodeId,
    display_name: str | None = None,
    *,
    event_source: bool = False,
) -> None:
    """An instance made the way the view made every one before node templates (kept for the gauges too)."""
    node = await server.get_node(parent).add_object(node_id, ua.QualifiedName(name, ns.index), objecttype=type_id)
    if display_name:
        await node.write_attribute(
            ua.AttributeIds.DisplayName, ua.DataValue(ua.Variant(ua.LocalizedText(display_name)))
        )
    if event_source:
        # The source of quality events (and SPC alarms): a client may subscribe to events right here.
        await node.write_attribute(
            ua.AttributeIds.EventNotifier,
            ua.DataValue(ua.Variant(int(ua.EventNotifierType.SubscribeToEvents), ua.VariantType.Byte)),
        )
