"""Result and record ids: random version-4 UUIDs in canonical text, drawn from a buffer of kernel randomness that a
forked child never shares with its parent."""

from __future__ import annotations

import os
import sys
import threading
import uuid

import pytest

from qualitybridge.domain import ids


def test_ids_are_distinct_version_4_uuids_in_canonical_form() -> None:
    drawn = [ids.new_result_id() for _ in range(1_000)] + [ids.new_record_id() for _ in range(1_000)]
    assert len(set(drawn)) == len(drawn)
    for text in drawn:
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


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
