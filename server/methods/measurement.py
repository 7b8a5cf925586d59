"""The OPC UA face of reporting: turns ReportMeasurement calls into domain reports and refusals into StatusCodes.

The mapping of refusals to StatusCodes is `method_results` (documented in docs/report-methods.md).
Every refusal is logged with the caller and a readable reason; no result is stored for a refused call.
"""

from __future__ import annotations

from typing import Any

from asyncua import ua

from qualitybridge.domain.model import MeasurementReport
from qualitybridge.server.methods.arguments import ArgumentSpec
from qualitybridge.server.methods.results import guarded_call
from qualitybridge.server.security.permissions import Permission
from qualitybridge.services.reporting import ReportingService

__all__ = ["REPORT_MEASUREMENT_ARGUMENTS", "ReportMeasurementMethod"]

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


class ReportMeasurementMethod:
    """Handler for QualityBridge.ReportMeasurement.

    Link `call`, a coroutine function: asyncua runs anything else (even an object with an async __call__) in a
    thread pool, where the caller context is lost and throughput drops.
    """

    def __init__(self, service: ReportingService) -> None:
        self._service = service

    async def call(self, _parent: ua.NodeId, *arguments: ua.Variant) -> ua.CallMethodResult:
        return await guarded_call(
            "ReportMeasurement",
            Permission.REPORT,
            REPORT_MEASUREMENT_ARGUMENTS,
            arguments,
            lambda values: self._service.master_data.work_centre(values["OrderNumber"], values["OperationNumber"]),
            self._report,
        )

    async def _report(self, values: dict[str, Any], who: str) -> list[ua.Variant]:
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
        return [
            ua.Variant(result.result_id, ua.VariantType.String),
            ua.Variant(int(result.evaluation), ua.VariantType.Int32),
        ]
