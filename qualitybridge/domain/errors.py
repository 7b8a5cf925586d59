"""Why a report is refused, in domain terms.

    QualityBridgeError
    └── ReportRefused            the report was checked and not accepted; nothing was stored
        ├── UnknownReference     order, operation, characteristic or gauge not (or no longer) released
        ├── InvalidValue         a value outside what the characteristic or the clock allows (NaN, future time)
        └── GaugeBlocked         the test equipment's calibration is expired or it is locked

The OPC UA layer maps each to one StatusCode (docs/report-methods.md); the domain knows nothing of them.
"""

from __future__ import annotations

__all__ = ["GaugeBlocked", "InvalidValue", "QualityBridgeError", "ReportRefused", "UnknownReference"]


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
