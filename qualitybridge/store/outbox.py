"""The outbox's one encoding of postings: a row per posting (kind, idempotency key, order, JSON payload) and back.

The payload of each kind is the JSON of the record it carries, as it has been since the first schema, so rows
written by earlier releases decode unchanged. A row that does not decode becomes an `UnreadablePosting`, which
the relay dead-letters with the reason instead of failing the whole page.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from qualitybridge.domain.model import OutboxState
from qualitybridge.domain.postings import (
    ConfirmationPosting,
    KpiPosting,
    MeasurementPosting,
    OutboxEntry,
    Posting,
    SpcAlarmPosting,
    decode_posting,
)

__all__ = ["PENDING_ENTRY_COLUMNS", "decode_posting", "entry_from_row", "outbox_row", "pending_entries"]


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything in the store is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def outbox_row(posting: Posting, *, now: datetime) -> dict[str, Any]:
    """The outbox row for a new posting, due at once; the idempotency key is derived from the record's id."""
    match posting:
        case MeasurementPosting(result=result):
            key, order_no, payload = f"mr-{result.result_id}", result.report.order_no, result.model_dump(mode="json")
        case ConfirmationPosting(record=record):
            key, order_no = f"cf-{record.confirmation_id}", record.confirmation.order_no
            payload = record.model_dump(mode="json")
        case SpcAlarmPosting(record=alarm):
            key, order_no, payload = f"sa-{alarm.alarm_id}", alarm.alarm.order_no, alarm.model_dump(mode="json")
        case KpiPosting(report=report):
            # Once per period: the key is the period's, so a second computation of it cannot be queued.
            key, payload = report.idempotency_key, report.model_dump(mode="json")
            order_no = report.period_key if report.period == "order" else ""
        case _:
            raise ValueError(f"a {posting.kind} posting is never queued")
    return {
        "idempotency_key": key,
        "kind": posting.kind,
        "order_no": order_no,
        "payload": payload,
        "state": OutboxState.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


_STATES = {state.value: state for state in OutboxState}  # a dict look-up, not an Enum call per row of a page


def entry_from_row(row: Any) -> OutboxEntry:
    return OutboxEntry(
        seq=row["seq"],
        idempotency_key=row["idempotency_key"],
        order_no=row["order_no"],
        posting=decode_posting(row["kind"], row["payload"]),
        state=_STATES[row["state"]],
        attempts=row["attempts"],
        next_attempt_at=_aware(row["next_attempt_at"]),
        last_error=row["last_error"],
        erp_document=row["erp_document"],
    )


# The relay's page: what a pending entry needs, in this order (its state is pending; a pending row has no document).
PENDING_ENTRY_COLUMNS = (
    "seq",
    "idempotency_key",
    "kind",
    "order_no",
    "payload",
    "attempts",
    "next_attempt_at",
    "last_error",
)
_PENDING = OutboxState.PENDING


def pending_entries(rows: Iterable[Any]) -> list[OutboxEntry]:
    """Pending rows of PENDING_ENTRY_COLUMNS (the payload as its stored JSON text), their postings not yet decoded.

    The rows of one report batch share their due time: each distinct time is made aware once per page, not once per
    row (a fifth of reading a page in the event loop)."""
    aware: dict[datetime, datetime] = {}
    entries: list[OutboxEntry] = []
    append = entries.append
    for seq, idempotency_key, kind, order_no, payload, attempts, next_attempt_at, last_error in rows:
        due = aware.get(next_attempt_at)
        if due is None:
            due = aware[next_attempt_at] = _aware(next_attempt_at)
        append(
            OutboxEntry(
                seq=seq,
                idempotency_key=idempotency_key,
                order_no=order_no,
                kind=kind,
                record_json=payload,
                state=_PENDING,
                attempts=attempts,
                next_attempt_at=due,
                last_error=last_error,
            )
        )
    return entries
