"""Why a report is refused, in domain terms.

    QualityBridgeError
    └── ReportRefused            the report was checked and not accepted; no result was stored or relayed
        ├── UnknownReference     order, operation, characteristic or gauge not (or no longer) released
        ├── InvalidValue         a value outside what the characteristic or the clock allows (NaN, future time)
        ├── GaugeBlocked         the test equipment's calibration is expired or it is locked
        ├── WrongOrderState      the order's ISA-95 state does not allow this report or state change
        ├── InconsistentReport   inputs that contradict each other or the master data (scrap without a reason
        │                        code, nothing confirmed, a gauge of another type than the characteristic needs)
        └── ClientIdReused       the caller's client id (ClientResultId, ClientConfirmationId, ClientAlarmId) names
                                 a report of another content that this caller made before: not a retry

A report refused for a blocked gauge is kept as a refused attempt (for the audit trail), never relayed.
The OPC UA layer maps each to one StatusCode (docs/report-methods.md); the domain knows nothing of them.
"""

from __future__ import annotations

__all__ = [
    "ClientIdReused",
    "GaugeBlocked",
    "InconsistentReport",
    "InvalidValue",
    "QualityBridgeError",
    "ReportRefused",
    "UnknownReference",
    "WrongOrderState",
]


class QualityBridgeError(Exception):
    """Base of every error QualityBridge raises on purpose."""


class ReportRefused(QualityBridgeError):
    """A report was refused; `field` names the offending input, the message says why in plain words."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class UnknownReference(ReportRefused):
    pass


class InvalidValue(ReportRefused):
    pass


class GaugeBlocked(ReportRefused):
    pass


class WrongOrderState(ReportRefused):
    pass


class InconsistentReport(ReportRefused):
    pass


class ClientIdReused(ReportRefused):
    pass
