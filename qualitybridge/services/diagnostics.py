"""Health figures of the bridge that plant IT and the MES watch: sync freshness, sync findings, the outbox backlog,
the master-data gaps."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from qualitybridge.domain.events import DiagnosticsChanged
from qualitybridge.domain.model import SyncFinding
from qualitybridge.services.event_bus import EventBus

__all__ = ["Diagnostics"]


@dataclass
class Diagnostics:
    last_sync_time: datetime | None = None
    last_sync_succeeded: bool = False
    sync_error_count: int = 0
    last_sync_error: str = ""
    outbox_depth: int = 0
    outbox_dead_letters: int = 0
    # ERP records the last sync refused and stored records start-up skipped (set by the sync) ...
    sync_findings: tuple[SyncFinding, ...] = ()
    # ... and released orders the address space could not show (set by the OPC UA publisher).
    view_findings: tuple[SyncFinding, ...] = ()
    outbox_oldest_at: datetime | None = None
    # Mapping tables in force (set by the sync): each missing key as "table, key, since …: holds back order …", and
    # how many released orders wait for one.
    master_data_gaps: tuple[str, ...] = ()
    held_back_orders: int = 0
    events: EventBus = field(default_factory=EventBus, repr=False)

    @property
    def findings(self) -> tuple[str, ...]:
        """Every current finding as one line "<key>: <reason>", each key once."""
        lines: dict[str, str] = {}
        for finding in (*self.sync_findings, *self.view_findings):
            lines.setdefault(finding.key, str(finding))
        return tuple(lines.values())

    async def changed(self) -> None:
        """Raise the figures as they are now (publishers show them; the caller has set what moved)."""
        await self.events.publish(
            DiagnosticsChanged(
                last_sync_time=self.last_sync_time,
                last_sync_succeeded=self.last_sync_succeeded,
                sync_error_count=self.sync_error_count,
                last_sync_error=self.last_sync_error,
                outbox_depth=self.outbox_depth,
                outbox_dead_letters=self.outbox_dead_letters,
                sync_findings=self.findings,
                outbox_oldest_at=self.outbox_oldest_at,
                master_data_gaps=self.master_data_gaps,
                held_back_orders=self.held_back_orders,
            )
        )
