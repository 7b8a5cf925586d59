"""The store on SQLite and PostgreSQL: snapshots, results with their outbox row, idempotency, migrations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect

from qualitybridge.domain.mapping import InvalidMapping, MappingEntry, MappingKind
from qualitybridge.domain.model import CalibrationStatus, ErpSnapshot, OrderState, OutboxState
from qualitybridge.domain.postings import MeasurementPosting
from qualitybridge.domain.records import AcceptedMeasurement
from qualitybridge.store import Store
from tests.builders import NOW, gauge, order, result


async def test_snapshot_release_change_withdraw(store: Store) -> None:
    first = await store.apply_snapshot(ErpSnapshot(orders=(order("1000"), order("1001")), equipment=(gauge(),)))
    assert first.released == ("1000", "1001")
    assert first.equipment_changed == ("G-1",)

    unchanged = await store.apply_snapshot(ErpSnapshot(orders=(order("1000"), order("1001")), equipment=(gauge(),)))
    assert unchanged.is_empty

    changed = await store.apply_snapshot(
        ErpSnapshot(orders=(order("1000", upper=12.02),), equipment=(gauge(CalibrationStatus.EXPIRED),))
    )
    assert changed.changed == ("1000",)
    assert changed.withdrawn == ("1001",)
    assert changed.equipment_changed == ("G-1",)
    orders = await store.released_orders()
    assert [o.order_no for o in orders] == ["1000"]
    assert orders[0].operations[0].characteristics[0].upper_limit == 12.02
    assert (await store.equipment())[0].calibration_status is CalibrationStatus.EXPIRED

    again = await store.apply_snapshot(ErpSnapshot(orders=(order("1000", upper=12.02), order("1001")), equipment=()))
    assert again.released == ("1001",)


async def test_snapshot_keeps_shop_floor_state(store: Store) -> None:
    await store.apply_snapshot(ErpSnapshot(orders=(order("1000"),), equipment=()))
    erp_view = order("1000").model_copy(update={"state": OrderState.NOT_ALLOWED_TO_START})
    await store.apply_snapshot(ErpSnapshot(orders=(erp_view,), equipment=()))
    assert (await store.released_orders())[0].state is OrderState.ALLOWED_TO_START


async def test_result_and_outbox_written_together(store: Store) -> None:
    stored, created = await store.record_measurement(result())
    assert created
    assert await store.results() == [stored]
    pending = await store.pending_outbox()
    assert len(pending) == 1
    assert pending[0].idempotency_key == f"mr-{stored.result_id}"
    assert pending[0].posting == MeasurementPosting(result=stored)
    assert (await store.outbox_counts()).pending == 1


async def test_client_result_id_returns_first_answer(store: Store) -> None:
    first, created = await store.record_measurement(result(client_result_id="plc-7-000123"))
    repeat, created_again = await store.record_measurement(result(client_result_id="plc-7-000123", value=99.0))
    assert created
    assert not created_again
    assert repeat.result_id == first.result_id
    assert repeat.report.value == first.report.value
    assert len(await store.results()) == 1
    assert len(await store.pending_outbox()) == 1


async def test_outbox_sent_failed_dead(store: Store) -> None:
    for n in range(3):
        await store.record_measurement(result(order_no=f"10{n}"))
    entries = await store.pending_outbox()
    assert [e.seq for e in entries] == sorted(e.seq for e in entries)
    await store.mark_sent(entries[0].seq, "QR-1")
    await store.mark_failed(entries[1].seq, "503", NOW + timedelta(seconds=5), dead=False)
    await store.mark_failed(entries[2].seq, "409", NOW, dead=True)
    counts = await store.outbox_counts()
    assert (counts.pending, counts.dead) == (1, 1)
    by_seq = {e.seq: e for e in await store.outbox_entries()}
    assert by_seq[entries[0].seq].state is OutboxState.SENT
    assert by_seq[entries[0].seq].erp_document == "QR-1"
    assert by_seq[entries[1].seq].attempts == 1
    assert by_seq[entries[1].seq].last_error == "503"
    assert by_seq[entries[2].seq].state is OutboxState.DEAD


async def test_a_page_of_deliveries_is_marked_with_each_postings_own_document(store: Store) -> None:
    for n in range(7):
        await store.record_measurement(result(order_no=f"20{n}"))
    entries = await store.pending_outbox()
    await store.mark_failed(entries[6].seq, "503", NOW + timedelta(seconds=5), dead=False)  # an earlier attempt
    delivered = [(entry.seq, f"QR-{entry.seq}") for entry in (entries[0], entries[2], entries[3], entries[6])]
    await store.mark_sent_many(delivered)
    by_seq = {entry.seq: entry for entry in await store.outbox_entries()}
    for seq, document in delivered:
        assert (by_seq[seq].state, by_seq[seq].erp_document, by_seq[seq].last_error) == (
            OutboxState.SENT,
            document,
            None,
        )
    assert by_seq[entries[6].seq].attempts == 2, "the delivery counts as an attempt on top of the failed one"
    assert by_seq[entries[0].seq].attempts == 1
    assert [entry.seq for entry in await store.pending_outbox()] == [entries[1].seq, entries[4].seq, entries[5].seq]
    assert (await store.outbox_counts()).pending == 3


async def test_a_page_answers_each_due_time_as_stored_and_aware(store: Store) -> None:
    """SQLite's due times are read from their stored text once per distinct time (`pending_entries`): each entry
    must still get its own, in UTC, however many share one."""
    for n in range(5):
        await store.record_measurement(result(order_no=f"31{n}"))
    entries = await store.pending_outbox()
    later = NOW + timedelta(seconds=5, microseconds=250)
    for entry in entries[1:3]:
        await store.mark_failed(entry.seq, "503", later, dead=False)
    await store.mark_failed(entries[3].seq, "503", later + timedelta(minutes=1), dead=False)
    due = {entry.seq: entry.next_attempt_at for entry in await store.pending_outbox()}
    assert due[entries[1].seq] == due[entries[2].seq] == later
    assert due[entries[3].seq] == later + timedelta(minutes=1)
    assert due[entries[0].seq] == due[entries[4].seq] == entries[0].next_attempt_at != later
    assert {moment.utcoffset() for moment in due.values()} == {timedelta(0)}


async def test_a_page_leaves_out_the_postings_it_is_told_to_and_keeps_the_order_of_the_rest(store: Store) -> None:
    """The relay's read-ahead page leaves out the page being posted and the marking under way (PostgreSQL gets
    them as one array parameter, SQLite as one JSON text)."""
    for n in range(7):
        await store.record_measurement(result(order_no=f"30{n}"))
    seqs = [entry.seq for entry in await store.pending_outbox()]
    left_out = {seqs[0], seqs[3], seqs[4]}
    page = await store.pending_outbox(limit=3, excluding=left_out)
    assert [entry.seq for entry in page] == [seqs[1], seqs[2], seqs[5]]
    assert [entry.seq for entry in await store.pending_outbox(excluding=set(seqs))] == []
    assert [entry.seq for entry in await store.pending_outbox(excluding=frozenset())] == seqs


async def test_migration_creates_schema_and_is_repeatable(store: Store) -> None:
    from qualitybridge.store import migrate

    await migrate(store.engine)  # a second run at head must be a no-op
    async with store.engine.connect() as conn:
        names = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    expected = {
        "production_orders",
        "test_equipment",
        "measurement_results",
        "outbox",
        "users",
        "mappings",
        "alembic_version",
    }
    assert expected <= names


async def test_mapping_entries_keep_who_and_when(store: Store) -> None:
    before = datetime.now(UTC)
    await store.set_mapping(MappingEntry(MappingKind.WORK_CENTRE, "WC-DRILL-02", "CC-4711", changed_by="admin"))
    await store.set_mapping(MappingEntry(MappingKind.UNIT, "mm", "MMT", changed_at=NOW, changed_by="import"))
    unit, work_centre = await store.list_mappings()  # by table name, then source key
    assert (work_centre.kind, work_centre.changed_by) == (MappingKind.WORK_CENTRE, "admin")
    assert work_centre.changed_at is not None
    assert work_centre.changed_at >= before - timedelta(seconds=1)
    assert unit == MappingEntry(MappingKind.UNIT, "mm", "MMT", changed_at=NOW, changed_by="import")
    tables = await store.mapping_tables()
    assert tables.lookup(MappingKind.WORK_CENTRE, "WC-DRILL-02") == "CC-4711"
    assert tables.lookup(MappingKind.MATERIAL, "WC-DRILL-02") is None


async def test_mapping_import_is_one_transaction(store: Store) -> None:
    """Replacing a table with many entries lands whole; a replacement with one bad entry at the end lands not at
    all, and the other tables are never touched."""
    many = [MappingEntry(MappingKind.MATERIAL, f"MAT-{n:05}", f"P-{n:05}") for n in range(2000)]
    await store.set_mapping(MappingEntry(MappingKind.UNIT, "mm", "MMT"))
    await store.replace_mappings(MappingKind.MATERIAL, many)
    assert len(await store.list_mappings(MappingKind.MATERIAL)) == 2000
    too_long = MappingEntry(MappingKind.MATERIAL, "MAT-LAST", "P" * 129)
    with pytest.raises(InvalidMapping, match="at most 128 fit"):
        await store.replace_mappings(MappingKind.MATERIAL, [*many[:10], too_long])
    assert len(await store.list_mappings(MappingKind.MATERIAL)) == 2000
    assert [entry.source_key for entry in await store.list_mappings(MappingKind.UNIT)] == ["mm"]


async def test_more_deliveries_than_one_marking_statement_takes_are_all_marked(store: Store) -> None:
    # SQLite marks at most 4,000 deliveries per UPDATE ... FROM (VALUES ...); the rest go in further statements.
    await store.record_measurements([AcceptedMeasurement(result=result(order_no="300")) for _ in range(4_001)])
    entries = await store.pending_outbox(limit=5_000)
    assert len(entries) == 4_001
    await store.mark_sent_many([(entry.seq, f"QR-{entry.seq}") for entry in entries])
    assert await store.pending_outbox(limit=5_000) == []
    sent = await store.outbox_entries([OutboxState.SENT])
    assert [(entry.seq, entry.erp_document, entry.attempts) for entry in sent] == [
        (entry.seq, f"QR-{entry.seq}", 1) for entry in entries
    ]
