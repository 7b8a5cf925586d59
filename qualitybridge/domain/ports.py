"""Ports: what the core needs from the outside world, as small protocols the adapters implement."""

from __future__ import annotations

from typing import Protocol

from qualitybridge.domain.model import ErpSnapshot, OutboxEntry

__all__ = ["ErpClient", "ErpRejected", "ErpUnavailable"]


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
