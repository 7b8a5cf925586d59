"""Node templates: what asyncua's `instantiate` makes for one object type, captured once, stamped out in microseconds.

`instantiate` costs about 640 µs per node (it browses the type with IncludeSubtypes for every child, and every insert
scans the parent's references). The view instead instantiates each type once (a prototype), captures the subtree
it made with NodeIds relative to the prototype's root, and builds the NodeData of an instance from that capture:
the same attributes, the same references in the same order, the same NodeIds (`<root>.<BrowseName>`, as asyncua
names instantiated children). Constant DataValues are shared between instances (asyncua replaces a DataValue on
write, never mutates it); every node gets AttributeValues of its own, because monitored items hang their callbacks
on them.

asyncua internals: AddressSpace (get, dict access), NodeData, AttributeValue, ReferenceDescription
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import cast

from asyncua import ua
from asyncua.server.address_space import AddressSpace, AttributeValue, NodeData

__all__ = ["Link", "NodeTemplate", "TypeTemplate"]


class _Target(Enum):
    INSIDE = "inside"  # a node of the same instance: its NodeId is rebuilt from the instance's root
    PARENT = "parent"  # the node the instance hangs under (only the root refers to it, inversely)
    OUTSIDE = "outside"  # a type, a data type, a modelling rule: the same for every instance, shared


@dataclass(frozen=True)
class _Reference:
    target: _Target
    description: ua.ReferenceDescription
    relative: str = ""  # for INSIDE: the target's path below the root ("" = the root, ".Nominal", ...)


@dataclass(frozen=True)
class NodeTemplate:
    """One node of a captured instance: its attributes (shared DataValues) and references."""

    path: str
    attributes: Mapping[ua.AttributeIds, ua.DataValue]
    references: tuple[_Reference, ...]
    stamped: frozenset[ua.AttributeIds]  # attributes instantiate stamps with its creation time

    def build(
        self,
        root: ua.NodeId,
        parent: ua.NodeId,
        names: tuple[ua.QualifiedName, ua.LocalizedText],
        overrides: Mapping[ua.AttributeIds, ua.DataValue],
        now: datetime,
    ) -> NodeData:
        node_id = _join(root, self.path)
        node = NodeData(node_id)
        attributes = node.attributes
        for attribute, value in self.attributes.items():
            if attribute in overrides:
                value = overrides[attribute]
            elif attribute is ua.AttributeIds.NodeId:
                value = ua.DataValue(ua.Variant(node_id, ua.VariantType.NodeId))
            elif attribute in self.stamped:
                stamp = cast(ua.DateTime, now)  # asyncua types timestamps as its own datetime subclass
                value = dataclasses.replace(value, SourceTimestamp=stamp, ServerTimestamp=stamp)
            attributes[attribute] = AttributeValue(value)
        references = node.references
        for reference in self.references:
            if reference.target is _Target.OUTSIDE:
                references.append(reference.description)
            elif reference.target is _Target.PARENT:
                references.append(dataclasses.replace(reference.description, NodeId=parent))
            elif reference.relative:
                references.append(dataclasses.replace(reference.description, NodeId=_join(root, reference.relative)))
            else:  # a reference to the root carries the instance's names (asyncua copies them into references)
                browse_name, display_name = names
                references.append(
                    dataclasses.replace(
                        reference.description, NodeId=root, BrowseName=browse_name, DisplayName=display_name
                    )
                )
        return node


@dataclass(frozen=True)
class Link:
    """The reference from the node an instance hangs under to the instance's root, as instantiate adds it."""

    description: ua.ReferenceDescription

    def to(
        self, root: ua.NodeId, browse_name: ua.QualifiedName, display_name: ua.LocalizedText
    ) -> ua.ReferenceDescription:
        return dataclasses.replace(self.description, NodeId=root, BrowseName=browse_name, DisplayName=display_name)


@dataclass(frozen=True)
class TypeTemplate:
    """Every node instantiate made for one instance of a type, by path below the root, and the link to its parent."""

    nodes: Mapping[str, NodeTemplate]
    link: Link

    @classmethod
    def capture(cls, address_space: AddressSpace, root: ua.NodeId, parent: ua.NodeId) -> TypeTemplate:
        """Capture the instance at `root` (made by instantiate under `parent`).

        References to instances of their own below it (an order's operations: `<root>/Op/...`) are left out: those
        are links each instance gets per child.
        """
        prefix = str(root.Identifier)
        nodes: dict[str, NodeTemplate] = {}
        pending = [root]
        while pending:
            node_id = pending.pop()
            path = str(node_id.Identifier)[len(prefix) :]
            if path in nodes:
                continue
            node = address_space[node_id]
            references: list[_Reference] = []
            for reference in node.references:
                relative = _relative(reference.NodeId, root)
                if relative is not None and not _is_child_instance(relative):
                    references.append(_Reference(_Target.INSIDE, dataclasses.replace(reference), relative))
                    if reference.IsForward:
                        pending.append(reference.NodeId)
                elif reference.NodeId == parent and not reference.IsForward and path == "":
                    references.append(_Reference(_Target.PARENT, dataclasses.replace(reference)))
                elif relative is None:
                    references.append(_Reference(_Target.OUTSIDE, dataclasses.replace(reference)))
            stamped = frozenset(
                attribute
                for attribute, value in node.attributes.items()
                if value.value is not None and value.value.SourceTimestamp is not None
            )
            attributes = {
                attribute: value.value for attribute, value in node.attributes.items() if value.value is not None
            }
            nodes[path] = NodeTemplate(path, attributes, tuple(references), stamped)
        (link,) = (ref for ref in address_space[parent].references if ref.NodeId == root and ref.IsForward)
        return cls(nodes, Link(dataclasses.replace(link)))

    def build(
        self,
        path: str,
        root: ua.NodeId,
        parent: ua.NodeId,
        names: tuple[ua.QualifiedName, ua.LocalizedText],
        overrides: Mapping[ua.AttributeIds, ua.DataValue],
        now: datetime | None = None,
    ) -> NodeData:
        return self.nodes[path].build(root, parent, names, overrides, now or datetime.now(UTC))


def _join(root: ua.NodeId, path: str) -> ua.NodeId:
    if not path:
        return root
    return ua.NodeId(ua.String(f"{root.Identifier!s}{path}"), root.NamespaceIndex)


def _relative(node_id: ua.NodeId, root: ua.NodeId) -> str | None:
    """The path of `node_id` below `root` ("" for the root itself), or None if it is not part of the instance."""
    if node_id.NamespaceIndex != root.NamespaceIndex or not isinstance(node_id.Identifier, str):
        return None
    prefix = str(root.Identifier)
    identifier = node_id.Identifier
    if identifier == prefix:
        return ""
    if identifier.startswith(prefix) and identifier[len(prefix)] in "./":
        return identifier[len(prefix) :]
    return None


def _is_child_instance(relative: str) -> bool:
    """Whether a path names an instance of its own below this one (`/Op/...`, `/Char/...`), not a member."""
    return relative.startswith("/")
