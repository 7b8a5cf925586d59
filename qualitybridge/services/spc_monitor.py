"""Judging every accepted measurement statistically: one SPC chart per order, operation and characteristic.

Subscribed to bursts of MeasurementAccepted (the results one report call stored). The rule violations of a burst
are stored as SPC alarms with their postings to the QMS in one transaction (one commit per report batch, not one
per alarm), then raised as SpcRuleViolated; after the burst each touched chart's state goes out as
SpcStatusChanged.

The charts live in memory and are rebuilt at start from the stored results of the released orders, in arrival
order, so limits, counts and the last violated rule survive a restart. A chart resumes from its stream's count,
its baseline (first values) and a bounded tail of latest values, which gives the state a replay of every value
would (domain/spc.py `SpcChart.resume`); a stream whose tail cannot decide it is replayed from its first value.
An alarm's id is derived from the result and the rule, so it is stored and posted exactly once: a restart that
finds a recent violation without its alarm (the process died between the two commits) raises it then, and a
replay never raises one twice.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from qualitybridge.domain.errors import UnknownReference
from qualitybridge.domain.events import MeasurementAccepted, SpcRuleViolated, SpcStatusChanged
from qualitybridge.domain.model import InspectionCharacteristic, MeasurementResult, SpcAlarm
from qualitybridge.domain.records import SpcAlarmRecord
from qualitybridge.domain.spc import ControlLimits, RuleViolation, SpcChart, SpcPolicy, SpcSettings, SpcStatus
from qualitybridge.services.event_bus import EventBus
from qualitybridge.services.master_data import MasterData
from qualitybridge.store import Store
from qualitybridge.store.spc_history import StoredStream

__all__ = ["SPC_ENGINE_USER", "SpcMonitor", "StreamKey", "spc_alarm_id"]

_log = logging.getLogger(__name__)

SPC_ENGINE_USER = "qualitybridge-spc"  # reported_by of the alarms the engine raises
_ALARM_IDS = uuid.UUID("6f1c2a8e-14d5-4c5e-9b1a-5bc0a1e0f514")

StreamKey = tuple[str, str, str]  # order, operation, characteristic
_ORDERS_PER_READ = 200  # orders whose streams one store read brings at start
_STREAMS_PER_YIELD = 50  # streams resumed between two turns of the event loop (~a few ms each at most)
_ALL = 10**9  # as many latest values as there are (added to a count in SQL: stays within 32 bits)


def spc_alarm_id(result_id: str, rule: int) -> str:
    """The alarm id of rule `rule` completed by result `result_id`: the same on every replay."""
    return str(uuid.uuid5(_ALARM_IDS, f"{result_id}/nelson-{rule}"))


def plan_limits(characteristic: InspectionCharacteristic) -> ControlLimits | None:
    if (
        characteristic.center_line is None
        or characteristic.upper_control_limit is None
        or characteristic.lower_control_limit is None
    ):
        return None
    return ControlLimits(
        characteristic.center_line, characteristic.upper_control_limit, characteristic.lower_control_limit
    )


def _chart_signature(characteristic: InspectionCharacteristic) -> tuple[object, ...]:
    """What a chart depends on: a change of any of these starts a new chart (a new description does not)."""
    return (
        characteristic.plan_version,
        characteristic.sample_size,
        characteristic.lower_limit,
        characteristic.upper_limit,
        characteristic.center_line,
        characteristic.upper_control_limit,
        characteristic.lower_control_limit,
        characteristic.classification,
    )


@dataclass
class _Stream:
    characteristic: InspectionCharacteristic
    signature: tuple[object, ...]
    chart: SpcChart


class SpcMonitor:
    def __init__(
        self,
        store: Store,
        master_data: MasterData,
        policy: SpcPolicy,
        *,
        events: EventBus,
        catch_up: timedelta = timedelta(minutes=10),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._master = master_data
        self._policy = policy
        self._events = events
        self._catch_up = catch_up
        self._clock = clock
        self._streams: dict[StreamKey, _Stream] = {}
        self._lock = asyncio.Lock()  # a replay and live values never interleave
        self._replayed_recent: set[str] = set()  # results a replay took that may still arrive as live events

    def subscribe(self) -> None:
        self._events.subscribe_burst(MeasurementAccepted, self.on_measurements)

    async def rebuild(self) -> int:
        """Replay the stored results of the released orders; answers how many missing alarms were caught up."""
        async with self._lock:
            return await self._rebuild()

    async def _rebuild(self) -> int:
        self._streams.clear()
        started = self._clock()
        horizon = started - self._catch_up
        recent = started - timedelta(minutes=1)
        self._replayed_recent = set()
        missing: list[SpcAlarmRecord] = []
        order_nos = [order.order_no for order in self._master.orders]
        first, latest = self._resume_needs()
        since = min(horizon, recent)
        replayed_in_full = 0
        for at in range(0, len(order_nos), _ORDERS_PER_READ):
            batch = order_nos[at : at + _ORDERS_PER_READ]
            stored = await self._store.stored_streams(batch, first=first, latest=latest, since=since)
            last_rules = await self._store.last_engine_alarm_rules(batch, SPC_ENGINE_USER)
            unresumable: list[StoredStream] = []
            for index, found in enumerate(stored):
                if index % _STREAMS_PER_YIELD == _STREAMS_PER_YIELD - 1:
                    # The endpoint is open meanwhile: its clients' keep-alive probes (1 s) must be answered.
                    await asyncio.sleep(0)
                if not self._resume(found, last_rules.get(found.key), horizon, recent, missing):
                    unresumable.append(found)
            if unresumable:
                # A run that straddles the start of the tail: these streams from their first value on.
                wanted = {found.key for found in unresumable}
                orders = sorted({key[0] for key in wanted})
                everything = await self._store.stored_streams(orders, first=0, latest=_ALL, since=since)
                for found in everything:
                    if found.key in wanted:
                        replayed_in_full += 1
                        self._resume(found, None, horizon, recent, missing)
        caught_up = await self._raise(missing)
        for key in self._streams:
            await self._publish_status(key)
        if caught_up:
            _log.warning("SPC: raised %d alarm(s) that a previous run stored no alarm for", caught_up)
        _log.info(
            "SPC: %d characteristic stream(s) rebuilt from the store (%d from their first value)",
            len(self._streams),
            replayed_in_full,
        )
        return caught_up

    def _resume_needs(self) -> tuple[int, int]:
        """The most first values (a baseline) and latest values (the rules' and capability's look-back) that a
        chart of any released characteristic needs to resume."""
        first, latest = 0, 0
        kinds: set[tuple[int, SpcSettings]] = set()  # a plant has few: one chart each to ask
        for order in self._master.orders:
            for operation in order.operations:
                for c in operation.characteristics:
                    kinds.add((c.sample_size, self._policy.settings_for(c.characteristic_id, c.classification)))
        for sample_size, settings in kinds:
            chart = SpcChart(sample_size=sample_size, lower_spec=0.0, upper_spec=1.0, settings=settings)
            first = max(first, settings.baseline_subgroups * sample_size)
            latest = max(latest, chart.resume_values())
        return first, latest

    def _resume(
        self,
        found: StoredStream,
        last_rule: int | None,
        horizon: datetime,
        recent: datetime,
        missing: list[SpcAlarmRecord],
    ) -> bool:
        """Resume one stream's chart from its stored values; False if they do not decide its state exactly."""
        order_no, operation_no, characteristic_id, plan_version = found.key
        key = (order_no, operation_no, characteristic_id)
        try:
            characteristic = self._master.find_characteristic(*key)
        except UnknownReference:
            return True  # withdrawn since: nothing to chart against
        if plan_version != characteristic.plan_version:
            return True  # judged under an earlier plan: not part of this plan's chart
        chart = self._new_chart(characteristic)
        latest = [(value, result_id) for value, result_id, _ in found.latest]
        # Judged again: the values within the catch-up horizon (and the minute whose live events may still come).
        judge_last = sum(1 for _, _, received_at in found.latest if received_at >= min(horizon, recent))
        violations = chart.resume(found.total, found.first, latest, last_rule, judge_last=judge_last)
        if violations is None:
            # A pattern showed too early among the judged values: judge the whole tail, where it may settle.
            chart = self._new_chart(characteristic)
            violations = chart.resume(found.total, found.first, latest, last_rule, judge_last=len(latest))
        if violations is None:
            return False
        self._streams[key] = _Stream(characteristic, _chart_signature(characteristic), chart)
        arrival = {result_id: received_at for _, result_id, received_at in found.latest}
        self._replayed_recent.update(result_id for result_id, at in arrival.items() if at >= recent)
        for violation in violations:
            if violation.sample_id is not None and arrival[violation.sample_id] >= horizon:
                missing.append(self._record(key, violation.sample_id, characteristic, violation))
        return True

    async def on_measurement(self, event: MeasurementAccepted) -> None:
        await self.on_measurements((event,))

    async def on_measurements(self, events: Sequence[MeasurementAccepted]) -> None:
        """Chart a burst of results in order; store all the alarms it raises with one store call."""
        if len(events) == 1:
            await self._on_one(events[0])  # every single report call's burst
            return
        async with self._lock:
            records: list[SpcAlarmRecord] = []
            touched: dict[StreamKey, None] = {}  # in order of first appearance
            # Each characteristic's stream is looked up once per burst and plan version (a batch's values are mostly
            # of one): the master data cannot change before the loop ends, nothing in it waits.
            streams: dict[tuple[StreamKey, str], _Stream | None] = {}
            replayed = self._replayed_recent
            for event in events:
                result = event.result
                if replayed and result.result_id in replayed:
                    replayed.discard(result.result_id)  # stored while the replay ran: already charted
                    continue
                key = _key(result)
                judged = (key, result.plan_version)
                if judged not in streams:
                    streams[judged] = self._stream(*judged)
                stream = streams[judged]
                if stream is None:
                    continue
                violations = stream.chart.add(result.report.value, result.result_id)
                if violations:
                    records.extend(self._record(key, result.result_id, stream.characteristic, v) for v in violations)
                touched[key] = None
            await self._raise(records)
            for key in touched:
                await self._publish_status(key)

    async def _on_one(self, event: MeasurementAccepted) -> None:
        """`on_measurements` of a burst of one, without a burst's bookkeeping (the same steps in the same order)."""
        result = event.result
        async with self._lock:
            if result.result_id in self._replayed_recent:
                self._replayed_recent.discard(result.result_id)  # stored while the replay ran: already charted
                return
            taken = self._take(result)
            if taken is None:
                return
            stream, violations = taken
            key = _key(result)
            if violations:
                await self._raise([self._record(key, result.result_id, stream.characteristic, v) for v in violations])
            await self._events.publish(SpcStatusChanged(*key, status=stream.chart.status()))

    def status(self, order_no: str, operation_no: str, characteristic_id: str) -> SpcStatus | None:
        """The chart's state; None if the characteristic has no stream yet (no value since the start)."""
        stream = self._streams.get((order_no, operation_no, characteristic_id))
        return stream.chart.status() if stream is not None else None

    async def recompute_limits(self, order_no: str, operation_no: str, characteristic_id: str) -> SpcStatus | None:
        """New baseline limits from the latest points (kept until the next restart or plan version)."""
        key = (order_no, operation_no, characteristic_id)
        async with self._lock:
            stream = self._streams.get(key)
            if stream is None:
                return None
            stream.chart.recompute_limits()
            await self._publish_status(key)
            return stream.chart.status()

    # ---- internals --------------------------------------------------------------------------------

    def _take(self, result: MeasurementResult) -> tuple[_Stream, tuple[RuleViolation, ...]] | None:
        stream = self._stream(_key(result), result.plan_version)
        if stream is None:
            return None
        return stream, stream.chart.add(result.report.value, result.result_id)

    def _stream(self, key: StreamKey, plan_version: str) -> _Stream | None:
        """The chart stream of the characteristic's master data now, for values judged under `plan_version`; None
        when it was withdrawn since, or the value was judged under an earlier plan (not part of this plan's chart)."""
        try:
            characteristic = self._master.find_characteristic(*key)
        except UnknownReference:
            return None  # nothing to chart against
        if plan_version != characteristic.plan_version:
            return None
        stream = self._streams.get(key)
        signature = _chart_signature(characteristic)
        if stream is None or stream.signature != signature:
            # A new plan version (or new limits, sample size, classification) starts a new chart.
            stream = _Stream(characteristic, signature, self._new_chart(characteristic))
            self._streams[key] = stream
        return stream

    def _new_chart(self, characteristic: InspectionCharacteristic) -> SpcChart:
        return SpcChart(
            sample_size=characteristic.sample_size,
            lower_spec=characteristic.lower_limit,
            upper_spec=characteristic.upper_limit,
            plan_limits=plan_limits(characteristic),
            settings=self._policy.settings_for(characteristic.characteristic_id, characteristic.classification),
        )

    async def _raise(self, records: Sequence[SpcAlarmRecord]) -> int:
        """Store the alarms in one transaction (those stored by an earlier run are skipped), then raise each."""
        if not records:
            return 0
        stored = await self._store.record_spc_alarms_once(records)
        raised = 0
        for record, new in zip(records, stored, strict=True):
            if not new:
                continue  # stored by an earlier run
            raised += 1
            alarm = record.alarm
            _log.info(
                "SPC rule %s on %s/%s/%s at result %s (value %s)",
                alarm.rule_number,
                alarm.order_no,
                alarm.operation_no,
                alarm.characteristic_id,
                alarm.result_id,
                alarm.value,
            )
            await self._events.publish(SpcRuleViolated(record))
        return raised

    def _record(
        self, key: StreamKey, result_id: str, characteristic: InspectionCharacteristic, violation: RuleViolation
    ) -> SpcAlarmRecord:
        limits = violation.limits
        places = characteristic.decimal_places
        order_no, operation_no, characteristic_id = key
        return SpcAlarmRecord(
            alarm_id=spc_alarm_id(result_id, violation.rule),
            alarm=SpcAlarm(
                order_no=order_no,
                operation_no=operation_no,
                characteristic_id=characteristic_id,
                rule=f"Nelson {violation.rule}",
                severity=self._policy.severity_for(characteristic.classification),
                message=(
                    f"{violation.description}: {violation.value:.{places}f} {characteristic.unit} "
                    f"(CL {limits.center:.{places}f}, UCL {limits.ucl:.{places}f}, LCL {limits.lcl:.{places}f})"
                ),
                raised_at=self._clock(),
                rule_number=violation.rule,
                result_id=result_id,
                value=violation.value,
                center_line=limits.center,
                upper_control_limit=limits.ucl,
                lower_control_limit=limits.lcl,
            ),
            reported_by=SPC_ENGINE_USER,
        )

    async def _publish_status(self, key: StreamKey) -> None:
        stream = self._streams[key]
        await self._events.publish(SpcStatusChanged(*key, status=stream.chart.status()))


def _key(result: MeasurementResult) -> StreamKey:
    report = result.report
    return report.order_no, report.operation_no, report.characteristic_id
