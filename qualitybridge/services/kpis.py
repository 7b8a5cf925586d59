"""Computes the quality KPIs (qualitybridge.domain.kpis) from the store and queues them for the QMS: each UTC day
once it is over, and each order when it ends. The period's idempotency key makes every period go out exactly once,
however often it is computed (a rerun, a restart catching up, a second EndOrder)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol

from qualitybridge.domain.events import KpiReportQueued, OrderStateChanged
from qualitybridge.domain.kpis import KpiFigures, KpiPeriod, KpiReport, KpiScope, day_key, kpi_figures
from qualitybridge.domain.model import OrderState
from qualitybridge.services.event_bus import EventBus
from qualitybridge.store.quality_figures import KpiInputs

__all__ = ["KpiService", "KpiSource"]

_log = logging.getLogger(__name__)
_ORDER_SCOPES: tuple[KpiScope, ...] = ("order",)


class KpiSource(Protocol):
    async def kpi_inputs(
        self, *, since: datetime | None = None, until: datetime | None = None, order_no: str | None = None
    ) -> KpiInputs: ...

    async def queue_kpi_report(self, report: KpiReport) -> bool: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


class KpiService:
    def __init__(self, store: KpiSource, *, events: EventBus, clock: Callable[[], datetime] = _utc_now) -> None:
        self._store = store
        self._events = events
        self._clock = clock

    async def report_for_day(self, day: date) -> KpiReport:
        since = datetime.combine(day, time(), tzinfo=UTC)
        confirmations, measurements = await self._store.kpi_inputs(since=since, until=since + timedelta(days=1))
        return self._report("day", day_key(day), kpi_figures(confirmations, measurements))

    async def report_for_order(self, order_no: str) -> KpiReport:
        confirmations, measurements = await self._store.kpi_inputs(order_no=order_no)
        return self._report("order", order_no, kpi_figures(confirmations, measurements, _ORDER_SCOPES))

    def _report(self, period: KpiPeriod, key: str, figures: tuple[KpiFigures, ...]) -> KpiReport:
        return KpiReport(period=period, period_key=key, computed_at=self._clock(), figures=figures)

    async def post_day(self, day: date) -> bool:
        """Queue the day's KPIs unless they were queued before; True if queued now."""
        return await self._queue(await self.report_for_day(day))

    async def post_order(self, order_no: str) -> bool:
        return await self._queue(await self.report_for_order(order_no))

    async def post_finished_days(self) -> bool:
        """The scheduled job: yesterday's KPIs (UTC), once. Also run at start, to catch up a missed run."""
        return await self.post_day(self._clock().date() - timedelta(days=1))

    async def _queue(self, report: KpiReport) -> bool:
        if not report.figures:
            return False  # nothing confirmed or measured in the period: no posting
        queued = await self._store.queue_kpi_report(report)
        if queued:
            _log.info(
                "KPIs of %s %s queued for the QMS (%d figures)", report.period, report.period_key, len(report.figures)
            )
            await self._events.publish(KpiReportQueued(report))
        return queued

    def subscribe(self) -> None:
        """Post an order's KPIs when it ends, before EndOrder answers: the posting is part of what EndOrder stored,
        so a caller that looks at the outbox right after sees it (one indexed query of the order's rows)."""

        async def on_order_state(event: OrderStateChanged) -> None:
            if event.order.state is OrderState.ENDED:
                await self.post_order(event.order.order_no)

        self._events.subscribe(OrderStateChanged, on_order_state)
