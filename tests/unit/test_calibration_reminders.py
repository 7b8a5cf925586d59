"""The daily calibration reminder: which gauges it names, and that it stays quiet when every gauge is valid."""

from __future__ import annotations

from qualitybridge.domain.events import GaugeCalibrationReminder
from qualitybridge.domain.model import CalibrationStatus
from qualitybridge.services.calibration_reminders import CalibrationReminders, gauges_to_remind
from qualitybridge.services.event_bus import EventBus
from qualitybridge.services.master_data import MasterData
from tests.builders import gauge

S = CalibrationStatus


def test_due_soon_and_expired_gauges_are_reminded_in_id_order_valid_and_locked_are_not() -> None:
    equipment = (
        gauge(S.EXPIRED, equipment_id="G-9"),
        gauge(S.VALID, equipment_id="G-1"),
        gauge(S.LOCKED, equipment_id="G-5"),
        gauge(S.DUE_SOON, equipment_id="G-2"),
    )
    assert [g.equipment_id for g in gauges_to_remind(equipment)] == ["G-2", "G-9"]


async def test_remind_raises_one_reminder_naming_the_watched_gauges_and_nothing_when_all_are_valid() -> None:
    master, events = MasterData(), EventBus()
    raised: list[GaugeCalibrationReminder] = []

    async def record(event: GaugeCalibrationReminder) -> None:
        raised.append(event)

    events.subscribe(GaugeCalibrationReminder, record)
    reminders = CalibrationReminders(master, events)
    master.replace([], [gauge(equipment_id="G-1"), gauge(S.DUE_SOON, equipment_id="G-2")])
    assert await reminders.remind() == 1
    assert [[g.equipment_id for g in event.gauges] for event in raised] == [["G-2"]]
    master.replace([], [gauge(equipment_id="G-1"), gauge(equipment_id="G-2")])
    assert await reminders.remind() == 0
    assert len(raised) == 1, "no reminder on a day when every gauge is valid"
