"""Health figures of the bridge that plant IT and the MES watch: sync freshness and the outbox backlog."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["Diagnostics"]


@dataclass
class Diagnostics:
    last_sync_time: datetime | None = None
    last_sync_succeeded: bool = False
    sync_error_count: int = 0
    last_sync_error: str = ""
    outbox_depth: int = 0
    outbox_dead_letters: int = 0
    _listeners: list[Callable[[Diagnostics], Awaitable[None]]] = field(default_factory=list, repr=False)

    def add_listener(self, listener: Callable[[Diagnostics], Awaitable[None]]) -> None:
        self._listeners.append(listener)

    async def changed(self) -> None:
        for listener in self._listeners:
            await listener(self)
