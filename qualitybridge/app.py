"""The composition root: builds the store, the ERP adapter, the services, the event bus and the OPC UA face.

Nothing else wires parts together; every part receives what it needs here (ports in, no globals). A caller may
hand in any of the slots — store, ERP client, extra publishers, clock — and only the empty ones are filled from the
configuration, so a test can run the whole bridge against fakes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from qualitybridge.adapters.factory import erp_client_for
from qualitybridge.config import PublishSettings, QualityBridgeConfig, SpcSettingsSection
from qualitybridge.domain.build import BuildIdentity, installed_build
from qualitybridge.domain.events import (
    ConfirmationAccepted,
    DomainEvent,
    KpiReportQueued,
    MeasurementAccepted,
    SpcAlarmRaised,
)
from qualitybridge.domain.mapping import MappingKind
from qualitybridge.domain.model import OrderState
from qualitybridge.domain.ports import ErpClient, Publisher
from qualitybridge.domain.publication import PublicationScope
from qualitybridge.domain.spc import SpcOverride, SpcPolicy
from qualitybridge.relay_process import RelayProcess, outbox_relay_for
from qualitybridge.server.address_space.history import install_store_history
from qualitybridge.server.address_space.publisher import OpcUaPublisher
from qualitybridge.server.methods.linking import ShopFloorServices, link_shop_floor_methods
from qualitybridge.server.opcua_server import OpcUaFace, build_opcua_server
from qualitybridge.server.operations import Check, OperationsEndpoint, Readiness
from qualitybridge.server.operations.status_page import render_status_page
from qualitybridge.server.pki import PkiLayout
from qualitybridge.server.security.jobs import SecurityJobs, accounts_from_store, security_options
from qualitybridge.services.audit_trail import AuditTrail
from qualitybridge.services.calibration_reminders import CalibrationReminders
from qualitybridge.services.confirmations import ConfirmationService
from qualitybridge.services.diagnostics import Diagnostics
from qualitybridge.services.erp_sync import ErpSync
from qualitybridge.services.event_bus import EventBus
from qualitybridge.services.kpis import KpiService
from qualitybridge.services.mapping import MappingGate
from qualitybridge.services.master_data import MasterData
from qualitybridge.services.metrics import OperationsMetrics
from qualitybridge.services.order_control import OrderControl
from qualitybridge.services.outbox_relay import OutboxRelay
from qualitybridge.services.reporting import ReportingService
from qualitybridge.services.spc_alarms import SpcAlarmService
from qualitybridge.services.spc_monitor import SpcMonitor
from qualitybridge.store import Store, open_store_waiting, store_location
from qualitybridge.store.audit_log import AuditLogStore

__all__ = ["QualityBridgeApp", "accounts_from_store", "publication_scope", "spc_policy"]

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


def publication_scope(settings: PublishSettings) -> PublicationScope:
    """Which orders the address space publishes, from the `[publish]` section."""
    return PublicationScope(
        work_centres=frozenset(settings.work_centres),
        states=frozenset(OrderState[name] for name in settings.states),
        planned_days_back=settings.planned_days_back,
        planned_days_ahead=settings.planned_days_ahead,
    )


def _listening(opcua: OpcUaFace) -> bool:
    """Whether the OPC UA listener accepts connections (asyncua keeps its asyncio server as bserver._server)."""
    listener = getattr(opcua.server.bserver, "_server", None)
    return listener is not None and bool(listener.is_serving())


@dataclass
class _Built:
    """The parts the operations endpoint reports on, filled in as `create` builds them (it starts before them)."""

    store: Store | None = None
    opcua: OpcUaFace | None = None


_NO_COUNTS = {"Sessions": 0, "Subscriptions": 0, "Monitored items": 0}


def _live_counts(built: _Built) -> dict[str, int]:
    if built.opcua is None:
        return dict(_NO_COUNTS)
    subscriptions = list(built.opcua.server.iserver.subscription_service.subscriptions.values())
    return {
        "Sessions": len(built.opcua.security.hooks.open_sessions()),
        "Subscriptions": len(subscriptions),
        # asyncua 2.1 has no public count of monitored items (server/limits reads the same dict).
        "Monitored items": sum(len(s.monitored_item_srv._monitored_items) for s in subscriptions),
    }


def _live_count(built: _Built, label: str) -> Callable[[], float]:
    return lambda: _live_counts(built)[label]


def _operations_endpoint(
    config: QualityBridgeConfig, built: _Built, metrics: OperationsMetrics, build: BuildIdentity
) -> OperationsEndpoint:
    settings = config.operations
    for name, label in (
        ("qualitybridge_opcua_sessions", "Sessions"),
        ("qualitybridge_opcua_subscriptions", "Subscriptions"),
        ("qualitybridge_opcua_monitored_items", "Monitored items"),
    ):
        metrics.gauge(name, f"OPC UA {label.lower()} open now", _live_count(built, label))

    async def store_ping() -> None:
        if built.store is None:
            raise RuntimeError("not open yet (waiting for it at start)")
        await built.store.ping()

    readiness = Readiness(
        store_ping=store_ping,
        store_name=store_location(config.store_url),
        endpoint_open=lambda: built.opcua is not None and _listening(built.opcua),
        endpoint_url=config.server.endpoint_url(),
        sync_age=metrics.sync_age_seconds,
        max_sync_age=settings.max_sync_age_seconds,
        store_timeout=settings.store_timeout_seconds,
    )

    async def page(checks: list[Check]) -> str:
        return render_status_page(
            build, config.server.endpoint_url(), checks, metrics.health, lambda: _live_counts(built)
        )

    return OperationsEndpoint(
        settings.host, settings.port, readiness=readiness, registry=metrics.registry, status_page=page
    )


class _StoppableScheduler(AsyncIOScheduler):  # type: ignore[misc]
    """apscheduler cancels running jobs at shutdown and logs each CancelledError with a traceback; a job cancelled
    because the server stops has nothing to report."""

    def add_job(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if asyncio.iscoroutinefunction(func):
            job = func

            @functools.wraps(job)
            async def until_stopped(*job_args: Any, **job_kwargs: Any) -> Any:
                try:
                    return await job(*job_args, **job_kwargs)
                except asyncio.CancelledError:
                    return None

            func = until_stopped
        return super().add_job(func, *args, **kwargs)


@dataclass
class _RelayWaker:
    """What a burst of postings owed to the ERP wakes: this process's relay, or the relay's own process."""

    wake: Callable[[], None]


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
    metrics: OperationsMetrics
    spc: SpcMonitor | None = None
    kpis: KpiService | None = None
    calibration_reminders: CalibrationReminders | None = None
    operations: OperationsEndpoint | None = None
    relay_process: RelayProcess | None = None  # the relay's own process (`serve`); None: the relay runs here
    _relay_waker: _RelayWaker = field(default_factory=lambda: _RelayWaker(lambda: None))  # set by `create`
    _scheduler: _StoppableScheduler | None = None
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
        relay_process: RelayProcess | None = None,
    ) -> QualityBridgeApp:
        """Build every part; the slots given are used as they are, the others come from `config`. With
        `relay_process` (forked by `serve`), the relay runs there once started; the app stops it with itself.

        With [operations] enabled, the endpoint is served from here on: /healthz answers while the store is waited
        for and the server is built, and /readyz says what is still missing.
        """
        config.data_dir.mkdir(parents=True, exist_ok=True)
        build = installed_build()
        metrics = OperationsMetrics(build)  # ages against the wall clock, as ErpSync stamps its syncs
        built = _Built(store=store)
        operations = _operations_endpoint(config, built, metrics, build) if config.operations.enabled else None
        if operations is not None:
            await operations.start()
        given_store = store
        try:
            app = await cls._build(config, built, metrics, operations, erp, publishers, clock)
            app.relay_process = relay_process
            return app
        except BaseException:
            if operations is not None:
                await operations.stop()
            if given_store is None and built.store is not None:
                # A store opened here is closed here (a start stopped half-way: SIGTERM, a bad catalogue), before
                # the event loop is: aiosqlite's thread must not answer a statement to a closed loop.
                await built.store.aclose()
            raise

    @classmethod
    async def _build(
        cls,
        config: QualityBridgeConfig,
        built: _Built,
        metrics: OperationsMetrics,
        operations: OperationsEndpoint | None,
        erp: ErpClient | None,
        publishers: Sequence[Publisher],
        clock: Callable[[], datetime],
    ) -> QualityBridgeApp:
        store = built.store
        if store is None:
            store = await open_store_waiting(
                config.store_url,
                sqlite_synchronous=config.store.sqlite_synchronous,
                wait_seconds=config.store.connect_wait_seconds,
            )
        store.writes.window_seconds = config.store.group_commit_window_ms / 1000
        if erp is None:
            erp = erp_client_for(config.erp, config.qms)
        built.store = store
        events = EventBus()
        master_data = MasterData()
        diagnostics = Diagnostics(events=events)
        reporting = ReportingService(
            store,
            master_data,
            events=events,
            future_tolerance=timedelta(seconds=config.reporting.future_tolerance_seconds),
            measured_at_margin=timedelta(days=config.reporting.measured_at_margin_days),
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
        required = config.master_data.required_mappings
        mapping = MappingGate(store, [MappingKind(kind) for kind in required]) if required else None
        sync = ErpSync(erp, store, master_data, diagnostics, events=events, mapping=mapping)
        relay = outbox_relay_for(config, store, erp, diagnostics, events, clock)
        # Audit entries are recorded from the first session on and written in batches off the report path.
        audit = AuditTrail(AuditLogStore(store.engine), flush_interval=config.audit.flush_interval_seconds)
        opcua = await build_opcua_server(
            config.server,
            PkiLayout(config.pki_dir),
            accounts_from_store(await store.users()),
            security_options=security_options(config, audit),
            limits=config.limits,
            build=metrics.build,
        )
        built.opcua = opcua
        link_shop_floor_methods(opcua.server, opcua.namespace, shop_floor, events)
        install_store_history(
            opcua.server, opcua.namespace.index, store, max_values=config.history.max_values_per_answer
        )
        publisher = OpcUaPublisher(
            opcua.server, opcua.namespace, master_data, diagnostics, scope=publication_scope(config.publish)
        )

        # The one event path: whatever is stored for the ERP wakes the relay (here, or in its own process once that
        # runs); publishers show every event. Once per burst: a batch of a thousand measurements wakes it once.
        relay_waker = _RelayWaker(relay.wake)

        async def wake_relay(_events: Sequence[DomainEvent]) -> None:
            relay_waker.wake()

        for owed_to_erp in (MeasurementAccepted, ConfirmationAccepted, SpcAlarmRaised, KpiReportQueued):
            events.subscribe_burst(owed_to_erp, wake_relay)
        shown_by: tuple[Publisher, ...] = (publisher, metrics, *publishers)
        for extra in shown_by:
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
            calibration_reminders=CalibrationReminders(master_data, events),
            metrics=metrics,
            operations=operations,
            _relay_waker=relay_waker,
        )

    @property
    def reporting(self) -> ReportingService:
        return self.shop_floor.reporting

    async def start(self) -> None:
        # The endpoint opens first; clients' method calls (reports) wait until the stored master data is loaded and
        # the SPC charts rebuilt, so that a report for an order not loaded yet is not refused as unknown meanwhile.
        iserver = self.opcua.server.limited_iserver
        iserver.hold_calls()
        try:
            await self.opcua.server.start()
            await self.publisher.start()
            await self.sync.load_from_store()
            await self.publisher.show_master_data()
            if self.spc is not None:
                await self.spc.rebuild()  # charts, limits and the last violated rule as before the restart
        finally:
            iserver.release_calls()
        # One sync before the server calls itself ready, so a client connecting right after sees what the ERP
        # releases now, not only what the store knew. An ERP outage costs at most the ERP timeout here; the
        # server then serves the last known data and the scheduled syncs catch up.
        await self.sync.run_once()

        self._scheduler = _StoppableScheduler(timezone=UTC)
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
        reminder_at = self.config.quality_events.calibration_reminder_at
        if reminder_at and self.calibration_reminders is not None:
            hour, minute = (int(part) for part in reminder_at.split(":"))
            self._scheduler.add_job(
                self.calibration_reminders.remind, "cron", hour=hour, minute=minute, id="calibration-reminder"
            )
        self._scheduler.start()
        if self.relay_process is not None:
            await self.relay_process.start(self.events, self.diagnostics, on_lost=self._relay_here)
            self._relay_waker.wake = self.relay_process.wake
        else:
            self._relay_here()
        _log.info("QualityBridge serving %s", self.endpoint_url)

    def _relay_here(self) -> None:
        """Run the relay in this process: without a process of its own, or once that ended."""
        self._relay_waker.wake = self.relay.wake
        self._tasks.append(asyncio.create_task(self.relay.run_forever(), name="outbox-relay"))
        self.relay.wake()  # deliver what a previous run (or the lost process) left in the outbox

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

    @property
    def operations_url(self) -> str | None:
        return self.operations.url if self.operations is not None else None

    async def stop(self) -> None:
        """Stop whatever is running; safe after a start that was interrupted at any point."""
        if self.operations is not None:
            await self._stop_step("operations endpoint", self.operations.stop())
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        # The relay ends its round and leaves; cancelling it outright can be lost in asyncio.wait_for (Python
        # 3.11) when its wake-up comes at the same moment, and the stop would wait forever.
        self.relay.stop_soon()
        if self.relay_process is not None:
            await self._stop_step("outbox relay process", self.relay_process.stop())
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=5)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)
        if self.opcua.server.bserver is not None:
            await self._stop_step("OPC UA server", self.opcua.server.stop())
        await self._stop_step("security jobs", self.security_jobs.stop())
        await self._stop_step("ERP client", self.erp.aclose())
        await self._stop_step("store", self.store.aclose())

    @staticmethod
    async def _stop_step(what: str, step: Awaitable[None]) -> None:
        try:
            await step
        except Exception as exc:  # stopping goes on: the other parts still need to close
            _log.warning("stopping the %s failed: %s", what, exc)
