"""Identifiers QualityBridge gives what it accepts: time-ordered random UUIDs, so that no two processes or restarts
collide and the store's indexes on them grow at one end.

Every accepted measurement gets one on the report path, and it is a primary key (and, as `mr-<id>`, the outbox's
idempotency key). Version 4 UUIDs, random throughout, put each new row's index entry at a random place of an index
as large as the table: once that exceeds the database's page cache, every insert touches a page of its own, which
is read, dirtied and written at the commit (measured: a batch's store CPU per measurement doubled from 28 to 56 µs
over the first 120,000 rows with SQLite, and kept growing with the table). Version 7 UUIDs (RFC 9562) lead with the
Unix time in milliseconds, so new entries land on the index's last pages; the 74 bits after it are random, so ids
drawn in the same millisecond by other processes or threads still do not collide (and are not guessable).

`uuid.uuid4()` asks the kernel for 16 random bytes each time (a system call) and builds a `UUID` object only to
format it; here the random bytes (os.urandom, the kernel's CSPRNG) are drawn 4 KiB at a time and formatted directly,
and a batch draws all its ids at once (`new_result_ids`). A forked child starts with an empty buffer, so that parent
and child never hand out the same bytes; threads take their bytes under a lock, so that two never read the same
position of the buffer.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["new_record_id", "new_result_id", "new_result_ids", "random_uuid", "random_uuids"]

_BLOCK = 4096
_RANDOM_BYTES = 10  # per id: 74 random bits (12 + 62) around the version and variant bits, rounded up to bytes
_buffer = b""
_position = 0
_lock = threading.Lock()  # the buffer and position are shared by the process's threads

# The variant field (binary 10) over the two random bits left of the fourth group's first hex digit.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _forget_buffer() -> None:
    global _buffer, _position, _lock
    # A new lock too: a thread of the parent may have held it at the fork, and no thread of the child releases it.
    _buffer, _position, _lock = b"", 0, threading.Lock()


os.register_at_fork(after_in_child=_forget_buffer)


def _random_hex(size: int) -> str:
    """`size` bytes of the kernel's randomness as hex, never handed out before in this process."""
    global _buffer, _position
    with _lock:
        if _position + size > len(_buffer):
            _buffer, _position = os.urandom(max(_BLOCK, size)), 0
        raw = _buffer[_position : _position + size]
        _position += size
    return raw.hex()


_last_head = (-1, "")  # (milliseconds, the text of the first two groups and the version digit): reused within a ms


def _head(milliseconds: int) -> str:
    global _last_head
    known, head = _last_head
    if known != milliseconds:
        stamp = f"{milliseconds & 0xFFFF_FFFF_FFFF:012x}"
        head = f"{stamp[:8]}-{stamp[8:]}-7"
        _last_head = (milliseconds, head)
    return head


def random_uuids(count: int) -> list[str]:
    """`count` version 7 UUIDs (RFC 9562) in canonical text form, as `str(uuid.UUID(...))` gives them: the current
    Unix time in milliseconds, then random bits; all drawn at once (one clock reading, one draw of randomness)."""
    head = _head(time.time_ns() // 1_000_000)
    bits = _random_hex(_RANDOM_BYTES * count)
    variant = _VARIANT
    return [
        f"{head}{bits[at : at + 3]}-{variant[bits[at + 3]]}{bits[at + 4 : at + 7]}-{bits[at + 7 : at + 19]}"
        for at in range(0, 2 * _RANDOM_BYTES * count, 2 * _RANDOM_BYTES)
    ]


def random_uuid() -> str:
    """One time-ordered random UUID (see `random_uuids`)."""
    return random_uuids(1)[0]


def new_result_id() -> str:
    """The id of an accepted measurement result (also the key of its ERP posting)."""
    return random_uuid()


def new_result_ids(count: int) -> list[str]:
    """The ids of `count` results accepted together (a batch): drawn at once."""
    return random_uuids(count)


def new_record_id() -> str:
    """The id of a confirmation or SPC alarm record."""
    return random_uuid()
