"""What QualityBridge owes the ERP/QMS: a tagged union of posting types, and the outbox entry that carries one.

The store encodes a posting once (`store.outbox`); the relay and the adapters see only these types, so a new
kind of posting is a new class here and a case in each adapter, not a string repeated in three layers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

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


class OutboxEntry(_Posting):
    """A posting owed to the ERP/QMS; its idempotency key makes a repeated delivery harmless."""

    seq: int
    idempotency_key: str
    order_no: str
    posting: Posting
    state: OutboxState
    attempts: int
    next_attempt_at: datetime
    last_error: str | None = None
    erp_document: str | None = None

    @property
    def kind(self) -> str:
        """The posting's kind as stored ("measurement", "confirmation", "spc_alarm", "kpi")."""
        posting = self.posting
        return posting.stored_kind if isinstance(posting, UnreadablePosting) else posting.kind
