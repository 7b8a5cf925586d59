"""asyncua's node dict with nodes that are made on first access, from providers (the standard address space's
cache, the published catalogue).

asyncua keeps every node in one dict, `AddressSpace._nodes`, and every service reaches node data only through its
`get`, `in` and `[]`. `NodesOnDemand` takes that dict's place: it holds the nodes made so far and asks each
provider, in turn, for a node it does not hold yet. A provider may also hold nodes that are not made yet but
belong in every listing of the address space (the standard nodes: `keys()` lists them, as a filled address space
would); the catalogue's nodes are only named when asked for (thousands of orders would make a listing useless).

asyncua internals: AddressSpace._nodes (a dict subclass: get, __contains__, __missing__, __setitem__, __delitem__,
keys), NodeManagementService._delete_node; see /work/shared/reference/asyncua-address-space.md §1.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, KeysView
from itertools import chain
from typing import Any, Protocol

from asyncua import ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.address_space import AddressSpace, NodeData, NodeManagementService

__all__ = ["NodeProvider", "NodesOnDemand", "OnDemandNodeManagement"]


class NodeProvider(Protocol):
    """What `NodesOnDemand` asks for a node it does not hold."""

    def provides(self, node_id: ua.NodeId) -> bool:
        """Whether a node with this id exists here, not made yet; asking makes nothing."""

    def make(self, node_id: ua.NodeId) -> NodeData | None:
        """The node, made now (the dict keeps it from then on); None if this provider has no such node."""

    def pending(self) -> Iterable[ua.NodeId]:
        """The ids not made yet that belong in a listing of the address space (may be none)."""

    def referrers(self, node_id: ua.NodeId) -> Iterable[ua.NodeId]:
        """Ids not made yet whose references point at `node_id` (for DeleteNodes with DeleteTargetReferences)."""

    def placed(self, node_id: ua.NodeId) -> None:
        """asyncua put a node under this id into the dict (AddNodes, or a node replaced)."""

    def removed(self, node_id: ua.NodeId) -> bool:
        """The node is deleted: forget it, made or not; True if it existed here only as a node not made yet."""


class NodesOnDemand(dict[ua.NodeId, NodeData]):
    """`AddressSpace._nodes`: the nodes made so far, and the nodes of its providers made on first access.

    `get` and `in` are overridden as well as `__missing__`: asyncua's services use all three, and `dict.get`
    never calls `__missing__`.
    """

    def __init__(self, nodes: dict[ua.NodeId, NodeData] | None = None) -> None:
        super().__init__(nodes or {})
        self._providers: list[NodeProvider] = []

    @classmethod
    def installed_in(cls, address_space: AddressSpace) -> NodesOnDemand:
        """The address space's node dict, made a `NodesOnDemand` (with what it holds) if it is not one yet."""
        nodes = address_space._nodes
        if not isinstance(nodes, NodesOnDemand):
            nodes = cls(nodes)
            address_space._nodes = nodes
        return nodes

    def add_provider(self, provider: NodeProvider) -> None:
        self._providers.append(provider)

    def is_made(self, node_id: ua.NodeId) -> bool:
        """Whether the node exists as a NodeData already; asking makes nothing."""
        return dict.__contains__(self, node_id)

    def _make(self, node_id: ua.NodeId) -> NodeData | None:
        for provider in self._providers:
            node = provider.make(node_id)
            if node is not None:
                dict.__setitem__(self, node_id, node)
                return node
        return None

    def __missing__(self, node_id: ua.NodeId) -> NodeData:
        node = self._make(node_id)
        if node is None:
            raise KeyError(node_id)
        return node

    def get(self, node_id: ua.NodeId, default: Any = None) -> Any:
        node = dict.get(self, node_id)
        if node is not None:
            return node
        made = self._make(node_id)
        return default if made is None else made

    def __contains__(self, node_id: object) -> bool:
        if dict.__contains__(self, node_id):
            return True
        return isinstance(node_id, ua.NodeId) and any(provider.provides(node_id) for provider in self._providers)

    def __setitem__(self, node_id: ua.NodeId, node: NodeData) -> None:
        dict.__setitem__(self, node_id, node)
        for provider in self._providers:
            provider.placed(node_id)

    def __delitem__(self, node_id: ua.NodeId) -> None:
        made = dict.__contains__(self, node_id)
        if made:
            dict.__delitem__(self, node_id)
        # Every provider forgets it, so that a later access does not make the deleted node again.
        pending = [provider.removed(node_id) for provider in self._providers]
        if not made and not any(pending):
            raise KeyError(node_id)

    # ---- listings: the nodes made so far and the providers' pending ones, as a filled address space lists them

    def _pending(self) -> Iterator[ua.NodeId]:
        return chain.from_iterable(provider.pending() for provider in self._providers)

    def keys(self) -> KeysView[ua.NodeId]:  # type: ignore[override]
        """A snapshot: asyncua's DeleteNodes makes nodes while it walks the listing."""
        return dict.fromkeys(chain(dict.keys(self), self._pending())).keys()

    def __iter__(self) -> Iterator[ua.NodeId]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def values(self) -> list[NodeData]:  # type: ignore[override]
        return [self[node_id] for node_id in self.keys()]

    def items(self) -> list[tuple[ua.NodeId, NodeData]]:  # type: ignore[override]
        return [(node_id, self[node_id]) for node_id in self.keys()]

    def made_ids(self) -> list[ua.NodeId]:
        return list(dict.keys(self))

    def make_referrers(self, node_id: ua.NodeId) -> None:
        """Make the pending nodes that reference `node_id`, so that a scan of the made nodes finds every reference."""
        for provider in self._providers:
            for referrer in list(provider.referrers(node_id)):
                self.get(referrer)


class OnDemandNodeManagement(NodeManagementService):
    """asyncua's node management; DeleteNodes with DeleteTargetReferences scans the nodes made so far plus those a
    provider says reference the deleted node, rather than making every node of the address space to scan it."""

    def _delete_node(self, item: ua.DeleteNodesItem, user: User) -> ua.StatusCode:
        nodes = self._aspace._nodes
        if not item.DeleteTargetReferences or not isinstance(nodes, NodesOnDemand):
            return super()._delete_node(item, user)
        if user.role != UserRole.Admin:
            return ua.StatusCode(ua.UInt32(ua.StatusCodes.BadUserAccessDenied))
        if item.NodeId not in self._aspace:
            self.logger.warning("DeleteNodesItem: NodeId %s does not exists", item.NodeId)
            return ua.StatusCode(ua.UInt32(ua.StatusCodes.BadNodeIdUnknown))
        nodes.make_referrers(item.NodeId)
        # The same steps as asyncua's, over the made nodes only.
        for made in nodes.made_ids():
            references = dict.__getitem__(nodes, made).references
            if any(ref.NodeId == item.NodeId for ref in references):
                references[:] = [ref for ref in references if ref.NodeId != item.NodeId]
        self._delete_node_callbacks(self._aspace[item.NodeId])
        del self._aspace[item.NodeId]
        return ua.StatusCode()
