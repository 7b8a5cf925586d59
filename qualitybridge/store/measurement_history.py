"""The measurement series of one characteristic, read straight from `measurement_results` (HistoryRead serves
it; there is no second copy), and the retention purge that never removes what the outbox still owes the ERP.

Mixed into `Store`. A page is a keyset query on (order, operation, characteristic, measured_at, result_id), which
the index of migration 0006 answers without sorting, so the 100th page costs what the first did.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import String, and_, delete, exists, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from qualitybridge.domain.model import OutboxState, ResultEvaluation
from qualitybridge.domain.records import AcceptedMeasurement, SpcAlarmRecord
from qualitybridge.store import tables
from qualitybridge.store.outbox_admin import DISCARDED
from qualitybridge.store.shop_floor_records import _accepted_from_row, _spc_alarm_from_row

__all__ = ["MeasurementHistory", "QualityEvent", "SeriesPoint", "SeriesQuery"]

# Rows deleted per statement by the purge: short transactions, so the report path never waits long for the lock.
_PURGE_CHUNK = 2000


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class SeriesPoint:
    """One stored measurement of a series, as HistoryRead returns it."""

    result_id: str
    value: float
    evaluation: ResultEvaluation
    measured_at: datetime
    received_at: datetime


@dataclass(frozen=True)
class SeriesQuery:
    """A page of one characteristic's series.

    `start` is inclusive and `end` exclusive, in the direction of reading (OPC 10000-11 ReadRawModifiedDetails):
    forwards, [start, end) by ascending measurement time; backwards, (end, start] by descending time. `after` is
    the (measured_at, result_id) of the last point of the previous page; `limit` counts points of this page.
    """

    order_no: str
    operation_no: str
    characteristic_id: str
    start: datetime | None
    end: datetime | None
    limit: int
    backwards: bool = False
    after: tuple[datetime, str] | None = None


@dataclass(frozen=True)
class QualityEvent:
    """A stored quality event: an accepted measurement (at its arrival) or an SPC alarm (when raised).

    `key` orders events of the same instant and names the last one of a page ("m:<result>" / "a:<alarm>").
    """

    at: datetime
    key: str
    measurement: AcceptedMeasurement | None = None
    alarm: SpcAlarmRecord | None = None


class MeasurementHistory:
    engine: AsyncEngine

    async def quality_events(
        self, start: datetime, end: datetime | None, limit: int, after: tuple[datetime, str] | None = None
    ) -> list[QualityEvent]:
        """Measurements (by arrival) and SPC alarms (by raising) in [start, end), oldest first, after `after`."""
        results, alarms = tables.measurement_results, tables.spc_alarms
        sources = (
            (results, results.c.received_at, literal("m:", String) + results.c.result_id, "m:"),
            (alarms, alarms.c.raised_at, literal("a:", String) + alarms.c.alarm_id, "a:"),
        )
        found: list[QualityEvent] = []
        async with self.engine.connect() as conn:
            for table, at_column, key_column, prefix in sources:
                conditions = [at_column >= start]
                if end is not None:
                    conditions.append(at_column < end)
                if after is not None:
                    at, key = after
                    conditions.append(or_(at_column > at, and_(at_column == at, key_column > key)))
                query = select(table).where(*conditions).order_by(at_column, key_column).limit(limit)
                for row in await conn.execute(query):
                    mapping = row._mapping
                    if prefix == "m:":
                        measurement = _accepted_from_row(mapping)
                        found.append(
                            QualityEvent(measurement.result.received_at, f"m:{row.result_id}", measurement=measurement)
                        )
                    else:
                        alarm = _spc_alarm_from_row(mapping)
                        found.append(QualityEvent(alarm.alarm.raised_at, f"a:{row.alarm_id}", alarm=alarm))
        found.sort(key=lambda event: (event.at, event.key))
        return found[:limit]

    async def measurement_series(self, query: SeriesQuery) -> list[SeriesPoint]:
        """The page of points `query` asks for, in measurement-time order (ties by result id)."""
        table = tables.measurement_results
        c = table.c
        conditions = [
            c.order_no == query.order_no,
            c.operation_no == query.operation_no,
            c.characteristic_id == query.characteristic_id,
        ]
        if query.backwards:
            if query.start is not None:
                conditions.append(c.measured_at <= query.start)
            if query.end is not None:
                conditions.append(c.measured_at > query.end)
            if query.after is not None:
                at, result_id = query.after
                conditions.append(or_(c.measured_at < at, and_(c.measured_at == at, c.result_id < result_id)))
            order = (c.measured_at.desc(), c.result_id.desc())
        else:
            if query.start is not None:
                conditions.append(c.measured_at >= query.start)
            if query.end is not None:
                conditions.append(c.measured_at < query.end)
            if query.after is not None:
                at, result_id = query.after
                conditions.append(or_(c.measured_at > at, and_(c.measured_at == at, c.result_id > result_id)))
            order = (c.measured_at.asc(), c.result_id.asc())
        statement = (
            select(c.result_id, c.value, c.evaluation, c.measured_at, c.received_at)
            .where(*conditions)
            .order_by(*order)
            .limit(query.limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(statement)).all()
        return [
            SeriesPoint(
                result_id=row.result_id,
                value=row.value,
                evaluation=ResultEvaluation(row.evaluation),
                measured_at=_aware(row.measured_at),
                received_at=_aware(row.received_at),
            )
            for row in rows
        ]

    async def purge_measurements(self, measured_before: datetime) -> int:
        """Delete measurements taken before `measured_before` whose posting the ERP has (sent) or a person
        discarded; one whose outbox row is pending or dead is still owed and stays. Answers how many went."""
        results = tables.measurement_results
        outbox = tables.outbox
        still_owed = exists().where(
            outbox.c.idempotency_key == literal("mr-", String) + results.c.result_id,
            outbox.c.state.notin_((OutboxState.SENT.value, DISCARDED)),
        )
        removed = 0
        while True:
            async with self.engine.begin() as conn:
                batch = (
                    select(results.c.result_id)
                    .where(results.c.measured_at < measured_before, ~still_owed)
                    .limit(_PURGE_CHUNK)
                )
                ids = [row.result_id for row in await conn.execute(batch)]
                if not ids:
                    return removed
                await conn.execute(delete(results).where(results.c.result_id.in_(ids)))
            removed += len(ids)
