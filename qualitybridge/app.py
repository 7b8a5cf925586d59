"""The composition root: builds the store, the ERP adapter, the services, the event bus and the OPC UA face.

Nothing else wires parts together; every part receives what it needs here (ports in, no globals). A caller may
hand in any of the slots — store, ERP client, extra publishers, clock — and only the empty ones are filled from the
configuration, so a test can run the whole bridge against fakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from qualitybridge.adapters.factory import erp_client_for
from qualitybridge.config import QualityBridgeConfig, SpcSettingsSection
from qualitybridge.domain.events import (
    ConfirmationAccepted,
    DomainEvent,
    KpiReportQueued,
    MeasurementAccepted,
    SpcAlarmRaised,
)
from qualitybridge.domain.ports import ErpClient, Publisher
from qualitybridge.domain.spc import SpcOverride, SpcPolicy
from qualitybridge.server.address_space.history import install_store_history
from qualitybridge.server.address_space.publisher import OpcUaPublisher
from qualitybridge.server.methods.linking import ShopFloorServices, link_shop_floor_methods
from qualitybridge.server.opcua_server import OpcUaFace, build_opcua_server
from qualitybridge.server.pki import PkiLayout
from qualitybridge.server.security.jobs import SecurityJobs, accounts_from_store, security_options
from qualitybridge.services.audit_trail import AuditTrail
from qualitybridge.services.confirmations import ConfirmationService
from qualitybridge.services.diagnostics import Diagnostics
from qualitybridge.services.erp_sync import ErpSync
from qualitybridge.services.event_bus import EventBus
from qualitybridge.services.kpis import KpiService
from qualitybridge.services.master_data import MasterData
from qualitybridge.services.order_control import OrderControl
from qualitybridge.services.outbox_relay import OutboxRelay
from qualitybridge.services.reporting import ReportingService
from qualitybridge.services.spc_alarms import SpcAlarmService
from qualitybridge.services.spc_monitor import SpcMonitor
from qualitybridge.store import Store, open_store
from qualitybridge.store.audit_log import AuditLogStore

__all__ = ["QualityBridgeApp", "accounts_from_store", "spc_policy"]

_log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def spc_policy(settings: SpcSettingsSection) -> SpcPolicy:
    """The SPC engine's policy from the `[spc]` section (the services take settings as arguments, not config)."""
    return SpcPolicy(
        rules_by_classification={
            "critical": frozenset(settings.rules.critical),
            "major": frozenset(settings.rules.major),
            "minor": frozenset(settings.rules.minor),
        },
        baseline_subgroups=settings.baseline_subgroups,
        capability_window=settings.capability_window,
        severity_by_classification=settings.severity.model_dump(),
        overrides={
            characteristic_id: SpcOverride(
                rules=None if own.rules is None else frozenset(own.rules),
                baseline_subgroups=own.baseline_subgroups,
            )
            for characteristic_id, own in settings.characteristics.items()
        },
    )


@dataclass
class QualityBridgeApp:
    config: QualityBridgeConfig
    store: Store
    erp: ErpClient
    events: EventBus
    master_data: MasterData
    diagnostics: Diagnostics
    shop_floor: ShopFloorServices
    sync: ErpSync
    relay: OutboxRelay
    opcua: OpcUaFace
    publisher: OpcUaPublisher
    security_jobs: SecurityJobs
    spc: SpcMonitor | None = None
    kpis: KpiService | None = None
    _scheduler: AsyncIOScheduler | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def create(
        cls,
        config: QualityBridgeConfig,
        *,
        store: Store | None = None,
        erp: ErpClient | None = None,
        publishers: Sequence[Publisher] = (),
        clock: Callable[[], datetime] = _utc_now,
    ) -> QualityBridgeApp:
        """Build every part; the slots given are used as they are, the others come from `config`."""
        config.data_dir.mkdir(parents=True, exist_ok=True)
        if store is None:
            store = await open_store(config.store_url, sqlite_synchronous=config.store.sqlite_synchronous)
        if erp is None:
            erp = erp_client_for(config.erp)
        events = EventBus()
        master_data = MasterData()
        diagnostics = Diagnostics(events=events)
        reporting = ReportingService(
            store,
            master_data,
            events=events,
            future_tolerance=timedelta(seconds=config.reporting.future_tolerance_seconds),
            clock=clock,
        )
        shop_floor = ShopFloorServices(
            reporting=reporting,
            confirmations=ConfirmationService(
                store,
                master_data,
                events=events,
                tolerance_percent=config.reporting.over_confirmation_percent,
                clock=clock,
            ),
            spc_alarms=SpcAlarmService(store, master_data, events=events, clock=clock),
            orders=OrderControl(store, master_data, events=events),
            max_batch_size=config.reporting.max_batch_size,
        )
        sync = ErpSync(erp, store, master_data, diagnostics, events=events)
        relay = OutboxRelay(
            store,
            erp,
            diagnostics,
            interval_seconds=config.erp.relay_interval_seconds,
            max_attempts=config.erp.relay_max_attempts,
            backoff_max_seconds=config.erp.relay_backoff_max_seconds,
            clock=clock,
        )
        # Audit entries are recorded from the first session on and written in batches off the report path.
        audit = AuditTrail(AuditLogStore(store.engine), flush_interval=config.audit.flush_interval_seconds)
        opcua = await build_opcua_server(
            config.server,
            PkiLayout(config.pki_dir),
            accounts_from_store(await store.users()),
            security_options=security_options(config, audit),
            limits=config.limits,
        )
        link_shop_floor_methods(opcua.server, opcua.namespace, shop_floor)
        install_store_history(
            opcua.server, opcua.namespace.index, store, max_values=config.history.max_values_per_answer
        )
        publisher = OpcUaPublisher(opcua.server, opcua.namespace, master_data)

        # The one event path: whatever is stored for the ERP wakes the relay; publishers show every event.
        async def wake_relay(_event: DomainEvent) -> None:
            relay.wake()

        for owed_to_erp in (MeasurementAccepted, ConfirmationAccepted, SpcAlarmRaised, KpiReportQueued):
            events.subscribe(owed_to_erp, wake_relay)
        for extra in (publisher, *publishers):
            events.add_publisher(extra)
        # SPC judges every accepted measurement; its alarms are SpcAlarmRaised events, so they wake the relay too.
        spc: SpcMonitor | None = None
        if config.spc.enabled:
            spc = SpcMonitor(
                store,
                master_data,
                spc_policy(config.spc),
                events=events,
                catch_up=timedelta(minutes=config.spc.catch_up_minutes),
                clock=clock,
            )
            spc.subscribe()
        kpis: KpiService | None = None
        if config.kpis.enabled:
            kpis = KpiService(store, events=events, clock=clock)
            kpis.subscribe()  # an order's KPIs when it ends
        return cls(
            config=config,
            store=store,
            erp=erp,
            events=events,
            master_data=master_data,
            diagnostics=diagnostics,
            shop_floor=shop_floor,
            sync=sync,
            relay=relay,
            opcua=opcua,
            publisher=publisher,
            security_jobs=SecurityJobs(config, store, audit, opcua.security),
            spc=spc,
            kpis=kpis,
        )

    @property
    def reporting(self) -> ReportingService:
        return self.shop_floor.reporting

    async def start(self) -> None:
        await self.opcua.server.start()
        await self.publisher.start()
        await self.sync.load_from_store()
        await self.publisher.show_master_data()
        if self.spc is not None:
            await self.spc.rebuild()  # charts, limits and the last violated rule as before the restart
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
        await self.security_jobs.start(self._scheduler)
        if self.config.history.retention_days:
            self._scheduler.add_job(
                self.purge_measurements,
                "interval",
                hours=self.config.history.purge_interval_hours,
                id="measurement-purge",
                max_instances=1,
                coalesce=True,
            )
        if self.kpis is not None:
            hour, minute = (int(part) for part in self.config.kpis.daily_at.split(":"))
            self._scheduler.add_job(
                self.kpis.post_finished_days, "cron", hour=hour, minute=minute, id="kpi-daily", coalesce=True
            )
            try:
                await self.kpis.post_finished_days()  # catch up a daily run missed while the server was down
            except Exception:  # the KPIs must not keep the server from serving; the next daily run retries
                _log.exception("could not post yesterday's KPIs at start")
        self._scheduler.start()
        self._tasks.append(asyncio.create_task(self.relay.run_forever(), name="outbox-relay"))
        self.relay.wake()  # deliver what a previous run left in the outbox
        _log.info("QualityBridge serving %s", self.endpoint_url)

    async def purge_measurements(self) -> int:
        """Remove measurements past `[history] retention_days` that the ERP has (the outbox owes nothing for them)."""
        cutoff = _utc_now() - timedelta(days=self.config.history.retention_days)
        removed = await self.store.purge_measurements(cutoff)
        if removed:
            _log.info("purged %d measurements taken before %s", removed, cutoff.isoformat())
        return removed

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
        await self.security_jobs.stop()
        await self.erp.aclose()
        await self.store.aclose()
