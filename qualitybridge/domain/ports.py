"""Ports: what the core needs from the outside world, as small protocols the adapters implement."""

from __future__ import annotations

from typing import Protocol

from qualitybridge.domain.events import DomainEvent
from qualitybridge.domain.model import ErpSnapshot
from qualitybridge.domain.postings import OutboxEntry

__all__ = ["ErpClient", "ErpRejected", "ErpUnavailable", "Publisher"]


class ErpUnavailable(Exception):
    """The ERP could not be reached or answered with a temporary failure; the posting is retried."""


class ErpRejected(Exception):
    """The ERP refused a posting for good (a 4xx other than rate limiting); retrying will not help."""


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
