"""ERP → store → views: one sync round fetches what the ERP releases and makes the store match it."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from qualitybridge.domain.events import ErpSyncFinished, MasterDataChanged
from qualitybridge.domain.model import ErpSnapshot, SnapshotChange, SyncFinding
from qualitybridge.domain.ports import ErpClient, ErpUnavailable
from qualitybridge.services.diagnostics import Diagnostics
from qualitybridge.services.event_bus import EventBus
from qualitybridge.services.master_data import MasterData
from qualitybridge.store import Store

__all__ = ["ErpSync"]

_log = logging.getLogger(__name__)


class ErpSync:
    def __init__(
        self,
        erp: ErpClient,
        store: Store,
        master_data: MasterData,
        diagnostics: Diagnostics,
        *,
        events: EventBus | None = None,
    ) -> None:
        self._erp = erp
        self._store = store
        self._master = master_data
        self._diagnostics = diagnostics
        self._events = events or EventBus()
        self._erp_findings: tuple[SyncFinding, ...] = ()
        self._logged: set[SyncFinding] = set()

    async def load_from_store(self) -> None:
        """Serve what the store knows before the ERP answers: a plant keeps working through an ERP outage.

        A stored order the domain cannot read is skipped and reported as a finding, never fatal."""
        self._master.replace(await self._store.released_orders(), await self._store.equipment())
        self._record_findings(self._erp_findings)

    def _record_findings(self, erp_findings: tuple[SyncFinding, ...]) -> None:
        """Diagnostics lists what the last sync refused; each finding is logged once, not once per sync."""
        self._erp_findings = erp_findings
        findings = (*erp_findings, *self._store.unreadable_orders)
        for finding in findings:
            if finding not in self._logged:
                _log.warning("ERP sync: %s refused: %s; every other record syncs", finding.key, finding.reason)
        self._logged = set(findings)
        self._diagnostics.sync_findings = findings

    async def run_once(self) -> SnapshotChange:
        started = time.perf_counter()
        try:
            snapshot = await self._erp.fetch_snapshot()
        except ErpUnavailable as exc:
            self._diagnostics.last_sync_succeeded = False
            self._diagnostics.sync_error_count += 1
            self._diagnostics.last_sync_error = str(exc)
            _log.warning("ERP sync failed (%s); serving the last known orders and gauges", exc)
            await self._events.publish(ErpSyncFinished(time.perf_counter() - started, error=str(exc) or "unavailable"))
            await self._diagnostics.changed()
            return SnapshotChange()
        change = await self._sync(snapshot)
        await self._events.publish(ErpSyncFinished(time.perf_counter() - started))
        await self._diagnostics.changed()
        return change

    async def _sync(self, snapshot: ErpSnapshot) -> SnapshotChange:
        change = await self._store.apply_snapshot(snapshot)
        self._record_findings(snapshot.findings)
        if not change.is_empty:
            await self.load_from_store()
            _log.info(
                "ERP sync: %d released, %d changed, %d withdrawn orders, %d gauges changed",
                len(change.released),
                len(change.changed),
                len(change.withdrawn),
                len(change.equipment_changed),
            )
            await self._events.publish(MasterDataChanged(change))
        self._diagnostics.last_sync_time = datetime.now(UTC)
        self._diagnostics.last_sync_succeeded = True
        self._diagnostics.last_sync_error = ""
        return change
