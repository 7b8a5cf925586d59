"""What the shop floor reported and QualityBridge kept: accepted measurements with their gauge flag, refused
attempts, production confirmations and SPC alarms, each with who reported it and when it arrived.

They wrap the plain report types of `model` with the bookkeeping the store and the ERP relay need.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from qualitybridge.domain.model import CalibrationStatus, Confirmation, MeasurementReport, MeasurementResult, SpcAlarm

__all__ = ["AcceptedMeasurement", "ConfirmationRecord", "RefusedMeasurement", "SpcAlarmRecord"]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AcceptedMeasurement(_Record):
    """A judged result ready to store; `gauge_due_soon` marks one taken with a gauge whose calibration is due soon."""

    result: MeasurementResult
    gauge_due_soon: bool = False


class RefusedMeasurement(_Record):
    """A report refused because its test equipment was blocked: kept for the audit trail, never relayed."""

    report: MeasurementReport
    calibration_status: CalibrationStatus
    reason: str
    reported_by: str
    refused_at: datetime


class ConfirmationRecord(_Record):
    """An accepted production confirmation; the client id makes a repeated call return this record."""

    confirmation_id: str
    confirmation: Confirmation
    client_confirmation_id: str | None = None
    reported_by: str
    received_at: datetime


class SpcAlarmRecord(_Record):
    """An accepted SPC alarm; the client alarm id (scoped to `reported_by`) makes a repeated call return it."""

    alarm_id: str
    alarm: SpcAlarm
    reported_by: str
    client_alarm_id: str | None = None
