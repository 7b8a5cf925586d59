"""Fixtures of the unit tier: the event bus with a recording publisher, and a clock that stands still."""

from __future__ import annotations

from datetime import timedelta

import pytest

from qualitybridge.services.event_bus import EventBus
from tests.builders import NOW
from tests.fakes import FixedClock, RecordingPublisher


@pytest.fixture
def published() -> RecordingPublisher:
    """Every event the services raise on `bus`, in order."""
    return RecordingPublisher()


@pytest.fixture
def bus(published: RecordingPublisher) -> EventBus:
    events = EventBus()
    events.add_publisher(published)
    return events


@pytest.fixture
def clock() -> FixedClock:
    """The server's clock, a minute after the reports' measurement time `NOW` (so the two cannot be mixed up)."""
    return FixedClock(NOW + timedelta(minutes=1))
