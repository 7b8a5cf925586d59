"""The event bus: dispatch by event type (subclasses included), publishers that see every event, and one error
policy: a failing handler or publisher is logged and stops neither the others nor the service that published."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from qualitybridge.domain.events import (
    ConfirmationAccepted,
    DiagnosticsChanged,
    DomainEvent,
    MasterDataChanged,
    MeasurementAccepted,
    OrderStateChanged,
)
from qualitybridge.domain.model import SnapshotChange
from qualitybridge.services.event_bus import EventBus
from tests.builders import confirmation_record, order, result
from tests.fakes import RecordingPublisher
from tests.loop_turns import LoopTurns


@dataclass(frozen=True)
class RemeasurementAccepted(MeasurementAccepted):
    """A subclass of a domain event, as a later feature might add one."""


MEASURED = MeasurementAccepted(result())
REMEASURED = RemeasurementAccepted(result())
CONFIRMED = ConfirmationAccepted(confirmation_record())
STARTED = OrderStateChanged(order("1000"))
SYNCED = MasterDataChanged(SnapshotChange(released=("1000",)))
HEALTH = DiagnosticsChanged(
    last_sync_time=datetime(2026, 11, 25, tzinfo=UTC),
    last_sync_succeeded=True,
    sync_error_count=0,
    last_sync_error="",
    outbox_depth=3,
    outbox_dead_letters=0,
)


class Collector:
    """A handler that keeps what it is given, under a name."""

    def __init__(self, name: str, log: list[tuple[str, DomainEvent]]) -> None:
        self.name = name
        self.log = log

    async def __call__(self, event: DomainEvent) -> None:
        self.log.append((self.name, event))

    def seen(self) -> list[DomainEvent]:
        return [event for name, event in self.log if name == self.name]


async def failing(event: DomainEvent) -> None:
    raise RuntimeError(f"handler broke on {type(event).__name__}")


class FailingPublisher:
    async def publish(self, event: DomainEvent) -> None:
        raise ValueError("publisher broke")


async def test_a_handler_gets_the_events_of_its_type_and_of_subtypes_only() -> None:
    bus = EventBus()
    log: list[tuple[str, DomainEvent]] = []
    measurements, confirmations, everything = Collector("m", log), Collector("c", log), Collector("all", log)
    bus.subscribe(MeasurementAccepted, measurements)
    bus.subscribe(ConfirmationAccepted, confirmations)
    bus.subscribe(DomainEvent, everything)
    for event in (MEASURED, CONFIRMED, REMEASURED, STARTED):
        await bus.publish(event)
    assert measurements.seen() == [MEASURED, REMEASURED]
    assert confirmations.seen() == [CONFIRMED]
    assert everything.seen() == [MEASURED, CONFIRMED, REMEASURED, STARTED]


async def test_a_subtype_handler_does_not_get_the_base_type() -> None:
    bus = EventBus()
    log: list[tuple[str, DomainEvent]] = []
    remeasurements = Collector("r", log)
    bus.subscribe(RemeasurementAccepted, remeasurements)
    await bus.publish(MEASURED)
    await bus.publish(REMEASURED)
    assert remeasurements.seen() == [REMEASURED]


async def test_handlers_of_one_type_run_in_subscription_order() -> None:
    bus = EventBus()
    log: list[tuple[str, DomainEvent]] = []
    for name in ("first", "second", "third"):
        bus.subscribe(MeasurementAccepted, Collector(name, log))
    await bus.publish(MEASURED)
    assert [name for name, _event in log] == ["first", "second", "third"]


async def test_publishers_see_every_event_whether_or_not_a_handler_wants_it() -> None:
    bus = EventBus()
    first, second = RecordingPublisher(), RecordingPublisher()
    bus.add_publisher(first)
    bus.add_publisher(second)
    bus.subscribe(MeasurementAccepted, Collector("m", []))
    events = [MEASURED, CONFIRMED, STARTED, SYNCED, HEALTH, REMEASURED]
    for event in events:
        await bus.publish(event)
    assert first.events == events
    assert second.events == events


async def test_a_failing_handler_is_logged_and_stops_neither_the_others_nor_the_publisher(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    log: list[tuple[str, DomainEvent]] = []
    before, after, base = Collector("before", log), Collector("after", log), Collector("base", log)
    publisher = RecordingPublisher()
    bus.subscribe(MeasurementAccepted, before)
    bus.subscribe(MeasurementAccepted, failing)
    bus.subscribe(MeasurementAccepted, after)
    bus.subscribe(DomainEvent, base)
    bus.add_publisher(publisher)
    with caplog.at_level(logging.ERROR, logger="qualitybridge.services.event_bus"):
        await bus.publish(MEASURED)  # must not raise: the measurement is stored, the caller's answer is Good
    assert (before.seen(), after.seen(), base.seen()) == ([MEASURED], [MEASURED], [MEASURED])
    assert publisher.events == [MEASURED]
    (record,) = [r for r in caplog.records if r.name == "qualitybridge.services.event_bus"]
    assert record.levelno == logging.ERROR
    assert "failing" in record.getMessage()
    assert "MeasurementAccepted" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


async def test_a_failing_publisher_is_logged_and_does_not_stop_the_next(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    after = RecordingPublisher()
    bus.add_publisher(FailingPublisher())
    bus.add_publisher(after)
    with caplog.at_level(logging.ERROR, logger="qualitybridge.services.event_bus"):
        await bus.publish(CONFIRMED)
        await bus.publish(STARTED)
    assert after.events == [CONFIRMED, STARTED]
    messages = [r.getMessage() for r in caplog.records if r.name == "qualitybridge.services.event_bus"]
    assert len(messages) == 2
    assert all("FailingPublisher.publish" in message for message in messages)
    assert "ConfirmationAccepted" in messages[0]
    assert "OrderStateChanged" in messages[1]


async def test_cancellation_is_not_swallowed() -> None:
    # The policy covers a handler's errors; a cancelled task (shutdown) must still stop.
    async def cancelled(_event: DomainEvent) -> None:
        raise asyncio.CancelledError

    bus = EventBus()
    bus.subscribe(MeasurementAccepted, cancelled)
    with pytest.raises(asyncio.CancelledError):
        await bus.publish(MEASURED)


async def test_a_burst_reaches_every_handler_event_by_event_then_burst_handlers_at_once() -> None:
    bus = EventBus()
    log: list[tuple[str, object]] = []
    publisher = RecordingPublisher()

    async def each(event: MeasurementAccepted) -> None:
        log.append(("each", event))

    async def burst(events: Sequence[MeasurementAccepted]) -> None:
        log.append(("burst", tuple(events)))

    bus.subscribe(MeasurementAccepted, each)
    bus.subscribe_burst(MeasurementAccepted, burst)
    bus.add_publisher(publisher)
    await bus.publish_burst([MEASURED, CONFIRMED, REMEASURED])
    assert log == [("each", MEASURED), ("each", REMEASURED), ("burst", (MEASURED, REMEASURED))]
    assert publisher.events == [MEASURED, CONFIRMED, REMEASURED]
    log.clear()
    await bus.publish(MEASURED)  # a single event is a burst of one
    await bus.publish(CONFIRMED)  # no burst handler for it: not called with an empty burst
    await bus.publish_burst([])
    assert log == [("each", MEASURED), ("burst", (MEASURED,))]


async def test_a_subscription_made_after_events_were_published_gets_the_next_ones() -> None:
    """The bus works out each event type's handlers on its first event; a later subscription must still count."""
    bus = EventBus()
    log: list[tuple[str, object]] = []

    async def first(event: MeasurementAccepted) -> None:
        log.append(("first", event))

    async def on_any(event: DomainEvent) -> None:
        log.append(("any", event))

    async def burst(events: Sequence[DomainEvent]) -> None:
        log.append(("burst", tuple(events)))

    bus.subscribe(MeasurementAccepted, first)
    bus.subscribe_burst(OrderStateChanged, burst)  # so that the first publish works out the burst types too
    await bus.publish_burst([REMEASURED, CONFIRMED])
    bus.subscribe(DomainEvent, on_any)  # a base type of both, subscribed after both types were seen
    bus.subscribe_burst(ConfirmationAccepted, burst)
    log.clear()
    await bus.publish_burst([REMEASURED, CONFIRMED])
    assert log == [("first", REMEASURED), ("any", REMEASURED), ("any", CONFIRMED), ("burst", (CONFIRMED,))]


async def test_burst_handlers_subscribed_after_a_single_event_get_the_next_ones_in_subscription_order() -> None:
    """A single event and a burst of one kind go to the burst handlers the bus worked out for that kind on its first
    event; a later subscription (for the kind or a base type) must count from the next event on, in order."""
    bus = EventBus()
    log: list[tuple[str, object]] = []

    def recording(name: str):  # type: ignore[no-untyped-def]
        async def burst(events: Sequence[DomainEvent]) -> None:
            log.append((name, tuple(events)))

        return burst

    bus.subscribe_burst(MeasurementAccepted, recording("measured"))
    await bus.publish(REMEASURED)
    bus.subscribe_burst(DomainEvent, recording("any"))
    bus.subscribe_burst(MeasurementAccepted, recording("measured again"))
    await bus.publish(REMEASURED)
    await bus.publish_burst([MEASURED, MEASURED])
    await bus.publish(CONFIRMED)
    assert log == [
        ("measured", (REMEASURED,)),
        ("measured", (REMEASURED,)),
        ("measured again", (REMEASURED,)),
        ("any", (REMEASURED,)),
        ("measured", (MEASURED, MEASURED)),
        ("measured again", (MEASURED, MEASURED)),
        ("any", (MEASURED, MEASURED)),
        ("any", (CONFIRMED,)),
    ]


async def test_a_failing_burst_handler_is_logged_and_does_not_stop_the_next(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    seen: list[Sequence[DomainEvent]] = []

    async def failing_burst(_events: Sequence[DomainEvent]) -> None:
        raise RuntimeError("boom")

    async def after(events: Sequence[DomainEvent]) -> None:
        seen.append(events)

    bus.subscribe_burst(MeasurementAccepted, failing_burst)
    bus.subscribe_burst(MeasurementAccepted, after)
    with caplog.at_level(logging.ERROR, logger="qualitybridge.services.event_bus"):
        await bus.publish_burst([MEASURED, REMEASURED])
    assert seen == [[MEASURED, REMEASURED]]
    (record,) = [r for r in caplog.records if r.name == "qualitybridge.services.event_bus"]
    assert "failing_burst" in record.getMessage()
    assert "2 MeasurementAccepted" in record.getMessage()


class BurstRecorder:
    """A `BurstPublisher`: keeps each call it gets, a burst as one call."""

    def __init__(self) -> None:
        self.calls: list[tuple[DomainEvent, ...]] = []

    async def publish(self, event: DomainEvent) -> None:
        self.calls.append((event,))

    async def publish_burst(self, events: Sequence[DomainEvent]) -> None:
        self.calls.append(tuple(events))


async def test_a_burst_publisher_gets_a_burst_in_one_call_a_plain_publisher_event_by_event() -> None:
    bus = EventBus()
    plain, bursting = RecordingPublisher(), BurstRecorder()
    bus.add_publisher(plain)
    bus.add_publisher(bursting)
    await bus.publish_burst([MEASURED, CONFIRMED, REMEASURED])
    await bus.publish(STARTED)  # a single event is a burst of one
    assert plain.events == [MEASURED, CONFIRMED, REMEASURED, STARTED]
    assert bursting.calls == [(MEASURED, CONFIRMED, REMEASURED), (STARTED,)]


async def test_a_failing_burst_publisher_is_logged_and_stops_no_one(caplog: pytest.LogCaptureFixture) -> None:
    class Failing(BurstRecorder):
        async def publish_burst(self, events: Sequence[DomainEvent]) -> None:
            raise RuntimeError("boom")

    bus = EventBus()
    after = BurstRecorder()
    seen: list[Sequence[DomainEvent]] = []

    async def burst(events: Sequence[DomainEvent]) -> None:
        seen.append(events)

    bus.add_publisher(Failing())
    bus.add_publisher(after)
    bus.subscribe_burst(MeasurementAccepted, burst)
    with caplog.at_level(logging.ERROR, logger="qualitybridge.services.event_bus"):
        await bus.publish_burst([MEASURED, REMEASURED])
    assert after.calls == [(MEASURED, REMEASURED)]
    assert seen == [[MEASURED, REMEASURED]]
    assert any("publish_burst" in r.getMessage() for r in caplog.records)


async def test_calls_publishing_together_in_one_turn_make_one_burst_in_their_order() -> None:
    # The single report calls one group commit answers resume in one turn of the loop: one burst for them all.
    bus = EventBus()
    bursting = BurstRecorder()
    bus.add_publisher(bursting)
    seen: list[tuple[DomainEvent, ...]] = []

    async def burst(events: Sequence[DomainEvent]) -> None:
        seen.append(tuple(events))

    bus.subscribe_burst(MeasurementAccepted, burst)
    go = asyncio.get_running_loop().create_future()
    answered: list[str] = []

    async def call(name: str, events: list[DomainEvent]) -> None:
        await go  # every call resumes in the same turn, as a group commit's callers do
        await bus.publish_together(events)
        answered.append(name)

    calls = [
        asyncio.create_task(call("first", [MEASURED])),
        asyncio.create_task(call("second", [CONFIRMED, REMEASURED])),
        asyncio.create_task(call("third", [])),  # nothing to publish: answered at once
    ]
    await asyncio.sleep(0)
    go.set_result(None)
    await asyncio.gather(*calls)
    assert bursting.calls == [(MEASURED, CONFIRMED, REMEASURED)]
    assert seen == [(MEASURED, REMEASURED)]
    assert sorted(answered) == ["first", "second", "third"]
    # A call in a later turn makes a burst of its own.
    await bus.publish_together([STARTED])
    assert bursting.calls[-1] == (STARTED,)


async def test_every_call_publishing_together_returns_only_once_the_burst_is_published() -> None:
    bus = EventBus()
    release = asyncio.Event()
    published: list[int] = []

    async def slow(events: Sequence[DomainEvent]) -> None:
        await release.wait()  # a burst handler storing alarms: the calls wait for it
        published.append(len(events))

    bus.subscribe_burst(MeasurementAccepted, slow)
    first = asyncio.create_task(bus.publish_together([MEASURED]))
    second = asyncio.create_task(bus.publish_together([REMEASURED]))
    await asyncio.sleep(0.01)
    assert not first.done()
    assert not second.done()
    release.set()
    await asyncio.gather(first, second)
    assert published == [2]


async def test_a_cancelled_caller_does_not_cancel_the_others_publication() -> None:
    bus = EventBus()
    release = asyncio.Event()
    published: list[tuple[DomainEvent, ...]] = []

    async def slow(events: Sequence[DomainEvent]) -> None:
        await release.wait()
        published.append(tuple(events))

    bus.subscribe_burst(MeasurementAccepted, slow)
    leaving = asyncio.create_task(bus.publish_together([MEASURED]))
    staying = asyncio.create_task(bus.publish_together([REMEASURED]))
    await asyncio.sleep(0.01)
    leaving.cancel()  # its session closed while the burst was being published
    release.set()
    await staying
    assert leaving.cancelled()
    assert published == [(MEASURED, REMEASURED)]


async def test_a_publication_cancelled_before_it_ran_releases_its_callers_and_the_next_burst_goes_out() -> None:
    bus = EventBus()
    bursting = BurstRecorder()
    bus.add_publisher(bursting)
    waiting = asyncio.create_task(bus.publish_together([MEASURED]))
    await asyncio.sleep(0)  # the caller waits; the publication's task has not run yet
    (publication,) = asyncio.all_tasks() - {asyncio.current_task(), waiting}
    publication.cancel()  # the loop is stopping
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert bursting.calls == []
    await bus.publish_together([STARTED])  # not stuck behind the cancelled one
    assert bursting.calls == [(STARTED,)]


async def test_calls_publishing_together_resume_in_the_turn_after_their_burst_is_published() -> None:
    # Each turn of a busy server's loop carries many calls' work: a caller must not wait turns beyond the one that
    # publishes (a shared future awaited through asyncio.shield reached the callers three turns after it).
    bus = EventBus()
    resumed_at: list[int] = []
    async with LoopTurns() as turns:

        async def call(event: DomainEvent) -> None:
            await bus.publish_together([event])
            resumed_at.append(turns.count)

        called_at = turns.count
        await asyncio.gather(call(MEASURED), call(REMEASURED), call(STARTED))
    # the calls' turn, the publication's, the callers' resumption
    assert [at - called_at for at in resumed_at] == [3, 3, 3]


async def test_a_publication_cancelled_while_it_ran_cancels_its_callers() -> None:
    bus = EventBus()
    holding = asyncio.Event()

    async def held(events: Sequence[DomainEvent]) -> None:
        await holding.wait()  # never set: the loop stops while the burst is being published

    bus.subscribe_burst(MeasurementAccepted, held)
    first = asyncio.create_task(bus.publish_together([MEASURED]))
    second = asyncio.create_task(bus.publish_together([REMEASURED]))
    await asyncio.sleep(0.01)
    (publication,) = asyncio.all_tasks() - {asyncio.current_task(), first, second}
    publication.cancel()
    for caller in (first, second):
        with pytest.raises(asyncio.CancelledError):
            await caller
    await bus.publish_together([STARTED])  # the next burst goes out
