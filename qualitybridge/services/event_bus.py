"""The one in-process path of domain events: services publish, handlers and publishers react.

Events that one call produced together (the accepted measurements of one report batch) can be published as a
burst: every handler still sees each event on its own, and a burst handler then sees them all at once, so it can
store what they cause with one commit instead of one per event. A publisher sees each event in order, one by one,
unless it is a `BurstPublisher`: that one gets the whole burst in one call, so it can show what the events change
in common once (a characteristic's last value after a batch of a thousand) instead of once per event.

Calls that run side by side can publish *together* (`publish_together`): the bursts of every call that publishes
in the same turn of the event loop — the single report calls one group commit has just answered — go out as one
burst, as a batch call's would, so what they change in common is shown once and the bus is walked once.

One error policy for all of them: the event's fact is already stored, so a handler that fails is logged with the
event and never turns the caller's Good answer into an error, nor stops the other handlers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from qualitybridge.domain.events import DomainEvent
from qualitybridge.domain.ports import BurstPublisher, Publisher

__all__ = ["BurstHandler", "EventBus", "EventHandler"]

_log = logging.getLogger(__name__)

_EVENTS_BETWEEN_YIELDS = 32

E = TypeVar("E", bound=DomainEvent)
EventHandler = Callable[[E], Awaitable[None]]
BurstHandler = Callable[[Sequence[E]], Awaitable[None]]


class _Gathering:
    """The events of the calls publishing together in one turn of the event loop, and a future per call that is
    resolved as soon as the burst is published.

    A future per call, resolved by the publication itself, rather than one shared future each call awaits through
    `asyncio.shield`: the shared one reached a caller only three turns of the loop after the publication (its task's
    done callback, the shield's, the caller's wake-up), and on a busy server each turn carries many calls' work.
    A caller that is cancelled cancels only its own future."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.events: list[DomainEvent] = []
        self.waiters: list[asyncio.Future[None]] = []

    def release(self, error: BaseException | None = None) -> None:
        """Answer every caller still waiting: published (no error), cancelled, or the error."""
        for waiter in self.waiters:
            if waiter.done():
                continue
            if error is None:
                waiter.set_result(None)
            elif isinstance(error, asyncio.CancelledError):
                waiter.cancel()
            else:
                waiter.set_exception(error)


class EventBus:
    def __init__(self) -> None:
        self._handlers: dict[type[DomainEvent], list[EventHandler[DomainEvent]]] = {}
        self._burst_handlers: dict[type[DomainEvent], list[BurstHandler[DomainEvent]]] = {}
        self._publishers: list[Publisher] = []  # those that see the events of a burst one by one
        self._burst_publishers: list[BurstPublisher] = []
        # Per concrete event type, worked out on its first event (and again after a subscription): its handlers in
        # subscription order along its MRO, and the burst handlers' event types it counts for. Every report call
        # publishes two events; walking the MRO and the subscriptions for each cost more than the handlers.
        self._handlers_of: dict[type[DomainEvent], tuple[EventHandler[DomainEvent], ...]] = {}
        self._burst_types_of: dict[type[DomainEvent], frozenset[type[DomainEvent]]] = {}
        # Per concrete event type: the burst handlers a burst of that type alone goes to, with the type each
        # subscribed for, in subscription order (every report call publishes bursts of one kind).
        self._burst_handlers_of: dict[
            type[DomainEvent], tuple[tuple[type[DomainEvent], BurstHandler[DomainEvent]], ...]
        ] = {}
        self._gathering: _Gathering | None = None
        self._gathered_publications: set[asyncio.Task[None]] = set()  # kept until done (the loop holds tasks weakly)

    def subscribe(self, event_type: type[E], handler: EventHandler[E]) -> None:
        """Call `handler` for every event of `event_type` (and its subclasses), in subscription order."""
        self._handlers.setdefault(event_type, []).append(handler)  # type: ignore[arg-type]
        self._handlers_of.clear()

    def subscribe_burst(self, event_type: type[E], handler: BurstHandler[E]) -> None:
        """Call `handler` once per published burst with its events of `event_type` (a single event is a burst of one).

        It runs after every per-event handler and publisher has seen the burst's events.
        """
        self._burst_handlers.setdefault(event_type, []).append(handler)  # type: ignore[arg-type]
        self._burst_types_of.clear()
        self._burst_handlers_of.clear()

    def add_publisher(self, publisher: Publisher) -> None:
        """A publisher sees every event and picks what it shows (a `BurstPublisher` a burst's events at once)."""
        if isinstance(publisher, BurstPublisher):
            self._burst_publishers.append(publisher)
        else:
            self._publishers.append(publisher)

    async def publish(self, event: DomainEvent) -> None:
        """`publish_burst` of this one event (without a burst's bookkeeping: every report call publishes two)."""
        kind = type(event)
        for handler in self._handlers_for(kind):
            await self._deliver(handler, event)
        for publisher in self._publishers:
            await self._deliver(publisher.publish, event)
        if not self._burst_publishers and not self._burst_handlers:
            return
        events = (event,)
        for burst_publisher in self._burst_publishers:
            await self._deliver_burst(burst_publisher.publish_burst, events, DomainEvent)
        for event_type, burst_handler in self._burst_handlers_for(kind):
            await self._deliver_burst(burst_handler, events, event_type)

    async def publish_burst(self, events: Sequence[DomainEvent]) -> None:
        """Publish events one call produced together: each to the handlers and publishers as `publish` does, the
        whole burst to burst publishers, then to burst handlers."""
        for position, event in enumerate(events):
            if position and not position % _EVENTS_BETWEEN_YIELDS:
                # A big burst (a PLC's buffer of measurements) must not hold the event loop: other sessions'
                # requests, keep-alive probes among them (asyncua clients give up after one second), go in between.
                await asyncio.sleep(0)
            for handler in self._handlers_for(type(event)):
                await self._deliver(handler, event)
            for publisher in self._publishers:
                await self._deliver(publisher.publish, event)
        for burst_publisher in self._burst_publishers:
            await self._deliver_burst(burst_publisher.publish_burst, events, DomainEvent)
        if not self._burst_handlers:
            return
        kinds = {type(event) for event in events}
        if len(kinds) == 1:  # a burst of one kind (every report call's) is handed on as it is
            for event_type, burst_handler in self._burst_handlers_for(type(events[0])):
                await self._deliver_burst(burst_handler, events, event_type)
            return
        relevant = frozenset().union(*(self._burst_types_for(kind) for kind in kinds))
        for event_type, handlers in self._burst_handlers.items():
            if event_type not in relevant:
                continue
            matching = [event for event in events if isinstance(event, event_type)]
            for burst_handler in handlers:
                await self._deliver_burst(burst_handler, matching, event_type)

    async def publish_together(self, events: Sequence[DomainEvent]) -> None:
        """`publish_burst` of `events` with those of every other call that publishes together in this turn of the
        event loop, as one burst in the order the calls came; returns once that burst is published.

        The single report calls that one group commit answers resume one after the other in the same turn: one
        burst for all of them costs about what one of them did alone (a characteristic's values shown once, the
        SPC monitor's alarms stored with one commit, the relay woken once), where a burst per call cost each call
        the whole walk. A lone call waits one turn of the loop more."""
        if not events:
            return
        gathering = self._gathering
        if gathering is None:
            gathering = self._gathering = _Gathering(asyncio.get_running_loop())
            # A task's first step runs after the callbacks already due in this turn: the other calls' resumptions.
            publication = gathering.loop.create_task(
                self._publish_gathered(gathering), name="event-bus-publish-together"
            )
            self._gathered_publications.add(publication)
            publication.add_done_callback(lambda done: self._gathered_published(done, gathering))
        gathering.events.extend(events)
        # The gathering's loop, not get_running_loop's: Python 3.11's asks the kernel for the process id every time.
        waiter: asyncio.Future[None] = gathering.loop.create_future()
        gathering.waiters.append(waiter)
        # A caller that is cancelled (its session closed) cancels its own future, not the others' publication.
        await waiter

    async def _publish_gathered(self, gathering: _Gathering) -> None:
        self._gathering = None  # calls that publish from here on gather for the next burst
        try:
            await self.publish_burst(gathering.events)
        except BaseException as error:
            gathering.release(error)
            raise
        gathering.release()

    def _gathered_published(self, publication: asyncio.Task[None], gathering: _Gathering) -> None:
        self._gathered_publications.discard(publication)
        if self._gathering is gathering:  # cancelled before its first step (the loop is stopping)
            self._gathering = None
        # Callers still waiting: the publication was cancelled before its first step; they must not wait on.
        gathering.release(asyncio.CancelledError())

    def _handlers_for(self, kind: type[DomainEvent]) -> tuple[EventHandler[DomainEvent], ...]:
        handlers = self._handlers_of.get(kind)
        if handlers is None:
            handlers = self._handlers_of[kind] = tuple(
                handler for event_type in kind.__mro__ for handler in self._handlers.get(event_type, ())
            )
        return handlers

    def _burst_handlers_for(
        self, kind: type[DomainEvent]
    ) -> tuple[tuple[type[DomainEvent], BurstHandler[DomainEvent]], ...]:
        handlers = self._burst_handlers_of.get(kind)
        if handlers is None:
            handlers = self._burst_handlers_of[kind] = tuple(
                (event_type, handler)
                for event_type, handlers_of_type in self._burst_handlers.items()
                if issubclass(kind, event_type)
                for handler in handlers_of_type
            )
        return handlers

    def _burst_types_for(self, kind: type[DomainEvent]) -> frozenset[type[DomainEvent]]:
        types = self._burst_types_of.get(kind)
        if types is None:
            types = self._burst_types_of[kind] = frozenset(t for t in self._burst_handlers if issubclass(kind, t))
        return types

    @staticmethod
    async def _deliver(handler: EventHandler[DomainEvent], event: DomainEvent) -> None:
        try:
            await handler(event)
        except Exception:
            _log.exception("%s failed on %s", getattr(handler, "__qualname__", handler), type(event).__name__)

    @staticmethod
    async def _deliver_burst(
        handler: BurstHandler[DomainEvent], events: Sequence[DomainEvent], event_type: type[DomainEvent]
    ) -> None:
        try:
            await handler(events)
        except Exception:
            _log.exception(
                "%s failed on a burst of %d %s",
                getattr(handler, "__qualname__", handler),
                len(events),
                event_type.__name__,
            )
