"""Fakes shared by the tests: an in-memory store for the service rules, clocks, and a publisher that records.

`FakeStore` implements the store methods the shop-floor services call (ReportingService, ConfirmationService,
SpcAlarmService, OrderControl, SpcMonitor) and the mapping tables, with the real store's answers: a repeated client
id gets the first record back, an SPC alarm id is stored once, order states change by compare-and-set, a mapping
import is all or nothing. tests/unit/test_fakes.py
keeps its method names and signatures equal to `Store`'s; tests/integration/test_fake_store_contract.py runs the
same calls against both and compares.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from qualitybridge.domain.events import DomainEvent
from qualitybridge.domain.mapping import (
    InvalidMapping,
    MappingEntry,
    MappingKind,
    MappingTables,
    entry_problems,
    table_problems,
)
from qualitybridge.domain.mapping_gaps import MappingGap, MissingMapping
from qualitybridge.domain.model import OrderState, ProductionOrder
from qualitybridge.domain.records import AcceptedMeasurement, ConfirmationRecord, RefusedMeasurement, SpcAlarmRecord
from qualitybridge.store import Store
from qualitybridge.store.shop_floor_records import ConfirmationTotals
from qualitybridge.store.spc_history import StoredStream, StreamKey
from tests.builders import NOW

__all__ = ["FakeStore", "FixedClock", "MonotonicClock", "RecordingPublisher"]

E = TypeVar("E", bound=DomainEvent)


class FakeStore:
    """The shop-floor part of `Store`, in memory; `calls` lists (method, arguments) of every call, in order."""

    def __init__(self, orders: Iterable[ProductionOrder] = ()) -> None:
        self.measurements: list[AcceptedMeasurement] = []
        self.refused: list[RefusedMeasurement] = []
        self.confirmation_records: list[ConfirmationRecord] = []
        self.alarms: list[SpcAlarmRecord] = []
        # The released orders' states as stored (the real store keeps them with the order).
        self.order_states: dict[str, OrderState] = {o.order_no: o.state for o in orders}
        self.mappings: dict[tuple[MappingKind, str], MappingEntry] = {}
        self.gaps: dict[MissingMapping, MappingGap] = {}
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def as_store(self) -> Store:
        """This fake where a service's signature asks for the real store."""
        return cast(Store, self)

    def called(self, method: str) -> list[tuple[Any, ...]]:
        """The arguments of every call of `method`, in order."""
        return [arguments for name, arguments in self.calls if name == method]

    # ---- measurements -------------------------------------------------------------------------------

    async def record_measurements(
        self, accepted: Sequence[AcceptedMeasurement], refused: Sequence[RefusedMeasurement] = ()
    ) -> list[tuple[AcceptedMeasurement, bool]]:
        self.calls.append(("record_measurements", (list(accepted), list(refused))))
        # Client ids are scoped to the reporting user, as in the store.
        stored_before = {
            (item.result.reported_by, item.result.report.client_result_id): item
            for item in self.measurements
            if item.result.report.client_result_id
        }
        answers: list[tuple[AcceptedMeasurement, bool]] = []
        for item in accepted:
            client_id = item.result.report.client_result_id
            if client_id:
                scoped = (item.result.reported_by, client_id)
                first = stored_before.get(scoped)
                if first is not None:
                    answers.append((first, False))
                    continue
                stored_before[scoped] = item
            self.measurements.append(item)
            answers.append((item, True))
        self.refused.extend(refused)
        return answers

    async def measurements_by_client_ids(
        self, client_result_ids: Collection[str], reported_by: str | None = None
    ) -> dict[str, AcceptedMeasurement]:
        self.calls.append(("measurements_by_client_ids", (set(client_result_ids), reported_by)))
        found: dict[str, AcceptedMeasurement] = {}
        for item in self.measurements:
            client_id = item.result.report.client_result_id
            mine = reported_by is None or item.result.reported_by == reported_by
            if client_id in client_result_ids and mine and client_id not in found:
                found[client_id] = item
        return found

    async def stored_measurements(self, order_no: str | None = None) -> list[AcceptedMeasurement]:
        self.calls.append(("stored_measurements", (order_no,)))
        mine = [item for item in self.measurements if order_no is None or item.result.report.order_no == order_no]
        return sorted(
            mine,
            key=lambda item: (item.result.received_at, item.result.report.measured_at, item.result.result_id),
        )

    async def stored_streams(
        self, order_nos: Sequence[str], *, first: int, latest: int, since: datetime
    ) -> list[StoredStream]:
        self.calls.append(("stored_streams", (list(order_nos), first, latest, since)))
        streams: dict[StreamKey, list[AcceptedMeasurement]] = {}
        for item in await self.stored_measurements():
            report = item.result.report
            if report.order_no in order_nos:
                key = (report.order_no, report.operation_no, report.characteristic_id, item.result.plan_version)
                streams.setdefault(key, []).append(item)
        answers = []
        for key, items in streams.items():
            recent = sum(1 for item in items if item.result.received_at >= since)
            tail = items[max(len(items) - latest - recent, 0) :]
            answers.append(
                StoredStream(
                    key,
                    len(items),
                    [item.result.report.value for item in items[:first]],
                    [(i.result.report.value, i.result.result_id, i.result.received_at) for i in tail],
                )
            )
        return answers

    async def last_engine_alarm_rules(self, order_nos: Sequence[str], reported_by: str) -> dict[StreamKey, int]:
        self.calls.append(("last_engine_alarm_rules", (list(order_nos), reported_by)))
        arrival = {item.result.result_id: item for item in await self.stored_measurements()}
        found = []
        for record in self.alarms:
            alarm = record.alarm
            stored = arrival.get(alarm.result_id or "")
            if record.reported_by == reported_by and alarm.order_no in order_nos and stored and alarm.rule_number:
                result = stored.result
                at = (result.received_at, result.report.measured_at, result.result_id, alarm.rule_number)
                key = (alarm.order_no, alarm.operation_no, alarm.characteristic_id, result.plan_version)
                found.append((at, key, alarm.rule_number))
        return {key: rule for _, key, rule in sorted(found)}

    # ---- order states -------------------------------------------------------------------------------

    async def change_order_state(self, order_no: str, expected: OrderState, new: OrderState) -> bool:
        self.calls.append(("change_order_state", (order_no, expected, new)))
        if self.order_states.get(order_no) is not expected:
            return False
        self.order_states[order_no] = new
        return True

    # ---- confirmations ------------------------------------------------------------------------------

    async def record_confirmation(self, record: ConfirmationRecord) -> tuple[ConfirmationRecord, bool]:
        self.calls.append(("record_confirmation", (record,)))
        if record.client_confirmation_id:
            first = self._confirmation(record.client_confirmation_id, record.reported_by)
            if first is not None:
                return first, False
        self.confirmation_records.append(record)
        return record, True

    async def confirmation_by_client_id(
        self, client_confirmation_id: str, reported_by: str | None = None
    ) -> ConfirmationRecord | None:
        self.calls.append(("confirmation_by_client_id", (client_confirmation_id, reported_by)))
        return self._confirmation(client_confirmation_id, reported_by)

    def _confirmation(self, client_confirmation_id: str, reported_by: str | None) -> ConfirmationRecord | None:
        for record in self.confirmation_records:
            mine = reported_by is None or record.reported_by == reported_by
            if record.client_confirmation_id == client_confirmation_id and mine:
                return record
        return None

    async def confirmation_totals(self, order_no: str, operation_no: str) -> ConfirmationTotals:
        self.calls.append(("confirmation_totals", (order_no, operation_no)))
        mine = [
            record.confirmation
            for record in self.confirmation_records
            if (record.confirmation.order_no, record.confirmation.operation_no) == (order_no, operation_no)
        ]
        return ConfirmationTotals(
            yield_quantity=float(sum(c.yield_quantity for c in mine)),
            scrap_quantity=float(sum(c.scrap_quantity for c in mine)),
            rework_quantity=float(sum(c.rework_quantity for c in mine)),
            finally_confirmed=any(c.final for c in mine),
        )

    # ---- SPC alarms ---------------------------------------------------------------------------------

    async def record_spc_alarm(self, record: SpcAlarmRecord) -> tuple[SpcAlarmRecord, bool]:
        self.calls.append(("record_spc_alarm", (record,)))
        if record.client_alarm_id:
            first = await self.spc_alarm_by_client_id(record.client_alarm_id, record.reported_by)
            if first is not None:
                return first, False
        self.alarms.append(record)
        return record, True

    async def spc_alarm_by_client_id(self, client_alarm_id: str, reported_by: str) -> SpcAlarmRecord | None:
        self.calls.append(("spc_alarm_by_client_id", (client_alarm_id, reported_by)))
        for record in self.alarms:
            if record.client_alarm_id == client_alarm_id and record.reported_by == reported_by:
                return record
        return None

    async def record_spc_alarms_once(self, records: Sequence[SpcAlarmRecord]) -> list[bool]:
        self.calls.append(("record_spc_alarms_once", (list(records),)))
        seen = {alarm.alarm_id for alarm in self.alarms}
        answers: list[bool] = []
        for record in records:
            answers.append(record.alarm_id not in seen)
            if record.alarm_id not in seen:
                seen.add(record.alarm_id)
                self.alarms.append(record)
        return answers

    # ---- mapping tables -----------------------------------------------------------------------------

    async def list_mappings(self, kind: MappingKind | None = None) -> list[MappingEntry]:
        self.calls.append(("list_mappings", (kind,)))
        chosen = [entry for (of_kind, _), entry in self.mappings.items() if kind is None or of_kind is kind]
        return sorted(chosen, key=lambda entry: (entry.kind.value, entry.source_key))

    async def set_mapping(self, entry: MappingEntry) -> None:
        self.calls.append(("set_mapping", (entry,)))
        problems = entry_problems(entry)
        if problems:
            raise InvalidMapping(problems)
        self.mappings[(entry.kind, entry.source_key)] = _stamped(entry, datetime.now(UTC))

    async def remove_mapping(self, kind: MappingKind, source_key: str) -> bool:
        self.calls.append(("remove_mapping", (kind, source_key)))
        return self.mappings.pop((kind, source_key), None) is not None

    async def replace_mappings(self, kind: MappingKind, entries: Sequence[MappingEntry]) -> None:
        self.calls.append(("replace_mappings", (kind, list(entries))))
        problems = table_problems(kind, entries)
        if problems:
            raise InvalidMapping(problems)
        now = datetime.now(UTC)
        self.mappings = {key: entry for key, entry in self.mappings.items() if key[0] is not kind}
        self.mappings.update({(kind, entry.source_key): _stamped(entry, now) for entry in entries})

    async def mapping_tables(self) -> MappingTables:
        self.calls.append(("mapping_tables", ()))
        return MappingTables.of(self.mappings.values())

    async def mapping_gaps(self) -> list[MappingGap]:
        self.calls.append(("mapping_gaps", ()))
        return sorted(self.gaps.values(), key=lambda gap: (gap.kind.value, gap.source_key))

    async def record_mapping_gaps(self, waiting: Mapping[MissingMapping, Sequence[str]]) -> list[MappingGap]:
        self.calls.append(("record_mapping_gaps", (dict(waiting),)))
        now = datetime.now(UTC)
        self.gaps = {
            key: MappingGap(key.kind, key.source_key, self.gaps[key].since if key in self.gaps else now, tuple(orders))
            for key, orders in waiting.items()
        }
        return sorted(self.gaps.values(), key=lambda gap: (gap.kind.value, gap.source_key))


def _stamped(entry: MappingEntry, now: datetime) -> MappingEntry:
    return entry if entry.changed_at is not None else replace(entry, changed_at=now)


class FixedClock:
    """A wall clock that stands still until a test moves it: `clock()` is `clock.now`."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class MonotonicClock:
    """A monotonic clock in seconds (as `time.monotonic`) that moves only when a test sets `now`."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RecordingPublisher:
    """A `Publisher` that keeps every event it is shown, in order."""

    def __init__(self) -> None:
        self.events: list[DomainEvent] = []

    async def publish(self, event: DomainEvent) -> None:
        self.events.append(event)

    def of(self, event_type: type[E]) -> list[E]:
        """The events of `event_type` (subclasses included), in order."""
        return [event for event in self.events if isinstance(event, event_type)]
