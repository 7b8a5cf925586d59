"""QualityBridge.ReportConfirmation and QualityBridge.ReportSpcAlarm: production confirmations and SPC alarms.

Both follow ReportMeasurement's pattern (`method_results.guarded_call`): permission REPORT for the operation's work
centre, arguments checked, the domain service decides, refusals become StatusCodes.
"""

from __future__ import annotations

from typing import Any

from asyncua import ua

from qualitybridge.server.methods.arguments import ArgumentSpec
from qualitybridge.server.methods.results import guarded_call
from qualitybridge.server.security.permissions import Permission
from qualitybridge.services.confirmations import ConfirmationRequest, ConfirmationService
from qualitybridge.services.master_data import MasterData
from qualitybridge.services.spc_alarms import SpcAlarmService

__all__ = [
    "REPORT_CONFIRMATION_ARGUMENTS",
    "REPORT_SPC_ALARM_ARGUMENTS",
    "ReportConfirmationMethod",
    "ReportSpcAlarmMethod",
]

_V = ua.VariantType
_S = _V.String
_QUANTITY = (_V.Double, _V.Float)
# Any integer encoding: a client library's plain integer may arrive as Int32 or Int64; the range is checked anyway.
_INTEGER = (_V.UInt16, _V.Int16, _V.UInt32, _V.Int32, _V.UInt64, _V.Int64, _V.Byte, _V.SByte)

REPORT_CONFIRMATION_ARGUMENTS: tuple[ArgumentSpec, ...] = (
    ArgumentSpec("OrderNumber", (_S,), max_length=32),
    ArgumentSpec("OperationNumber", (_S,), max_length=16),
    ArgumentSpec("YieldQuantity", _QUANTITY),
    ArgumentSpec("ScrapQuantity", _QUANTITY),
    ArgumentSpec("ReworkQuantity", _QUANTITY),
    ArgumentSpec("Unit", (_S,), required=False, max_length=3),
    ArgumentSpec("ReasonCode", (_S,), required=False, max_length=32),
    ArgumentSpec("Final", (_V.Boolean,)),
    ArgumentSpec("ClientConfirmationId", (_S,), required=False, max_length=128),
)

REPORT_SPC_ALARM_ARGUMENTS: tuple[ArgumentSpec, ...] = (
    ArgumentSpec("OrderNumber", (_S,), max_length=32),
    ArgumentSpec("OperationNumber", (_S,), max_length=16),
    ArgumentSpec("CharacteristicId", (_S,), max_length=64),
    ArgumentSpec("Rule", (_S,), max_length=64),
    ArgumentSpec("Severity", _INTEGER),
    ArgumentSpec("Message", (_S,), required=False, max_length=1000),
    ArgumentSpec("ClientAlarmId", (_S,), required=False, max_length=128, omittable=True),
)


class ReportConfirmationMethod:
    """Handler for QualityBridge.ReportConfirmation; link `call`."""

    def __init__(self, service: ConfirmationService, master_data: MasterData) -> None:
        self._service = service
        self._master = master_data

    async def call(self, _parent: ua.NodeId, *arguments: ua.Variant) -> ua.CallMethodResult:
        return await guarded_call(
            "ReportConfirmation",
            Permission.REPORT,
            REPORT_CONFIRMATION_ARGUMENTS,
            arguments,
            lambda values: self._master.work_centre(values["OrderNumber"], values["OperationNumber"]),
            self._confirm,
        )

    async def _confirm(self, values: dict[str, Any], who: str) -> list[ua.Variant]:
        request = ConfirmationRequest(
            order_no=values["OrderNumber"],
            operation_no=values["OperationNumber"],
            yield_quantity=values["YieldQuantity"],
            scrap_quantity=values["ScrapQuantity"],
            rework_quantity=values["ReworkQuantity"],
            unit=values["Unit"],
            reason_code=values["ReasonCode"],
            final=bool(values["Final"]),
            client_confirmation_id=values["ClientConfirmationId"] or None,
        )
        record = await self._service.report_confirmation(request, reported_by=who)
        return [ua.Variant(record.confirmation_id, _S)]


class ReportSpcAlarmMethod:
    """Handler for QualityBridge.ReportSpcAlarm; link `call`."""

    def __init__(self, service: SpcAlarmService, master_data: MasterData) -> None:
        self._service = service
        self._master = master_data

    async def call(self, _parent: ua.NodeId, *arguments: ua.Variant) -> ua.CallMethodResult:
        return await guarded_call(
            "ReportSpcAlarm",
            Permission.REPORT,
            REPORT_SPC_ALARM_ARGUMENTS,
            arguments,
            lambda values: self._master.work_centre(values["OrderNumber"], values["OperationNumber"]),
            self._raise,
        )

    async def _raise(self, values: dict[str, Any], who: str) -> list[ua.Variant]:
        record = await self._service.report_spc_alarm(
            order_no=values["OrderNumber"],
            operation_no=values["OperationNumber"],
            characteristic_id=values["CharacteristicId"],
            rule=values["Rule"],
            severity=int(values["Severity"]),
            message=values["Message"],
            reported_by=who,
            client_alarm_id=values["ClientAlarmId"] or None,
        )
        return [ua.Variant(record.alarm_id, _S)]
