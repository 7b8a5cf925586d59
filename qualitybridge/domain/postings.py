"""What QualityBridge owes the ERP/QMS: a tagged union of posting types, and the outbox entry that carries one.

The store encodes a posting once (`store.outbox`): as the JSON of the record it carries, which `decode_posting`
reads back. The relay and the adapters see only these types, so a new kind of posting is a new class here and a
case in each adapter, not a string repeated in three layers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qualitybridge.domain.kpis import KpiReport
from qualitybridge.domain.model import MeasurementResult, OutboxState
from qualitybridge.domain.records import ConfirmationRecord, SpcAlarmRecord

__all__ = [
    "ConfirmationPosting",
    "KpiPosting",
    "MeasurementPosting",
    "OutboxEntry",
    "Posting",
    "PostingKind",
    "SpcAlarmPosting",
    "UnreadablePosting",
    "decode_posting",
]


class _Posting(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MeasurementPosting(_Posting):
    """An accepted measurement result, for the ERP's inspection results."""

    kind: Literal["measurement"] = "measurement"
    result: MeasurementResult


class ConfirmationPosting(_Posting):
    """A production confirmation (yield, scrap, rework), for the ERP's order confirmation."""

    kind: Literal["confirmation"] = "confirmation"
    record: ConfirmationRecord


class SpcAlarmPosting(_Posting):
    """An SPC alarm, for the QMS's quality notification."""

    kind: Literal["spc_alarm"] = "spc_alarm"
    record: SpcAlarmRecord


class KpiPosting(_Posting):
    """The quality KPIs of one period (a day, or an order's life), for the QMS; once per period (docs/kpis.md)."""

    kind: Literal["kpi"] = "kpi"
    report: KpiReport


class UnreadablePosting(_Posting):
    """A stored posting that no longer decodes (unknown kind, damaged payload): dead-lettered, never guessed."""

    kind: Literal["unreadable"] = "unreadable"
    stored_kind: str
    reason: str


Posting = Annotated[
    MeasurementPosting | ConfirmationPosting | SpcAlarmPosting | KpiPosting | UnreadablePosting,
    Field(discriminator="kind"),
]
PostingKind = Literal["measurement", "confirmation", "spc_alarm", "kpi"]


M = TypeVar("M", bound=BaseModel)


def decode_posting(kind: str, payload: Any) -> Posting:
    """The posting of `kind` whose record is `payload`; an `UnreadablePosting` naming why when it cannot be decoded.

    `payload` is the record's JSON as text (pydantic-core parses and validates it in one pass, without a dict of
    dicts in between) or already parsed."""
    try:
        if kind == "measurement":
            return MeasurementPosting(result=_decoded(MeasurementResult, payload))
        if kind == "confirmation":
            return ConfirmationPosting(record=_decoded(ConfirmationRecord, payload))
        if kind == "spc_alarm":
            return SpcAlarmPosting(record=_decoded(SpcAlarmRecord, payload))
        if kind == "kpi":
            return KpiPosting(report=_decoded(KpiReport, payload))
    except ValidationError as exc:
        first = exc.errors()[0]
        return UnreadablePosting(
            stored_kind=kind, reason=f"{exc.error_count()} errors in the payload, first: {first['loc']}: {first['msg']}"
        )
    return UnreadablePosting(stored_kind=kind, reason=f"unknown posting kind {kind!r}")


def _decoded(model: type[M], payload: Any) -> M:
    if isinstance(payload, str | bytes):
        return model.model_validate_json(payload)
    return model.model_validate(payload)


class OutboxEntry:
    """A posting owed to the ERP/QMS; its idempotency key makes a repeated delivery harmless.

    Built from a posting, or from its kind and its record's JSON as the store keeps it (`record_json`): then the
    posting is decoded on first use of `posting`. A target that sends the record as JSON (the REST contract's
    batch) reads `record_json` and never builds the models: decoding them was the largest part of the relay's cost
    per posting. Not to be changed after construction (a plain class with slots: a pydantic model per posting of
    a relay page cost more than the rest of reading it).
    """

    __slots__ = (
        "_posting",
        "attempts",
        "erp_document",
        "idempotency_key",
        "kind",
        "last_error",
        "next_attempt_at",
        "order_no",
        "record_json",
        "seq",
        "state",
    )

    def __init__(
        self,
        *,
        seq: int,
        idempotency_key: str,
        order_no: str,
        state: OutboxState,
        attempts: int,
        next_attempt_at: datetime,
        posting: Posting | None = None,
        kind: str | None = None,
        record_json: str | None = None,
        last_error: str | None = None,
        erp_document: str | None = None,
    ) -> None:
        if posting is None:
            if kind is None or record_json is None:
                raise ValueError("an outbox entry needs its posting, or its kind and record JSON")
        elif kind is None:
            kind = posting.stored_kind if isinstance(posting, UnreadablePosting) else posting.kind
        self.seq = seq
        self.idempotency_key = idempotency_key
        self.order_no = order_no
        self.kind: str = kind  # as stored ("measurement", "confirmation", "spc_alarm", "kpi"), also when unreadable
        self.record_json = record_json
        self.state = state
        self.attempts = attempts
        self.next_attempt_at = next_attempt_at
        self.last_error = last_error
        self.erp_document = erp_document
        self._posting = posting

    @property
    def posting(self) -> Posting:
        """The posting; decoded from `record_json` on first use (an `UnreadablePosting` when it does not decode)."""
        posting = self._posting
        if posting is None:
            assert self.record_json is not None  # noqa: S101 - the constructor requires one of the two
            posting = self._posting = decode_posting(self.kind, self.record_json)
        return posting

    def __repr__(self) -> str:
        return f"OutboxEntry(seq={self.seq}, idempotency_key={self.idempotency_key!r}, kind={self.kind!r})"
