"""Result and record ids: time-ordered random (version 7) UUIDs in canonical text, drawn from a buffer of kernel
randomness that a forked child never shares with its parent."""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid

import pytest

from qualitybridge.domain import ids


def test_ids_are_distinct_version_7_uuids_in_canonical_form() -> None:
    drawn = (
        [ids.new_result_id() for _ in range(1_000)]
        + [ids.new_record_id() for _ in range(1_000)]
        + ids.new_result_ids(1_000)
        + ids.new_result_ids(1)
    )
    assert len(set(drawn)) == len(drawn)
    for text in drawn:
        parsed = uuid.UUID(text)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_ids_lead_with_the_time_they_were_drawn_so_later_ids_sort_after_earlier_ones() -> None:
    """Index locality: a new result's entry belongs at the end of the indexes on result ids (and on the outbox's
    idempotency keys), not at a random place (see qualitybridge/domain/ids.py)."""
    before = time.time_ns() // 1_000_000
    first = ids.new_result_ids(500)
    time.sleep(0.003)
    later = [ids.new_result_id(), *ids.new_result_ids(10), ids.new_record_id()]
    after = time.time_ns() // 1_000_000
    assert max(first) < min(later)
    for text in first + later:
        assert before <= uuid.UUID(text).int >> 80 <= after  # the first 48 bits: Unix time in milliseconds


def test_ids_of_one_millisecond_differ_in_74_random_bits() -> None:
    """One batch's ids share their millisecond; what follows it is random (the variant's two bits aside), so ids of
    other processes in the same millisecond do not collide either."""
    drawn = [uuid.UUID(text).int for text in ids.new_result_ids(4_000)]
    random_bits = (1 << 74) - 1
    randomness = [((value >> 64) & 0xFFF) << 62 | (value & ((1 << 62) - 1)) for value in drawn]
    assert len(set(randomness)) == len(drawn)
    # Every one of the 74 bits varies, and each is set in roughly half of the ids.
    for bit in range(74):
        share = sum(value >> bit & 1 for value in randomness) / len(randomness)
        assert 0.4 < share < 0.6, bit
    assert all(value <= random_bits for value in randomness)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_repeat_its_parents_next_ids() -> None:
    ids.random_uuid()  # the buffer now holds the parent's next ids
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.close(reader)
        os.write(writer, "\n".join(ids.random_uuid() for _ in range(10)).encode())
        os._exit(0)
    os.close(writer)
    parents = [ids.random_uuid() for _ in range(10)]
    with os.fdopen(reader) as answer:
        childs = answer.read().split("\n")
    os.waitpid(child, 0)
    assert len(childs) == 10
    assert not set(childs) & set(parents)


def test_threads_drawing_at_once_never_get_the_same_id() -> None:
    """The buffer is shared by the process's threads: two that read the same position would hand out one id twice
    (a duplicate result id is a duplicate idempotency key at the ERP). A tiny switch interval makes threads change
    places between any two bytecodes, where an unguarded draw repeats ids within a few thousand."""
    drawn: list[list[str]] = [[] for _ in range(4)]
    start = threading.Barrier(len(drawn))

    def draw(into: list[str]) -> None:
        start.wait()
        into.extend(ids.random_uuid() for _ in range(25_000))

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    every = [text for into in drawn for text in into]
    assert len(every) == 100_000
    assert len(set(every)) == len(every)
