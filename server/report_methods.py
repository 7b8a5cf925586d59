"""The OPC UA face of reporting: turns method calls into domain reports and refusals into StatusCodes.

The mapping of refusals to StatusCodes lives here and only here (documented in docs/report-methods.md).
Every refusal is logged with the caller and a readable reason; nothing is stored for a refused call.
"""

from __future__ import annotations

import logging

from asyncua import ua

from qualitybridge.domain.errors import GaugeBlocked, InvalidValue, ReportRefused, UnknownReference
from qualitybridge.domain.model import MeasurementReport
from qualitybridge.reporting import ReportingService
from qualitybridge.server.arguments import ArgumentError, ArgumentSpec, parse_arguments, status_code
from qualitybridge.server.permissions import AccessDenied, Permission, authorize

__all__ = ["REPORT_MEASUREMENT_ARGUMENTS", "ReportMeasurementMethod"]

_log = logging.getLogger(__name__)

_S = ua.VariantType.String
REPORT_MEASUREMENT_ARGUMENTS: tuple[ArgumentSpec, ...] = (
    ArgumentSpec("OrderNumber", (_S,), max_length=32),
    ArgumentSpec("OperationNumber", (_S,), max_length=16),
    ArgumentSpec("CharacteristicId", (_S,), max_length=64),
    ArgumentSpec("Value", (ua.VariantType.Double, ua.VariantType.Float)),
    ArgumentSpec("EquipmentId", (_S,), max_length=64),
    ArgumentSpec("PartSerial", (_S,), max_length=128),
    ArgumentSpec("MeasuredAt", (ua.VariantType.DateTime,)),
    ArgumentSpec("ClientResultId", (_S,), required=False, max_length=128),
)

_REFUSAL_STATUS: tuple[tuple[type[ReportRefused], int], ...] = (
    (UnknownReference, ua.StatusCodes.BadNotFound),
    (InvalidValue, ua.StatusCodes.BadOutOfRange),
    (GaugeBlocked, ua.StatusCodes.BadInvalidState),
)


def _status_for(refusal: ReportRefused) -> int:
    for kind, status in _REFUSAL_STATUS:
        if isinstance(refusal, kind):
            return status
    return ua.StatusCodes.BadInvalidArgument


def _refused(status: int, argument_count: int, index: int | None) -> ua.CallMethodResult:
    result = ua.CallMethodResult()
    result.StatusCode = status_code(status)
    result.InputArgumentResults = [
        status_code(status if i == index else ua.StatusCodes.Good) for i in range(argument_count)
    ]
    return result


class ReportMeasurementMethod:
    """Handler for QualityBridge.ReportMeasurement.

    Link `call`, a coroutine function: asyncua runs anything else (even an object with an async __call__) in a
    thread pool, where the caller context is lost and throughput drops.
    """

    def __init__(self, service: ReportingService) -> None:
        self._service = service
        self._index = {spec.name: i for i, spec in enumerate(REPORT_MEASUREMENT_ARGUMENTS)}

    async def call(self, _parent: ua.NodeId, *arguments: ua.Variant) -> ua.CallMethodResult:
        try:
            user = authorize(Permission.REPORT)
        except AccessDenied as exc:
            _log.warning("ReportMeasurement refused (BadUserAccessDenied): %s", exc)
            return _refused(ua.StatusCodes.BadUserAccessDenied, len(arguments), None)
        who = user.name or "anonymous"
        try:
            values = parse_arguments(REPORT_MEASUREMENT_ARGUMENTS, arguments)
            work_centre = self._service.master_data.work_centre(values["OrderNumber"], values["OperationNumber"])
            authorize(Permission.REPORT, work_centre=work_centre)
            report = MeasurementReport(
                order_no=values["OrderNumber"],
                operation_no=values["OperationNumber"],
                characteristic_id=values["CharacteristicId"],
                value=values["Value"],
                equipment_id=values["EquipmentId"],
                part_serial=values["PartSerial"],
                measured_at=values["MeasuredAt"],
                client_result_id=values["ClientResultId"] or None,
            )
            result = await self._service.report_measurement(report, reported_by=who)
        except AccessDenied as exc:
            _log.warning("ReportMeasurement by %s refused (BadUserAccessDenied): %s", who, exc)
            return _refused(ua.StatusCodes.BadUserAccessDenied, len(arguments), None)
        except ArgumentError as exc:
            _log.warning("ReportMeasurement by %s refused (%s): %s", who, status_code(exc.status).name, exc.message)
            return _refused(exc.status, len(arguments), exc.index)
        except ReportRefused as exc:
            status = _status_for(exc)
            _log.warning("ReportMeasurement by %s refused (%s): %s", who, status_code(status).name, exc.message)
            return _refused(status, len(arguments), self._index.get(exc.field))
        answer = ua.CallMethodResult()
        answer.StatusCode = status_code(ua.StatusCodes.Good)
        answer.InputArgumentResults = [status_code(ua.StatusCodes.Good)] * len(arguments)
        answer.OutputArguments = [
            ua.Variant(result.result_id, ua.VariantType.String),
            ua.Variant(int(result.evaluation), ua.VariantType.Int32),
        ]
        return answer
