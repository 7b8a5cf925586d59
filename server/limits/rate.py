"""How fast a client may go: a token bucket per session for requests, and a growing penalty per client address
after failed logins.

Failed logins are slowed down per client address by `LoginThrottle`: the user manager's `get_user` is
synchronous and its scrypt check blocks the event loop, so a client still in its penalty is refused with
BadUserAccessDenied without checking the password at all, and a new CreateSession from that address is answered
only after the penalty (an async wait that blocks nobody else). `session.LimitedSession` applies both.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from asyncua import ua

# A session over its request rate gets this. BadTooManyOperations means "this request is too big" and would tell
# the client not to retry; BadServerTooBusy would blame the whole server when only this session is throttled.
# BadResourceUnavailable says: the resource (this session's request budget) is used up for now — retry later.
RATE_LIMITED = ua.StatusCodes.BadResourceUnavailable

# Addresses remembered by the login throttle; beyond this the oldest are forgotten so memory stays bounded.
_MAX_THROTTLED_ADDRESSES = 10_000

Clock = Callable[[], float]


class TokenBucket:
    """`burst` tokens, refilled at `rate` per second; each admitted request takes one."""

    def __init__(self, rate: float, burst: int, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def try_take(self) -> bool:
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def seconds_until_token(self) -> float:
        self._refill()
        return max(0.0, (1.0 - self._tokens) / self.rate)


class LoginThrottle:
    """Exponentially growing penalty per client address after failed logins, capped, forgotten after a while."""

    def __init__(
        self,
        base_seconds: float,
        max_seconds: float,
        memory_seconds: float,
        clock: Clock = time.monotonic,
        max_addresses: int = _MAX_THROTTLED_ADDRESSES,
    ) -> None:
        self.base_seconds = base_seconds
        self.max_seconds = max_seconds
        self.memory_seconds = memory_seconds
        self._clock = clock
        self._max_addresses = max_addresses
        # address -> (consecutive failures, time of the last one); oldest first
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def delay_after(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        # 2**60 already exceeds any sensible cap; the min() keeps the float from overflowing.
        return min(self.max_seconds, self.base_seconds * 2.0 ** min(failures - 1, 60))

    def penalty_remaining(self, address: str) -> float:
        entry = self._failures.get(address)
        if entry is None:
            return 0.0
        failures, last = entry
        elapsed = self._clock() - last
        if elapsed > self.memory_seconds:
            del self._failures[address]
            return 0.0
        return max(0.0, self.delay_after(failures) - elapsed)

    def record_failure(self, address: str) -> float:
        """Count a failed login; returns the penalty the address now has."""
        failures = 1
        entry = self._failures.pop(address, None)
        if entry is not None and self._clock() - entry[1] <= self.memory_seconds:
            failures = entry[0] + 1
        self._failures[address] = (failures, self._clock())
        while len(self._failures) > self._max_addresses:
            self._failures.popitem(last=False)
        return self.delay_after(failures)

    def record_success(self, address: str) -> None:
        self._failures.pop(address, None)

    def __len__(self) -> int:
        return len(self._failures)
