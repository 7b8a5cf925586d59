"""Store operations of shop-floor reporting on SQLite and PostgreSQL: batches in one transaction, confirmations,
SPC alarms, refused attempts, order states, and the outbox administration behind `qualitybridge outbox`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Table, func, inspect, select
from sqlalchemy.exc import IntegrityError

from qualitybridge.domain.ids import new_record_id
from qualitybridge.domain.model import (
    CalibrationStatus,
    ErpSnapshot,
    OrderState,
    OutboxState,
    SpcAlarm,
)
from qualitybridge.domain.postings import ConfirmationPosting, MeasurementPosting, SpcAlarmPosting
from qualitybridge.domain.records import AcceptedMeasurement, SpcAlarmRecord
from qualitybridge.store import Store, tables
from qualitybridge.store.outbox_admin import DISCARDED
from tests.builders import (
    NOW,
    accepted,
    confirmation_record,
    measurement_report,
    order,
    refused_attempt,
    result,
    spc_alarm_record,
)


async def _count(store: Store, table: Table) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_batch_stores_results_outbox_rows_and_refused_attempts_together(store: Store) -> None:
    batch = [accepted("plc-1"), accepted(due_soon=True), accepted("plc-2")]
    answers = await store.record_measurements(batch, [refused_attempt()])
    assert [(item.result.result_id, created) for item, created in answers] == [
        (item.result.result_id, True) for item in batch
    ]
    pending = await store.pending_outbox()
    assert [entry.idempotency_key for entry in pending] == [f"mr-{item.result.result_id}" for item in batch]
    assert [entry.kind for entry in pending] == ["measurement"] * 3
    stored = await store.stored_measurements()
    assert {item.result.result_id: item.gauge_due_soon for item in stored} == {
        item.result.result_id: item.gauge_due_soon for item in batch
    }
    refused = await store.refused_measurements()
    assert len(refused) == 1
    assert refused[0].calibration_status is CalibrationStatus.EXPIRED
    assert refused[0].reason == "calibration expired"
    assert await store.refused_measurements(equipment_id="other") == []


async def test_batch_rows_read_back_as_written_and_postings_as_the_outbox_encodes_them(store: Store) -> None:
    """The report path writes prebuilt rows past SQLAlchemy's processors: what is read back must be exactly what
    was accepted (moments to the microsecond, in UTC however they came, flags, the posting's payload)."""
    whole_second = accepted()
    east = timezone(timedelta(hours=2))
    late = AcceptedMeasurement(
        result=result().model_copy(
            update={
                "report": measurement_report("1000", value=-0.000123, client_result_id="plc-rt").model_copy(
                    update={"measured_at": datetime(2026, 11, 30, 3, 4, 5, 123456, tzinfo=east)}
                ),
                "received_at": NOW.replace(microsecond=7),
                "routing_version": "R2",
                "plan_version_superseded": True,
            }
        ),
        gauge_due_soon=True,
    )
    batch = [whole_second, late]
    await store.record_measurements(batch)
    stored = {item.result.result_id: item for item in await store.stored_measurements()}
    for item in batch:
        back = stored[item.result.result_id]
        assert back == item
        assert back.result.report.measured_at == item.result.report.measured_at
        assert back.result.report.measured_at.utcoffset() == timedelta(0)
    entries = {entry.idempotency_key: entry for entry in await store.pending_outbox()}
    for item in batch:
        entry = entries[f"mr-{item.result.result_id}"]
        assert entry.posting == MeasurementPosting(result=item.result)
        assert (entry.order_no, entry.state, entry.attempts) == ("1000", OutboxState.PENDING, 0)
        assert entry.next_attempt_at == item.result.received_at


async def test_batch_repeats_answer_with_the_first_result_within_and_across_calls(store: Store) -> None:
    first, _created = (await store.record_measurements([accepted("plc-7", due_soon=True)]))[0]
    answers = await store.record_measurements(
        [accepted("plc-7", value=99.0), accepted("plc-8"), accepted("plc-8", value=98.0)]
    )
    assert answers[0] == (first, False), "a repeat of an earlier call gets the first result, flag included"
    assert answers[1][1] is True
    assert answers[2] == (answers[1][0], False), "a repeat within the batch gets the batch's first"
    assert len(await store.results()) == 2
    assert len(await store.pending_outbox()) == 2
    by_id = await store.measurements_by_client_ids(["plc-7", "plc-8", "never"])
    assert set(by_id) == {"plc-7", "plc-8"}
    assert by_id["plc-7"].gauge_due_soon


async def test_a_failing_batch_leaves_nothing_half_written(store: Store) -> None:
    first = accepted("plc-1")
    # The same result id twice: the batch's insert violates the primary key, so the whole transaction must go.
    same_id = AcceptedMeasurement(result=accepted().result.model_copy(update={"result_id": first.result.result_id}))
    with pytest.raises(IntegrityError):
        await store.record_measurements([first, same_id], [refused_attempt()])
    assert await store.results() == []
    assert await store.pending_outbox() == []
    assert await store.refused_measurements() == []


async def test_many_client_ids_are_looked_up_in_chunks(store: Store) -> None:
    batch = [accepted(f"plc-{n:04d}") for n in range(1200)]
    await store.record_measurements(batch)
    again = await store.record_measurements(batch)
    assert all(not created for _item, created in again)
    assert len(await store.measurements_by_client_ids([f"plc-{n:04d}" for n in range(1200)])) == 1200


async def test_order_state_change_is_compare_and_set_and_survives_resync(store: Store) -> None:
    await store.apply_snapshot(ErpSnapshot(orders=(order("1000"),), equipment=()))
    assert await store.change_order_state("1000", OrderState.ALLOWED_TO_START, OrderState.RUNNING)
    assert not await store.change_order_state("1000", OrderState.ALLOWED_TO_START, OrderState.RUNNING)
    assert not await store.change_order_state("4711", OrderState.ALLOWED_TO_START, OrderState.RUNNING)
    assert (await store.released_orders())[0].state is OrderState.RUNNING
    # The ERP still says AllowedToStart: the shop-floor state stays, and the order does not count as changed.
    resync = await store.apply_snapshot(ErpSnapshot(orders=(order("1000"),), equipment=()))
    assert resync.is_empty
    assert (await store.released_orders())[0].state is OrderState.RUNNING


async def test_confirmation_with_outbox_row_idempotent_and_totalled(store: Store) -> None:
    first, created = await store.record_confirmation(confirmation_record("mes-1", yield_quantity=4))
    repeat, created_again = await store.record_confirmation(confirmation_record("mes-1", yield_quantity=40))
    assert created
    assert not created_again
    assert repeat == first
    await store.record_confirmation(confirmation_record(yield_quantity=3, scrap=1, final=True))
    totals = await store.confirmation_totals("1000", "0010")
    assert (totals.yield_quantity, totals.scrap_quantity, totals.finally_confirmed) == (7, 1, True)
    assert (await store.confirmation_totals("1000", "0020")).yield_quantity == 0
    pending = await store.pending_outbox()
    assert [entry.kind for entry in pending] == ["confirmation", "confirmation"]
    assert pending[0].idempotency_key == f"cf-{first.confirmation_id}"
    assert pending[0].posting == ConfirmationPosting(record=first)
    stored = await store.confirmations("1000")
    assert len(stored) == 2
    assert first in stored
    assert await store.confirmations("4711") == []


async def test_spc_alarm_with_outbox_row(store: Store) -> None:
    record = SpcAlarmRecord(
        alarm_id=new_record_id(),
        alarm=SpcAlarm(
            order_no="1000",
            operation_no="0010",
            characteristic_id="C010",
            rule="WE1",
            severity=700,
            message="point beyond the upper control limit",
            raised_at=NOW,
        ),
        reported_by="machine1",
    )
    await store.record_spc_alarm(record)
    assert await store.spc_alarms() == [record]
    (entry,) = await store.pending_outbox()
    assert (entry.kind, entry.idempotency_key, entry.order_no) == ("spc_alarm", f"sa-{record.alarm_id}", "1000")
    assert entry.posting == SpcAlarmPosting(record=record)


async def test_spc_alarms_of_a_batch_are_stored_once_each_in_one_transaction(store: Store) -> None:
    first, second, third = spc_alarm_record(1), spc_alarm_record(5), spc_alarm_record(2, "r-2")
    assert await store.record_spc_alarms_once([]) == []
    assert await store.record_spc_alarms_once([first, second]) == [True, True]
    # A replay repeats the first two; a repeat within the batch is stored once too.
    assert await store.record_spc_alarms_once([first, third, second, third]) == [False, True, False, False]
    assert await store.record_spc_alarm_once(third) is False
    assert sorted(r.alarm_id for r in await store.spc_alarms()) == sorted(r.alarm_id for r in (first, second, third))
    postings = [e.posting for e in await store.pending_outbox()]
    assert postings == [SpcAlarmPosting(record=r) for r in (first, second, third)]
    assert await store.spc_alarms() == [first, second, third]


async def test_a_failing_spc_alarm_batch_stores_none_of_it(store: Store) -> None:
    broken = spc_alarm_record(3).model_copy(update={"reported_by": None})  # NOT NULL in the table
    with pytest.raises(IntegrityError):
        await store.record_spc_alarms_once([spc_alarm_record(1), broken])
    assert await store.spc_alarms() == []
    assert await store.pending_outbox() == []


async def test_outbox_list_retry_and_discard_never_delete(store: Store) -> None:
    for n in range(4):
        await store.record_measurements([AcceptedMeasurement(result=result(order_no=f"10{n}"))])
    seqs = [entry.seq for entry in await store.pending_outbox()]
    await store.mark_sent(seqs[0], "QR-1")
    await store.mark_failed(seqs[1], "HTTP 422: unknown_order", NOW, dead=True)
    await store.mark_failed(seqs[2], "HTTP 409: conflict", NOW, dead=True)

    assert [r.seq for r in await store.outbox_records([OutboxState.DEAD.value])] == seqs[1:3]
    assert [r.state for r in await store.outbox_records(order_no="101")] == ["dead"]
    assert len(await store.outbox_records(limit=2)) == 2

    assert await store.retry_dead([seqs[1], seqs[3]]) == [seqs[1]], "only dead letters are retried"
    retried = (await store.outbox_records(order_no="101"))[0]
    assert (retried.state, retried.attempts) == ("pending", 0)
    assert retried.last_error == "HTTP 422: unknown_order", "the last error stays visible"
    assert retried.next_attempt_at <= datetime.now(UTC) + timedelta(seconds=1)

    discarded = await store.discard(seqs[2], "booked by hand in the ERP", "alice")
    assert (discarded.state, discarded.discard_reason, discarded.discarded_by) == (
        DISCARDED,
        "booked by hand in the ERP",
        "alice",
    )
    assert discarded.discarded_at is not None
    with pytest.raises(ValueError, match="sent"):
        await store.discard(seqs[0], "too late", "alice")
    with pytest.raises(ValueError, match="discarded"):
        await store.discard(seqs[2], "again", "alice")
    with pytest.raises(ValueError, match="reason"):
        await store.discard(seqs[3], "  ", "alice")
    with pytest.raises(LookupError):
        await store.discard(99999, "gone", "alice")

    assert await store.retry_dead() == [], "a discarded entry is not a dead letter any more"
    assert await _count(store, tables.outbox) == 4, "nothing was deleted"
    assert [entry.seq for entry in await store.outbox_entries()] == [seqs[0], seqs[1], seqs[3]]
    counts = await store.outbox_counts()
    assert (counts.pending, counts.dead) == (2, 0)


async def test_reporting_migration_adds_its_tables_and_columns(store: Store) -> None:
    async with store.engine.connect() as conn:

        def shape(sync: object) -> tuple[set[str], set[str], set[str]]:
            inspector = inspect(sync)
            return (
                set(inspector.get_table_names()),
                {column["name"] for column in inspector.get_columns("measurement_results")},
                {column["name"] for column in inspector.get_columns("outbox")},
            )

        names, result_columns, outbox_columns = await conn.run_sync(shape)
    assert {"confirmations", "spc_alarms", "refused_measurements"} <= names
    assert "gauge_due_soon" in result_columns
    assert {"discard_reason", "discarded_by", "discarded_at"} <= outbox_columns
    # Rows written without the new column (the single-result path) get the default: not flagged.
    await store.record_measurement(result())
    assert [item.gauge_due_soon for item in await store.stored_measurements()] == [False]


async def test_a_batch_larger_than_one_statement_is_stored_whole_in_its_order(store: Store) -> None:
    """More rows than one multi-row INSERT takes on SQLite (bulk_rows chunks them) and than PostgreSQL's parameters
    per statement (it takes them as one array per column): every measurement and every outbox row is stored, the
    postings in the batch's order."""
    batch = [accepted(f"plc-{n}", value=float(n)) for n in range(1_201)]
    answers = await store.record_measurements(batch)
    assert [created for _item, created in answers] == [True] * len(batch)
    stored = {item.result.result_id: item for item in await store.stored_measurements()}
    assert [stored[item.result.result_id] for item in batch] == batch
    keys = [entry.idempotency_key for entry in await store.pending_outbox(limit=2_000)]
    assert keys == [f"mr-{item.result.result_id}" for item in batch]
