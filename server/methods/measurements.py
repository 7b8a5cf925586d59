"""QualityBridge.ReportMeasurement and ReportMeasurements: one measurement per call, or a PLC's buffer in one call.

Both take the same path: arguments checked by the same element rules, turned into a report by
`measurement_report`, judged and stored by `ReportingService.report_measurements` (a single call is the one-entry
case). Refusals map to StatusCodes in `results` (documented in docs/report-methods.md); every refusal is logged
with the caller and a readable reason; no result is stored for a refused entry.

ReportMeasurements takes parallel arrays (entry i is element i of every array). Problems with the call as a whole
(role, argument types, unequal lengths, batch size) refuse the call; everything else is decided per entry, exactly
as ReportMeasurement would have answered it alone. All accepted entries are stored in one transaction.

A late measurement (judged against a plan version superseded since) is answered with the Good-class
`PLAN_VERSION_SUPERSEDED` and a note naming the version, so that neither method's outputs change for old clients.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from asyncua import ua

from qualitybridge.domain.model import MeasurementReport, MeasurementResult, ResultEvaluation, checked_instance
from qualitybridge.server.methods.arguments import (
    ArgumentError,
    ArgumentSpec,
    parse_arguments,
    parse_element,
    status_code,
)
from qualitybridge.server.methods.results import answered, caller_name, guarded_call, refused, status_for
from qualitybridge.server.security.permissions import AccessDenied, Permission, authorize
from qualitybridge.services.reporting import MeasurementOutcome, ReportingService

__all__ = [
    "PLAN_VERSION_SUPERSEDED",
    "REPORT_MEASUREMENTS_ARGUMENTS",
    "REPORT_MEASUREMENT_ARGUMENTS",
    "ReportMeasurementMethod",
    "ReportMeasurementsMethod",
    "measurement_report",
    "report_from_row",
]

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
_MEASURED_AT = 6  # REPORT_MEASUREMENT_ARGUMENTS' index of MeasuredAt, the argument that chose the plan version

# Accepted, and judged against the plan version in force at MeasuredAt, which a newer version has superseded since:
# the value went into the earlier version's record (docs/report-methods.md). Good class, so a client that checks
# only the severity sees an accepted report, as before.
PLAN_VERSION_SUPERSEDED = ua.StatusCodes.GoodEntryInserted


def _superseded_note(result: MeasurementResult) -> str:
    """What a late measurement's answer says: which plan version it was judged against, and why that one."""
    return (
        f"judged against plan version {result.plan_version}, the version in force at MeasuredAt "
        f"{result.report.measured_at.isoformat()}; a newer plan version is in force now"
    )


def measurement_report(values: Mapping[str, Any]) -> MeasurementReport:
    """The domain report from a call's checked arguments, by name."""
    return report_from_row([values[spec.name] for spec in REPORT_MEASUREMENT_ARGUMENTS])


def report_from_row(row: Sequence[Any]) -> MeasurementReport:
    """The domain report from checked values in REPORT_MEASUREMENT_ARGUMENTS' order: the one place a call (or a
    batch entry) becomes a report.

    The element rules (`parse_element`) answer exactly the report's types — stripped strings, a finite float, an
    aware datetime — so the report is built without pydantic validating them again (`checked_instance`)."""
    order_no, operation_no, characteristic_id, value, equipment_id, part_serial, measured_at, client_result_id = row
    return checked_instance(
        MeasurementReport,
        {
            "order_no": order_no,
            "operation_no": operation_no,
            "characteristic_id": characteristic_id,
            "value": value,
            "equipment_id": equipment_id,
            "part_serial": part_serial,
            "measured_at": measured_at,
            "client_result_id": client_result_id or None,
        },
    )


class ReportMeasurementMethod:
    """Handler for QualityBridge.ReportMeasurement.

    Link `call`, a coroutine function: asyncua runs anything else (even an object with an async __call__) in a
    thread pool, where the caller context is lost and throughput drops.
    """

    def __init__(self, service: ReportingService) -> None:
        self._service = service

    async def call(self, _parent: ua.NodeId, *arguments: ua.Variant) -> ua.CallMethodResult:
        judged: list[MeasurementResult] = []

        async def report(values: dict[str, Any], who: str) -> list[ua.Variant]:
            result = await self._service.report_measurement(measurement_report(values), reported_by=who)
            judged.append(result)
            return [
                ua.Variant(result.result_id, ua.VariantType.String),
                ua.Variant(int(result.evaluation), ua.VariantType.Int32),
            ]

        answer = await guarded_call(
            "ReportMeasurement",
            Permission.REPORT,
            REPORT_MEASUREMENT_ARGUMENTS,
            arguments,
            lambda values: self._service.master_data.work_centre(values["OrderNumber"], values["OperationNumber"]),
            report,
        )
        if judged and judged[0].plan_version_superseded:
            _mark_superseded(answer, judged[0])
        return answer


def _mark_superseded(answer: ua.CallMethodResult, result: MeasurementResult) -> None:
    """The call's StatusCode, and MeasuredAt's entry in InputArgumentResults with the note as its diagnostic info:
    MeasuredAt is the argument that chose the earlier plan version."""
    count = len(answer.InputArgumentResults)
    answer.StatusCode = status_code(PLAN_VERSION_SUPERSEDED)
    answer.InputArgumentResults = [
        status_code(PLAN_VERSION_SUPERSEDED if i == _MEASURED_AT else ua.StatusCodes.Good) for i in range(count)
    ]
    answer.InputArgumentDiagnosticInfos = [
        ua.DiagnosticInfo(AdditionalInfo=ua.String(_superseded_note(result)))
        if i == _MEASURED_AT
        else ua.DiagnosticInfo()
        for i in range(count)
    ]


_log = logging.getLogger(__name__)

_PLURAL = {
    "OrderNumber": "OrderNumbers",
    "OperationNumber": "OperationNumbers",
    "CharacteristicId": "CharacteristicIds",
    "Value": "Values",
    "EquipmentId": "EquipmentIds",
    "PartSerial": "PartSerials",
    "MeasuredAt": "MeasuredAt",
    "ClientResultId": "ClientResultIds",
}
# Element rules are those of ReportMeasurement's scalar arguments, so an entry is judged as a single call would be.
_ELEMENT_SPECS = REPORT_MEASUREMENT_ARGUMENTS
REPORT_MEASUREMENTS_ARGUMENTS: tuple[ArgumentSpec, ...] = tuple(
    replace(spec, name=_PLURAL[spec.name], array=True) for spec in _ELEMENT_SPECS
)
_CLIENT_IDS = len(REPORT_MEASUREMENTS_ARGUMENTS) - 1  # may be empty: no entry has a client result id


def _distinct(raw: Any) -> tuple[type, Any]:
    """What tells a batch's values apart for the check-once cache: floats by their bits, as 0.0 == -0.0 (each
    entry keeps the value it sent); 1 and True by their type."""
    return (float, raw.hex()) if isinstance(raw, float) else (type(raw), raw)


class _EntryRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_NUMBER_TYPES = frozenset({ua.VariantType.Double, ua.VariantType.Float})


def _checked_element(spec: ArgumentSpec, raw: Any, index: int) -> Any:
    """The element's value by the element rules, or the _EntryRefused its entry is answered with."""
    try:
        return parse_element(spec, raw, index)
    except ArgumentError as exc:
        return _EntryRefused(exc.status, exc.message)


def _checked_column(spec: ArgumentSpec, index: int, column: list[Any]) -> list[Any]:
    """Every element of one array checked by the element rules, as a whole where it can be: a column of finite
    floats is what `parse_element` would answer element by element; otherwise each distinct value is checked once
    (a batch repeats its order, operation, characteristic, gauge and often its time). A refused element's place
    holds its _EntryRefused."""
    if _NUMBER_TYPES.intersection(spec.types):
        if all(type(raw) is float for raw in column) and all(map(math.isfinite, column)):
            return column
        known: dict[tuple[type, Any], Any] = {}
        checked = []
        for raw in column:  # mixed or non-finite: element by element, each distinct value (by its bits) once
            key = _distinct(raw)
            if key not in known:
                known[key] = _checked_element(spec, raw, index)
            checked.append(known[key])
        return checked
    # Strings (or None) and DateTimes: no two of them compare equal across types, so the value itself is the key.
    verdicts = {raw: _checked_element(spec, raw, index) for raw in dict.fromkeys(column)}
    return [verdicts[raw] for raw in column]


def _checked_entries(columns: list[list[Any]]) -> tuple[list[tuple[Any, ...]], dict[int, _EntryRefused]]:
    """The batch's entries as rows of checked values, and the refusal of each refused entry: the first refused
    argument in ReportMeasurement's order, as a single call would have been refused."""
    checked = [_checked_column(spec, index, columns[index]) for index, spec in enumerate(_ELEMENT_SPECS)]
    refusals: dict[int, _EntryRefused] = {}
    for column in checked:
        for entry, value in enumerate(column):
            if isinstance(value, _EntryRefused):
                refusals.setdefault(entry, value)
    return list(zip(*checked, strict=True)), refusals


_NOT_GOOD = 3 << 30  # a StatusCode's severity bits: both clear means Good


class _Answers:
    """The five parallel output arrays, filled entry by entry."""

    def __init__(self, entries: int) -> None:
        self.result_ids = [""] * entries
        self.evaluations = [int(ResultEvaluation.UNDEFINED)] * entries
        self.statuses: list[int] = [ua.StatusCodes.Good] * entries
        self.messages = [""] * entries
        self.gauge_due_soon = [False] * entries

    def refuse(self, entry: int, status: int, message: str) -> None:
        self.statuses[entry], self.messages[entry] = status, message

    def take(self, entry: int, outcome: MeasurementOutcome) -> None:
        if outcome.refusal is not None:
            self.refuse(entry, status_for(outcome.refusal), outcome.refusal.message)
        elif outcome.stored is not None:
            result = outcome.stored.result
            self.result_ids[entry] = result.result_id
            self.evaluations[entry] = int(result.evaluation)
            self.gauge_due_soon[entry] = outcome.stored.gauge_due_soon
            if result.plan_version_superseded:
                self.statuses[entry], self.messages[entry] = PLAN_VERSION_SUPERSEDED, _superseded_note(result)

    @property
    def refused(self) -> list[str]:
        return [
            message
            for status, message in zip(self.statuses, self.messages, strict=True)
            if status & _NOT_GOOD  # as StatusCode.is_good, without a StatusCode per entry
        ]

    def outputs(self) -> list[ua.Variant]:
        # One StatusCode per distinct status, shared by the entries that have it (encoding only reads them).
        codes = {status: status_code(status) for status in set(self.statuses)}
        return [
            ua.Variant(self.result_ids, ua.VariantType.String),
            ua.Variant(self.evaluations, ua.VariantType.Int32),
            ua.Variant([codes[status] for status in self.statuses], ua.VariantType.StatusCode),
            ua.Variant(self.messages, ua.VariantType.String),
            ua.Variant(self.gauge_due_soon, ua.VariantType.Boolean),
        ]


class ReportMeasurementsMethod:
    """Handler for QualityBridge.ReportMeasurements; link `call` (a coroutine function, see ReportMeasurementMethod)."""

    def __init__(self, service: ReportingService, *, max_batch_size: int) -> None:
        self._service = service
        self._max_batch_size = max_batch_size

    async def call(self, _parent: ua.NodeId, *arguments: ua.Variant) -> ua.CallMethodResult:
        count = len(arguments)
        try:
            user = authorize(Permission.REPORT)
        except AccessDenied as exc:
            _log.warning("ReportMeasurements refused (BadUserAccessDenied): %s", exc)
            return refused(ua.StatusCodes.BadUserAccessDenied, count, None)
        who = caller_name(user)
        try:
            columns = self._columns(arguments)
        except ArgumentError as exc:
            _log.warning("ReportMeasurements by %s refused (%s): %s", who, status_code(exc.status).name, exc.message)
            return refused(exc.status, count, exc.index, exc.message)

        entries = len(columns[0])
        answers = _Answers(entries)
        reports: list[MeasurementReport] = []
        positions: list[int] = []
        # Checked column by column (each distinct value once), each operation's work centre authorized once.
        rows, refused_entries = _checked_entries(columns)
        work_centre_verdicts: dict[tuple[str, str], _EntryRefused | None] = {}  # None: allowed
        for entry, row in enumerate(rows):
            refusal = refused_entries.get(entry) if refused_entries else None
            if refusal is None:
                refusal = self._work_centre_refusal(row[0], row[1], work_centre_verdicts)
            if refusal is not None:
                answers.refuse(entry, refusal.status, refusal.message)
                continue
            positions.append(entry)
            reports.append(report_from_row(row))

        outcomes = await self._service.report_measurements(reports, reported_by=who) if reports else []
        for entry, outcome in zip(positions, outcomes, strict=True):
            answers.take(entry, outcome)
        if refusals := answers.refused:
            _log.warning(
                "ReportMeasurements by %s: %d of %d entries refused, first: %s",
                who,
                len(refusals),
                entries,
                refusals[0],
            )
        return answered(answers.outputs(), count)

    def _columns(self, arguments: Sequence[ua.Variant]) -> list[list[Any]]:
        """The arrays, checked as a whole: types, equal lengths, not empty, not more than the batch limit."""
        values = parse_arguments(REPORT_MEASUREMENTS_ARGUMENTS, arguments)
        columns = [values[spec.name] for spec in REPORT_MEASUREMENTS_ARGUMENTS]
        entries = len(columns[0])
        for index, column in enumerate(columns):
            if index == _CLIENT_IDS and not column:
                columns[index] = [""] * entries
            elif len(column) != entries:
                raise ArgumentError(
                    ua.StatusCodes.BadInvalidArgument,
                    f"{REPORT_MEASUREMENTS_ARGUMENTS[index].name} has {len(column)} elements, "
                    f"OrderNumbers has {entries}; the arrays must be parallel",
                    index,
                )
        if entries == 0:
            raise ArgumentError(ua.StatusCodes.BadNothingToDo, "the batch is empty")
        if entries > self._max_batch_size:
            raise ArgumentError(
                ua.StatusCodes.BadTooManyOperations,
                f"{entries} entries, more than the batch limit of {self._max_batch_size}; split the batch",
            )
        return columns

    def _work_centre_refusal(
        self, order_no: str, operation_no: str, decided: dict[tuple[str, str], _EntryRefused | None]
    ) -> _EntryRefused | None:
        """Why the caller may not report for this operation's work centre (None: may), decided once per operation."""
        operation = (order_no, operation_no)
        if operation in decided:
            return decided[operation]
        work_centre = self._service.master_data.work_centre(order_no, operation_no)
        try:
            authorize(Permission.REPORT, work_centre=work_centre)
            refusal = None
        except AccessDenied as exc:
            refusal = _EntryRefused(ua.StatusCodes.BadUserAccessDenied, str(exc))
        decided[operation] = refusal
        return refusal
