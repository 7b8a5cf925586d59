"""The released orders and gauges held in memory, indexed for the report path: no database read to validate.

Refreshed from the store after every ERP sync; the shop-floor state of an order set by this process is kept. The
plan history of the released orders (superseded characteristic versions) is held too, so that a late measurement
is judged against the version in force at its MeasuredAt without a database read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from qualitybridge.domain.errors import UnknownReference
from qualitybridge.domain.model import (
    InspectionCharacteristic,
    MeasurementReport,
    OrderState,
    ProductionOrder,
    SupersededPlanVersion,
    TestEquipment,
)
from qualitybridge.domain.plan_versions import VersionInForce, version_in_force

__all__ = ["MasterData"]

_CharacteristicKey = tuple[str, str, str]


def _by_characteristic(
    history: Iterable[SupersededPlanVersion],
) -> dict[_CharacteristicKey, tuple[SupersededPlanVersion, ...]]:
    grouped: defaultdict[_CharacteristicKey, list[SupersededPlanVersion]] = defaultdict(list)
    for version in history:
        grouped[(version.order_no, version.operation_no, version.characteristic_id)].append(version)
    return {key: tuple(versions) for key, versions in grouped.items()}


class MasterData:
    """The released orders and the gauges, indexed for the report path."""

    def __init__(self) -> None:
        self._orders: dict[str, ProductionOrder] = {}
        self._equipment: dict[str, TestEquipment] = {}
        self._shop_floor_states: dict[str, OrderState] = {}
        self._plan_history: dict[_CharacteristicKey, tuple[SupersededPlanVersion, ...]] = {}

    def replace(
        self,
        orders: Iterable[ProductionOrder],
        equipment: Iterable[TestEquipment],
        plan_history: Iterable[SupersededPlanVersion] = (),
    ) -> None:
        """Take over what the store holds now; a state this process set (`set_order_state`) stays.

        Only this process changes order states, memory right after the store, so its own is never older than the
        store's: a sync that read the store just before a state change must not turn the change back in memory.
        """
        fresh: dict[str, ProductionOrder] = {}
        for order in orders:
            state = self._shop_floor_states.get(order.order_no)
            kept = order if state is None or state is order.state else order.model_copy(update={"state": state})
            fresh[order.order_no] = kept
        self._orders = fresh
        self._shop_floor_states = {no: state for no, state in self._shop_floor_states.items() if no in fresh}
        self._equipment = {gauge.equipment_id: gauge for gauge in equipment}
        self._plan_history = _by_characteristic(version for version in plan_history if version.order_no in fresh)

    def update(
        self,
        orders: Iterable[ProductionOrder],
        withdrawn: Iterable[str],
        equipment: Iterable[TestEquipment],
        plan_history: Iterable[SupersededPlanVersion] = (),
    ) -> None:
        """Take over only what a delta sync changed: orders released or changed, orders withdrawn, gauges changed,
        and the plan history of the orders released or changed (it replaces theirs).

        The same rule as `replace` keeps a state this process set; a delta of 20 orders no longer reloads 2,000.
        """
        orders = list(orders)
        withdrawn = list(withdrawn)
        touched = {order.order_no for order in orders} | set(withdrawn)
        kept_history = [
            version
            for versions in self._plan_history.values()
            for version in versions
            if version.order_no not in touched
        ]
        fresh_history = [version for version in plan_history if version.order_no not in withdrawn]
        self._plan_history = _by_characteristic([*kept_history, *fresh_history])
        fresh = dict(self._orders)
        for order in orders:
            state = self._shop_floor_states.get(order.order_no)
            fresh[order.order_no] = (
                order if state is None or state is order.state else order.model_copy(update={"state": state})
            )
        for order_no in withdrawn:
            fresh.pop(order_no, None)
            self._shop_floor_states.pop(order_no, None)
        self._orders = dict(sorted(fresh.items()))  # in order-number order, as the store lists them for `replace`
        fresh_gauges = {**self._equipment, **{gauge.equipment_id: gauge for gauge in equipment}}
        self._equipment = dict(sorted(fresh_gauges.items()))

    def set_order_state(self, order_no: str, state: OrderState) -> ProductionOrder | None:
        """Record a state change already stored; answers the order as it is now (None if not released)."""
        order = self._orders.get(order_no)
        if order is None:
            return None
        changed = order.model_copy(update={"state": state})
        self._orders[order_no] = changed
        self._shop_floor_states[order_no] = state
        return changed

    @property
    def orders(self) -> list[ProductionOrder]:
        return list(self._orders.values())

    @property
    def equipment(self) -> list[TestEquipment]:
        return list(self._equipment.values())

    def order(self, order_no: str) -> ProductionOrder | None:
        return self._orders.get(order_no)

    def gauge(self, equipment_id: str) -> TestEquipment | None:
        return self._equipment.get(equipment_id)

    def work_centre(self, order_no: str, operation_no: str) -> str | None:
        """Where an operation runs (the operation's own work centre, else the order's); None if unknown."""
        order = self._orders.get(order_no)
        if order is None:
            return None
        operation = order.operation(operation_no)
        return (operation.work_centre if operation is not None else "") or order.work_centre

    def version_in_force(self, report: MeasurementReport) -> VersionInForce:
        """The characteristic's version in force at the report's MeasuredAt (an earlier one for a late measurement),
        with the order's routing version then; UnknownReference as `characteristic`."""
        current = self.characteristic(report)
        order = self._orders[report.order_no]
        history = self._plan_history.get((report.order_no, report.operation_no, report.characteristic_id), ())
        return version_in_force(current, order.routing_version, history, report.measured_at)

    def characteristic(self, report: MeasurementReport) -> InspectionCharacteristic:
        """The characteristic a report refers to, or UnknownReference naming the first key that does not match."""
        return self.find_characteristic(report.order_no, report.operation_no, report.characteristic_id)

    def find_characteristic(self, order_no: str, operation_no: str, characteristic_id: str) -> InspectionCharacteristic:
        """The characteristic with these keys, or UnknownReference naming the first key that does not match."""
        order = self._orders.get(order_no)
        if order is None:
            raise UnknownReference("OrderNumber", f"order {order_no!r} is not released to the shop floor")
        operation = order.operation(operation_no)
        if operation is None:
            raise UnknownReference("OperationNumber", f"order {order_no} has no operation {operation_no!r}")
        characteristic = operation.characteristic(characteristic_id)
        if characteristic is None:
            raise UnknownReference(
                "CharacteristicId",
                f"operation {order_no}/{operation_no} has no characteristic {characteristic_id!r}",
            )
        return characteristic
