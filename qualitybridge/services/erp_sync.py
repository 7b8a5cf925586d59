"""ERP → store → views: one sync round fetches what the ERP releases and makes the store match it.

A source that implements `MasterDataSource` is synced as a delta from the watermark the store keeps for it; a
source without a watermark (and a round after `request_full_resync`) is fetched whole. A source with only the
older `ErpClient.fetch_snapshot` is synced by snapshot, as before.

With mapping tables in force (`MappingGate`), what the store holds passes the gate on its way into memory: every
round, even one whose fetch failed, takes the tables as they are now, so a mapping added shows the orders that
waited for it within one sync interval.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from qualitybridge.domain.errors import UnknownReference
from qualitybridge.domain.events import ErpSyncFinished, MasterDataChanged, PlanVersionChanged
from qualitybridge.domain.model import MasterDataChanges, ProductionOrder, SnapshotChange, SyncFinding
from qualitybridge.domain.ports import ErpClient, ErpRejected, ErpUnavailable, MasterDataSource
from qualitybridge.services.diagnostics import Diagnostics
from qualitybridge.services.event_bus import EventBus
from qualitybridge.services.mapping import MappingGate
from qualitybridge.services.master_data import MasterData
from qualitybridge.store import Store

__all__ = ["ErpSync"]

_log = logging.getLogger(__name__)
_READ_BACK_SLICE = 50


class ErpSync:
    def __init__(
        self,
        erp: ErpClient | MasterDataSource,
        store: Store,
        master_data: MasterData,
        diagnostics: Diagnostics,
        *,
        events: EventBus | None = None,
        mapping: MappingGate | None = None,
    ) -> None:
        self._erp = erp
        self._store = store
        self._master = master_data
        self._diagnostics = diagnostics
        self._events = events or EventBus()
        self._gate = mapping
        # A restart resumes the delta from the stored watermark; only a source never synced is fetched whole.
        self._full_resync = False
        self._erp_findings: tuple[SyncFinding, ...] = ()
        self._findings_loaded = False
        self._logged: set[SyncFinding] = set()

    def request_full_resync(self) -> None:
        """Make the next round fetch everything (e.g. after the ERP restored a backup)."""
        self._full_resync = True

    async def _fetch_and_apply(self) -> tuple[SnapshotChange, bool, tuple[SyncFinding, ...]]:
        """Fetch and store; answers the change, whether it was a delta (memory then takes over only that), and the
        findings that stand after it."""
        erp = self._erp
        if not isinstance(erp, MasterDataSource):
            snapshot = await erp.fetch_snapshot()
            return await self._store.apply_snapshot(snapshot), False, snapshot.findings
        since = None if self._full_resync else await self._store.watermark(erp.source_id)
        changes = await erp.fetch_all() if since is None else await erp.fetch_changes(since)
        await self._load_findings()
        standing = self._standing_findings(changes)
        change = await self._store.apply_changes(changes, source=erp.source_id, findings=standing)
        self._full_resync = False
        return change, not changes.full, standing

    def _standing_findings(self, changes: MasterDataChanges) -> tuple[SyncFinding, ...]:
        """A full fetch reports every refusal; a delta only those of the records it brought, so the earlier
        findings of records it did not touch still stand."""
        if changes.full:
            return changes.findings
        touched = {f"order {order.order_no}" for order in changes.orders}
        touched |= {f"order {order_no}" for order_no in (*changes.withdrawn, *changes.refused_order_numbers)}
        touched |= {f"equipment {gauge.equipment_id}" for gauge in changes.equipment}
        kept = [finding for finding in self._erp_findings if finding.key not in touched]
        return (*kept, *changes.findings)

    async def load_from_store(self) -> None:
        """Serve what the store knows before the ERP answers: a plant keeps working through an ERP outage.

        A stored order the domain cannot read is skipped and reported as a finding, never fatal."""
        started = time.perf_counter()
        orders, history = await self._store.released_orders(), await self._store.plan_history()
        if self._gate is not None:
            admitted = await self._gate.replace(orders, history)
            orders, history = list(admitted.show), list(admitted.history)
            self._show_gaps()
        self._master.replace(orders, await self._store.equipment(), history)
        await self._load_findings()
        self._record_findings(self._erp_findings)
        _log.info("read %d stored orders in %.1f s", len(orders), time.perf_counter() - started)

    async def _load_findings(self) -> None:
        """A delta does not repeat what an earlier sync refused: after a restart those findings come from the
        store, kept with the watermark."""
        if not self._findings_loaded and isinstance(self._erp, MasterDataSource):
            self._erp_findings = await self._store.source_findings(self._erp.source_id)
        self._findings_loaded = True

    def _record_findings(self, erp_findings: tuple[SyncFinding, ...]) -> None:
        """Diagnostics lists what the last sync refused; each finding is logged once, not once per sync."""
        self._erp_findings = erp_findings
        findings = (*erp_findings, *self._store.unreadable_orders)
        for finding in findings:
            if finding not in self._logged:
                _log.warning("ERP sync: %s refused: %s; every other record syncs", finding.key, finding.reason)
        self._logged = set(findings)
        self._diagnostics.sync_findings = findings

    def _plan_version_changes(self, change: SnapshotChange) -> list[PlanVersionChanged]:
        """One event per characteristic the sync gave a new plan version (a new routing version alone raises none)."""
        events: list[PlanVersionChanged] = []
        for superseded in change.superseded:
            try:
                current = self._master.find_characteristic(
                    superseded.order_no, superseded.operation_no, superseded.characteristic_id
                )
            except UnknownReference:
                continue  # not released in memory (e.g. a stored order the domain cannot read)
            if current.plan_version == superseded.characteristic.plan_version:
                continue
            events.append(
                PlanVersionChanged(
                    order_no=superseded.order_no,
                    operation_no=superseded.operation_no,
                    previous=superseded.characteristic,
                    current=current,
                    changed_at=superseded.superseded_at,
                )
            )
        return events

    async def run_once(self) -> SnapshotChange:
        started = time.perf_counter()
        try:
            change, delta, findings = await self._fetch_and_apply()
        except (ErpUnavailable, ErpRejected) as exc:  # a refused query (4xx) is as much a failed sync as an outage
            self._diagnostics.last_sync_succeeded = False
            self._diagnostics.sync_error_count += 1
            self._diagnostics.last_sync_error = str(exc)
            _log.warning("ERP sync failed (%s); serving the last known orders and gauges", exc)
            # The mapping tables are local: a mapping added during an ERP outage still shows its orders.
            shown = await self._take_over(SnapshotChange(), delta=True)
            if not shown.is_empty:
                await self._events.publish(MasterDataChanged(shown))
            await self._events.publish(ErpSyncFinished(time.perf_counter() - started, error=str(exc) or "unavailable"))
            await self._diagnostics.changed()
            return SnapshotChange()
        self._record_findings(findings)
        change = await self._take_over(change, delta=delta)
        if not change.is_empty:
            _log.info(
                "ERP sync: %d released, %d changed, %d withdrawn orders, %d gauges changed",
                len(change.released),
                len(change.changed),
                len(change.withdrawn),
                len(change.equipment_changed),
            )
            await self._events.publish(MasterDataChanged(change))
            for plan_change in self._plan_version_changes(change):
                _log.info(
                    "ERP sync: plan version of %s/%s/%s changed %s -> %s",
                    plan_change.order_no,
                    plan_change.operation_no,
                    plan_change.current.characteristic_id,
                    plan_change.previous.plan_version,
                    plan_change.current.plan_version,
                )
                await self._events.publish(plan_change)
        self._diagnostics.last_sync_time = datetime.now(UTC)
        self._diagnostics.last_sync_succeeded = True
        self._diagnostics.last_sync_error = ""
        await self._events.publish(ErpSyncFinished(time.perf_counter() - started))
        await self._diagnostics.changed()
        return change

    async def _orders_named(self, named: tuple[str, ...]) -> list[ProductionOrder]:
        """Read back in slices: reading hundreds of orders in one go held the event loop for a second on a busy
        machine, and OPC UA clients' keep-alive probes (1 s) gave up meanwhile."""
        orders: list[ProductionOrder] = []
        for start in range(0, len(named), _READ_BACK_SLICE):
            orders.extend(await self._store.released_orders_named(named[start : start + _READ_BACK_SLICE]))
        return orders

    async def _take_over(self, change: SnapshotChange, *, delta: bool) -> SnapshotChange:
        """Bring memory up to what the store now holds; answers what changed on the shop floor's side (with a gate,
        orders held back are not in it, orders a new mapping releases are)."""
        if self._gate is None:
            if not change.is_empty and delta:
                named = (*change.released, *change.changed)
                self._master.update(
                    await self._orders_named(named),
                    change.withdrawn,
                    await self._store.equipment_named(change.equipment_changed),
                    await self._store.plan_history(named),
                )
            elif not change.is_empty:
                await self.load_from_store()
            return change
        before = {order.order_no: order for order in self._master.orders}
        if (delta or change.is_empty) and not await self._gate.tables_changed():
            named = (*change.released, *change.changed)
            outcome = await self._gate.update(
                await self._orders_named(named) if named else [],
                change.withdrawn,
                await self._store.plan_history(named) if named else [],
            )
            equipment = await self._store.equipment_named(change.equipment_changed) if change.equipment_changed else []
            self._master.update(outcome.show, outcome.hide, equipment, outcome.history)
            self._show_gaps()
        else:  # a full fetch that changed something, or new tables: every stored order passes the gate again
            await self.load_from_store()
        after = {order.order_no: order for order in self._master.orders}
        return SnapshotChange(
            released=tuple(no for no in after if no not in before),
            changed=tuple(no for no, order in after.items() if no in before and before[no] != order),
            withdrawn=tuple(no for no in before if no not in after),
            equipment_changed=change.equipment_changed,
            superseded=change.superseded,  # of an order held back: skipped, it is not in memory to compare with
        )

    def _show_gaps(self) -> None:
        if self._gate is not None:
            self._diagnostics.master_data_gaps = tuple(gap.line for gap in self._gate.gaps)
            self._diagnostics.held_back_orders = len(self._gate.held_back)
