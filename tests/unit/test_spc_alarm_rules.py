"""SpcAlarmService's rules (docs/report-methods.md, ReportSpcAlarm): a known characteristic, a severity 1..1000,
accepted in every order state; each alarm stored with its posting and raised as an event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from qualitybridge.domain.errors import InvalidValue, UnknownReference
from qualitybridge.domain.events import SpcAlarmRaised
from qualitybridge.domain.model import OrderState, SpcAlarm
from qualitybridge.domain.order_states import state_name
from qualitybridge.domain.records import SpcAlarmRecord
from qualitybridge.services.event_bus import EventBus
from qualitybridge.services.master_data import MasterData
from qualitybridge.services.spc_alarms import SpcAlarmService
from tests.builders import order
from tests.fakes import FakeStore, FixedClock, RecordingPublisher

ORDER = "1000"


@dataclass
class Alarming:
    service: SpcAlarmService
    store: FakeStore
    master: MasterData
    published: RecordingPublisher
    clock: FixedClock

    async def raise_alarm(self, **fields: Any) -> SpcAlarmRecord:
        arguments: dict[str, Any] = {
            "order_no": ORDER,
            "operation_no": "0010",
            "characteristic_id": "C010",
            "rule": "WE1",
            "severity": 700,
            "message": "point beyond the upper control limit",
            "reported_by": "machine1",
        }
        return await self.service.report_spc_alarm(**{**arguments, **fields})


@pytest.fixture
def alarming(bus: EventBus, published: RecordingPublisher, clock: FixedClock) -> Alarming:
    orders = [order(ORDER, state=OrderState.RUNNING)]
    master = MasterData()
    master.replace(orders, ())
    store = FakeStore(orders)
    service = SpcAlarmService(store.as_store(), master, events=bus, clock=clock)
    return Alarming(service, store, master, published, clock)


async def test_an_alarm_is_stored_and_raised(alarming: Alarming) -> None:
    record = await alarming.raise_alarm()
    assert record.alarm == SpcAlarm(
        order_no=ORDER,
        operation_no="0010",
        characteristic_id="C010",
        rule="WE1",
        severity=700,
        message="point beyond the upper control limit",
        raised_at=alarming.clock.now,
    )
    assert record.reported_by == "machine1"
    assert alarming.store.alarms == [record]
    assert alarming.published.events == [SpcAlarmRaised(record)]


@pytest.mark.parametrize("state", list(OrderState), ids=state_name)
async def test_an_alarm_is_accepted_in_every_order_state(alarming: Alarming, state: OrderState) -> None:
    alarming.master.set_order_state(ORDER, state)
    record = await alarming.raise_alarm()
    assert alarming.store.alarms == [record]


async def test_each_alarm_is_a_record_of_its_own(alarming: Alarming) -> None:
    first = await alarming.raise_alarm()
    second = await alarming.raise_alarm()
    assert first.alarm_id != second.alarm_id
    assert alarming.store.alarms == [first, second]
    assert alarming.published.events == [SpcAlarmRaised(first), SpcAlarmRaised(second)]


@pytest.mark.parametrize("severity", [1, 1000])
async def test_severity_bounds_are_inclusive(alarming: Alarming, severity: int) -> None:
    assert (await alarming.raise_alarm(severity=severity)).alarm.severity == severity


@pytest.mark.parametrize("severity", [0, -1, 1001, 65535])
async def test_a_severity_outside_1_to_1000_is_refused(alarming: Alarming, severity: int) -> None:
    with pytest.raises(InvalidValue) as refused:
        await alarming.raise_alarm(severity=severity)
    assert refused.value.field == "Severity"
    assert "1..1000" in refused.value.message
    assert alarming.store.alarms == []
    assert alarming.published.events == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"order_no": "9999"}, "OrderNumber"),
        ({"operation_no": "0990"}, "OperationNumber"),
        ({"characteristic_id": "C999"}, "CharacteristicId"),
        ({"characteristic_id": "C999", "severity": 0}, "CharacteristicId"),  # the reference is checked first
    ],
)
async def test_an_unknown_reference_names_its_argument(alarming: Alarming, fields: dict[str, Any], field: str) -> None:
    with pytest.raises(UnknownReference) as refused:
        await alarming.raise_alarm(**fields)
    assert refused.value.field == field
    assert alarming.store.alarms == []
    assert alarming.published.events == []
