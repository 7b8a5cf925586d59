"""What the KPIs are computed from (confirmations and measurements with their orders' material and work centre),
the one queueing of a KPI report (its outbox row, refused a second time by the period's idempotency key), and
what the order report reads: the order as the ERP sent it (withdrawn or not) and all its values, lean rows.

Mixed into `Store`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from qualitybridge.domain.kpis import ConfirmedQuantities, KpiReport, PartMeasurement
from qualitybridge.domain.model import ProductionOrder, ResultEvaluation
from qualitybridge.domain.postings import KpiPosting
from qualitybridge.store import tables
from qualitybridge.store.outbox import outbox_row

__all__ = ["KpiInputs", "QualityFigures", "ReportedValue"]

_IN_CHUNK = 500
KpiInputs = tuple[list[ConfirmedQuantities], list[PartMeasurement]]


@dataclass(frozen=True, slots=True)
class ReportedValue:
    """One stored measurement as the order report shows it (no pydantic: an order may have 100k of them)."""

    operation_no: str
    characteristic_id: str
    result_id: str
    value: float
    evaluation: ResultEvaluation
    equipment_id: str
    part_serial: str
    measured_at: datetime
    gauge_due_soon: bool


class QualityFigures:
    engine: AsyncEngine

    async def order_by_number(self, order_no: str) -> ProductionOrder | None:
        """The order as last received from the ERP, also after it was withdrawn from the shop floor."""
        async with self.engine.connect() as conn:
            return (await _orders(conn, [order_no])).get(order_no)

    async def order_values(self, order_no: str) -> list[ReportedValue]:
        """Every stored measurement of the order, by measurement time."""
        c = tables.measurement_results.c
        query = (
            select(
                c.operation_no,
                c.characteristic_id,
                c.result_id,
                c.value,
                c.evaluation,
                c.equipment_id,
                c.part_serial,
                c.measured_at,
                c.gauge_due_soon,
            )
            .where(c.order_no == order_no)
            .order_by(c.measured_at, c.result_id)
        )
        evaluations = {int(e): e for e in ResultEvaluation}
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            ReportedValue(
                row.operation_no,
                row.characteristic_id,
                row.result_id,
                row.value,
                evaluations[row.evaluation],
                row.equipment_id,
                row.part_serial,
                row.measured_at if row.measured_at.tzinfo else row.measured_at.replace(tzinfo=UTC),
                bool(row.gauge_due_soon),
            )
            for row in rows
        ]

    async def kpi_inputs(
        self, *, since: datetime | None = None, until: datetime | None = None, order_no: str | None = None
    ) -> KpiInputs:
        """Confirmations that arrived in [since, until) and measurements taken in it, or all of one order."""
        confirmations = tables.confirmations.c
        results = tables.measurement_results.c
        confirmation_query = select(
            confirmations.order_no,
            confirmations.operation_no,
            confirmations.yield_quantity,
            confirmations.scrap_quantity,
            confirmations.rework_quantity,
        )
        result_query = select(results.order_no, results.operation_no, results.part_serial, results.evaluation)
        if order_no is not None:
            confirmation_query = confirmation_query.where(confirmations.order_no == order_no)
            result_query = result_query.where(results.order_no == order_no)
        if since is not None:
            confirmation_query = confirmation_query.where(confirmations.received_at >= since)
            result_query = result_query.where(results.measured_at >= since)
        if until is not None:
            confirmation_query = confirmation_query.where(confirmations.received_at < until)
            result_query = result_query.where(results.measured_at < until)
        async with self.engine.connect() as conn:
            confirmation_rows = (await conn.execute(confirmation_query)).all()
            result_rows = (await conn.execute(result_query)).all()
            orders = await _orders(
                conn, {row.order_no for row in confirmation_rows} | {r.order_no for r in result_rows}
            )
        not_ok = int(ResultEvaluation.NOT_OK)
        return (
            [
                ConfirmedQuantities(
                    row.order_no,
                    *_material_and_work_centre(orders, row.order_no, row.operation_no),
                    yield_quantity=row.yield_quantity,
                    scrap_quantity=row.scrap_quantity,
                    rework_quantity=row.rework_quantity,
                )
                for row in confirmation_rows
            ],
            [
                PartMeasurement(
                    row.order_no,
                    *_material_and_work_centre(orders, row.order_no, row.operation_no),
                    part_serial=row.part_serial,
                    not_ok=row.evaluation == not_ok,
                )
                for row in result_rows
            ],
        )

    async def queue_kpi_report(self, report: KpiReport) -> bool:
        """Queue the report for the QMS; False (and nothing queued) if its period was queued before."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    tables.outbox.insert().values(**outbox_row(KpiPosting(report=report), now=report.computed_at))
                )
        except IntegrityError:
            async with self.engine.connect() as conn:
                found = await conn.execute(
                    select(tables.outbox.c.seq).where(tables.outbox.c.idempotency_key == report.idempotency_key)
                )
                if found.first() is None:
                    raise
            return False
        return True


async def _orders(conn: AsyncConnection, order_nos: Collection[str]) -> dict[str, ProductionOrder]:
    found: dict[str, ProductionOrder] = {}
    ordered = sorted(order_nos)
    table = tables.production_orders
    for start in range(0, len(ordered), _IN_CHUNK):
        chunk = ordered[start : start + _IN_CHUNK]
        for row in await conn.execute(select(table.c.order_no, table.c.document).where(table.c.order_no.in_(chunk))):
            found[row.order_no] = ProductionOrder.model_validate(row.document)
    return found


def _material_and_work_centre(orders: dict[str, Any], order_no: str, operation_no: str) -> tuple[str, str]:
    """The order's material and the operation's work centre (else the order's); empty for an unknown order."""
    order: ProductionOrder | None = orders.get(order_no)
    if order is None:
        return "", ""
    for operation in order.operations:
        if operation.operation_no == operation_no and operation.work_centre:
            return order.material_no, operation.work_centre
    return order.material_no, order.work_centre
