"""Counting the event loop's turns: how many a piece of asyncio code makes its callers wait, independent of how
busy the machine is (on a busy server each turn carries many calls' work)."""

from __future__ import annotations

import asyncio
from types import TracebackType


class LoopTurns:
    """`async with LoopTurns() as turns:` — `turns.count` goes up by one at every turn of the running loop (a task
    that yields once per turn) until the block ends."""

    def __init__(self) -> None:
        self.count = 0
        self._ticking = True
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while self._ticking:
            self.count += 1
            await asyncio.sleep(0)

    async def __aenter__(self) -> LoopTurns:
        self._task = asyncio.create_task(self._tick())
        await asyncio.sleep(0)  # the ticker runs from here on
        return self

    async def __aexit__(
        self, _type: type[BaseException] | None, _error: BaseException | None, _traceback: TracebackType | None
    ) -> None:
        self._ticking = False
        if self._task is not None:
            await self._task
