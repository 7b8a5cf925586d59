"""How every QualityBridge method answers: refusals mapped to StatusCodes, results built the same way each time.

The mapping of domain refusals to StatusCodes lives here and only here (documented in docs/report-methods.md):

    UnknownReference    BadNotFound          order, operation, characteristic or gauge not released/known
    InvalidValue        BadOutOfRange        NaN/Inf, negative or too large quantity, time in the future, severity
    GaugeBlocked        BadInvalidState      test equipment expired or locked
    WrongOrderState     BadInvalidState      the order's state does not allow this
    InconsistentReport  BadInvalidArgument   inputs contradict each other or the master data
    ClientIdReused      BadEntryExists       the caller's client id names an earlier report of other content

`guarded_call` runs a method's whole life (permission, arguments, work centre, the action, the answer), so each
method states only what is its own. Every refusal is logged with the caller and a readable reason.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from asyncua import ua

from qualitybridge.domain.errors import (
    ClientIdReused,
    GaugeBlocked,
    InconsistentReport,
    InvalidValue,
    ReportRefused,
    UnknownReference,
    WrongOrderState,
)
from qualitybridge.server.methods.arguments import ArgumentError, ArgumentSpec, parse_arguments, status_code
from qualitybridge.server.security.identity import QualityBridgeUser
from qualitybridge.server.security.permissions import AccessDenied, Permission, authorize

__all__ = ["answered", "caller_name", "guarded_call", "refused", "status_for"]

_log = logging.getLogger(__name__)

_REFUSAL_STATUS: tuple[tuple[type[ReportRefused], int], ...] = (
    (UnknownReference, ua.StatusCodes.BadNotFound),
    (InvalidValue, ua.StatusCodes.BadOutOfRange),
    (GaugeBlocked, ua.StatusCodes.BadInvalidState),
    (WrongOrderState, ua.StatusCodes.BadInvalidState),
    (InconsistentReport, ua.StatusCodes.BadInvalidArgument),
    (ClientIdReused, ua.StatusCodes.BadEntryExists),
)

WorkCentreOf = Callable[[dict[str, Any]], str | None]
Action = Callable[[dict[str, Any], str], Awaitable[list[ua.Variant]]]


def status_for(refusal: ReportRefused) -> int:
    for kind, status in _REFUSAL_STATUS:
        if isinstance(refusal, kind):
            return status
    return ua.StatusCodes.BadInvalidArgument


def caller_name(user: QualityBridgeUser) -> str:
    return user.name or "anonymous"


def refused(status: int, argument_count: int, index: int | None, reason: str = "") -> ua.CallMethodResult:
    """A Bad answer; the offending argument (if one) carries the same code in InputArgumentResults and the
    readable reason in its InputArgumentDiagnosticInfos entry (AdditionalInfo), for clients that show it."""
    result = ua.CallMethodResult()
    result.StatusCode = status_code(status)
    result.InputArgumentResults = [
        status_code(status if i == index else ua.StatusCodes.Good) for i in range(argument_count)
    ]
    if reason and index is not None and 0 <= index < argument_count:
        result.InputArgumentDiagnosticInfos = [
            ua.DiagnosticInfo(AdditionalInfo=ua.String(reason)) if i == index else ua.DiagnosticInfo()
            for i in range(argument_count)
        ]
    return result


def answered(outputs: list[ua.Variant], argument_count: int) -> ua.CallMethodResult:
    result = ua.CallMethodResult()
    result.StatusCode = status_code(ua.StatusCodes.Good)
    result.InputArgumentResults = [status_code(ua.StatusCodes.Good)] * argument_count
    result.OutputArguments = outputs
    return result


_KEY_ARGUMENTS = {
    "OrderNumber": "order_no",
    "OperationNumber": "operation_no",
    "CharacteristicId": "characteristic_id",
    "EquipmentId": "equipment_id",
}


def _positions(specs: Sequence[ArgumentSpec]) -> dict[str, int]:
    """Argument name -> position; only a refusal needs it, so an accepted call does not build it."""
    return {spec.name: i for i, spec in enumerate(specs)}


def _business_keys(
    method: str, who: str, status: str, arguments: Sequence[ua.Variant], specs: Sequence[ArgumentSpec]
) -> dict[str, Any]:
    """The log record's business keys (for the JSON log): method, user, status and the scalar references sent."""
    keys: dict[str, Any] = {"method": method, "user": who, "status": status}
    index = _positions(specs)
    for argument, key in _KEY_ARGUMENTS.items():
        position = index.get(argument)
        if position is not None and position < len(arguments):
            value = getattr(arguments[position], "Value", None)
            if isinstance(value, str):
                keys[key] = value[:128]
    return keys


async def guarded_call(
    method: str,
    permission: Permission,
    specs: Sequence[ArgumentSpec],
    arguments: Sequence[ua.Variant],
    work_centre_of: WorkCentreOf,
    action: Action,
) -> ua.CallMethodResult:
    """Check the role, parse the arguments, check the work centre, run `action(values, caller)`, answer.

    The role is checked before the arguments are looked at, so that a caller without the permission learns
    nothing about which orders exist.
    """
    count = len(arguments)
    try:
        user = authorize(permission)
    except AccessDenied as exc:
        _log.warning("%s refused (BadUserAccessDenied): %s", method, exc)
        return refused(ua.StatusCodes.BadUserAccessDenied, count, None)
    who = caller_name(user)
    try:
        values = parse_arguments(specs, arguments)
        authorize(permission, work_centre=work_centre_of(values))
        outputs = await action(values, who)
    except AccessDenied as exc:
        keys = _business_keys(method, who, "BadUserAccessDenied", arguments, specs)
        _log.warning("%s by %s refused (BadUserAccessDenied): %s", method, who, exc, extra=keys)
        return refused(ua.StatusCodes.BadUserAccessDenied, count, None)
    except ArgumentError as exc:
        name = status_code(exc.status).name
        keys = _business_keys(method, who, name, arguments, specs)
        _log.warning("%s by %s refused (%s): %s", method, who, name, exc.message, extra=keys)
        return refused(exc.status, count, exc.index, exc.message)
    except ReportRefused as exc:
        status = status_for(exc)
        name = status_code(status).name
        keys = _business_keys(method, who, name, arguments, specs)
        _log.warning("%s by %s refused (%s): %s", method, who, name, exc.message, extra=keys)
        return refused(status, count, _positions(specs).get(exc.field), exc.message)
    return answered(outputs, count)
