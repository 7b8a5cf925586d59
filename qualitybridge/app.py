"""The composition root: builds the store, the ERP adapter, the services and the OPC UA face, and runs them.

Nothing else wires parts together; every part receives what it needs here (ports in, no globals).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from qualitybridge.adapters.rest_erp import RestErpClient
from qualitybridge.config import QualityBridgeConfig
from qualitybridge.domain.model import MeasurementResult, ProductionOrder, SnapshotChange
from qualitybridge.domain.records import ConfirmationRecord, SpcAlarmRecord
from qualitybridge.server.address_space.spc_alarm_events import SpcAlarmEvents
from qualitybridge.server.methods.linking import ShopFloorServices, link_shop_floor_methods
from qualitybridge.server.opcua_server import OpcUaFace, build_opcua_server
from qualitybridge.server.pki import PkiLayout
from qualitybridge.server.security.jobs import SecurityJobs, accounts_from_store, security_options
from qualitybridge.services.audit_trail import AuditTrail
from qualitybridge.services.confirmations import ConfirmationService
from qualitybridge.services.diagnostics import Diagnostics
from qualitybridge.services.erp_sync import ErpSync
from qualitybridge.services.master_data import MasterData
from qualitybridge.services.order_control import OrderControl
from qualitybridge.services.outbox_relay import OutboxRelay
from qualitybridge.services.reporting import ReportingService
from qualitybridge.services.spc_alarms import SpcAlarmService
from qualitybridge.store import Store, open_store
from qualitybridge.store.audit_log import AuditLogStore

__all__ = ["QualityBridgeApp", "accounts_from_store"]

_log = logging.getLogger(__name__)


@dataclass
class QualityBridgeApp:
    config: QualityBridgeConfig
    store: Store
    erp: RestErpClient
    master_data: MasterData
    diagnostics: Diagnostics
    reporting: ReportingService
    sync: ErpSync
    relay: OutboxRelay
    opcua: OpcUaFace
    security_jobs: SecurityJobs | None = None
    shop_floor: ShopFloorServices | None = None
    _scheduler: AsyncIOScheduler | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def create(cls, config: QualityBridgeConfig) -> QualityBridgeApp:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        store = await open_store(config.store_url, sqlite_synchronous=config.store.sqlite_synchronous)
        erp = RestErpClient(config.erp.base_url, timeout_seconds=config.erp.timeout_seconds)
        master_data = MasterData()
        diagnostics = Diagnostics()
        reporting = ReportingService(
            store, master_data, future_tolerance=timedelta(seconds=config.reporting.future_tolerance_seconds)
        )
        sync = ErpSync(erp, store, master_data, diagnostics)
        relay = OutboxRelay(
            store,
            erp,
            diagnostics,
            interval_seconds=config.erp.relay_interval_seconds,
            max_attempts=config.erp.relay_max_attempts,
            backoff_max_seconds=config.erp.relay_backoff_max_seconds,
        )
        # Audit entries are recorded from the first session on and written in batches off the report path.
        audit = AuditTrail(AuditLogStore(store.engine), flush_interval=config.audit.flush_interval_seconds)
        opcua = await build_opcua_server(
            config.server,
            PkiLayout(config.pki_dir),
            accounts_from_store(await store.users()),
            reporting,
            security_options=security_options(config, audit),
            limits=config.limits,
        )
        app = cls(config, store, erp, master_data, diagnostics, reporting, sync, relay, opcua)
        app.security_jobs = SecurityJobs(config, store, audit, opcua.security)
        app.shop_floor = ShopFloorServices(
            reporting=reporting,
            confirmations=ConfirmationService(
                store, master_data, tolerance_percent=config.reporting.over_confirmation_percent
            ),
            spc_alarms=SpcAlarmService(store, master_data),
            orders=OrderControl(store, master_data),
            max_batch_size=config.reporting.max_batch_size,
        )
        link_shop_floor_methods(opcua.server, opcua.namespace, app.shop_floor)
        return app

    async def start(self) -> None:
        await self.opcua.server.start()
        view = self.opcua.view
        await view.start()
        await self.sync.load_from_store()
        await view.show(self.master_data.orders, self.master_data.equipment)

        async def on_snapshot(_change: SnapshotChange) -> None:
            await view.show(self.master_data.orders, self.master_data.equipment)

        async def on_result(result: MeasurementResult) -> None:
            self.relay.wake()
            await view.show_result(result)

        self.sync.add_listener(on_snapshot)
        self.reporting.add_listener(on_result)
        await self._follow_shop_floor()
        self.diagnostics.add_listener(view.show_diagnostics)
        # One sync before the server calls itself ready, so a client connecting right after sees what the ERP
        # releases now, not only what the store knew. An ERP outage costs at most the ERP timeout here; the
        # server then serves the last known data and the scheduled syncs catch up.
        await self.sync.run_once()

        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.add_job(
            self.sync.run_once,
            "interval",
            seconds=self.config.erp.sync_interval_seconds,
            id="erp-sync",
            max_instances=1,
            coalesce=True,
        )
        if self.security_jobs is not None:
            await self.security_jobs.start(self._scheduler)
        self._scheduler.start()
        self._tasks.append(asyncio.create_task(self.relay.run_forever(), name="outbox-relay"))
        self.relay.wake()  # deliver what a previous run left in the outbox
        _log.info("QualityBridge serving %s", self.endpoint_url)

    async def _follow_shop_floor(self) -> None:
        """Confirmations and SPC alarms wake the relay; alarms become events; order states show in the view."""
        if self.shop_floor is None:
            return
        view = self.opcua.view
        spc_events = SpcAlarmEvents(self.opcua.server, self.opcua.namespace)
        await spc_events.start()

        async def on_confirmation(_record: ConfirmationRecord) -> None:
            self.relay.wake()

        async def on_spc_alarm(record: SpcAlarmRecord) -> None:
            self.relay.wake()
            await spc_events.raise_alarm(record)

        async def on_order_state(_order: ProductionOrder) -> None:
            await view.show(self.master_data.orders, self.master_data.equipment)

        self.shop_floor.confirmations.add_listener(on_confirmation)
        self.shop_floor.spc_alarms.add_listener(on_spc_alarm)
        self.shop_floor.orders.add_listener(on_order_state)

    async def reload_users(self) -> None:
        """Take user changes made in the store into effect now (the security-refresh job does it every few s)."""
        await self.opcua.security.apply_accounts(accounts_from_store(await self.store.users()))

    def request_stop(self) -> None:
        self._stopped.set()

    async def wait_until_stopped(self) -> None:
        await self._stopped.wait()

    @property
    def endpoint_url(self) -> str:
        return self.config.server.endpoint_url()

    async def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.opcua.server.stop()
        if self.security_jobs is not None:
            await self.security_jobs.stop()
        await self.erp.aclose()
        await self.store.aclose()
