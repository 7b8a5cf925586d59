"""Operations metrics: a publisher on the event bus that counts what the bridge did, in Prometheus terms.

Everything here is fed by domain events (MethodCallAnswered, ErpSyncFinished, PostingAttempted,
DiagnosticsChanged); no service is asked for figures. Figures that only the OPC UA server knows (sessions,
subscriptions, monitored items) are read when scraped, through functions the composition root hands in.

The same publisher keeps a small `HealthSnapshot` for the readiness check and the status page, so both say what
/metrics says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from qualitybridge.domain.build import BuildIdentity
from qualitybridge.domain.events import (
    DiagnosticsChanged,
    DomainEvent,
    ErpSyncFinished,
    MethodCallAnswered,
    PostingAttempted,
)

__all__ = ["HealthSnapshot", "OperationsMetrics"]

# Report calls take milliseconds on a healthy bridge; the upper buckets catch a store that stalls.
_CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SYNC_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class HealthSnapshot:
    """What the last events said, for /readyz and the status page."""

    last_sync_succeeded_at: datetime | None = None
    last_sync_error: str = ""
    sync_error_count: int = 0
    outbox_depth: int = 0
    outbox_dead_letters: int = 0
    outbox_oldest_at: datetime | None = None
    calls: dict[tuple[str, str], int] = field(default_factory=dict)
    postings: dict[tuple[str, str], int] = field(default_factory=dict)


class OperationsMetrics:
    """A `Publisher`: add it to the event bus; serve `registry` as /metrics."""

    def __init__(self, build: BuildIdentity, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self._clock = clock
        self.build = build
        self.health = HealthSnapshot()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        Info("qualitybridge_build", "The running QualityBridge release", registry=r).info(
            {"version": build.software_version, "build_number": build.build_number}
        )
        self._calls = Counter(
            "qualitybridge_method_calls",
            "Shop-floor method calls answered, by method and StatusCode (Good = accepted)",
            ["method", "status"],
            registry=r,
        )
        self._call_seconds = Histogram(
            "qualitybridge_method_call_duration_seconds",
            "Time from a method call's arrival to its answer",
            ["method"],
            buckets=_CALL_BUCKETS,
            registry=r,
        )
        self._outbox_depth = Gauge(
            "qualitybridge_outbox_pending", "Postings accepted and not yet delivered to the ERP", registry=r
        )
        self._outbox_dead = Gauge(
            "qualitybridge_outbox_dead_letters", "Postings given up on; they need `qualitybridge outbox`", registry=r
        )
        Gauge(
            "qualitybridge_outbox_oldest_pending_age_seconds",
            "Age of the oldest undelivered posting (0 when none)",
            registry=r,
        ).set_function(self._oldest_age)
        self._call_children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._postings = Counter(
            "qualitybridge_relay_postings",
            "Delivery attempts of the outbox relay, by target (posting kind) and outcome (sent, retry, dead)",
            ["target", "outcome"],
            registry=r,
        )
        self._sync_seconds = Histogram(
            "qualitybridge_erp_sync_duration_seconds", "Duration of ERP sync rounds", buckets=_SYNC_BUCKETS, registry=r
        )
        self._sync_errors = Counter("qualitybridge_erp_sync_errors", "ERP sync rounds that failed", registry=r)
        self._held_back = Gauge(
            "qualitybridge_master_data_held_back_orders",
            "Released orders held back because a mapping table in force does not map one of their keys",
            registry=r,
        )
        self._gaps = Gauge(
            "qualitybridge_master_data_gaps",
            "Keys a mapping table in force lacks (Diagnostics/MasterDataGaps)",
            registry=r,
        )
        Gauge(
            "qualitybridge_erp_last_sync_age_seconds",
            "Seconds since the last successful ERP sync (-1 before the first)",
            registry=r,
        ).set_function(self._sync_age)

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A figure read when scraped (the OPC UA server's sessions, subscriptions, monitored items)."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def sync_age_seconds(self) -> float | None:
        last = self.health.last_sync_succeeded_at
        return None if last is None else max(0.0, (self._clock() - last).total_seconds())

    def _sync_age(self) -> float:
        age = self.sync_age_seconds()
        return -1.0 if age is None else age

    def _oldest_age(self) -> float:
        oldest = self.health.outbox_oldest_at
        if oldest is None or self.health.outbox_depth == 0:
            return 0.0
        return max(0.0, (self._clock() - oldest).total_seconds())

    async def publish(self, event: DomainEvent) -> None:
        health = self.health
        if isinstance(event, MethodCallAnswered):
            key = (event.method, event.status)
            children = self._call_children.get(key)
            if children is None:
                # prometheus_client's labels() validates and joins the label values on every call; once per key.
                children = self._call_children[key] = (
                    self._calls.labels(event.method, event.status),
                    self._call_seconds.labels(event.method),
                )
            children[0].inc()
            children[1].observe(event.seconds)
            health.calls[key] = health.calls.get(key, 0) + 1
        elif isinstance(event, PostingAttempted):
            self._postings.labels(event.target, event.outcome).inc(event.count)
            key = (event.target, event.outcome)
            health.postings[key] = health.postings.get(key, 0) + event.count
        elif isinstance(event, ErpSyncFinished):
            self._sync_seconds.observe(event.seconds)
            if event.error:
                self._sync_errors.inc()
        elif isinstance(event, DiagnosticsChanged):
            health.last_sync_succeeded_at = event.last_sync_time
            health.last_sync_error = "" if event.last_sync_succeeded else event.last_sync_error
            health.sync_error_count = event.sync_error_count
            health.outbox_depth = event.outbox_depth
            health.outbox_dead_letters = event.outbox_dead_letters
            health.outbox_oldest_at = event.outbox_oldest_at
            self._outbox_depth.set(event.outbox_depth)
            self._outbox_dead.set(event.outbox_dead_letters)
            self._held_back.set(event.held_back_orders)
            self._gaps.set(len(event.master_data_gaps))
