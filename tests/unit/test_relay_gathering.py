"""The relay's pause before a round: short after a quiet moment, longer while single calls stream in (rounds of
some size but less than a page), none while a backlog drains."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from qualitybridge.services import outbox_relay
from qualitybridge.services.diagnostics import Diagnostics
from qualitybridge.services.outbox_relay import OutboxRelay, RelayRound


async def _pauses_before_rounds(monkeypatch: pytest.MonkeyPatch, rounds: list[int]) -> list[float]:
    """The pause `run_forever` takes before each round, when the rounds deliver `rounds` postings one after the
    other (each round is woken at once, as a stream of calls does)."""
    relay = OutboxRelay(
        None,  # type: ignore[arg-type]  # never reached: the rounds are played
        None,  # type: ignore[arg-type]
        Diagnostics(),
        interval_seconds=5.0,
        batch_size=100,
        gather_seconds=0.01,
        busy_gather_seconds=0.2,
        busy_round=10,
    )
    pauses: list[float] = []
    played = iter(rounds)
    real_sleep = asyncio.sleep

    async def sleep(seconds: float, *args: Any) -> None:
        pauses.append(seconds)
        await real_sleep(0)

    async def run_once() -> RelayRound:
        sent = next(played, None)
        if sent is None:
            relay.stop_soon()
            return RelayRound()
        relay.wake()  # more calls came in while this round ran
        return RelayRound(sent=sent)

    monkeypatch.setattr(outbox_relay.asyncio, "sleep", sleep)
    monkeypatch.setattr(relay, "run_once", run_once)
    relay.wake()
    await asyncio.wait_for(relay.run_forever(), 5)
    return pauses


async def test_a_stream_of_calls_is_gathered_longer_than_a_quiet_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    pauses = await _pauses_before_rounds(monkeypatch, [1, 3, 40, 60, 2, 100, 100, 50, 0])
    # quiet start; 1 and 3 postings: short; after 40 and 60 (busy, less than a page): long; after 2: short again;
    # after full pages (backlog): none; after 50: long; after 0: short.
    assert pauses == [0.01, 0.01, 0.01, 0.2, 0.2, 0.01, 0.2, 0.01]
