"""The store's operations, in domain terms: what the sync, the report path and the relay need.

Every method is one transaction. `record_measurement` writes the result and its outbox row together,
which is what makes "answered Good" imply "will reach the ERP".
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import BigInteger, Text, all_, bindparam, cast, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from qualitybridge.domain.model import (
    ErpSnapshot,
    InspectionCharacteristic,
    MasterDataChanges,
    MeasurementResult,
    OrderState,
    OutboxState,
    ProductionOrder,
    SnapshotChange,
    SupersededPlanVersion,
    SyncFinding,
    TestEquipment,
)
from qualitybridge.domain.plan_versions import superseded_versions
from qualitybridge.domain.postings import OutboxEntry
from qualitybridge.domain.records import AcceptedMeasurement
from qualitybridge.store import tables
from qualitybridge.store.bulk_rows import stored_moment
from qualitybridge.store.group_commit import GroupCommit, Merged, Planned, Statement
from qualitybridge.store.mapping_tables import MappingTableStore
from qualitybridge.store.measurement_history import MeasurementHistory
from qualitybridge.store.outbox import PENDING_ENTRY_COLUMNS, entry_from_row, pending_entries
from qualitybridge.store.outbox_admin import DISCARDED, OutboxAdministration
from qualitybridge.store.quality_figures import QualityFigures
from qualitybridge.store.shop_floor_records import ShopFloorRecords
from qualitybridge.store.spc_history import SpcHistory

__all__ = ["OutboxCounts", "Store", "StoredUser"]

_YIELD_EVERY_ORDERS = 50


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything in the store is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def _keep_superseded(
    conn: AsyncConnection, previous_document: Any, order: ProductionOrder, now: datetime
) -> tuple[SupersededPlanVersion, ...]:
    """Keep, in the sync's transaction, the characteristic versions `order` supersedes: in force until `now`."""
    try:
        previous = ProductionOrder.model_validate(previous_document)
    except ValidationError:
        return ()  # stored under looser rules by an older version: nothing trustworthy to judge against
    superseded = superseded_versions(previous, order, now)
    if superseded:
        await conn.execute(
            tables.superseded_plan_versions.insert(),
            [
                {
                    "order_no": version.order_no,
                    "operation_no": version.operation_no,
                    "characteristic_id": version.characteristic_id,
                    "plan_version": version.characteristic.plan_version,
                    "routing_version": version.routing_version,
                    "definition": version.characteristic.model_dump(mode="json"),
                    "superseded_at": version.superseded_at,
                }
                for version in superseded
            ],
        )
    return superseded


@dataclass(frozen=True)
class OutboxCounts:
    pending: int
    dead: int
    oldest_pending_at: datetime | None = None  # when the oldest undelivered posting was accepted


@dataclass(frozen=True)
class StoredUser:
    name: str
    role: str
    password_hash: str
    work_centres: tuple[str, ...]
    certificate_thumbprint: str | None = None


class Store(ShopFloorRecords, MeasurementHistory, SpcHistory, QualityFigures, OutboxAdministration, MappingTableStore):
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # The shop floor's writes (measurements, confirmations, order states, SPC alarms) go through one group
        # commit: concurrent calls share a transaction, one fsync serves them all (store/group_commit.py).
        self.writes = GroupCommit(engine)
        # Set by `released_orders`: stored orders it skipped because the domain cannot read them.
        self.unreadable_orders: tuple[SyncFinding, ...] = ()

    async def aclose(self) -> None:
        await self.engine.dispose()

    # ---- master data from the ERP -------------------------------------------------------------

    async def apply_snapshot(self, snapshot: ErpSnapshot) -> SnapshotChange:
        """Make the store match what the ERP releases now; orders it no longer lists count as withdrawn.

        The shop-floor state of an order (ISA-95 state) is owned here, not by the ERP, so an update keeps it.
        An order the ERP lists but sent broken (`snapshot.refused_order_numbers`) keeps its last good version.
        """
        now = _utcnow()
        released: list[str] = []
        changed: list[str] = []
        withdrawn: list[str] = []
        superseded: list[SupersededPlanVersion] = []
        async with self.engine.begin() as conn:
            existing = {
                row.order_no: row
                for row in await conn.execute(
                    select(
                        tables.production_orders.c.order_no,
                        tables.production_orders.c.document,
                        tables.production_orders.c.state,
                        tables.production_orders.c.released,
                    )
                )
            }
            listed = set(snapshot.refused_order_numbers)
            for order in snapshot.orders:
                listed.add(order.order_no)
                previous = existing.get(order.order_no)
                if previous is None:
                    await conn.execute(
                        tables.production_orders.insert().values(
                            order_no=order.order_no,
                            document=order.model_dump(mode="json"),
                            state=int(order.state),
                            released=True,
                            updated_at=now,
                        )
                    )
                    released.append(order.order_no)
                    continue
                kept = order.model_copy(update={"state": OrderState(previous.state)})
                document = kept.model_dump(mode="json")
                if previous.released and previous.document == document:
                    continue
                await conn.execute(
                    update(tables.production_orders)
                    .where(tables.production_orders.c.order_no == order.order_no)
                    .values(document=document, released=True, updated_at=now)
                )
                superseded.extend(await _keep_superseded(conn, previous.document, order, now))
                (changed if previous.released else released).append(order.order_no)
            for order_no, row in existing.items():
                if row.released and order_no not in listed:
                    await conn.execute(
                        update(tables.production_orders)
                        .where(tables.production_orders.c.order_no == order_no)
                        .values(released=False, updated_at=now)
                    )
                    withdrawn.append(order_no)

            equipment_changed = await self._apply_equipment(conn, snapshot.equipment, now)
        return SnapshotChange(
            released=tuple(released),
            changed=tuple(changed),
            withdrawn=tuple(withdrawn),
            equipment_changed=tuple(equipment_changed),
            superseded=tuple(superseded),
        )

    async def apply_changes(
        self, changes: MasterDataChanges, *, source: str, findings: Sequence[SyncFinding] | None = None
    ) -> SnapshotChange:
        """Apply what a master-data source changed, and keep its watermark, in one transaction.

        A full fetch is applied like a snapshot (orders not listed are withdrawn); a delta touches only the orders
        and gauges it names. The watermark is stored with the data, so a crash never skips a change.
        """
        now = _utcnow()
        released: list[str] = []
        changed: list[str] = []
        withdrawn: list[str] = []
        equipment_changed: list[str] = []
        superseded: list[SupersededPlanVersion] = []
        async with self.engine.begin() as conn:
            names = {order.order_no for order in changes.orders} | set(changes.withdrawn)
            query = select(
                tables.production_orders.c.order_no,
                tables.production_orders.c.document,
                tables.production_orders.c.state,
                tables.production_orders.c.released,
            )
            if not changes.full:
                query = query.where(tables.production_orders.c.order_no.in_(sorted(names)))
            existing = {row.order_no: row for row in await conn.execute(query)}
            for order in changes.orders:
                previous = existing.get(order.order_no)
                if previous is None:
                    await conn.execute(
                        tables.production_orders.insert().values(
                            order_no=order.order_no,
                            document=order.model_dump(mode="json"),
                            state=int(order.state),
                            released=True,
                            updated_at=now,
                        )
                    )
                    released.append(order.order_no)
                    continue
                document = order.model_copy(update={"state": OrderState(previous.state)}).model_dump(mode="json")
                if previous.released and previous.document == document:
                    continue
                await conn.execute(
                    update(tables.production_orders)
                    .where(tables.production_orders.c.order_no == order.order_no)
                    .values(document=document, released=True, updated_at=now)
                )
                superseded.extend(await _keep_superseded(conn, previous.document, order, now))
                (changed if previous.released else released).append(order.order_no)
            # An order the source lists but sent broken keeps its last good version: not withdrawn.
            listed = {order.order_no for order in changes.orders} | set(changes.refused_order_numbers)
            gone = (
                [no for no, row in existing.items() if row.released and no not in listed]
                if changes.full
                else [no for no in changes.withdrawn if no in existing and existing[no].released and no not in listed]
            )
            for order_no in gone:
                await conn.execute(
                    update(tables.production_orders)
                    .where(tables.production_orders.c.order_no == order_no)
                    .values(released=False, updated_at=now)
                )
                withdrawn.append(order_no)
            equipment_changed = await self._apply_equipment(conn, changes.equipment, now)
            if changes.watermark:
                standing = changes.findings if findings is None else findings
                await conn.execute(tables.source_watermarks.delete().where(tables.source_watermarks.c.source == source))
                await conn.execute(
                    tables.source_watermarks.insert().values(
                        source=source,
                        watermark=changes.watermark,
                        updated_at=now,
                        findings=[finding.model_dump() for finding in standing],
                    )
                )
        return SnapshotChange(
            released=tuple(released),
            changed=tuple(changed),
            withdrawn=tuple(withdrawn),
            equipment_changed=tuple(equipment_changed),
            superseded=tuple(superseded),
        )

    @staticmethod
    async def _apply_equipment(conn: AsyncConnection, equipment: Sequence[TestEquipment], now: datetime) -> list[str]:
        if not equipment:
            return []
        known = {
            row.equipment_id: row.document
            for row in await conn.execute(
                select(tables.test_equipment.c.equipment_id, tables.test_equipment.c.document).where(
                    tables.test_equipment.c.equipment_id.in_([gauge.equipment_id for gauge in equipment])
                )
            )
        }
        changed: list[str] = []
        for gauge in equipment:
            document = gauge.model_dump(mode="json")
            if gauge.equipment_id not in known:
                await conn.execute(
                    tables.test_equipment.insert().values(
                        equipment_id=gauge.equipment_id,
                        document=document,
                        calibration_status=int(gauge.calibration_status),
                        updated_at=now,
                    )
                )
            elif known[gauge.equipment_id] != document:
                await conn.execute(
                    update(tables.test_equipment)
                    .where(tables.test_equipment.c.equipment_id == gauge.equipment_id)
                    .values(document=document, calibration_status=int(gauge.calibration_status), updated_at=now)
                )
            else:
                continue
            changed.append(gauge.equipment_id)
        return changed

    async def watermark(self, source: str) -> str | None:
        """Where the delta sync of `source` continues; None before its first full fetch (or after a reset)."""
        async with self.engine.connect() as conn:
            value = await conn.scalar(
                select(tables.source_watermarks.c.watermark).where(tables.source_watermarks.c.source == source)
            )
        return None if value is None else str(value)

    async def source_findings(self, source: str) -> tuple[SyncFinding, ...]:
        """The sync findings that stood for `source` after its last sync (kept with its watermark)."""
        async with self.engine.connect() as conn:
            stored = await conn.scalar(
                select(tables.source_watermarks.c.findings).where(tables.source_watermarks.c.source == source)
            )
        return tuple(SyncFinding.model_validate(item) for item in stored or ())

    async def forget_watermarks(self) -> list[str]:
        """Make the next sync of every source a full resync (a running server sees it at its next round);
        answers the sources that had a watermark."""
        async with self.engine.begin() as conn:
            sources = [str(row.source) for row in await conn.execute(select(tables.source_watermarks.c.source))]
            await conn.execute(tables.source_watermarks.delete())
        return sorted(sources)

    async def released_orders(self) -> list[ProductionOrder]:
        """The released orders; one the domain cannot read (stored by an older version under looser rules) is
        skipped and listed in `unreadable_orders`, never fatal: start-up must not fail on what the store holds."""
        async with self.engine.connect() as conn:
            # The document as its stored JSON text, parsed by pydantic-core straight into the model: no Python
            # dicts and lists in between (half the CPU of json.loads + model_validate on a plant-sized catalogue).
            rows = await conn.execute(
                select(
                    tables.production_orders.c.order_no,
                    cast(tables.production_orders.c.document, Text).label("document"),
                    tables.production_orders.c.state,
                )
                .where(tables.production_orders.c.released.is_(True))
                .order_by(tables.production_orders.c.order_no)
            )
            orders: list[ProductionOrder] = []
            unreadable: list[SyncFinding] = []
            for index, row in enumerate(rows):
                if index % _YIELD_EVERY_ORDERS == _YIELD_EVERY_ORDERS - 1:
                    # Thousands of orders take seconds to read; the OPC UA endpoint is open meanwhile and its
                    # clients' keep-alive probes (1 s) must be answered.
                    await asyncio.sleep(0)
                try:
                    order = ProductionOrder.model_validate_json(row.document)
                except ValidationError as exc:
                    reason = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
                    unreadable.append(SyncFinding(key=f"order {row.order_no}", reason=f"stored order: {reason}"))
                    continue
                orders.append(order.model_copy(update={"state": OrderState(row.state)}))
        self.unreadable_orders = tuple(unreadable)
        return orders

    async def released_orders_named(self, order_nos: Sequence[str]) -> list[ProductionOrder]:
        """The released orders among `order_nos` (those withdrawn meanwhile are left out)."""
        if not order_nos:
            return []
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(tables.production_orders.c.document, tables.production_orders.c.state).where(
                    tables.production_orders.c.released.is_(True),
                    tables.production_orders.c.order_no.in_(list(order_nos)),
                )
            )
            return [
                ProductionOrder.model_validate(row.document).model_copy(update={"state": OrderState(row.state)})
                for row in rows
            ]

    async def plan_history(self, order_nos: Sequence[str] | None = None) -> list[SupersededPlanVersion]:
        """The superseded characteristic versions of the released orders (or of those among `order_nos`), oldest
        first: what late measurements are judged against (docs/master-data.md, "Plan versions")."""
        table = tables.superseded_plan_versions
        query = select(
            table.c.order_no, table.c.operation_no, table.c.routing_version, table.c.definition, table.c.superseded_at
        )
        if order_nos is None:
            released = select(tables.production_orders.c.order_no).where(tables.production_orders.c.released.is_(True))
            query = query.where(table.c.order_no.in_(released))
        elif not order_nos:
            return []
        else:
            query = query.where(table.c.order_no.in_(list(order_nos)))
        async with self.engine.connect() as conn:
            rows = await conn.execute(query.order_by(table.c.superseded_at, table.c.id))
            return [
                SupersededPlanVersion(
                    order_no=row.order_no,
                    operation_no=row.operation_no,
                    characteristic=InspectionCharacteristic.model_validate(row.definition),
                    routing_version=row.routing_version,
                    superseded_at=_aware(row.superseded_at),
                )
                for row in rows
            ]

    async def equipment_named(self, equipment_ids: Sequence[str]) -> list[TestEquipment]:
        if not equipment_ids:
            return []
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(tables.test_equipment.c.document).where(
                    tables.test_equipment.c.equipment_id.in_(list(equipment_ids))
                )
            )
            return [TestEquipment.model_validate(row.document) for row in rows]

    async def equipment(self) -> list[TestEquipment]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(tables.test_equipment.c.document).order_by(tables.test_equipment.c.equipment_id)
            )
            return [TestEquipment.model_validate(row.document) for row in rows]

    # ---- results and their outbox -------------------------------------------------------------

    async def record_measurement(self, result: MeasurementResult) -> tuple[MeasurementResult, bool]:
        """Store one judged result and queue it for the ERP, atomically (the one-entry case of a batch).

        Returns (stored result, created). A report that repeats a client result id gets the first
        result back and `created` False: the machine may retry a call whose answer it lost.
        """
        ((stored, created),) = await self.record_measurements([AcceptedMeasurement(result=result)])
        return stored.result, created

    async def result_by_client_id(self, client_result_id: str) -> MeasurementResult | None:
        found = (await self.measurements_by_client_ids({client_result_id})).get(client_result_id)
        return None if found is None else found.result

    async def results(self, order_no: str | None = None) -> list[MeasurementResult]:
        return [measurement.result for measurement in await self.stored_measurements(order_no)]

    async def pending_outbox(self, limit: int = 200, *, excluding: Collection[int] = ()) -> list[OutboxEntry]:
        """Pending postings in acceptance order (the relay decides which are due), but for the `excluding` seqs
        (delivered, their marking as sent not yet committed)."""
        outbox = tables.outbox
        # The payload as its stored JSON text, kept as it is: a target that sends the record as JSON reads it, any
        # other decodes the posting when it needs it (OutboxEntry.posting). SQLite's due times as their stored text
        # too: a page's rows share a few, which `pending_entries` reads once each, where SQLAlchemy's processor
        # parsed every row's (a quarter of reading a page). Only the columns a pending entry needs.
        as_text = {"payload", "next_attempt_at"} if self.engine.dialect.name == "sqlite" else {"payload"}
        columns = [
            cast(outbox.c[name], Text).label(name) if name in as_text else outbox.c[name]
            for name in PENDING_ENTRY_COLUMNS
        ]
        async with self.engine.connect() as conn:
            query = select(*columns).where(outbox.c.state == OutboxState.PENDING.value)
            if excluding and conn.dialect.name == "postgresql":
                # One array parameter: NOT IN with a parameter per seq was a new statement of thousands of
                # parameters for PostgreSQL to parse and plan at every page (the page and the marking under way).
                query = query.where(outbox.c.seq != all_(bindparam("excluding", list(excluding), type_=_SEQS)))
            elif excluding:
                # One JSON text parameter read by SQLite's json_each: a parameter per seq was a statement SQLAlchemy
                # rendered anew at every page, thousands of seqs long (a tenth of the relay's CPU per posting).
                seqs = func.json_each(bindparam("excluding", json.dumps(list(excluding)), type_=Text)).table_valued(
                    "value"
                )
                query = query.where(outbox.c.seq.not_in(select(seqs.c.value)))
            rows = await conn.execute(query.order_by(outbox.c.seq).limit(limit))
            # All rows at once: a fetch per row through the adapter cost as much as building the entries.
            return pending_entries(rows.all())

    async def discarded_among(self, seqs: Sequence[int]) -> set[int]:
        """Of `seqs` (a page read a moment ago), those a person has discarded since (`qualitybridge outbox
        discard`): the relay must not post them. One range scan of the (state, seq) index, usually empty."""
        if not seqs:
            return set()
        outbox = tables.outbox
        query = select(outbox.c.seq).where(
            outbox.c.state == DISCARDED, outbox.c.seq >= min(seqs), outbox.c.seq <= max(seqs)
        )
        async with self.engine.connect() as conn:
            found = set((await conn.execute(query)).scalars())
        return found.intersection(seqs)

    async def outbox_entries(self, states: Sequence[OutboxState] | None = None) -> list[OutboxEntry]:
        """Entries the relay knows (pending, sent, dead); discarded ones are listed by `outbox_records`."""
        query = select(tables.outbox).order_by(tables.outbox.c.seq)
        query = query.where(tables.outbox.c.state.in_([state.value for state in (states or OutboxState)]))
        async with self.engine.connect() as conn:
            return [entry_from_row(row._mapping) for row in await conn.execute(query)]

    async def mark_sent(self, seq: int, erp_document: str) -> None:
        await self.mark_sent_many([(seq, erp_document)])

    async def mark_sent_many(self, deliveries: Sequence[tuple[int, str]]) -> None:
        """Record confirmed deliveries (seq, ERP document) in one transaction: one commit per relay round,
        not per posting. Losing them to a crash only means a repeat delivery, which the idempotency key absorbs."""
        if not deliveries:
            return
        # Shares its commit with the reports under way.
        await self.writes.run(Merged(_mark_sent_calls, (deliveries, _utcnow()), plan=_plan_mark_sent))

    async def mark_failed(self, seq: int, error: str, next_attempt_at: datetime, *, dead: bool) -> None:
        state = OutboxState.DEAD if dead else OutboxState.PENDING
        async with self.engine.begin() as conn:
            await conn.execute(
                update(tables.outbox)
                # Only while it is pending: a posting a person discarded while it was being posted stays discarded.
                .where(tables.outbox.c.seq == seq, tables.outbox.c.state == OutboxState.PENDING.value)
                .values(
                    state=state.value,
                    last_error=error[:2000],
                    next_attempt_at=next_attempt_at,
                    attempts=tables.outbox.c.attempts + 1,
                )
            )

    async def outbox_counts(self) -> OutboxCounts:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(tables.outbox.c.state, func.count(), func.min(tables.outbox.c.created_at))
                # IN, not "!= sent": the index on state finds the few unsent rows among the many sent ones.
                .where(tables.outbox.c.state.in_([OutboxState.PENDING.value, OutboxState.DEAD.value]))
                .group_by(tables.outbox.c.state)
            )
            counts = {str(state): (int(count), oldest) for state, count, oldest in rows}
        pending, oldest = counts.get(OutboxState.PENDING.value, (0, None))
        return OutboxCounts(
            pending=pending,
            dead=counts.get(OutboxState.DEAD.value, (0, None))[0],
            oldest_pending_at=_aware(oldest) if oldest is not None else None,
        )

    async def ping(self) -> None:
        """One round trip to the database; raises when it cannot be reached (the readiness check)."""
        async with self.engine.connect() as conn:
            await conn.execute(select(1))

    # ---- users ------------------------------------------------------------------------------------

    async def save_user(self, user: StoredUser) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(tables.users.delete().where(tables.users.c.name == user.name))
            await conn.execute(
                tables.users.insert().values(
                    name=user.name,
                    role=user.role,
                    password_hash=user.password_hash,
                    work_centres=list(user.work_centres),
                    created_at=_utcnow(),
                    certificate_thumbprint=user.certificate_thumbprint,
                )
            )

    async def remove_user(self, name: str) -> bool:
        """Delete an account; False when there was none of that name."""
        async with self.engine.begin() as conn:
            deleted = await conn.execute(tables.users.delete().where(tables.users.c.name == name))
        return bool(deleted.rowcount)

    async def users(self) -> list[StoredUser]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(tables.users).order_by(tables.users.c.name))
            return [
                StoredUser(
                    name=row.name,
                    role=row.role,
                    password_hash=row.password_hash,
                    work_centres=tuple(row.work_centres),
                    certificate_thumbprint=row.certificate_thumbprint,
                )
                for row in rows
            ]


# A relay page's deliveries marked with one statement (each posting its own ERP document): on SQLite an executemany
# would wait for the event loop's thread once per row (see bulk_rows), on PostgreSQL it is one round trip either way.
_MARK_SENT_SQLITE = (
    "UPDATE outbox SET state = ?, erp_document = delivered.column2, sent_at = ?, attempts = attempts + 1, "
    "last_error = NULL FROM (VALUES {rows}) AS delivered WHERE outbox.seq = delivered.column1 "
    "AND outbox.state = 'pending'"
)
_SEQS = ARRAY(BigInteger())  # outbox seqs as one PostgreSQL array parameter
_MARK_SENT_POSTGRESQL = (
    "UPDATE outbox SET state = $1, erp_document = delivered.document, sent_at = $2, attempts = outbox.attempts + 1, "
    "last_error = NULL FROM unnest($3::bigint[], $4::text[]) AS delivered(seq, document) "
    "WHERE outbox.seq = delivered.seq AND outbox.state = 'pending'"
)
# Both mark only pending rows: a posting a person discarded while it was being posted (the relay reads its next page
# while a round posts) keeps the person's decision in its state, even when the ERP booked it.
_SQLITE_DELIVERIES_PER_STATEMENT = 4_000  # two parameters each: well below SQLite's 32,766


_Deliveries = tuple[Sequence[tuple[int, str]], datetime]  # (seq, ERP document) each, and when they were sent


async def _mark_sent_calls(conn: AsyncConnection, calls: list[_Deliveries]) -> list[None]:
    for sql, parameters in _plan_mark_sent(conn.dialect, calls).statements:
        await conn.exec_driver_sql(sql, parameters)
    return [None] * len(calls)


def _plan_mark_sent(dialect: Dialect, calls: list[_Deliveries]) -> Planned[None]:
    sent = OutboxState.SENT.value
    statements: list[Statement] = []
    for deliveries, sent_at in calls:
        if dialect.name == "postgresql":
            seqs = [seq for seq, _document in deliveries]
            documents = [document for _seq, document in deliveries]
            statements.append((_MARK_SENT_POSTGRESQL, (sent, sent_at, seqs, documents)))
            continue
        if dialect.name != "sqlite":  # pragma: no cover - the store runs on SQLite and PostgreSQL only
            raise RuntimeError(f"no delivery marking for {dialect.name}")
        moment = stored_moment(dialect)(sent_at)
        for start in range(0, len(deliveries), _SQLITE_DELIVERIES_PER_STATEMENT):
            chunk = deliveries[start : start + _SQLITE_DELIVERIES_PER_STATEMENT]
            sql = _MARK_SENT_SQLITE.format(rows=", ".join(["(?, ?)"] * len(chunk)))
            statements.append((sql, (sent, moment, *(value for delivery in chunk for value in delivery))))
    return Planned(statements, [None] * len(calls))
