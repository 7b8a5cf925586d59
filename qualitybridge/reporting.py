"""Accepting measurements: check them against the released master data, judge them, store them durably.

The master data is held in memory (`MasterData`), refreshed from the store after every ERP sync, so the
report path reads no database row to validate; it writes one transaction (result + outbox row).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta

from qualitybridge.domain.errors import GaugeBlocked, InvalidValue, UnknownReference
from qualitybridge.domain.model import (
    InspectionCharacteristic,
    MeasurementReport,
    MeasurementResult,
    ProductionOrder,
    TestEquipment,
)
from qualitybridge.store import Store, new_result_id

__all__ = ["MasterData", "ReportingService", "ResultListener"]

_log = logging.getLogger(__name__)

ResultListener = Callable[[MeasurementResult], Awaitable[None]]


class MasterData:
    """The released orders and the gauges, indexed for the report path."""

    def __init__(self) -> None:
        self._orders: dict[str, ProductionOrder] = {}
        self._equipment: dict[str, TestEquipment] = {}

    def replace(self, orders: Iterable[ProductionOrder], equipment: Iterable[TestEquipment]) -> None:
        self._orders = {order.order_no: order for order in orders}
        self._equipment = {gauge.equipment_id: gauge for gauge in equipment}

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

    def characteristic(self, report: MeasurementReport) -> InspectionCharacteristic:
        """The characteristic a report refers to, or UnknownReference naming the first key that does not match."""
        order = self._orders.get(report.order_no)
        if order is None:
            raise UnknownReference("OrderNumber", f"order {report.order_no!r} is not released to the shop floor")
        operation = order.operation(report.operation_no)
        if operation is None:
            raise UnknownReference(
                "OperationNumber", f"order {report.order_no} has no operation {report.operation_no!r}"
            )
        characteristic = operation.characteristic(report.characteristic_id)
        if characteristic is None:
            raise UnknownReference(
                "CharacteristicId",
                f"operation {report.order_no}/{report.operation_no} has no characteristic {report.characteristic_id!r}",
            )
        return characteristic


class ReportingService:
    def __init__(
        self,
        store: Store,
        master_data: MasterData,
        *,
        future_tolerance: timedelta = timedelta(minutes=5),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._master = master_data
        self._future_tolerance = future_tolerance
        self._clock = clock
        self._listeners: list[ResultListener] = []

    @property
    def master_data(self) -> MasterData:
        return self._master

    def add_listener(self, listener: ResultListener) -> None:
        """Called after a new result is stored (not for repeated client result ids)."""
        self._listeners.append(listener)

    async def report_measurement(self, report: MeasurementReport, reported_by: str) -> MeasurementResult:
        """Validate, judge and store one measurement; raises a ReportRefused subclass when refused."""
        if report.client_result_id:
            first = await self._store.result_by_client_id(report.client_result_id)
            if first is not None:
                return first
        characteristic = self._master.characteristic(report)
        self._check_value(report)
        self._check_gauge(report.equipment_id)
        result = MeasurementResult(
            result_id=new_result_id(),
            report=report,
            evaluation=characteristic.evaluate(report.value),
            plan_version=characteristic.plan_version,
            unit=characteristic.unit,
            reported_by=reported_by,
            received_at=self._clock(),
        )
        stored, created = await self._store.record_measurement(result)
        if created:
            for listener in self._listeners:
                try:
                    await listener(stored)
                except Exception:  # a view failing must not turn a stored result into an error
                    _log.exception("result listener failed for result %s", stored.result_id)
        return stored

    def _check_value(self, report: MeasurementReport) -> None:
        if not math.isfinite(report.value):
            raise InvalidValue("Value", f"value {report.value} is not a finite number")
        if report.measured_at > self._clock() + self._future_tolerance:
            raise InvalidValue(
                "MeasuredAt",
                f"measurement time {report.measured_at.isoformat()} lies in the future "
                f"(more than {self._future_tolerance} ahead of the server clock)",
            )

    def _check_gauge(self, equipment_id: str) -> None:
        gauge = self._master.gauge(equipment_id)
        if gauge is None:
            raise UnknownReference("EquipmentId", f"test equipment {equipment_id!r} is not known")
        if gauge.calibration_status.blocks_measuring:
            raise GaugeBlocked(
                "EquipmentId",
                f"test equipment {equipment_id} may not be used: calibration {gauge.calibration_status.name.lower()}",
            )
