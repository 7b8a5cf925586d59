"""The daily gauge calibration reminder: one GaugeCalibrationReminder for the gauges that are still due or expired.

A gauge's status change raises its event at the sync that brings it; a gauge that stays due soon for weeks would
otherwise be mentioned once and then forgotten. The app schedules `remind` daily at `[quality_events]
calibration_reminder_at` (docs/configuration.md); publishers (the OPC UA view) turn the reminder into events.
"""

from __future__ import annotations

from qualitybridge.domain.events import GaugeCalibrationReminder
from qualitybridge.domain.model import TestEquipment
from qualitybridge.services.event_bus import EventBus
from qualitybridge.services.master_data import MasterData

__all__ = ["CalibrationReminders", "gauges_to_remind"]


def gauges_to_remind(equipment: tuple[TestEquipment, ...]) -> tuple[TestEquipment, ...]:
    """Due soon or expired, in a stable order (by id), so a day's reminders read the same way each day."""
    return tuple(sorted((g for g in equipment if g.calibration_status.needs_calibration), key=lambda g: g.equipment_id))


class CalibrationReminders:
    def __init__(self, master_data: MasterData, events: EventBus) -> None:
        self._master = master_data
        self._events = events

    async def remind(self) -> int:
        """Raise the day's reminder (nothing when every gauge is valid); answers how many gauges it names."""
        gauges = gauges_to_remind(tuple(self._master.equipment))
        if gauges:
            await self._events.publish(GaugeCalibrationReminder(gauges))
        return len(gauges)
