"""The address space as a view of the store: orders, characteristics, gauges and diagnostics as OPC UA nodes.

Nodes are created from the NodeSet's types (so every instance carries what its type declares) and then kept
current by writing only what changed: a subscribed client sees a data change, not a node that vanished
and came back. Orders the ERP withdraws are deleted with their whole subtree.

asyncua internals: Server.iserver.aspace (get, del, delete_datachange_callback, NodeData references and attributes)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from typing import Any

from asyncua import Server, ua

from qualitybridge.domain.events import DiagnosticsChanged, SpcStatusChanged
from qualitybridge.domain.model import (
    InspectionCharacteristic,
    MeasurementResult,
    Operation,
    ProductionOrder,
    ResultEvaluation,
    TestEquipment,
)
from qualitybridge.domain.spc import SpcStatus
from qualitybridge.domain.units import unit_description, unit_id, unit_symbol
from qualitybridge.server.address_space.namespace import QualityBridgeNamespace
from qualitybridge.server.address_space.notifiers import SERVER_OBJECT, trigger_along
from qualitybridge.server.methods.arguments import status_code

__all__ = ["AddressSpaceView"]

_log = logging.getLogger(__name__)

_UNECE_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"
_V = ua.VariantType
Member = tuple[str, Any, ua.VariantType]
_EVENT_FIELD_TYPES = {
    "OrderNumber": _V.String,
    "OperationNumber": _V.String,
    "CharacteristicId": _V.String,
    "ResultId": _V.String,
    "Value": _V.Double,
    "Evaluation": _V.Int32,
}


def _day(day: date | None) -> datetime | None:
    return None if day is None else datetime.combine(day, time(), tzinfo=UTC)


def _order_members(order: ProductionOrder) -> list[Member]:
    return [
        ("OrderNumber", order.order_no, _V.String),
        ("MaterialNumber", order.material_no, _V.String),
        ("PartNumber", order.part_no, _V.String),
        ("Plant", order.plant, _V.String),
        ("WorkCentre", order.work_centre, _V.String),
        ("PlannedQuantity", float(order.planned_quantity), _V.Double),
        ("QuantityUnit", order.quantity_unit, _V.String),
        ("RoutingVersion", order.routing_version, _V.String),
        ("PlanVersion", order.plan_version, _V.String),
        ("PlannedStart", order.planned_start, _V.DateTime),
        ("PlannedEnd", order.planned_end, _V.DateTime),
        ("State", int(order.state), _V.Int32),
    ]


def _operation_members(operation: Operation) -> list[Member]:
    return [
        ("OperationNumber", operation.operation_no, _V.String),
        ("Description", operation.description, _V.String),
        ("WorkCentre", operation.work_centre, _V.String),
    ]


def _characteristic_members(characteristic: InspectionCharacteristic) -> list[Member]:
    units = ua.EUInformation(
        NamespaceUri=_UNECE_NAMESPACE,
        UnitId=unit_id(characteristic.unit),
        DisplayName=ua.LocalizedText(unit_symbol(characteristic.unit)),
        Description=ua.LocalizedText(unit_description(characteristic.unit)),
    )
    return [
        ("CharacteristicId", characteristic.characteristic_id, _V.String),
        ("Description", characteristic.description or characteristic.name, _V.String),
        ("Unit", characteristic.unit, _V.String),
        ("Classification", characteristic.classification.value, _V.String),
        ("GaugeType", characteristic.gauge_type, _V.String),
        ("PlanVersion", characteristic.plan_version, _V.String),
        ("DecimalPlaces", characteristic.decimal_places, _V.Byte),
        ("SampleSize", characteristic.sample_size, _V.UInt32),
        ("Nominal", characteristic.nominal, _V.Double),
        ("LowerLimit", characteristic.lower_limit, _V.Double),
        ("UpperLimit", characteristic.upper_limit, _V.Double),
        ("LastValue.EURange", ua.Range(characteristic.lower_limit, characteristic.upper_limit), _V.ExtensionObject),
        ("LastValue.EngineeringUnits", units, _V.ExtensionObject),
    ]


def _spc_members(
    status: SpcStatus | None, plan: InspectionCharacteristic | None = None
) -> dict[str, tuple[Any, ua.VariantType]]:
    """The Spc object's values; None where nothing is known yet (written as BadWaitingForInitialData, not 0).

    Before the first value, the limits are the plan's if it gives them.
    """
    limits = status.limits if status is not None else None
    capability = status.capability if status is not None else None
    center: float | None
    ucl: float | None
    lcl: float | None
    if limits is not None:
        center, ucl, lcl = limits.center, limits.ucl, limits.lcl
    elif status is None and plan is not None:
        center, ucl, lcl = plan.center_line, plan.upper_control_limit, plan.lower_control_limit
    else:
        center = ucl = lcl = None
    return {
        "Spc.CenterLine": (center, _V.Double),
        "Spc.UCL": (ucl, _V.Double),
        "Spc.LCL": (lcl, _V.Double),
        "Spc.Cp": (capability.cp if capability else None, _V.Double),
        "Spc.Cpk": (capability.cpk if capability else None, _V.Double),
        "Spc.SampleCount": (status.sample_count if status else 0, _V.UInt32),
        "Spc.LastViolatedRule": ((status.last_violated_rule or 0) if status else 0, _V.Byte),
    }


_HISTORIZING = ua.DataValue(ua.Variant(True, _V.Boolean))
_WAITING = ua.DataValue(StatusCode=status_code(ua.StatusCodes.BadWaitingForInitialData))


def _equipment_members(gauge: TestEquipment) -> list[Member]:
    return [
        ("EquipmentId", gauge.equipment_id, _V.String),
        ("Description", gauge.description, _V.String),
        ("EquipmentType", gauge.equipment_type, _V.String),
        ("CertificateNumber", gauge.certificate_no, _V.String),
        ("LastCalibration", _day(gauge.last_calibration), _V.DateTime),
        ("NextCalibrationDue", _day(gauge.next_due), _V.DateTime),
        ("CalibrationStatus", int(gauge.calibration_status), _V.Int32),
    ]


class AddressSpaceView:
    def __init__(self, server: Server, namespace: QualityBridgeNamespace) -> None:
        self._server = server
        self._ns = namespace
        self._orders: dict[str, ProductionOrder] = {}
        self._equipment: dict[str, TestEquipment] = {}
        self._result_events: Any = None
        self._spc_shown: dict[str, dict[str, tuple[Any, ua.VariantType]]] = {}  # per characteristic node id
        # Released orders the view could not show (order number -> why); skipped and reported, never fatal.
        self.unshown: dict[str, str] = {}

    async def start(self) -> None:
        self._result_events = await self._server.get_event_generator(
            self._ns.measurement_reported_event_type, self._ns.root
        )
        # asyncua takes an event field's Variant type from the declaration's default value; ours have none.
        for name, variant_type in _EVENT_FIELD_TYPES.items():
            self._result_events.event.add_property(name, None, variant_type)

    # ---- master data ----------------------------------------------------------------------------

    async def show(self, orders: Iterable[ProductionOrder], equipment: Iterable[TestEquipment]) -> None:
        """Make the published orders and gauges equal to these (add, update in place, remove)."""
        wanted_orders = {order.order_no: order for order in orders}
        order_set_changed = wanted_orders.keys() != self._orders.keys()
        for order_no in [no for no in self._orders if no not in wanted_orders]:
            await self._delete(self._ns.order(order_no))
            del self._orders[order_no]
            prefix = f"{self._ns.order(order_no).Identifier!s}/"
            for shown in [key for key in self._spc_shown if key.startswith(prefix)]:
                del self._spc_shown[shown]
            _log.info("order %s withdrawn from the address space", order_no)
        for order_no in [no for no in self.unshown if no not in wanted_orders]:
            del self.unshown[order_no]
        for order_no, order in wanted_orders.items():
            previous = self._orders.get(order_no)
            try:
                if previous is None:
                    await self._add_order(order)
                    _log.info(
                        "order %s published (%d characteristics)",
                        order_no,
                        sum(len(op.characteristics) for op in order.operations),
                    )
                elif previous != order:
                    await self._update_order(previous, order)
            except Exception as exc:  # one order the view cannot show must not keep the others from being shown
                await self._set_aside(order_no, exc)
                order_set_changed = True
                continue
            self.unshown.pop(order_no, None)
            self._orders[order_no] = order
        if order_set_changed:
            await self._server.write_attribute_value(
                self._ns.root_child("ReleasedOrders"),
                ua.DataValue(ua.Variant(sorted(self._orders), _V.String)),
            )

        wanted_gauges = {gauge.equipment_id: gauge for gauge in equipment}
        for equipment_id in [e for e in self._equipment if e not in wanted_gauges]:
            await self._delete(self._ns.equipment(equipment_id))
            del self._equipment[equipment_id]
        for equipment_id, gauge in wanted_gauges.items():
            previous_gauge = self._equipment.get(equipment_id)
            node_id = self._ns.equipment(equipment_id)
            if previous_gauge is None:
                await self._instantiate(
                    self._ns.root_child("TestEquipment"),
                    node_id,
                    equipment_id,
                    self._ns.test_equipment_type,
                    event_source=True,
                )
            if previous_gauge != gauge:
                await self._write_members(node_id, _equipment_members(gauge))
            self._equipment[equipment_id] = gauge

    async def _set_aside(self, order_no: str, exc: Exception) -> None:
        """Remove what was built of an order that failed, so that a later (fixed) version starts clean."""
        reason = f"{type(exc).__name__}: {exc}"
        if self.unshown.get(order_no) != reason:
            _log.error("order %s cannot be shown in the address space and is skipped: %s", order_no, reason)
        self.unshown[order_no] = reason
        self._orders.pop(order_no, None)
        try:
            await self._delete(self._ns.order(order_no))
        except Exception:  # pragma: no cover - best effort; the order stays reported either way
            _log.exception("could not remove what was built of order %s", order_no)

    async def _add_order(self, order: ProductionOrder) -> None:
        node_id = self._ns.order(order.order_no)
        await self._instantiate(
            self._ns.root_child("Orders"), node_id, order.order_no, self._ns.production_order_type, event_source=True
        )
        await self._write_members(node_id, _order_members(order))
        for operation in order.operations:
            await self._add_operation(order.order_no, operation)

    async def _add_operation(self, order_no: str, operation: Operation) -> None:
        node_id = self._ns.operation(order_no, operation.operation_no)
        folder = self._ns.member(self._ns.order(order_no), "Operations")
        await self._instantiate(folder, node_id, operation.operation_no, self._ns.operation_type)
        await self._write_members(node_id, _operation_members(operation))
        for characteristic in operation.characteristics:
            await self._add_characteristic(order_no, operation.operation_no, characteristic)
            # Building nodes never waits on I/O, so without this an order of 30 characteristics held the event
            # loop for a second or more on a loaded machine and clients' keep-alive probes (1 s) gave up.
            await asyncio.sleep(0)

    async def _add_characteristic(self, order_no: str, operation_no: str, char: InspectionCharacteristic) -> None:
        node_id = self._ns.characteristic(order_no, operation_no, char.characteristic_id)
        folder = self._ns.member(self._ns.operation(order_no, operation_no), "Characteristics")
        await self._instantiate(
            folder,
            node_id,
            char.characteristic_id,
            self._ns.characteristic_type,
            display_name=f"{char.characteristic_id} {char.name}",
            event_source=True,
        )
        await self._write_members(node_id, _characteristic_members(char))
        # asyncua's instantiate does not copy Historizing from the type; AccessLevel (HistoryRead) it does.
        await self._server.write_attribute_value(
            self._ns.member(node_id, "LastValue"), _HISTORIZING, ua.AttributeIds.Historizing
        )
        self._spc_shown.pop(str(node_id.Identifier), None)
        await self._write_spc(node_id, _spc_members(None, char))

    async def _update_order(self, previous: ProductionOrder, order: ProductionOrder) -> None:
        order_no = order.order_no
        if _order_members(previous) != _order_members(order):
            await self._write_members(self._ns.order(order_no), _order_members(order))
        old_operations = {op.operation_no: op for op in previous.operations}
        new_operations = {op.operation_no: op for op in order.operations}
        for operation_no in old_operations.keys() - new_operations.keys():
            await self._delete(self._ns.operation(order_no, operation_no))
        for operation_no, operation in new_operations.items():
            old = old_operations.get(operation_no)
            if old is None:
                await self._add_operation(order_no, operation)
                continue
            if _operation_members(old) != _operation_members(operation):
                await self._write_members(self._ns.operation(order_no, operation_no), _operation_members(operation))
            old_chars = {c.characteristic_id: c for c in old.characteristics}
            for char_id in old_chars.keys() - {c.characteristic_id for c in operation.characteristics}:
                await self._delete(self._ns.characteristic(order_no, operation_no, char_id))
            for char in operation.characteristics:
                old_char = old_chars.get(char.characteristic_id)
                if old_char is None:
                    await self._add_characteristic(order_no, operation_no, char)
                elif old_char != char:
                    await self._write_members(
                        self._ns.characteristic(order_no, operation_no, char.characteristic_id),
                        _characteristic_members(char),
                    )
        _log.info("order %s updated in the address space", order_no)

    # ---- results and diagnostics ------------------------------------------------------------------

    async def show_result(self, result: MeasurementResult) -> None:
        report = result.report
        node_id = self._ns.characteristic(report.order_no, report.operation_no, report.characteristic_id)
        await self._write_members(
            node_id,
            [
                ("LastValue", report.value, _V.Double),
                ("LastEvaluation", int(result.evaluation), _V.Int32),
                ("LastMeasuredAt", report.measured_at, _V.DateTime),
                ("LastResultId", result.result_id, _V.String),
            ],
        )
        if self._result_events is not None:
            event = self._result_events.event
            event.OrderNumber = report.order_no
            event.OperationNumber = report.operation_no
            event.CharacteristicId = report.characteristic_id
            event.ResultId = result.result_id
            event.Value = report.value
            event.Evaluation = int(result.evaluation)
            event.Severity = 100 if result.evaluation is ResultEvaluation.OK else 600
            await trigger_along(
                self._server,
                self._result_events,
                [SERVER_OBJECT],
                message=f"{report.order_no}/{report.operation_no}/{report.characteristic_id} = {report.value} "
                f"{result.unit}: {result.evaluation.name}",
            )

    async def show_spc(self, change: SpcStatusChanged) -> None:
        """Write the Spc values of one characteristic that differ from what is shown (most often two or three)."""
        node_id = self._ns.characteristic(change.order_no, change.operation_no, change.characteristic_id)
        await self._write_spc(node_id, _spc_members(change.status))

    async def _write_spc(self, node_id: ua.NodeId, members: dict[str, tuple[Any, ua.VariantType]]) -> None:
        key = str(node_id.Identifier)
        shown = self._spc_shown.get(key, {})
        for browse_path, (value, variant_type) in members.items():
            if browse_path in shown and shown[browse_path] == (value, variant_type):
                continue
            data_value = _WAITING if value is None else ua.DataValue(ua.Variant(value, variant_type))
            await self._server.write_attribute_value(self._ns.member(node_id, browse_path), data_value)
        self._spc_shown[key] = members

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

    async def _instantiate(
        self,
        parent: ua.NodeId,
        node_id: ua.NodeId,
        name: str,
        type_id: ua.NodeId,
        display_name: str | None = None,
        *,
        event_source: bool = False,
    ) -> None:
        node = await self._server.get_node(parent).add_object(
            node_id, ua.QualifiedName(name, self._ns.index), objecttype=type_id
        )
        if display_name:
            await node.write_attribute(
                ua.AttributeIds.DisplayName, ua.DataValue(ua.Variant(ua.LocalizedText(display_name)))
            )
        if event_source:
            # The source of quality events (and SPC alarms): a client may subscribe to events right here.
            await node.write_attribute(
                ua.AttributeIds.EventNotifier,
                ua.DataValue(ua.Variant(int(ua.EventNotifierType.SubscribeToEvents), _V.Byte)),
            )

    async def _write_members(self, parent: ua.NodeId, members: Iterable[Member]) -> None:
        for browse_path, value, variant_type in members:
            if value is None:
                continue  # an unset date stays Null rather than pretending to be 1601-01-01
            await self._server.write_attribute_value(
                self._ns.member(parent, browse_path), ua.DataValue(ua.Variant(value, variant_type))
            )

    async def _delete(self, root: ua.NodeId) -> None:
        """Remove an instance with everything below it.

        Not asyncua's delete_nodes: it scans every node of the address space for each node it deletes
        (seconds for one order, with every client blocked), and it reports a deleted monitored item as a
        status change of the whole subscription, after which clients drop the subscription. Here the
        subtree is found through its own references (all its NodeIds extend the root's), each monitored
        item gets a BadNodeIdUnknown value of its own, and only the parent's reference is unlinked.
        """
        address_space = self._server.iserver.aspace
        subtree = self._subtree(root)
        gone = ua.DataValue(StatusCode=status_code(ua.StatusCodes.BadNodeIdUnknown))
        for node_data in subtree.values():
            value_attribute = node_data.attributes.get(ua.AttributeIds.Value)
            if value_attribute is None:
                continue
            for handle, callback in list(value_attribute.datachange_callbacks.items()):
                try:
                    await callback(handle, gone)
                except Exception:  # one broken subscription must not stop the withdrawal
                    _log.exception("could not tell monitored item %s that %s was removed", handle, root)
                address_space.delete_datachange_callback(handle)
        for reference in subtree[root].references if root in subtree else []:
            parent = address_space.get(reference.NodeId)
            if not reference.IsForward and parent is not None:
                parent.references = [ref for ref in parent.references if ref.NodeId != root]
        for node_id in subtree:
            del address_space[node_id]

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
