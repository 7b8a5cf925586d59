"""Ports: what the core needs from the outside world, as small protocols the adapters implement.

| port               | what the core asks of it                                                          |
| ------------------ | --------------------------------------------------------------------------------- |
| `MasterDataSource` | released orders, operations, characteristics, gauges: changes since a watermark,  |
|                    | or everything (a full resync at start and on demand)                              |
| `PostingTarget`    | a batch of outbox entries delivered; one receipt or one classified failure each   |
| `ErpClient`        | the combined single-call face the generic REST adapter had first (still honoured) |
| `Publisher`        | shows domain events to the outside world                                          |

Failures are classified once, by the adapter: `ErpUnavailable` (temporary, retried) or `ErpRejected` (for good).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from qualitybridge.domain.events import DomainEvent
from qualitybridge.domain.model import ErpSnapshot, MasterDataChanges
from qualitybridge.domain.postings import OutboxEntry

__all__ = [
    "BurstPublisher",
    "ErpClient",
    "ErpRejected",
    "ErpUnavailable",
    "MasterDataSource",
    "PostingFailure",
    "PostingOutcome",
    "PostingReceipt",
    "PostingTarget",
    "Publisher",
]


class ErpUnavailable(Exception):
    """The ERP could not be reached or answered with a temporary failure; the posting is retried."""


class ErpRejected(Exception):
    """The ERP refused a posting for good (a 4xx other than rate limiting); retrying will not help."""


@dataclass(frozen=True)
class PostingReceipt:
    """The target booked the entry `seq` as document `document_no` (never empty: that is no booking)."""

    seq: int
    document_no: str


@dataclass(frozen=True)
class PostingFailure:
    """The entry `seq` was not booked; `error` says whether a retry may help.

    `attempted` False: the target did not try it (an earlier posting got no answer, or one of its order failed):
    it waits for the next round without counting an attempt.
    """

    seq: int
    error: ErpUnavailable | ErpRejected
    attempted: bool = True


PostingOutcome = PostingReceipt | PostingFailure


@runtime_checkable
class MasterDataSource(Protocol):
    """Where released orders and gauges come from, incrementally."""

    @property
    def source_id(self) -> str:
        """Names the source for its stored watermark (e.g. "erp"); stable across restarts."""
        ...

    async def fetch_changes(self, since: str) -> MasterDataChanges:
        """What changed since the watermark `since` (one this source returned before)."""
        ...

    async def fetch_all(self) -> MasterDataChanges:
        """Everything released now (`full` set), with the watermark to continue from."""
        ...


@runtime_checkable
class PostingTarget(Protocol):
    """Where the outbox goes: results, confirmations, SPC alarms."""

    async def post_batch(self, entries: Sequence[OutboxEntry]) -> Sequence[PostingOutcome]:
        """Deliver entries (in acceptance order per order); one outcome per entry, matched by `seq`.

        A target stops an order at its first temporary failure in the batch: the order's later entries come back
        as `ErpUnavailable` failures without having been attempted, so an order's postings are never reordered.
        Other orders go on. Raises `ErpUnavailable` only when the batch as a whole got no answer.
        """
        ...


class ErpClient(Protocol):
    async def fetch_snapshot(self) -> ErpSnapshot:
        """Released orders with their characteristics, and the test equipment, as the ERP/QMS has them now."""
        ...

    async def post(self, entry: OutboxEntry) -> str:
        """Deliver one posting with its idempotency key; returns the ERP's document number."""
        ...

    async def aclose(self) -> None: ...


class Publisher(Protocol):
    """Shows what happened to the outside world (the OPC UA address space; MQTT or a status page later)."""

    async def publish(self, event: DomainEvent) -> None:
        """React to one domain event; ignore the kinds it does not show."""
        ...


@runtime_checkable
class BurstPublisher(Publisher, Protocol):
    """A publisher that shows the events one call produced together at once (a report batch's measurements): what
    they change in common it shows once per burst, not once per event. It still sees each event of the burst."""

    async def publish_burst(self, events: Sequence[DomainEvent]) -> None:
        """React to the events of one burst, in their order; ignore the kinds it does not show."""
        ...
