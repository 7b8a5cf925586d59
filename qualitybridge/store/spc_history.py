"""What the SPC monitor reads at start: per characteristic stream, its count, its first and its latest values.

A restart resumes each chart from a bounded tail of its stream instead of every stored value (docs/spc.md), so the
read is one query per batch of orders whose window functions rank each stream's rows from both ends; only the
rows a chart needs leave the database, as bare (value, result id, arrival) tuples, with no model built per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Integer, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from qualitybridge.store import tables

__all__ = ["SpcHistory", "StoredStream", "StreamKey"]

StreamKey = tuple[str, str, str, str]  # order, operation, characteristic, plan version


@dataclass
class StoredStream:
    """One stream's stored values in arrival order: how many, the first `first` of them, and the latest ones."""

    key: StreamKey
    total: int
    first: list[float] = field(default_factory=list)
    latest: list[tuple[float, str, datetime]] = field(default_factory=list)  # value, result id, received at


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class SpcHistory:
    engine: AsyncEngine

    async def stored_streams(
        self, order_nos: Sequence[str], *, first: int, latest: int, since: datetime
    ) -> list[StoredStream]:
        """The streams of these orders: the `first` values, the `latest` values plus all received at or after
        `since`, each in arrival order (received_at, measured_at, result id: the order the monitor charts in)."""
        if not order_nos:
            return []
        table = tables.measurement_results
        stream = (table.c.order_no, table.c.operation_no, table.c.characteristic_id, table.c.plan_version)
        arrival = (table.c.received_at, table.c.measured_at, table.c.result_id)
        ranked = (
            select(
                *stream,
                table.c.value,
                table.c.result_id,
                table.c.received_at,
                func.row_number()
                .over(partition_by=stream, order_by=[column.desc() for column in arrival])
                .label("from_end"),
                func.count().over(partition_by=stream).label("total"),
                func.sum(case((table.c.received_at >= since, 1), else_=0))
                .over(partition_by=stream)
                .cast(Integer)
                .label("recent"),
            )
            .where(table.c.order_no.in_(list(order_nos)))
            .subquery()
        )
        query = (
            select(ranked)
            # Counted from the end only: one sort per stream; the first values are those with the highest ranks.
            .where(or_(ranked.c.from_end > ranked.c.total - first, ranked.c.from_end <= ranked.c.recent + latest))
            .order_by(
                ranked.c.order_no,
                ranked.c.operation_no,
                ranked.c.characteristic_id,
                ranked.c.plan_version,
                ranked.c.from_end.desc(),
            )
        )
        streams: dict[StreamKey, StoredStream] = {}
        async with self.engine.connect() as conn:
            for row in await conn.execute(query):
                key = (row.order_no, row.operation_no, row.characteristic_id, row.plan_version)
                found = streams.get(key)
                if found is None:
                    found = streams[key] = StoredStream(key, row.total)
                if row.from_end > row.total - first:
                    found.first.append(row.value)
                if row.from_end <= row.recent + latest:
                    found.latest.append((row.value, row.result_id, _aware(row.received_at)))
        return list(streams.values())

    async def last_engine_alarm_rules(self, order_nos: Sequence[str], reported_by: str) -> dict[StreamKey, int]:
        """Per stream, the rule of the latest stored alarm `reported_by` raised (by its result's arrival; of
        several rules on that result the highest, which a chart names last)."""
        if not order_nos:
            return {}
        alarms, results = tables.spc_alarms, tables.measurement_results
        query = (
            select(
                results.c.order_no,
                results.c.operation_no,
                results.c.characteristic_id,
                results.c.plan_version,
                alarms.c.rule_number,
            )
            .join(results, results.c.result_id == alarms.c.result_id)
            .where(
                and_(
                    alarms.c.reported_by == reported_by,
                    alarms.c.order_no.in_(list(order_nos)),
                    alarms.c.rule_number.is_not(None),
                )
            )
            .order_by(results.c.received_at, results.c.measured_at, results.c.result_id, alarms.c.rule_number)
        )
        last: dict[StreamKey, int] = {}
        async with self.engine.connect() as conn:
            for row in await conn.execute(query):
                last[(row.order_no, row.operation_no, row.characteristic_id, row.plan_version)] = row.rule_number
        return last
