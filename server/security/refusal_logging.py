"""A refused login or client certificate (or a request the role may not make) is logged once, at WARNING, by
QualityBridge.

asyncua answers the refusal with a ServiceFault and logs ``sending service fault response: … (BadUserAccessDenied)``
at ERROR from ``asyncua.server.uaprocessor`` — a second line for the same event, at a level that pages someone
for a mistyped password. `DuplicateRefusalFilter` drops exactly that line, and only when QualityBridge has logged
its own "Refused …" or "Denied …" WARNING for the same request just before (same asyncio task, within a few
seconds); every other asyncua error stays.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar

__all__ = ["DuplicateRefusalFilter"]

_ASYNCUA_LOGGER = "asyncua.server.uaprocessor"
_ASYNCUA_MESSAGE = "sending service fault response: %s (%s)"
# The StatusCodes a refused CreateSession/ActivateSession is answered with.
_SESSION_REFUSALS = frozenset(
    {
        "BadUserAccessDenied",
        "BadIdentityTokenInvalid",
        "BadIdentityTokenRejected",
        "BadSecurityChecksFailed",
        "BadSecurityPolicyRejected",
        "BadCertificateInvalid",
        "BadCertificateUntrusted",
        "BadCertificateUriInvalid",
        "BadCertificateTimeInvalid",
        "BadCertificateIssuerTimeInvalid",
        "BadCertificateHostNameInvalid",
        "BadCertificateUseNotAllowed",
        "BadCertificateIssuerUseNotAllowed",
        "BadCertificateRevoked",
        "BadCertificateIssuerRevoked",
        "BadCertificateRevocationUnknown",
        "BadCertificateIssuerRevocationUnknown",
        "BadCertificateChainIncomplete",
    }
)
_WINDOW_SECONDS = 5.0

# When QualityBridge last logged a refusal in this asyncio task (asyncua handles a connection's requests in one).
_refusal_logged_at: ContextVar[float | None] = ContextVar("qualitybridge_refusal_logged_at", default=None)


class DuplicateRefusalFilter(logging.Filter):
    """Add to the handlers that write the log (it must see both QualityBridge's and asyncua's records)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("qualitybridge.") and record.levelno == logging.WARNING:
            if isinstance(record.msg, str) and record.msg.startswith(("Refused", "Denied")):
                _refusal_logged_at.set(time.monotonic())
            return True
        if record.name != _ASYNCUA_LOGGER or record.msg != _ASYNCUA_MESSAGE:
            return True
        logged_at = _refusal_logged_at.get()
        args = record.args
        if (
            logged_at is None
            or time.monotonic() - logged_at > _WINDOW_SECONDS
            or not isinstance(args, tuple)
            or not args
            or args[-1] not in _SESSION_REFUSALS
        ):
            return True
        _refusal_logged_at.set(None)  # one QualityBridge line silences one asyncua line
        return False
