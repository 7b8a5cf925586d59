"""Limits against abuse: one client must not be able to starve the others or exhaust the server's memory.

Each limit of `[limits]` (qualitybridge.config.LimitsSettings) is enforced where asyncua 2.1 lets us do so
without patching it:

| module           | what it does                                                                           |
| ---------------- | -------------------------------------------------------------------------------------- |
| `limited_server` | `LimitedServer` (use it in place of `asyncua.Server`) and its `LimitedInternalServer`  |
| `session`        | `LimitedSession`: request rate and size, subscriptions and monitored items, logins     |
| `rate`           | `TokenBucket` for the request rate, `LoginThrottle` for failed logins                  |
| `transport`      | asyncua's transport limits; refusing an oversized chunk before it is buffered          |
| `array_limits`   | array elements per request message, charged before asyncua decodes any of them        |
| `refusal_log`    | refusals logged once per interval with a count, asyncua's own line per refusal dropped |
"""

from qualitybridge.server.limits.limited_server import LimitedInternalServer, LimitedServer
from qualitybridge.server.limits.rate import RATE_LIMITED, LoginThrottle, TokenBucket
from qualitybridge.server.limits.session import LimitedSession
from qualitybridge.server.limits.transport import transport_limits

__all__ = [
    "RATE_LIMITED",
    "LimitedInternalServer",
    "LimitedServer",
    "LimitedSession",
    "LoginThrottle",
    "TokenBucket",
    "transport_limits",
]
