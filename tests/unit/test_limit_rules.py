"""The pure parts of the limits against abuse: token bucket, login throttle, and the [limits] configuration.

What each limit answers through a real server is tested in tests/e2e/test_limits.py.
"""

from __future__ import annotations

import pytest

from qualitybridge.config import ConfigError, LimitsSettings, parse_config
from qualitybridge.server.limits import LoginThrottle, TokenBucket
from tests.fakes import MonotonicClock


def test_token_bucket_admits_a_burst_then_the_rate() -> None:
    clock = MonotonicClock()
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    assert [bucket.try_take() for _ in range(6)] == [True] * 5 + [False]
    assert bucket.seconds_until_token() == pytest.approx(0.1)
    clock.now += 0.25  # 2.5 tokens
    assert [bucket.try_take() for _ in range(3)] == [True, True, False]
    clock.now += 60
    assert sum(bucket.try_take() for _ in range(10)) == 5, "refill stops at the burst size"


def test_login_throttle_doubles_up_to_the_cap_per_address_and_forgets() -> None:
    clock = MonotonicClock()
    throttle = LoginThrottle(base_seconds=0.5, max_seconds=4, memory_seconds=60, clock=clock, max_addresses=3)
    assert [throttle.record_failure("10.0.0.1") for _ in range(6)] == [0.5, 1, 2, 4, 4, 4]
    assert throttle.penalty_remaining("10.0.0.1") == 4
    assert throttle.penalty_remaining("10.0.0.2") == 0, "another address is not slowed"
    clock.now += 3
    assert throttle.penalty_remaining("10.0.0.1") == pytest.approx(1)
    throttle.record_success("10.0.0.1")
    assert throttle.penalty_remaining("10.0.0.1") == 0
    throttle.record_failure("10.0.0.1")
    clock.now += 61
    assert throttle.penalty_remaining("10.0.0.1") == 0
    assert throttle.record_failure("10.0.0.1") == 0.5, "failures older than the memory are forgotten"
    for address in ("a", "b", "c", "d"):
        throttle.record_failure(address)
    assert len(throttle) == 3, "the table of addresses is bounded"


def test_limits_config_defaults_and_errors_name_the_key() -> None:
    defaults = LimitsSettings()
    assert defaults.effective_max_chunk_count * (defaults.max_chunk_size - 200) >= defaults.max_message_size
    with pytest.raises(ConfigError, match=r"limits\.max_sessions"):
        parse_config({"limits": {"max_sessions": 0}}, source="test")
    with pytest.raises(ConfigError, match=r"login_penalty_max_seconds"):
        parse_config({"limits": {"login_penalty_base_seconds": 5, "login_penalty_max_seconds": 1}}, source="test")
    with pytest.raises(ConfigError, match=r"max_queued_chunks_per_connection"):
        parse_config({"limits": {"max_message_size": 64 * 1024 * 1024}}, source="test")
