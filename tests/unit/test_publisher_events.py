"""The OPC UA publisher skips the events it shows nothing for before any work (every method call publishes one it
ignores); the events it does show must all be on its list, or they would be skipped too."""

from __future__ import annotations

import inspect
import re

from qualitybridge.domain.events import MeasurementAccepted, MethodCallAnswered, SpcStatusChanged
from qualitybridge.server.address_space import publisher
from qualitybridge.server.address_space.publisher import OpcUaPublisher


def test_every_event_the_publisher_shows_is_on_its_list_of_shown_events() -> None:
    matched = set(re.findall(r"^\s*case (\w+)\(", inspect.getsource(OpcUaPublisher.publish), re.MULTILINE))
    assert matched  # the source still reads as this test expects
    assert matched == {kind.__name__ for kind in publisher._SHOWN}


def test_the_events_of_a_report_call_are_shown_and_the_call_metrics_event_is_skipped() -> None:
    assert issubclass(MeasurementAccepted, publisher._SHOWN)
    assert issubclass(SpcStatusChanged, publisher._SHOWN)
    assert not issubclass(MethodCallAnswered, publisher._SHOWN)
