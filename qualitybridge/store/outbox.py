"""The outbox's one encoding of postings: a row per posting (kind, idempotency key, order, JSON payload) and back.

The payload of each kind is the JSON of the record it carries, as it has been since the first schema, so rows
written by earlier releases decode unchanged. A row that does not decode becomes an `UnreadablePosting`, which
the relay dead-letters with the reason instead of failing the whole page.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from json.encoder import encode_basestring as _json_string  # the C encoder
from typing import Any

import pydantic_core

from qualitybridge.domain.model import MeasurementResult, OutboxState
from qualitybridge.domain.postings import (
    ConfirmationPosting,
    KpiPosting,
    MeasurementPosting,
    OutboxEntry,
    Posting,
    SpcAlarmPosting,
    decode_posting,
)

__all__ = ["PENDING_ENTRY_COLUMNS", "ResultJson", "entry_from_row", "outbox_row", "pending_entries"]


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


_UNSEEN = object()  # is no value of a result: the first result writes every part


def _pydantic_json(value: Any) -> str:
    return pydantic_core.to_json(value).decode()


class ResultJson:
    """A measurement result's outbox payload: the text `result.model_dump_json()` gives, byte for byte
    (tests/unit/test_measurement_payload.py), at about half its CPU (1.1 against 1.9 µs per result).

    pydantic's serializer walks the whole result, report included, for each one; here the parts a batch's results
    share are written once and reused while they are the same objects as the previous result's (a batch's entries
    share their order, operation and characteristic, plan version, unit, user and received_at, and mostly their
    gauge and MeasuredAt, as the very same objects): per result only its id, value, part serial, client id and
    evaluation are written. Strings go through the standard library's C encoder (`ensure_ascii=False`'s), which
    escapes exactly what pydantic-core escapes (quote, backslash, control characters); floats as `repr` writes them
    unless that has an exponent (pydantic-core writes 1e-05 as 0.00001), times and the rest through pydantic-core.
    """

    __slots__ = ("_equipment", "_equipment_of", "_head", "_head_of", "_measured", "_measured_of", "_tail", "_tail_of")

    def __init__(self) -> None:
        self._head_of: tuple[Any, ...] = (_UNSEEN,)
        self._head = ""
        self._tail_of: tuple[Any, ...] = (_UNSEEN,)
        self._tail = ""
        self._equipment_of: Any = _UNSEEN
        self._equipment = ""
        self._measured_of: Any = _UNSEEN
        self._measured = ""

    def __call__(self, result: MeasurementResult) -> str:
        report = result.report
        head_of = self._head_of
        order_no, operation_no, characteristic_id = report.order_no, report.operation_no, report.characteristic_id
        if order_no is not head_of[0] or operation_no is not head_of[1] or characteristic_id is not head_of[2]:
            self._head_of = (order_no, operation_no, characteristic_id)
            self._head = (
                f'"report":{{"order_no":{_json_string(order_no)},"operation_no":{_json_string(operation_no)},'
                f'"characteristic_id":{_json_string(characteristic_id)},"value":'
            )
        tail_of = self._tail_of
        plan_version, unit, reported_by = result.plan_version, result.unit, result.reported_by
        received_at, routing_version = result.received_at, result.routing_version
        superseded = result.plan_version_superseded
        if (
            plan_version is not tail_of[0]
            or unit is not tail_of[1]
            or reported_by is not tail_of[2]
            or received_at is not tail_of[3]
            or routing_version is not tail_of[4]
            or superseded is not tail_of[5]
        ):
            self._tail_of = (plan_version, unit, reported_by, received_at, routing_version, superseded)
            self._tail = (
                f',"plan_version":{_json_string(plan_version)},"unit":{_json_string(unit)},'
                f'"reported_by":{_json_string(reported_by)},"received_at":{_pydantic_json(received_at)},'
                f'"routing_version":{_pydantic_json(routing_version)},'
                f'"plan_version_superseded":{"true" if superseded else "false"}}}'
            )
        equipment_id = report.equipment_id
        if equipment_id is not self._equipment_of:
            self._equipment_of, self._equipment = equipment_id, _json_string(equipment_id)
        measured_at = report.measured_at
        if measured_at is not self._measured_of:
            self._measured_of, self._measured = measured_at, _pydantic_json(measured_at)
        value = repr(report.value)
        if "e" in value or "n" in value:  # an exponent, or inf or nan
            value = _pydantic_json(report.value)
        client_id = report.client_result_id
        return (
            f'{{"result_id":{_json_string(result.result_id)},{self._head}{value},"equipment_id":{self._equipment},'
            f'"part_serial":{_json_string(report.part_serial)},"measured_at":{self._measured},'
            f'"client_result_id":{"null" if client_id is None else _json_string(client_id)}}},'
            f'"evaluation":{int(result.evaluation)}{self._tail}'
        )


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

    The rows of one report batch share their due time: each distinct time is read (from SQLite's text) and made
    aware once per page, not once per row (a fifth of reading a page in the event loop)."""
    aware: dict[datetime | str, datetime] = {}
    entries: list[OutboxEntry] = []
    append = entries.append
    for seq, idempotency_key, kind, order_no, payload, attempts, next_attempt_at, last_error in rows:
        due = aware.get(next_attempt_at)
        if due is None:
            moment = datetime.fromisoformat(next_attempt_at) if type(next_attempt_at) is str else next_attempt_at
            due = aware[next_attempt_at] = _aware(moment)
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
