"""Accepting SPC alarms and quality warnings raised by a machine or MES, for the QMS (a quality notification).

An alarm names the characteristic whose process drifted, the rule that fired (e.g. "WE1" for a point outside the
control limits) and a severity 1..1000 (the OPC UA event scale). It is accepted in every order state: a warning
about the process is worth having even when it arrives late.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from qualitybridge.domain.errors import ClientIdReused, InvalidValue
from qualitybridge.domain.events import SpcAlarmRaised
from qualitybridge.domain.ids import new_record_id
from qualitybridge.domain.model import SpcAlarm
from qualitybridge.domain.records import SpcAlarmRecord
from qualitybridge.services.event_bus import EventBus
from qualitybridge.services.master_data import MasterData
from qualitybridge.store import Store

__all__ = ["MAX_SEVERITY", "MIN_SEVERITY", "SpcAlarmService"]

_log = logging.getLogger(__name__)

MIN_SEVERITY = 1
MAX_SEVERITY = 1000


class SpcAlarmService:
    def __init__(
        self,
        store: Store,
        master_data: MasterData,
        *,
        events: EventBus | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._master = master_data
        self._clock = clock
        self._events = events or EventBus()

    async def report_spc_alarm(
        self,
        *,
        order_no: str,
        operation_no: str,
        characteristic_id: str,
        rule: str,
        severity: int,
        message: str,
        reported_by: str,
        client_alarm_id: str | None = None,
    ) -> SpcAlarmRecord:
        """Validate and store one alarm; raises a ReportRefused subclass when refused.

        A client alarm id the caller used before answers that alarm (a retry after a lost answer books nothing
        new), or is refused with ClientIdReused if the alarm differs.
        """
        content = (order_no, operation_no, characteristic_id, rule, severity, message)
        if client_alarm_id:
            first = await self._store.spc_alarm_by_client_id(client_alarm_id, reported_by)
            if first is not None:
                return _repeat(first, content, client_alarm_id)
        self._master.find_characteristic(order_no, operation_no, characteristic_id)
        if not MIN_SEVERITY <= severity <= MAX_SEVERITY:
            raise InvalidValue("Severity", f"severity must be {MIN_SEVERITY}..{MAX_SEVERITY}, got {severity}")
        record = SpcAlarmRecord(
            alarm_id=new_record_id(),
            alarm=SpcAlarm(
                order_no=order_no,
                operation_no=operation_no,
                characteristic_id=characteristic_id,
                rule=rule,
                severity=severity,
                message=message,
                raised_at=self._clock(),
            ),
            reported_by=reported_by,
            client_alarm_id=client_alarm_id or None,
        )
        stored, created = await self._store.record_spc_alarm(record)
        if not created:  # a concurrent call with the same client alarm id stored first
            return _repeat(stored, content, client_alarm_id or "")
        _log.info(
            "SPC alarm %s on %s/%s/%s by %s: rule %s, severity %d",
            record.alarm_id,
            order_no,
            operation_no,
            characteristic_id,
            reported_by,
            rule,
            severity,
        )
        await self._events.publish(SpcAlarmRaised(record))
        return record


def _repeat(
    first: SpcAlarmRecord, content: tuple[str, str, str, str, int, str], client_alarm_id: str
) -> SpcAlarmRecord:
    alarm = first.alarm
    kept = (alarm.order_no, alarm.operation_no, alarm.characteristic_id, alarm.rule, alarm.severity, alarm.message)
    if kept != content:
        raise ClientIdReused(
            "ClientAlarmId",
            f"ClientAlarmId {client_alarm_id!r} was used before for another alarm ({first.alarm_id}); a retry "
            "repeats it unchanged, a new alarm needs a new id",
        )
    return first
