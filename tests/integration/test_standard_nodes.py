"""The standard address space from the cache is the one asyncua fills, node for node, for a client and inside.

Two in-process servers: the first finds no cache, fills namespace 0 as asyncua does and stores it (once for the
module: a fill and its storing cost about 6 s of CPU under coverage, and the tests only read that server); the
second takes it from that cache (each node decoded when first reached), a fresh one per test. A real client walks
the Types folder and the Server object on both (Browse of every reference, Read of every attribute), translates
browse paths and reads the fields of event types; then every standard node of both is compared inside. The
fallbacks: a corrupt cache, a cache folder that cannot be written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import pytest
import pytest_asyncio
from asyncua import Client, Server, ua
from asyncua.common.events import get_filter_from_event_type
from asyncua.common.utils import Buffer
from asyncua.server.address_space import NodeData
from asyncua.ua.ua_binary import from_binary, to_binary

from qualitybridge.config import LimitsSettings
from qualitybridge.server.address_space.node_dict import NodesOnDemand
from qualitybridge.server.address_space.standard_nodes import StandardNodeCache
from qualitybridge.server.limits import LimitedServer

# Values asyncua's clock or start changes between two servers; their other attributes are still compared.
_TIME_VARYING = {
    ua.NodeId(ua.ObjectIds.Server_ServerStatus),
    ua.NodeId(ua.ObjectIds.Server_ServerStatus_CurrentTime),
    ua.NodeId(ua.ObjectIds.Server_ServerStatus_StartTime),
    ua.NodeId(ua.ObjectIds.Server_ServerStatus_BuildInfo),
    ua.NodeId(ua.ObjectIds.Server_ServerStatus_BuildInfo_BuildDate),
}
_BATCH = 1000  # [limits] max_operations_per_request
# What clients read when they browse a model (the comparison inside covers every attribute).
_CLIENT_ATTRIBUTES = (
    ua.AttributeIds.NodeClass,
    ua.AttributeIds.BrowseName,
    ua.AttributeIds.DisplayName,
    ua.AttributeIds.Description,
    ua.AttributeIds.IsAbstract,
    ua.AttributeIds.EventNotifier,
    ua.AttributeIds.Value,
    ua.AttributeIds.DataType,
    ua.AttributeIds.ValueRank,
    ua.AttributeIds.AccessLevel,
    ua.AttributeIds.DataTypeDefinition,
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _server(cache: Path | None) -> LimitedServer:
    server = LimitedServer(LimitsSettings(), standard_nodes_cache=cache)
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{_free_port()}/standard")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    return server


def _ids(space: Any) -> list[ua.NodeId]:
    """Every node id of an address space (AddressSpace has `keys()`, no iteration of its own)."""
    return list(space.keys())


def _made(server: Server) -> int:
    nodes = server.iserver.aspace._nodes
    return len(nodes.made_ids()) if isinstance(nodes, NodesOnDemand) else len(nodes)


# The servers of a module-scoped fixture live on the module's event loop, so the tests run on it too.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def golden_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cache folder of the module: `filled` stores the cache there."""
    return tmp_path_factory.mktemp("standard") / "cache"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def filled(golden_dir: Path) -> AsyncIterator[LimitedServer]:
    """A started server that found no cache: filled as asyncua does, and stored in `golden_dir`. Shared by the
    module's tests, which must not change it (the delete test fills a server of its own)."""
    server = await _server(golden_dir)
    assert StandardNodeCache(golden_dir).path.is_file()
    assert _made(server) > 6000
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def cached(filled: LimitedServer, golden_dir: Path) -> AsyncIterator[LimitedServer]:
    """A started server of its own that takes the standard nodes from the cache `filled` stored."""
    server = await _server(golden_dir)
    assert _made(server) < 200, "a start from the cache makes only the nodes asyncua's own set-up touches"
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def _without_time(value: ua.DataValue) -> ua.DataValue:
    return dataclasses.replace(value, SourceTimestamp=None, ServerTimestamp=None)


class _Services(Protocol):
    """Browse and Read as a client calls them (`Client.uaclient`) or as the server answers them inside
    (`iserver.isession`: the session methods its request processor calls for a client's request)."""

    async def browse(self, parameters: ua.BrowseParameters, /) -> list[ua.BrowseResult]: ...

    async def read(self, parameters: ua.ReadParameters, /) -> list[ua.DataValue]: ...


class _Inside:
    """A server's session services (the methods its request processor calls for a client's Browse and Read), their
    answers encoded and decoded as on the wire (which, e.g., turns a NumericNodeId into a NodeId): the reference side
    of a comparison, without the requests' encoding, the transport and the client, the larger part of a walk's CPU
    under coverage."""

    def __init__(self, server: Server) -> None:
        self._session = server.iserver.isession

    async def browse(self, parameters: ua.BrowseParameters, /) -> list[ua.BrowseResult]:
        return [_as_on_the_wire(ua.BrowseResult, result) for result in await self._session.browse(parameters)]

    async def read(self, parameters: ua.ReadParameters, /) -> list[ua.DataValue]:
        return [_as_on_the_wire(ua.DataValue, value) for value in await self._session.read(parameters)]


def _as_on_the_wire(kind: Any, value: Any) -> Any:
    return from_binary(kind, Buffer(to_binary(kind, value)))


async def _walk(services: _Services, roots: list[int]) -> dict[str, Any]:
    """Every node below the roots by forward hierarchical references: all its references (both directions, in the
    order the server gives them) and every attribute (value and status, without timestamps)."""
    hierarchical = await _hierarchical(services)
    seen: dict[ua.NodeId, Any] = {}
    level = [ua.NodeId(root) for root in roots]
    while level:
        level = [node_id for node_id in dict.fromkeys(level) if node_id not in seen]
        following: list[ua.NodeId] = []
        for start in range(0, len(level), _BATCH):
            batch = level[start : start + _BATCH]
            params = ua.BrowseParameters()
            for node_id in batch:
                description = ua.BrowseDescription()
                description.NodeId = node_id
                description.BrowseDirection = ua.BrowseDirection.Both
                # The null reference type: every reference, as References with its subtypes gives, without the
                # server walking the reference type tree again for each reference of each node.
                description.ReferenceTypeId = ua.NodeId()
                description.ResultMask = ua.BrowseResultMask.All
                params.NodesToBrowse.append(description)
            results = await services.browse(params)
            for node_id, result in zip(batch, results, strict=True):
                seen[node_id] = {"status": result.StatusCode, "references": result.References}
                following.extend(
                    ref.NodeId for ref in result.References if ref.IsForward and ref.ReferenceTypeId in hierarchical
                )
        level = following
    ids = list(seen)
    reads = [(node_id, attribute) for node_id in ids for attribute in _CLIENT_ATTRIBUTES]
    for start in range(0, len(reads), _BATCH):
        batch = reads[start : start + _BATCH]
        params = ua.ReadParameters()
        for node_id, attribute in batch:
            params.NodesToRead.append(ua.ReadValueId(NodeId=node_id, AttributeId=attribute))
        values = await services.read(params)
        for (node_id, attribute), value in zip(batch, values, strict=True):
            if attribute == ua.AttributeIds.Value and node_id in _TIME_VARYING:
                value = dataclasses.replace(value, Value=None)
            seen[node_id][attribute.name] = _without_time(value)
    return {node_id.to_string(): entry for node_id, entry in seen.items()}


async def _hierarchical(services: _Services) -> set[ua.NodeId]:
    """HierarchicalReferences and its subtypes, as the server knows them."""
    found: set[ua.NodeId] = set()
    pending = [ua.NodeId(ua.ObjectIds.HierarchicalReferences)]
    while pending:
        node_id = pending.pop()
        found.add(node_id)
        description = ua.BrowseDescription(
            NodeId=node_id,
            BrowseDirection=ua.BrowseDirection.Forward,
            ReferenceTypeId=ua.NodeId(ua.ObjectIds.HasSubtype),
            IncludeSubtypes=False,
            ResultMask=ua.BrowseResultMask.All,
        )
        (result,) = await services.browse(ua.BrowseParameters(NodesToBrowse=[description]))
        pending.extend(reference.NodeId for reference in result.References)
    return found


_PATHS = [
    ["0:Objects", "0:Server", "0:ServerStatus", "0:BuildInfo", "0:ProductName"],
    ["0:Objects", "0:Server", "0:ServerCapabilities", "0:OperationLimits", "0:MaxNodesPerRead"],
    ["0:Types", "0:EventTypes", "0:BaseEventType", "0:AuditEventType", "0:AuditSecurityEventType"],
    ["0:Types", "0:ObjectTypes", "0:BaseObjectType", "0:FolderType"],
    ["0:Types", "0:DataTypes", "0:BaseDataType", "0:Structure", "0:Argument"],
    ["0:Types", "0:ReferenceTypes", "0:References", "0:HierarchicalReferences", "0:HasChild"],
    ["0:Objects", "0:Server", "0:NoSuchChild"],
]
_EVENT_TYPES = [
    ua.ObjectIds.BaseEventType,
    ua.ObjectIds.AuditCreateSessionEventType,
    ua.ObjectIds.AlarmConditionType,
    ua.ObjectIds.SystemStatusChangeEventType,
]


async def _client_view(server: Server, *, walk_inside: bool = False) -> dict[str, Any]:
    """What a client sees of the standard nodes; `walk_inside`: the walk through `_Inside` instead of the wire."""
    # Server and client share this process: a long Read keeps the watchdog's keep-alive probe waiting.
    client = Client(server.endpoint.geturl(), timeout=30, watchdog_intervall=30)
    async with client:
        services: _Services = _Inside(server) if walk_inside else client.uaclient
        walk = await _walk(services, [ua.ObjectIds.TypesFolder, ua.ObjectIds.Server])
        paths = []
        for path in _PATHS:
            try:
                paths.append((await client.nodes.root.get_child(path)).nodeid.to_string())
            except ua.UaStatusCodeError as error:
                paths.append(error.code)
        fields = {}
        for event_type in _EVENT_TYPES:
            event_filter = await get_filter_from_event_type([client.get_node(event_type)])
            fields[event_type] = (event_filter.SelectClauses, event_filter.WhereClause)
    return {"walk": walk, "paths": paths, "event fields": fields}


async def test_the_standard_nodes_from_the_cache_equal_asyncuas_fill_for_a_client_and_inside(
    filled: LimitedServer, cached: LimitedServer
) -> None:
    # First what a client sees, while the cached server makes its nodes as the walk reaches them.
    expected = await _client_view(filled, walk_inside=True)
    actual = await _client_view(cached)
    assert len(expected["walk"]) > 3000
    assert actual["paths"] == expected["paths"]
    assert expected["paths"][-1] == ua.StatusCodes.BadNoMatch
    assert actual["event fields"] == expected["event fields"]
    assert sorted(actual["walk"]) == sorted(expected["walk"])
    for node_id, entry in expected["walk"].items():
        assert actual["walk"][node_id] == entry, node_id

    # Then every node inside, the ones no client reached included.
    filled_space, cached_space = filled.iserver.aspace, cached.iserver.aspace
    listed = sorted(node_id.to_string() for node_id in _ids(cached_space))
    assert listed == sorted(node_id.to_string() for node_id in _ids(filled_space))
    for node_id in _ids(filled_space):
        expected, actual = filled_space[node_id], cached_space[node_id]
        assert actual.references == expected.references, node_id
        assert actual.attributes.keys() == expected.attributes.keys(), node_id
        for attribute, value in expected.attributes.items():
            made = actual.attributes[attribute]
            assert (made.value_callback is None) == (value.value_callback is None), (node_id, attribute)
            if value.value is None or node_id in _TIME_VARYING:
                continue
            assert made.value is not None, (node_id, attribute)
            assert _without_time(made.value) == _without_time(value.value), (node_id, attribute)
    assert _made(cached) == len(_ids(filled_space))


async def test_a_standard_node_made_from_the_cache_notifies_subscribers_and_answers_through_its_callback(
    cached: LimitedServer,
) -> None:
    server = cached
    nodes = server.iserver.aspace._nodes
    assert isinstance(nodes, NodesOnDemand)
    level = ua.NodeId(ua.ObjectIds.Server_ServiceLevel)
    flag = ua.NodeId(ua.ObjectIds.Server_ServerDiagnostics_EnabledFlag)
    assert not nodes.is_made(flag)
    server.iserver.aspace.set_attribute_value_callback(
        flag, ua.AttributeIds.Value, lambda _node, _attribute: ua.DataValue(ua.Variant(True, ua.VariantType.Boolean))
    )
    received: asyncio.Queue[Any] = asyncio.Queue()

    class Handler:
        def datachange_notification(self, _node: Any, value: Any, _data: Any) -> None:
            received.put_nowait(value)

    async with Client(server.endpoint.geturl(), timeout=30, watchdog_intervall=30) as client:
        assert await client.get_node(flag).read_value() is True
        subscription = await client.create_subscription(50, Handler())
        await subscription.subscribe_data_change(client.get_node(level))
        assert await asyncio.wait_for(received.get(), 30) == 255
        await server.write_attribute_value(level, ua.DataValue(ua.Variant(200, ua.VariantType.Byte)))
        assert await asyncio.wait_for(received.get(), 30) == 200
        await subscription.delete()


async def test_deleting_a_standard_node_drops_the_references_to_it_of_nodes_not_made_yet(
    cached: LimitedServer,
) -> None:
    filled = await _server(None)  # a fill of its own (not stored): the module's filled server stays as it is
    gone = ua.NodeId(ua.ObjectIds.Server_ServerDiagnostics_SamplingIntervalDiagnosticsArray)
    filled_space = filled.iserver.aspace
    referrers = [
        node_id for node_id in _ids(filled_space) if any(r.NodeId == gone for r in filled_space[node_id].references)
    ]
    assert referrers
    nodes = cached.iserver.aspace._nodes
    assert isinstance(nodes, NodesOnDemand)
    assert not any(nodes.is_made(node_id) for node_id in referrers)
    for server in (filled, cached):
        space = server.iserver.aspace
        before = _made(server)
        item = ua.DeleteNodesItem(NodeId=gone, DeleteTargetReferences=True)
        (result,) = await server.iserver.isession.delete_nodes(ua.DeleteNodesParameters(NodesToDelete=[item]))
        assert result.is_good()
        assert _made(server) <= before + len(referrers), "no node made but those that referenced the deleted one"
        assert gone not in space
        assert space.get(gone) is None
        assert gone not in _ids(space)
        for node_id in _ids(space):
            assert all(reference.NodeId != gone for reference in space[node_id].references), node_id


@pytest.fixture
def stored_cache(cache_dir: Path, golden_dir: Path, filled: LimitedServer) -> StandardNodeCache:
    """A cache in `cache_dir` as a start stores it: a copy of the one `filled` has stored (private, as stored)."""
    cache = StandardNodeCache(cache_dir)
    cache_dir.mkdir(mode=0o700)
    shutil.copy(StandardNodeCache(golden_dir).path, cache.path)
    return cache


async def test_a_corrupt_cache_is_replaced_by_a_fill_with_one_log_line(
    stored_cache: StandardNodeCache, cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = stored_cache
    for damage in (b"not a cache at all", None):
        if damage is None:  # a cut-off file: a crash while copying it, a full disk
            damage = cache.path.read_bytes()[:-1000]
        cache.path.write_bytes(damage)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="qualitybridge.server.address_space.standard_nodes"):
            server = await _server(cache_dir)
        warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
        assert len(warnings) == 1, caplog.text
        assert "unusable" in warnings[0].getMessage()
        assert _made(server) > 6000  # filled as asyncua does
        again = await _server(cache_dir)  # and stored again: the next start reads it
        assert _made(again) < 200
        keys = sorted(node_id.to_string() for node_id in _ids(again.iserver.aspace))
        assert keys == sorted(node_id.to_string() for node_id in _ids(server.iserver.aspace))


async def test_a_cache_folder_that_cannot_be_written_costs_one_log_line_not_the_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.INFO, logger="qualitybridge.server.address_space.standard_nodes"):
        server = await _server(blocker / "cache")
    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1, caplog.text
    assert "could not store" in warnings[0].getMessage()
    assert _made(server) > 6000
    assert ua.NodeId(ua.ObjectIds.Server) in server.iserver.aspace


@pytest.mark.parametrize("tampering", ["writable by others", "owned by another user"])
async def test_a_cache_file_others_could_have_written_is_not_loaded(
    cache_dir: Path, tampering: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The file is a pickle: loading one that another account could have written would run that account's code.
    cache = StandardNodeCache(cache_dir)
    assert cache.store({ua.NodeId(ua.ObjectIds.Server): NodeData(ua.NodeId(ua.ObjectIds.Server))})
    assert cache.load() is not None
    if tampering == "writable by others":
        cache.path.chmod(0o666)
    else:
        if os.geteuid() != 0:
            pytest.skip("giving a file to another user needs root")
        os.chown(cache.path, os.geteuid() + 4242, -1)
    with caplog.at_level(logging.WARNING, logger="qualitybridge.server.address_space.standard_nodes"):
        assert cache.load() is None
    assert "ignored" in caplog.text, caplog.text
