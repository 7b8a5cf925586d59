"""Store operations for what the shop floor reports: measurement batches, confirmations, SPC alarms, order states.

Mixed into `Store`. Every write that owes the ERP a posting writes its outbox row in the same transaction, and a
batch of measurements is one transaction however many entries it has (group commit): a PLC flushing its buffer
costs one commit, and a crash leaves either the whole batch or nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from qualitybridge.domain.model import (
    CalibrationStatus,
    Confirmation,
    MeasurementReport,
    MeasurementResult,
    OrderState,
    OutboxState,
    ResultEvaluation,
    SpcAlarm,
)
from qualitybridge.domain.postings import ConfirmationPosting, SpcAlarmPosting
from qualitybridge.domain.records import AcceptedMeasurement, ConfirmationRecord, RefusedMeasurement, SpcAlarmRecord
from qualitybridge.store import tables
from qualitybridge.store.bulk_rows import BulkInsert, stored_moment
from qualitybridge.store.group_commit import GroupCommit, Merged, Planned
from qualitybridge.store.outbox import ResultJson, outbox_row

__all__ = ["ConfirmationTotals", "ShopFloorRecords"]

# The report path's rows as tuples in these columns' order (see bulk_rows: no per-row SQLAlchemy processing).
_RESULT_INSERT = BulkInsert(
    tables.measurement_results,
    (
        "result_id",
        "client_result_id",
        "order_no",
        "operation_no",
        "characteristic_id",
        "value",
        "unit",
        "evaluation",
        "plan_version",
        "equipment_id",
        "part_serial",
        "measured_at",
        "received_at",
        "reported_by",
        "gauge_due_soon",
        "routing_version",
        "plan_version_superseded",
    ),
)
_OUTBOX_INSERT = BulkInsert(
    tables.outbox,
    ("idempotency_key", "kind", "order_no", "payload", "state", "attempts", "next_attempt_at", "created_at"),
)
_PENDING = OutboxState.PENDING.value

# Well below SQLite's limit of bound parameters per statement (32766 since 3.32), and kind to PostgreSQL's planner.
_IN_CHUNK = 500


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything in the store is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ConfirmationTotals:
    """What was confirmed for one operation so far."""

    yield_quantity: float = 0.0
    scrap_quantity: float = 0.0
    rework_quantity: float = 0.0
    finally_confirmed: bool = False


class ShopFloorRecords:
    engine: AsyncEngine
    writes: GroupCommit

    # ---- measurements -----------------------------------------------------------------------------

    async def record_measurements(
        self, accepted: Sequence[AcceptedMeasurement], refused: Sequence[RefusedMeasurement] = ()
    ) -> list[tuple[AcceptedMeasurement, bool]]:
        """Store judged results with their outbox rows, and refused attempts, in one transaction.

        Answers (stored measurement, created) per accepted entry, in order. An entry whose client result id was
        stored before by the same user (by an earlier call, or earlier in this batch) is not stored again: it
        gets the first measurement back with `created` False. Client ids are scoped to `reported_by`.
        """
        try:
            return await self._record_measurements(accepted, refused)
        except IntegrityError:
            # A concurrent call stored one of these client result ids first; the second pass finds it stored.
            return await self._record_measurements(accepted, refused)

    async def _record_measurements(
        self, accepted: Sequence[AcceptedMeasurement], refused: Sequence[RefusedMeasurement]
    ) -> list[tuple[AcceptedMeasurement, bool]]:
        # Through the group commit: concurrent calls' measurements share one transaction and one fsync, and are
        # written together (one statement per table for the whole group).
        return await self.writes.run(
            Merged(_record_measurement_calls, (accepted, refused), plan=_plan_measurement_calls)
        )

    async def measurements_by_client_ids(
        self, client_result_ids: Collection[str], reported_by: str | None = None
    ) -> dict[str, AcceptedMeasurement]:
        """The stored measurements of `reported_by` (None: of anyone) for these client result ids (those never
        seen are absent)."""
        if not client_result_ids:
            return {}
        async with self.engine.connect() as conn:
            return await _measurements_by_client_ids(conn, client_result_ids, reported_by)

    async def stored_measurements(self, order_no: str | None = None) -> list[AcceptedMeasurement]:
        table = tables.measurement_results
        # Arrival order; the results of one batch share received_at, so within it they follow their measuring time
        # (the SPC monitor replays them so), and the result id makes ties the same on every backend.
        query = select(table).order_by(table.c.received_at, table.c.measured_at, table.c.result_id)
        if order_no is not None:
            query = query.where(table.c.order_no == order_no)
        async with self.engine.connect() as conn:
            return [_accepted_from_row(row._mapping) for row in await conn.execute(query)]

    async def refused_measurements(self, equipment_id: str | None = None) -> list[RefusedMeasurement]:
        query = select(tables.refused_measurements).order_by(tables.refused_measurements.c.id)
        if equipment_id is not None:
            query = query.where(tables.refused_measurements.c.equipment_id == equipment_id)
        async with self.engine.connect() as conn:
            return [_refused_from_row(row._mapping) for row in await conn.execute(query)]

    # ---- order states -----------------------------------------------------------------------------

    async def change_order_state(self, order_no: str, expected: OrderState, new: OrderState) -> bool:
        """Move a released order from `expected` to `new`; False (nothing changed) if it is not in `expected`.

        The ERP document keeps the state too, so that the next sync does not count the order as changed.
        """
        return await self.writes.run(lambda conn: _change_order_state_in(conn, order_no, expected, new))

    # ---- confirmations ----------------------------------------------------------------------------

    async def record_confirmation(self, record: ConfirmationRecord) -> tuple[ConfirmationRecord, bool]:
        """Store a confirmation and queue it for the ERP, atomically; a client id the same user used before gets
        the first back."""
        if record.client_confirmation_id:
            first = await self.confirmation_by_client_id(record.client_confirmation_id, record.reported_by)
            if first is not None:
                return first, False
        try:
            await self.writes.run(lambda conn: _insert_confirmation_in(conn, record))
        except IntegrityError:
            if record.client_confirmation_id:
                first = await self.confirmation_by_client_id(record.client_confirmation_id, record.reported_by)
                if first is not None:
                    return first, False
            raise
        return record, True

    async def confirmation_by_client_id(
        self, client_confirmation_id: str, reported_by: str | None = None
    ) -> ConfirmationRecord | None:
        """The confirmation `reported_by` (None: anyone) stored under this client id, if any."""
        query = select(tables.confirmations).where(
            tables.confirmations.c.client_confirmation_id == client_confirmation_id
        )
        if reported_by is not None:
            query = query.where(tables.confirmations.c.reported_by == reported_by)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _confirmation_from_row(row._mapping)

    async def confirmation_totals(self, order_no: str, operation_no: str) -> ConfirmationTotals:
        table = tables.confirmations
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(
                        func.coalesce(func.sum(table.c.yield_quantity), 0.0),
                        func.coalesce(func.sum(table.c.scrap_quantity), 0.0),
                        func.coalesce(func.sum(table.c.rework_quantity), 0.0),
                        func.count().filter(table.c.final.is_(True)),
                    ).where(table.c.order_no == order_no, table.c.operation_no == operation_no)
                )
            ).one()
        return ConfirmationTotals(float(row[0]), float(row[1]), float(row[2]), bool(row[3]))

    async def confirmations(self, order_no: str | None = None) -> list[ConfirmationRecord]:
        query = select(tables.confirmations).order_by(tables.confirmations.c.received_at)
        if order_no is not None:
            query = query.where(tables.confirmations.c.order_no == order_no)
        async with self.engine.connect() as conn:
            return [_confirmation_from_row(row._mapping) for row in await conn.execute(query)]

    # ---- SPC alarms -------------------------------------------------------------------------------

    async def record_spc_alarm(self, record: SpcAlarmRecord) -> tuple[SpcAlarmRecord, bool]:
        """Store an SPC alarm and queue it for the QMS, atomically; a client alarm id the same user used before
        gets the first back (created False)."""
        if record.client_alarm_id:
            first = await self.spc_alarm_by_client_id(record.client_alarm_id, record.reported_by)
            if first is not None:
                return first, False
        try:
            await self._insert_spc_alarm(record)
        except IntegrityError:
            if record.client_alarm_id:
                first = await self.spc_alarm_by_client_id(record.client_alarm_id, record.reported_by)
                if first is not None:
                    return first, False
            raise
        return record, True

    async def spc_alarm_by_client_id(self, client_alarm_id: str, reported_by: str) -> SpcAlarmRecord | None:
        table = tables.spc_alarms
        query = select(table).where(table.c.client_alarm_id == client_alarm_id, table.c.reported_by == reported_by)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _spc_alarm_from_row(row._mapping)

    async def _insert_spc_alarm(self, record: SpcAlarmRecord) -> None:
        alarm = record.alarm
        async with self.engine.begin() as conn:
            await conn.execute(tables.spc_alarms.insert().values(**_spc_alarm_row(record)))
            await conn.execute(
                tables.outbox.insert().values(**outbox_row(SpcAlarmPosting(record=record), now=alarm.raised_at))
            )

    async def record_spc_alarm_once(self, record: SpcAlarmRecord) -> bool:
        """As `record_spc_alarm`, but an alarm id stored before is no error: answers False and stores nothing.

        The SPC engine derives an alarm's id from the result and the rule, so raising it again (a restart catching
        up after a crash) stores and posts nothing a second time.
        """
        try:
            await self.record_spc_alarm(record)
        except IntegrityError:
            if not await self._spc_alarms_stored([record.alarm_id]):
                raise
            return False
        return True

    async def record_spc_alarms_once(self, records: Sequence[SpcAlarmRecord]) -> list[bool]:
        """Store SPC alarms with their postings to the QMS in one transaction, each alarm id at most once.

        Answers, per record in order, whether it was stored now (False: its id was stored before, by an earlier
        run or earlier in this batch). The SPC engine writes the violations of one report batch with one call, so
        a batch costs one commit however many rules it trips, instead of one commit per alarm.
        """
        if not records:
            return []
        try:
            return await self._record_spc_alarms_once(records)
        except IntegrityError:
            # A concurrent writer stored one of these ids first; the second pass finds it stored.
            return await self._record_spc_alarms_once(records)

    async def _record_spc_alarms_once(self, records: Sequence[SpcAlarmRecord]) -> list[bool]:
        return await self.writes.run(lambda conn: _record_spc_alarms_once_in(conn, records))

    async def _spc_alarms_stored(self, alarm_ids: Collection[str]) -> set[str]:
        async with self.engine.connect() as conn:
            return await _stored_spc_alarm_ids(conn, alarm_ids)

    async def spc_alarms(self, order_no: str | None = None) -> list[SpcAlarmRecord]:
        query = select(tables.spc_alarms).order_by(tables.spc_alarms.c.raised_at)
        if order_no is not None:
            query = query.where(tables.spc_alarms.c.order_no == order_no)
        async with self.engine.connect() as conn:
            return [_spc_alarm_from_row(row._mapping) for row in await conn.execute(query)]


async def _stored_spc_alarm_ids(conn: AsyncConnection, alarm_ids: Collection[str]) -> set[str]:
    column = tables.spc_alarms.c.alarm_id
    found: set[str] = set()
    for chunk in _chunks(alarm_ids):
        found.update(row.alarm_id for row in await conn.execute(select(column).where(column.in_(chunk))))
    return found


async def _record_spc_alarms_once_in(conn: AsyncConnection, records: Sequence[SpcAlarmRecord]) -> list[bool]:
    answers: list[bool] = []
    seen = await _stored_spc_alarm_ids(conn, {record.alarm_id for record in records})
    alarm_rows: list[dict[str, Any]] = []
    outbox_rows: list[dict[str, Any]] = []
    for record in records:
        if record.alarm_id in seen:
            answers.append(False)
            continue
        seen.add(record.alarm_id)
        alarm_rows.append(_spc_alarm_row(record))
        outbox_rows.append(outbox_row(SpcAlarmPosting(record=record), now=record.alarm.raised_at))
        answers.append(True)
    if alarm_rows:
        await conn.execute(tables.spc_alarms.insert(), alarm_rows)
        await conn.execute(tables.outbox.insert(), outbox_rows)
    return answers


def _spc_alarm_row(record: SpcAlarmRecord) -> dict[str, Any]:
    alarm = record.alarm
    return {
        "alarm_id": record.alarm_id,
        "order_no": alarm.order_no,
        "operation_no": alarm.operation_no,
        "characteristic_id": alarm.characteristic_id,
        "rule": alarm.rule,
        "severity": alarm.severity,
        "message": alarm.message,
        "raised_at": alarm.raised_at,
        "reported_by": record.reported_by,
        "rule_number": alarm.rule_number,
        "result_id": alarm.result_id,
        "value": alarm.value,
        "center_line": alarm.center_line,
        "upper_control_limit": alarm.upper_control_limit,
        "lower_control_limit": alarm.lower_control_limit,
        "client_alarm_id": record.client_alarm_id or None,
    }


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    ordered = sorted(values)
    for start in range(0, len(ordered), _IN_CHUNK):
        yield ordered[start : start + _IN_CHUNK]


# Built once: every group commit of single calls runs this look-up, and building the statement anew (the IN clause's
# coercions, then its cache key) cost more CPU than the rest of the commit's SQLAlchemy work. The IN list is an
# expanding parameter, so one statement serves any number of ids.
_BY_CLIENT_IDS = select(tables.measurement_results).where(
    tables.measurement_results.c.client_result_id.in_(bindparam("client_ids", expanding=True))
)
_BY_CLIENT_IDS_OF_USER = _BY_CLIENT_IDS.where(tables.measurement_results.c.reported_by == bindparam("reported_by"))


async def _measurements_by_client_ids(
    conn: AsyncConnection, client_result_ids: Collection[str], reported_by: str | None
) -> dict[str, AcceptedMeasurement]:
    found: dict[str, AcceptedMeasurement] = {}
    query = _BY_CLIENT_IDS if reported_by is None else _BY_CLIENT_IDS_OF_USER
    for chunk in _chunks(client_result_ids):
        parameters: dict[str, Any] = {"client_ids": chunk}
        if reported_by is not None:
            parameters["reported_by"] = reported_by
        for row in await conn.execute(query, parameters):
            found[row.client_result_id] = _accepted_from_row(row._mapping)
    return found


_MeasurementCall = tuple[Sequence[AcceptedMeasurement], Sequence[RefusedMeasurement]]


_Answer = tuple[AcceptedMeasurement, bool]


async def _record_measurement_calls(conn: AsyncConnection, calls: list[_MeasurementCall]) -> list[list[_Answer]]:
    """The measurements of several calls as one batch (repeats are found across them as within one call); answers
    each call's part."""
    answers = await _record_measurements_in(
        conn,
        [item for accepted, _refused in calls for item in accepted],
        [item for _accepted, refused in calls for item in refused],
    )
    return _per_call(calls, answers)


def _plan_measurement_calls(dialect: Dialect, calls: list[_MeasurementCall]) -> Planned[list[_Answer]] | None:
    """`_record_measurement_calls` as plain statements, assuming no client id was stored before: the unique client
    scope (reported_by, client_result_id) refuses the insert when one was, and the group then runs the ordinary way,
    which reads the first measurement back. Refused attempts (rare) go the ordinary way."""
    if any(refused for _accepted, refused in calls):
        return None
    accepted = [item for accepted, _refused in calls for item in accepted]
    answers, result_rows, outbox_rows = _measurement_rows(accepted, {}, stored_moment(dialect))
    return Planned(
        _RESULT_INSERT.statements(dialect, result_rows) + _OUTBOX_INSERT.statements(dialect, outbox_rows),
        _per_call(calls, answers),
    )


def _per_call(calls: list[_MeasurementCall], answers: list[_Answer]) -> list[list[_Answer]]:
    parts: list[list[_Answer]] = []
    start = 0
    for accepted, _refused in calls:
        parts.append(answers[start : start + len(accepted)])
        start += len(accepted)
    return parts


async def _record_measurements_in(
    conn: AsyncConnection, accepted: Sequence[AcceptedMeasurement], refused: Sequence[RefusedMeasurement]
) -> list[_Answer]:
    stored_before: dict[tuple[str, str], AcceptedMeasurement] = {}
    for user in {item.result.reported_by for item in accepted}:
        client_ids = {
            item.result.report.client_result_id
            for item in accepted
            if item.result.report.client_result_id and item.result.reported_by == user
        }
        found = await _measurements_by_client_ids(conn, client_ids, user)
        stored_before.update({(user, client_id): item for client_id, item in found.items()})
    answers, result_rows, outbox_rows = _measurement_rows(accepted, stored_before, stored_moment(conn.dialect))
    await _RESULT_INSERT.execute(conn, result_rows)
    await _OUTBOX_INSERT.execute(conn, outbox_rows)
    if refused:
        await conn.execute(tables.refused_measurements.insert(), [_refused_row(item) for item in refused])
    return answers


def _measurement_rows(
    accepted: Sequence[AcceptedMeasurement],
    stored_before: dict[tuple[str, str], AcceptedMeasurement],
    moment: Callable[[datetime], Any],
) -> tuple[list[_Answer], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The answers, result rows and outbox rows of `accepted`, given the measurements stored before under their
    (user, client id); a client id repeated within `accepted` is stored once (`stored_before` grows by it)."""
    answers: list[_Answer] = []
    stored_moments: dict[datetime, Any] = {}  # a batch shares its received_at, and often its measured_at

    def stored(at: datetime) -> Any:
        value = stored_moments.get(at)
        if value is None:
            value = stored_moments[at] = moment(at)
        return value

    result_rows: list[tuple[Any, ...]] = []
    outbox_rows: list[tuple[Any, ...]] = []
    payload = ResultJson()
    for item in accepted:
        result = item.result
        report = result.report
        client_id = report.client_result_id
        if client_id:
            scoped = (result.reported_by, client_id)
            first = stored_before.get(scoped)
            if first is not None:
                answers.append((first, False))
                continue
            stored_before[scoped] = item
        received_at = stored(result.received_at)
        result_rows.append(
            (
                result.result_id,
                client_id or None,
                report.order_no,
                report.operation_no,
                report.characteristic_id,
                report.value,
                result.unit,
                int(result.evaluation),
                result.plan_version,
                report.equipment_id,
                report.part_serial,
                stored(report.measured_at),
                received_at,
                result.reported_by,
                item.gauge_due_soon,
                result.routing_version,
                result.plan_version_superseded,
            )
        )
        # The posting's payload as `outbox_row` stores it (the result's JSON), without building the posting.
        outbox_rows.append(
            (
                f"mr-{result.result_id}",
                "measurement",
                report.order_no,
                payload(result),
                _PENDING,
                0,
                received_at,
                received_at,
            )
        )
        answers.append((item, True))
    return answers, result_rows, outbox_rows


async def _change_order_state_in(conn: AsyncConnection, order_no: str, expected: OrderState, new: OrderState) -> bool:
    orders = tables.production_orders
    row = (
        await conn.execute(
            select(orders.c.document, orders.c.state)
            .where(orders.c.order_no == order_no, orders.c.released.is_(True))
            .with_for_update()
        )
    ).first()
    if row is None or row.state != int(expected):
        return False
    changed = await conn.execute(
        update(orders)
        .where(orders.c.order_no == order_no, orders.c.state == int(expected))
        .values(state=int(new), document={**row.document, "state": int(new)}, updated_at=datetime.now(UTC))
    )
    return bool(changed.rowcount)


async def _insert_confirmation_in(conn: AsyncConnection, record: ConfirmationRecord) -> None:
    await conn.execute(tables.confirmations.insert().values(**_confirmation_row(record)))
    await conn.execute(
        tables.outbox.insert().values(**outbox_row(ConfirmationPosting(record=record), now=record.received_at))
    )


def _report_from_row(row: Any) -> MeasurementReport:
    return MeasurementReport(
        order_no=row["order_no"],
        operation_no=row["operation_no"],
        characteristic_id=row["characteristic_id"],
        value=row["value"],
        equipment_id=row["equipment_id"],
        part_serial=row["part_serial"],
        measured_at=_aware(row["measured_at"]),
        client_result_id=row["client_result_id"],
    )


def _accepted_from_row(row: Any) -> AcceptedMeasurement:
    return AcceptedMeasurement(
        result=MeasurementResult(
            result_id=row["result_id"],
            report=_report_from_row(row),
            evaluation=ResultEvaluation(row["evaluation"]),
            plan_version=row["plan_version"],
            unit=row["unit"],
            reported_by=row["reported_by"],
            received_at=_aware(row["received_at"]),
            routing_version=row["routing_version"],
            plan_version_superseded=bool(row["plan_version_superseded"]),
        ),
        gauge_due_soon=bool(row["gauge_due_soon"]),
    )


def _refused_row(item: RefusedMeasurement) -> dict[str, Any]:
    report = item.report
    return {
        "order_no": report.order_no,
        "operation_no": report.operation_no,
        "characteristic_id": report.characteristic_id,
        "value": report.value,
        "equipment_id": report.equipment_id,
        "calibration_status": int(item.calibration_status),
        "part_serial": report.part_serial,
        "measured_at": report.measured_at,
        "client_result_id": report.client_result_id or None,
        "reason": item.reason,
        "reported_by": item.reported_by,
        "refused_at": item.refused_at,
    }


def _refused_from_row(row: Any) -> RefusedMeasurement:
    return RefusedMeasurement(
        report=_report_from_row(row),
        calibration_status=CalibrationStatus(row["calibration_status"]),
        reason=row["reason"],
        reported_by=row["reported_by"],
        refused_at=_aware(row["refused_at"]),
    )


def _confirmation_row(record: ConfirmationRecord) -> dict[str, Any]:
    confirmation = record.confirmation
    return {
        "confirmation_id": record.confirmation_id,
        "client_confirmation_id": record.client_confirmation_id or None,
        "order_no": confirmation.order_no,
        "operation_no": confirmation.operation_no,
        "yield_quantity": confirmation.yield_quantity,
        "scrap_quantity": confirmation.scrap_quantity,
        "rework_quantity": confirmation.rework_quantity,
        "unit": confirmation.unit,
        "reason_code": confirmation.reason_code,
        "final": confirmation.final,
        "reported_by": record.reported_by,
        "received_at": record.received_at,
    }


def _confirmation_from_row(row: Any) -> ConfirmationRecord:
    return ConfirmationRecord(
        confirmation_id=row["confirmation_id"],
        confirmation=Confirmation(
            order_no=row["order_no"],
            operation_no=row["operation_no"],
            yield_quantity=row["yield_quantity"],
            scrap_quantity=row["scrap_quantity"],
            rework_quantity=row["rework_quantity"],
            unit=row["unit"],
            reason_code=row["reason_code"],
            final=bool(row["final"]),
        ),
        client_confirmation_id=row["client_confirmation_id"],
        reported_by=row["reported_by"],
        received_at=_aware(row["received_at"]),
    )


def _spc_alarm_from_row(row: Any) -> SpcAlarmRecord:
    return SpcAlarmRecord(
        alarm_id=row["alarm_id"],
        alarm=SpcAlarm(
            order_no=row["order_no"],
            operation_no=row["operation_no"],
            characteristic_id=row["characteristic_id"],
            rule=row["rule"],
            severity=row["severity"],
            message=row["message"],
            raised_at=_aware(row["raised_at"]),
            rule_number=row["rule_number"],
            result_id=row["result_id"],
            value=row["value"],
            center_line=row["center_line"],
            upper_control_limit=row["upper_control_limit"],
            lower_control_limit=row["lower_control_limit"],
        ),
        reported_by=row["reported_by"],
        client_alarm_id=row["client_alarm_id"],
    )
