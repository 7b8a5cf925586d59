"""Refusals logged so that a flood cannot turn into a log flood: at most once per `_LOG_INTERVAL_SECONDS` per
session and kind, with a count, and without asyncua's own ERROR line per refused request.

asyncua internals: the "asyncua.server.uaprocessor" logger and its "sending service fault response" message
"""

from __future__ import annotations

import logging
import time

from asyncua import ua

from qualitybridge.server.limits.rate import RATE_LIMITED

# The package's name, as before it was split into modules: docs/configuration.md and log configurations name it.
_log = logging.getLogger("qualitybridge.server.limits")

# Refusals that asyncua would log at ERROR, one line each; LimitedSession logs them itself, counted.
_QUIETED_FAULTS = frozenset(
    ua.status_codes.get_name_and_doc(code)[0]
    for code in (
        ua.StatusCodes.BadTooManySessions,
        ua.StatusCodes.BadTooManySubscriptions,
        ua.StatusCodes.BadTooManyOperations,
        RATE_LIMITED,
    )
)

_LOG_INTERVAL_SECONDS = 10.0


class RefusalLog:
    """Logs refusals of one session at most once per interval and kind, with how many there were."""

    def __init__(self, session_name: str) -> None:
        self._session_name = session_name
        self._counts: dict[str, int] = {}
        self._logged_at: dict[str, float] = {}

    def refused(self, kind: str, status: int, detail: str = "") -> None:
        self._counts[kind] = self._counts.get(kind, 0) + 1
        now = time.monotonic()
        if now - self._logged_at.get(kind, -_LOG_INTERVAL_SECONDS) < _LOG_INTERVAL_SECONDS:
            return
        count = self._counts.pop(kind)
        self._logged_at[kind] = now
        _log.warning(
            "Limit %s exceeded by session %s: %d request(s) refused with %s%s",
            kind,
            self._session_name,
            count,
            _status_name(status),
            f" ({detail})" if detail else "",
        )


class _QuietLimitFaults(logging.Filter):
    """Drops asyncua's per-request ERROR line for limit refusals, so that a flood does not become a log flood."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (
            isinstance(args, tuple)
            and record.msg == "sending service fault response: %s (%s)"
            and args[-1] in _QUIETED_FAULTS
        )


def quiet_limit_faults() -> None:
    """Install the filter on asyncua's request processor logger (once, however often it is called)."""
    processor_log = logging.getLogger("asyncua.server.uaprocessor")
    if not any(isinstance(existing, _QuietLimitFaults) for existing in processor_log.filters):
        processor_log.addFilter(_QuietLimitFaults())


def _status_name(status: int) -> str:
    return ua.status_codes.get_name_and_doc(status)[0]
