"""Result and record ids: random version-4 UUIDs in canonical text, drawn from a buffer of kernel randomness that a
forked child never shares with its parent."""

from __future__ import annotations

import os
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
