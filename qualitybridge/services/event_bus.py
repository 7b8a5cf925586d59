"""The one in-process path of domain events: services publish, handlers and publishers react.

One error policy for all of them: the event's fact is already stored, so a handler that fails is logged with the
event and never turns the caller's Good answer into an error, nor stops the other handlers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from qualitybridge.domain.events import DomainEvent
from qualitybridge.domain.ports import Publisher

__all__ = ["EventBus", "EventHandler"]

_log = logging.getLogger(__name__)

E = TypeVar("E", bound=DomainEvent)
EventHandler = Callable[[E], Awaitable[None]]


class EventBus:
    def __init__(self) -> None:
        self._handlers: dict[type[DomainEvent], list[EventHandler[DomainEvent]]] = {}
        self._publishers: list[Publisher] = []

    def subscribe(self, event_type: type[E], handler: EventHandler[E]) -> None:
        """Call `handler` for every event of `event_type` (and its subclasses), in subscription order."""
        self._handlers.setdefault(event_type, []).append(handler)  # type: ignore[arg-type]

    def add_publisher(self, publisher: Publisher) -> None:
        """A publisher sees every event and picks what it shows."""
        self._publishers.append(publisher)

    async def publish(self, event: DomainEvent) -> None:
        for event_type in type(event).__mro__:
            for handler in self._handlers.get(event_type, ()):
                await self._deliver(handler, event)
        for publisher in self._publishers:
            await self._deliver(publisher.publish, event)

    @staticmethod
    async def _deliver(handler: EventHandler[DomainEvent], event: DomainEvent) -> None:
        try:
            await handler(event)
        except Exception:
            _log.exception("%s failed on %s", getattr(handler, "__qualname__", handler), type(event).__name__)
