"""The lines the relay's own process sends the server (qualitybridge/relay_process.py): each event as it was raised."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from qualitybridge.domain.events import DiagnosticsChanged, MeasurementAccepted, PostingAttempted, PostingDeadLettered
from qualitybridge.relay_process import decode_report, encode_report


@pytest.mark.parametrize(
    "event",
    [
        PostingAttempted("measurement", "sent", 500),
        PostingAttempted("confirmation", "retry"),
        PostingDeadLettered("mr-0190-ab", "measurement", "1000417", 3, 'HTTP 422: "unknown order"\nsecond line'),
    ],
)
def test_events_cross_the_pipe_unchanged(event: PostingAttempted | PostingDeadLettered) -> None:
    line = encode_report(event)
    assert line is not None
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1  # one line per report, whatever the error text holds
    assert decode_report(line) == event


@pytest.mark.parametrize("oldest", [datetime(2026, 11, 30, 23, 59, 59, 123456, tzinfo=UTC), None])
def test_the_outbox_figures_cross_as_depth_dead_letters_and_oldest(oldest: datetime | None) -> None:
    changed = DiagnosticsChanged(
        last_sync_time=None,
        last_sync_succeeded=False,
        sync_error_count=0,
        last_sync_error="",
        outbox_depth=1234,
        outbox_dead_letters=2,
        outbox_oldest_at=oldest,
    )
    line = encode_report(changed)
    assert line is not None
    assert decode_report(line) == (1234, 2, oldest)  # the sync figures are the server's own, not the worker's


def test_events_the_server_does_not_need_are_not_sent() -> None:
    assert encode_report(MeasurementAccepted.__new__(MeasurementAccepted)) is None


@pytest.mark.parametrize("line", [b"not json\n", b'{"attempted": ["measurement"]}\n', b'{"unknown": 1}\n', b"[]\n"])
def test_a_line_that_is_no_report_is_named(line: bytes) -> None:
    with pytest.raises(ValueError, match="not a report of the relay's process"):
        decode_report(line)
