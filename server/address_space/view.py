"""The address space as a view of the store: orders, characteristics, gauges and diagnostics as OPC UA nodes.

Published orders live in the catalogue (catalogue.py): their nodes look exactly as if made from the NodeSet's types
by `instantiate`, but each is built only when a client (or a write) first reaches it, so publishing thousands of
orders takes milliseconds and little memory. Changes are applied in place by writing only what changed: a subscribed
client sees a data change, not a node that vanished and came back. Orders the ERP withdraws, or that leave the
configured scope, are removed with the nodes built for them. Gauges are few and are instantiated as before.

asyncua internals: Server.iserver.aspace (get, del, write_attribute_value, delete_datachange_callback, NodeData
references and attributes); a report's values are written through value_writes.py (pinned to asyncua 2.1.0)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from asyncua import Server, ua
from asyncua.server.address_space import NodeData

from qualitybridge.domain.events import DiagnosticsChanged, SpcStatusChanged
from qualitybridge.domain.model import (
    InspectionCharacteristic,
    MeasurementResult,
    ProductionOrder,
    TestEquipment,
)
from qualitybridge.domain.publication import PublicationScope
from qualitybridge.server.address_space.catalogue import Catalogue, instantiate
from qualitybridge.server.address_space.measurement_reported import describe_result
from qualitybridge.server.address_space.members import (
    EVENT_FIELD_TYPES,
    WAITING,
    Member,
    characteristic_members,
    equipment_members,
    operation_members,
    order_members,
    spc_members,
)
from qualitybridge.server.address_space.namespace import QualityBridgeNamespace, characteristic_key
from qualitybridge.server.address_space.notifiers import SERVER_OBJECT, trigger_along
from qualitybridge.server.address_space.value_writes import write_values
from qualitybridge.server.methods.arguments import status_code

__all__ = ["AddressSpaceView"]

_log = logging.getLogger(__name__)
_V = ua.VariantType
_EVENTS_BETWEEN_YIELDS = 32
# Publishing yields to the event loop after this much work, so clients' keep-alives are answered meanwhile.
_SLICE_SECONDS = 0.005
_PROGRESS_EVERY_SECONDS = 2.0
# NodeIds of characteristics and their members kept for the report path (each report writes four Last* values and
# two or three Spc values, and would build the characteristic's NodeId and its text each time); NodeIds follow from
# the keys alone, so a kept one is never stale. Bounded all the same.
_NODE_IDS_KEPT = 20_000
_LAST_MEMBERS = ("LastValue", "LastEvaluation", "LastMeasuredAt", "LastResultId")
_Key = TypeVar("_Key")
_Kept = TypeVar("_Kept")


def _kept(kept: dict[_Key, _Kept], key: _Key, make: Callable[[], _Kept]) -> _Kept:
    """`kept[key]`, made by `make` the first time; the dict starts afresh once it holds _NODE_IDS_KEPT entries."""
    found = kept.get(key)
    if found is None:
        if len(kept) >= _NODE_IDS_KEPT:
            kept.clear()
        found = kept[key] = make()
    return found


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AddressSpaceView:
    def __init__(
        self,
        server: Server,
        namespace: QualityBridgeNamespace,
        *,
        scope: PublicationScope | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._server = server
        self._ns = namespace
        self._scope = scope or PublicationScope()
        self._clock = clock
        self._catalogue = Catalogue(server, namespace)
        self._orders: dict[str, ProductionOrder] = {}
        self._equipment: dict[str, TestEquipment] = {}
        self._result_events: Any = None
        # The Spc values shown per characteristic (NodeId identifier); a characteristic without an entry shows its
        # plan's limits (_spc_plan), which are computed only when SPC first writes there.
        self._spc_shown: dict[str, dict[str, tuple[Any, ua.VariantType]]] = {}
        self._spc_plan: dict[str, InspectionCharacteristic] = {}
        self._last_ids: dict[tuple[str, str, str], tuple[ua.NodeId, ...]] = {}
        self._member_ids: dict[tuple[str, str], ua.NodeId] = {}
        self._spc_ids: dict[tuple[str, str, str], tuple[ua.NodeId, str]] = {}
        # One change of the published set at a time: a state change (StartOrder) arriving while a sync is still
        # publishing waits for it instead of publishing the same order twice.
        self._publishing = asyncio.Lock()
        # Released orders the view could not show (order number -> why); skipped and reported, never fatal.
        self.unshown: dict[str, str] = {}

    @property
    def scope(self) -> PublicationScope:
        return self._scope

    @property
    def published_orders(self) -> int:
        return len(self._orders)

    @property
    def built_nodes(self) -> int:
        """Nodes of published orders built so far (on access, by a write, or added below them)."""
        return self._catalogue.built_count()

    async def start(self) -> None:
        self._result_events = await self._server.get_event_generator(
            self._ns.measurement_reported_event_type, self._ns.root
        )
        # asyncua takes an event field's Variant type from the declaration's default value; ours have none.
        for name, variant_type in EVENT_FIELD_TYPES.items():
            self._result_events.event.add_property(name, None, variant_type)

    # ---- master data ----------------------------------------------------------------------------

    async def show(self, orders: Iterable[ProductionOrder], equipment: Iterable[TestEquipment]) -> None:
        """Make the published orders and gauges equal to these (add, update in place, remove).

        Orders outside the scope are left out. An order that is the very object shown before is skipped without
        comparing it, so a sync that changed 1 % of the orders touches 1 % of them.
        """
        async with self._publishing:
            await self._catalogue.prepare()
            now = self._clock()
            wanted_orders = {order.order_no: order for order in orders if self._scope.includes(order, now)}
            await self._show_orders(wanted_orders)
            await self._show_equipment(equipment)

    async def _show_orders(self, wanted_orders: dict[str, ProductionOrder]) -> None:
        withdrawn = [no for no in self._orders if no not in wanted_orders]
        order_set_changed = bool(withdrawn)
        if withdrawn:
            await self._remove_nodes(self._catalogue.withdraw(withdrawn))
            for order_no in withdrawn:
                self._forget_spc(self._orders.pop(order_no))
                _log.info("order %s withdrawn from the address space", order_no)
        for order_no in [no for no in self.unshown if no not in wanted_orders]:
            del self.unshown[order_no]
        started = slice_started = last_progress = time.perf_counter()
        added = characteristics = 0
        for order_no, order in wanted_orders.items():
            previous = self._orders.get(order_no)
            if previous is order:
                continue
            try:
                if previous is None:
                    self._add_order(order)
                    added += 1
                    count = sum(len(op.characteristics) for op in order.operations)
                    characteristics += count
                    _log.debug("order %s published (%d characteristics)", order_no, count)
                    order_set_changed = True
                elif previous != order:
                    await self._update_order(previous, order)
            except Exception as exc:  # one order the view cannot show must not keep the others from being shown
                await self._set_aside(order_no, exc)
                order_set_changed = True
                continue
            self.unshown.pop(order_no, None)
            self._orders[order_no] = order
            if (now := time.perf_counter()) - slice_started > _SLICE_SECONDS:
                if now - last_progress > _PROGRESS_EVERY_SECONDS:
                    _log.info("address space: %d orders published so far, still publishing", len(self._orders))
                    last_progress = now
                await asyncio.sleep(0)
                slice_started = time.perf_counter()
        if added:
            _log.info(
                "address space: %d orders published (%d characteristics) in %.2f s; %d orders in all",
                added,
                characteristics,
                time.perf_counter() - started,
                len(self._orders),
            )
        if order_set_changed:
            await self._write_value(
                self._ns.root_child("ReleasedOrders"),
                ua.DataValue(ua.Variant(sorted(self._orders), _V.String)),
            )

    async def _show_equipment(self, equipment: Iterable[TestEquipment]) -> None:
        wanted_gauges = {gauge.equipment_id: gauge for gauge in equipment}
        for equipment_id in [e for e in self._equipment if e not in wanted_gauges]:
            await self._delete(self._ns.equipment(equipment_id))
            del self._equipment[equipment_id]
        for equipment_id, gauge in wanted_gauges.items():
            previous_gauge = self._equipment.get(equipment_id)
            if previous_gauge is gauge:
                continue
            node_id = self._ns.equipment(equipment_id)
            if previous_gauge is None:
                await instantiate(
                    self._server,
                    self._ns,
                    self._ns.root_child("TestEquipment"),
                    node_id,
                    equipment_id,
                    self._ns.test_equipment_type,
                    event_source=True,
                )
            if previous_gauge != gauge:
                await self._write_members(node_id, equipment_members(gauge))
            self._equipment[equipment_id] = gauge

    async def _set_aside(self, order_no: str, exc: Exception) -> None:
        """Remove what was built of an order that failed, so that a later (fixed) version starts clean."""
        reason = f"{type(exc).__name__}: {exc}"
        if self.unshown.get(order_no) != reason:
            _log.error("order %s cannot be shown in the address space and is skipped: %s", order_no, reason)
        self.unshown[order_no] = reason
        self._orders.pop(order_no, None)
        try:
            await self._remove_nodes(self._catalogue.withdraw([order_no]))
        except Exception:  # pragma: no cover - best effort; the order stays reported either way
            _log.exception("could not remove what was built of order %s", order_no)

    def _add_order(self, order: ProductionOrder) -> None:
        self._catalogue.add(order)
        for operation in order.operations:
            for char in operation.characteristics:
                self._plan_spc(order.order_no, operation.operation_no, char)

    def _plan_spc(self, order_no: str, operation_no: str, char: InspectionCharacteristic) -> None:
        """A new characteristic shows its plan's control limits until SPC has figures (built into its nodes)."""
        key = characteristic_key(order_no, operation_no, char.characteristic_id)
        self._spc_shown.pop(key, None)
        self._spc_plan[key] = char

    def _forget_spc(self, order: ProductionOrder) -> None:
        for operation in order.operations:
            for char in operation.characteristics:
                key = characteristic_key(order.order_no, operation.operation_no, char.characteristic_id)
                self._spc_shown.pop(key, None)
                self._spc_plan.pop(key, None)

    async def _update_order(self, previous: ProductionOrder, order: ProductionOrder) -> None:
        """Apply a changed order in place: nodes built so far get the values that changed, what was removed goes."""
        order_no = order.order_no
        await self._remove_nodes(self._catalogue.update(previous, order))
        await self._write_changed(self._ns.order(order_no), order_members(previous), order_members(order))
        old_operations = {op.operation_no: op for op in previous.operations}
        for operation in order.operations:
            old = old_operations.get(operation.operation_no)
            if old is None:
                for char in operation.characteristics:
                    self._plan_spc(order_no, operation.operation_no, char)
                continue
            operation_id = self._ns.operation(order_no, operation.operation_no)
            await self._write_changed(operation_id, operation_members(old), operation_members(operation))
            old_chars = {c.characteristic_id: c for c in old.characteristics}
            for char in operation.characteristics:
                old_char = old_chars.get(char.characteristic_id)
                if old_char is None:
                    self._plan_spc(order_no, operation.operation_no, char)
                elif old_char != char:
                    await self._write_changed(
                        self._ns.characteristic(order_no, operation.operation_no, char.characteristic_id),
                        characteristic_members(old_char),
                        characteristic_members(char),
                    )
        _log.info("order %s updated in the address space", order_no)

    async def _write_changed(self, parent: ua.NodeId, before: list[Member], after: list[Member]) -> None:
        """Write the members whose value changed, into the nodes built so far (the others are built with it)."""
        if before == after:
            return
        for old, (browse_path, value, variant_type) in zip(before, after, strict=True):
            if value is None or old == (browse_path, value, variant_type):
                continue
            node_id = self._ns.member(parent, browse_path)
            if self._catalogue.is_built(node_id):
                await self._write_value(node_id, ua.DataValue(ua.Variant(value, variant_type)))

    # ---- results and diagnostics ------------------------------------------------------------------

    async def show_result(self, result: MeasurementResult) -> None:
        """One reported result: its characteristic's Last* values and its MeasurementReported event."""
        await self._show_last(result)
        if self._result_events is not None:
            await self._report_event(result)

    async def _show_last(self, result: MeasurementResult) -> None:
        report = result.report
        key = (report.order_no, report.operation_no, report.characteristic_id)
        node_ids = _kept(self._last_ids, key, lambda: self._last_member_ids(key))
        value_id, evaluation_id, measured_at_id, result_id_id = node_ids
        writes = [
            (value_id, ua.DataValue(ua.Variant(report.value, _V.Double, None, False))),
            (evaluation_id, ua.DataValue(ua.Variant(int(result.evaluation), _V.Int32, None, False))),
        ]
        if report.measured_at is not None:  # an unset date stays Null rather than pretending to be 1601-01-01
            writes.append((measured_at_id, ua.DataValue(ua.Variant(report.measured_at, _V.DateTime, None, False))))
        writes.append((result_id_id, ua.DataValue(ua.Variant(result.result_id, _V.String, None, False))))
        await write_values(self._server.iserver.aspace, writes)

    async def show_results(self, results: Sequence[MeasurementResult]) -> None:
        """A report batch's results: each characteristic's Last* values written once, with its last result (the
        value a client reads after the batch, as if each had been written in turn), and a MeasurementReported event
        per result, as a single call raises it (an event is one result, not one batch)."""
        if len(results) == 1:  # every single call's: no batch to fold per characteristic
            await self._show_last(results[0])
            if self._result_events is not None and self._result_events_watched():
                await self._report_event(results[0])
            return
        last: dict[tuple[str, str, str], MeasurementResult] = {}
        for result in results:
            report = result.report
            last[(report.order_no, report.operation_no, report.characteristic_id)] = result
        for result in last.values():
            await self._show_last(result)
        if self._result_events is None or not self._result_events_watched():
            return  # nobody subscribed to them: building a thousand events nobody receives costs the batch call
        for position, result in enumerate(results):
            if position and not position % _EVENTS_BETWEEN_YIELDS:
                await asyncio.sleep(0)  # other sessions' requests (keep-alive probes among them) go in between
            await self._report_event(result)

    def _result_events_watched(self) -> bool:
        """Whether any subscription (a client's, or the server's own event history) monitors events where
        MeasurementReported is raised: at its emitting node or at the Server object it is passed on to."""
        emitting = self._result_events.event.emitting_node
        subscriptions = self._server.iserver.subscription_service.subscriptions
        for subscription in subscriptions.values():
            # asyncua 2.1's map of event-emitting nodes to monitored items; without it (another asyncua), assume
            # someone watches: raising events nobody receives is slow, dropping watched ones would be wrong.
            watched = getattr(subscription.monitored_item_srv, "_monitored_events", None)
            if watched is None or emitting in watched or SERVER_OBJECT in watched:
                return True
        return False

    async def _report_event(self, result: MeasurementResult) -> None:
        message = describe_result(self._result_events.event, result)
        await trigger_along(self._server, self._result_events, [SERVER_OBJECT], message=message)

    async def show_spc(self, change: SpcStatusChanged) -> None:
        """Write the Spc values of one characteristic that differ from what is shown (most often two or three)."""
        characteristic = (change.order_no, change.operation_no, change.characteristic_id)
        kept = _kept(self._spc_ids, characteristic, lambda: self._with_key(self._ns.characteristic(*characteristic)))
        await self._write_spc(kept[0], spc_members(change.status), kept[1])

    async def _write_spc(self, node_id: ua.NodeId, members: dict[str, tuple[Any, ua.VariantType]], key: str) -> None:
        shown = self._spc_shown.get(key)
        if shown is None:
            plan = self._spc_plan.pop(key, None)
            shown = {} if plan is None else spc_members(None, plan)
        writes = []
        for browse_path, (value, variant_type) in members.items():
            if browse_path in shown and shown[browse_path] == (value, variant_type):
                continue
            data_value = WAITING if value is None else ua.DataValue(ua.Variant(value, variant_type))
            writes.append((self._member_id(node_id, key, browse_path), data_value))
        await write_values(self._server.iserver.aspace, writes)
        self._spc_shown[key] = members

    def _member_id(self, parent: ua.NodeId, parent_key: str, browse_path: str) -> ua.NodeId:
        """`namespace.member`, kept (see _NODE_IDS_KEPT)."""
        return _kept(self._member_ids, (parent_key, browse_path), lambda: self._ns.member(parent, browse_path))

    def _last_member_ids(self, key: tuple[str, str, str]) -> tuple[ua.NodeId, ...]:
        characteristic = self._ns.characteristic(*key)
        return tuple(self._ns.member(characteristic, name) for name in _LAST_MEMBERS)

    @staticmethod
    def _with_key(node_id: ua.NodeId) -> tuple[ua.NodeId, str]:
        return node_id, str(node_id.Identifier)

    async def show_diagnostics(self, diagnostics: DiagnosticsChanged) -> None:
        await self._write_members(
            self._ns.root_child("Diagnostics"),
            [
                ("LastSyncTime", diagnostics.last_sync_time, _V.DateTime),
                ("LastSyncSucceeded", diagnostics.last_sync_succeeded, _V.Boolean),
                ("SyncErrorCount", diagnostics.sync_error_count, _V.UInt32),
                ("LastSyncError", diagnostics.last_sync_error, _V.String),
                ("OutboxDepth", diagnostics.outbox_depth, _V.UInt32),
                ("OutboxDeadLetters", diagnostics.outbox_dead_letters, _V.UInt32),
                ("SyncFindings", list(diagnostics.sync_findings), _V.String),
                ("MasterDataGaps", list(diagnostics.master_data_gaps), _V.String),
                ("HeldBackOrders", diagnostics.held_back_orders, _V.UInt32),
            ],
        )

    # ---- node plumbing ----------------------------------------------------------------------------

    async def _write_value(self, node_id: ua.NodeId, data_value: ua.DataValue) -> None:
        """`Server.write_attribute_value` without its two pass-through coroutines (Server, InternalServer): every
        report writes four to seven values. Same effect: an unknown node is left alone, subscribers are told."""
        await self._server.iserver.aspace.write_attribute_value(node_id, ua.AttributeIds.Value, data_value)

    async def _write_members(self, parent: ua.NodeId, members: Iterable[Member]) -> None:
        for browse_path, value, variant_type in members:
            if value is None:
                continue  # an unset date stays Null rather than pretending to be 1601-01-01
            await self._write_value(self._ns.member(parent, browse_path), ua.DataValue(ua.Variant(value, variant_type)))

    async def _delete(self, root: ua.NodeId) -> None:
        """Remove a gauge with everything below it.

        Not asyncua's delete_nodes: it scans every node of the address space for each node it deletes
        (seconds for one order, with every client blocked), and it reports a deleted monitored item as a
        status change of the whole subscription, after which clients drop the subscription. Here the
        subtree is found through its own references (all its NodeIds extend the root's) and only the
        parent's reference is unlinked.
        """
        address_space = self._server.iserver.aspace
        subtree = self._subtree(root)
        for reference in subtree[root].references if root in subtree else []:
            parent = address_space.get(reference.NodeId)
            if not reference.IsForward and parent is not None:
                parent.references = [ref for ref in parent.references if ref.NodeId != root]
        await self._remove_nodes(list(subtree.values()))

    async def _remove_nodes(self, nodes: list[NodeData]) -> None:
        """Delete nodes whose parents no longer reference them; each monitored item on one of them gets a
        BadNodeIdUnknown value of its own (rather than a status change that makes clients drop the subscription)."""
        address_space = self._server.iserver.aspace
        gone = ua.DataValue(StatusCode=status_code(ua.StatusCodes.BadNodeIdUnknown))
        for node_data in nodes:
            value_attribute = node_data.attributes.get(ua.AttributeIds.Value)
            if value_attribute is None:
                continue
            for handle, callback in list(value_attribute.datachange_callbacks.items()):
                try:
                    await callback(handle, gone)
                except Exception:  # one broken subscription must not stop the withdrawal
                    _log.exception("could not tell monitored item %s that %s was removed", handle, node_data.nodeid)
                address_space.delete_datachange_callback(handle)
        for node_data in nodes:
            with contextlib.suppress(KeyError):  # gone already (removed with an earlier part of the same order)
                del address_space[node_data.nodeid]

    def _subtree(self, root: ua.NodeId) -> dict[ua.NodeId, Any]:
        address_space = self._server.iserver.aspace
        prefixes = (f"{root.Identifier!s}.", f"{root.Identifier!s}/")
        found: dict[ua.NodeId, Any] = {}
        pending = [root]
        while pending:
            node_id = pending.pop()
            node_data = address_space.get(node_id)
            if node_data is None or node_id in found:
                continue
            found[node_id] = node_data
            pending.extend(
                ref.NodeId
                for ref in node_data.references
                if ref.IsForward
                and ref.NodeId.NamespaceIndex == root.NamespaceIndex
                and isinstance(ref.NodeId.Identifier, str)
                and ref.NodeId.Identifier.startswith(prefixes)
            )
        return found
