"""The REST target's one-posting-at-a-time path, over real HTTP against the simulator: every posting kind reaches
its own contract path, a repeat under the same idempotency key is booked once, an unreadable posting is refused
for good, and a target without the batch path is served one posting at a time."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from qualitybridge.adapters.rest_erp import RestErpClient
from qualitybridge.domain.model import OutboxState, ProductionOrder
from qualitybridge.domain.ports import ErpRejected, PostingFailure, PostingReceipt
from qualitybridge.domain.postings import (
    ConfirmationPosting,
    MeasurementPosting,
    OutboxEntry,
    Posting,
    SpcAlarmPosting,
    UnreadablePosting,
)
from tests.builders import confirmation_record, result, spc_alarm_record


def _entry(seq: int, key: str, order_no: str, posting: Posting) -> OutboxEntry:
    return OutboxEntry(
        seq=seq,
        idempotency_key=key,
        order_no=order_no,
        posting=posting,
        state=OutboxState.PENDING,
        attempts=0,
        next_attempt_at=datetime.now(UTC),
    )


def _postings(order: ProductionOrder) -> list[OutboxEntry]:
    operation = order.operations[0]
    characteristic = operation.characteristics[0]
    keys = {"order_no": order.order_no, "operation_no": operation.operation_no}
    measured = result()
    report = measured.report.model_copy(update={**keys, "characteristic_id": characteristic.characteristic_id})
    measured = measured.model_copy(update={"report": report, "unit": characteristic.unit})
    confirmation = confirmation_record()
    confirmation = confirmation.model_copy(
        update={"confirmation": confirmation.confirmation.model_copy(update={**keys, "unit": order.quantity_unit})}
    )
    alarm = spc_alarm_record(1, measured.result_id)
    alarm = alarm.model_copy(
        update={"alarm": alarm.alarm.model_copy(update={**keys, "characteristic_id": characteristic.characteristic_id})}
    )
    return [
        _entry(1, f"mr-{measured.result_id}", order.order_no, MeasurementPosting(result=measured)),
        _entry(2, f"cf-{confirmation.confirmation_id}", order.order_no, ConfirmationPosting(record=confirmation)),
        _entry(3, f"sa-{alarm.alarm_id}", order.order_no, SpcAlarmPosting(record=alarm)),
    ]


async def test_each_kind_is_booked_on_its_own_path_once(erp_url: str) -> None:
    client = RestErpClient(erp_url)
    try:
        order = (await client.fetch_snapshot()).orders[0]
        entries = _postings(order)
        documents = [await client.post(entry) for entry in entries]
        repeated = [await client.post(entry) for entry in entries]  # a delivery whose answer was lost
        with pytest.raises(ErpRejected, match="unreadable payload"):
            await client.post(
                _entry(4, "x-1", order.order_no, UnreadablePosting(stored_kind="measurement", reason="r"))
            )
    finally:
        await client.aclose()
    assert all(documents), "every kind gets a document number"
    assert repeated == documents, "a repeat under the same idempotency key is the first booking"
    async with httpx.AsyncClient(base_url=erp_url) as http:
        stats = (await http.get("/stats")).json()
    booked = {kind: count for kind, count in stats["booked"].items() if count}
    assert booked == {"results": 1, "confirmations": 1, "spc_alarms": 1}, stats
    assert stats["duplicates_suppressed_total"] == 3, "the repeats were recognised, not booked again"


async def test_a_target_without_the_batch_path_is_served_one_posting_at_a_time(erp_url: str) -> None:
    # The simulator answers a path it does not serve with 404, as an ERP with contract v1 before the batch does.
    client = RestErpClient(erp_url)
    try:
        order = (await client.fetch_snapshot()).orders[0]
        entries = _postings(order)
        client._batch_supported = False  # what the first 404 on POST /postings teaches the client
        outcomes = await client.post_batch(entries)
    finally:
        await client.aclose()
    assert [type(outcome) for outcome in outcomes] == [PostingReceipt] * 3
    assert all(isinstance(outcome, PostingReceipt) and outcome.document_no for outcome in outcomes)
    assert not any(isinstance(outcome, PostingFailure) for outcome in outcomes)
