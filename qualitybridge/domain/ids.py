"""Identifiers QualityBridge gives what it accepts: random UUIDs, so that no two processes or restarts collide.

Every accepted measurement gets one on the report path. `uuid.uuid4()` asks the kernel for 16 random bytes each time
(a system call) and builds a `UUID` object only to format it; here the same random bytes (os.urandom, the kernel's
CSPRNG) are drawn 4 KiB at a time and formatted directly: the same version-4 UUIDs, at a fraction of the CPU. A
forked child starts with an empty buffer, so that parent and child never hand out the same bytes; threads take their
16 bytes under a lock, so that two never read the same position of the buffer.
"""

from __future__ import annotations

import os
import threading

__all__ = ["new_record_id", "new_result_id", "random_uuid"]

_BLOCK = 4096  # 256 ids per system call
_buffer = b""
_position = 0
_lock = threading.Lock()  # the buffer and position are shared by the process's threads


def _forget_buffer() -> None:
    global _buffer, _position, _lock
    # A new lock too: a thread of the parent may have held it at the fork, and no thread of the child releases it.
    _buffer, _position, _lock = b"", 0, threading.Lock()


os.register_at_fork(after_in_child=_forget_buffer)


def random_uuid() -> str:
    """A random (version 4, RFC 9562) UUID in its canonical text form, as `str(uuid.uuid4())` gives it."""
    global _buffer, _position
    with _lock:
        if _position + 16 > len(_buffer):
            _buffer, _position = os.urandom(_BLOCK), 0
        raw = bytearray(_buffer[_position : _position + 16])
        _position += 16
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def new_result_id() -> str:
    """The id of an accepted measurement result (also the key of its ERP posting)."""
    return random_uuid()


def new_record_id() -> str:
    """The id of a confirmation or SPC alarm record."""
    return random_uuid()
