"""A bound on the array elements of one request message (`[limits] max_array_length`), checked before any element is
decoded.

An OPC UA array is its length (Int32) followed by its elements, and a Null element (a Variant of type Null in a
Variant array, or an array whose VariantType is Null) takes no bytes: a request of a few bytes could declare an array
of 50 million elements, and asyncua 2.1.0 builds a Python object per element on the server's one event loop (seconds
for every machine), within every chunk and message size limit. Elements that take bytes are bounded by
`max_message_size`, but a 4 MiB message still holds two million Boolean Variants, and arrays nest (a Variant array
per argument, per method, inside an ExtensionObject in any request's header, before any session exists).
So the budget is per message: all arrays of one message together, each array's declared length charged before its
first element is decoded; past it the request is refused with BadEncodingLimitsExceeded ("the message
encoding/decoding limits imposed by the stack have been exceeded"), which asyncua answers as a ServiceFault.

How: asyncua decodes every array through two cached factories of `asyncua.ua.ua_binary`, one for arrays of built-in
types (`_create_uatype_array_deserializer`: Variant arrays, lists of NodeIds, Strings, Variants, ...) and one for
lists of structures (`_create_list_deserializer`); each returned decoder reads the Int32 length at the buffer's
position and then the elements. `install` wraps both factories so that their decoders first peek at that length and
charge it (asyncua's decoder then runs unchanged), wraps `_reshape` (a Variant's ArrayDimensions pad its elements
with empty lists: those are charged too), and clears the caches of the factories that captured the
unwrapped decoders. A message is told apart by its bytes object: asyncua decodes a message from one `Buffer`, its
copies (ExtensionObject bodies) share the bytes; QualityBridge's Call decoder (server/limits/call_codec.py) charges
its own lists with `charged` and leaves a message past the budget to asyncua's decoder, which refuses it.

Pinned to asyncua 2.1.0 by tests/unit/test_array_limits.py (the sources of the wrapped factories, the caches cleared
and the `Buffer` fields read); when they differ the test fails. Should the wrapping fail at runtime (another
asyncua), `install` logs it and leaves asyncua's decoders as they are.
"""

from __future__ import annotations

import functools
import logging
import struct
import time
from collections.abc import Callable
from typing import Any

from asyncua import ua
from asyncua.ua import ua_binary

__all__ = ["array_limit", "charge", "charged", "install", "start_message"]

_log = logging.getLogger("qualitybridge.server.limits")
_INT32 = struct.Struct("<i")

# The factories wrapped, and those whose caches hold decoders made by them.
_WRAPPED = ("_create_uatype_array_deserializer", "_create_list_deserializer")
_CAPTURING = ("_create_uatype_deserializer", "_create_type_deserializer", "_create_dataclass_deserializer")


class _Budget:
    """The elements still allowed in the message being decoded (decoding is synchronous: one message at a time)."""

    limit = 100_000
    message: object = None  # the bytes of the message charged last (kept: an id could be reused)
    remaining = 100_000
    logged_at = -60.0
    refused = 0


def array_limit() -> int:
    return _Budget.limit


def start_message(message: object) -> None:
    """Decoding of the message whose bytes are `message` starts (again) from its first byte: the whole budget."""
    _Budget.message = message
    _Budget.remaining = _Budget.limit


def charged(message: object, length: int) -> bool:
    """`charge`, answering False instead of refusing (nothing is charged or logged then)."""
    if length <= 0:
        return True
    if message is not _Budget.message:
        _Budget.message = message
        _Budget.remaining = _Budget.limit
    if length > _Budget.remaining:
        return False
    _Budget.remaining -= length
    return True


def charge(message: object, length: int) -> None:
    """Charge an array of `length` elements to the message whose bytes are `message`; BadEncodingLimitsExceeded when
    the message's arrays together exceed the limit. A negative length (a null array) costs nothing."""
    if length <= 0:
        return
    if message is not _Budget.message:
        _Budget.message = message
        _Budget.remaining = _Budget.limit
    if length > _Budget.remaining:
        _Budget.remaining = 0
        _refused(length)
        raise ua.uaerrors.BadEncodingLimitsExceeded  # its detail is in the log: a ServiceFault carries only the code
    _Budget.remaining -= length


def _refused(length: int) -> None:
    _Budget.refused += 1
    now = time.monotonic()
    if now - _Budget.logged_at < 10.0:
        return
    _log.warning(
        "Refused %d request(s) with BadEncodingLimitsExceeded: an array of %d elements, max_array_length is %d "
        "elements per message",
        _Budget.refused,
        length,
        _Budget.limit,
    )
    _Budget.logged_at = now
    _Budget.refused = 0


def _charging(decode: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`decode` (an asyncua array decoder: Int32 length, then the elements) charging the declared length first."""

    def decode_charged(data: Any) -> Any:
        message = getattr(data, "_data", None)
        if message is not None and len(data) >= 4:  # shorter: asyncua's own read fails as before
            (length,) = _INT32.unpack_from(message, data._cur_pos)
            charge(message, length)
        return decode(data)

    return decode_charged


def _wrapped_factory(factory: Callable[[Any], Callable[[Any], Any]]) -> Callable[[Any], Callable[[Any], Any]]:
    @functools.cache
    def make(element_type: Any) -> Callable[[Any], Any]:
        return _charging(factory(element_type))

    make.__wrapped_factory__ = factory  # type: ignore[attr-defined]
    return make


def _charging_reshape(reshape: Callable[[list[Any], list[int]], list[Any]]) -> Callable[[list[Any], list[int]], Any]:
    """asyncua's `_reshape` (a Variant's flat elements into its ArrayDimensions) charging the empty lists it pads the
    elements with first: an empty array with dimensions [1000, 1000] takes 17 bytes and makes a million lists
    (asyncua bounds that per Variant only, by MAX_RESHAPE_ELEMENTS, and a message holds many Variants). Charged to
    the message charged last: the one whose dimensions were just read."""

    def reshape_charged(flat: list[Any], dims: list[int]) -> Any:
        if dims:
            declared = dims[0]
            for dimension in dims[1:]:
                declared *= dimension or 1  # asyncua's count: a 0 dimension counts as 1
            charge(_Budget.message, declared - len(flat))
        return reshape(flat, dims)

    reshape_charged.__wrapped_reshape__ = reshape  # type: ignore[attr-defined]
    return reshape_charged


def install(limit: int) -> None:
    """Bound the array elements of every message asyncua decodes in this process to `limit` (idempotent; the last
    limit installed applies: one server per process)."""
    _Budget.limit = limit
    _Budget.remaining = limit
    _Budget.message = None
    try:
        for name in _WRAPPED:
            factory = getattr(ua_binary, name)
            original = getattr(factory, "__wrapped_factory__", None)
            if original is None:
                original = factory
                setattr(ua_binary, name, _wrapped_factory(factory))
            # a list decoder made before resolves its element decoder once, keeping decoders made unwrapped
            original.cache_clear()
            getattr(ua_binary, name).cache_clear()
        if getattr(ua_binary._reshape, "__wrapped_reshape__", None) is None:
            ua_binary._reshape = _charging_reshape(ua_binary._reshape)  # type: ignore[assignment]
        for name in _CAPTURING:
            getattr(ua_binary, name).cache_clear()
    except Exception:  # another asyncua: its decoders as they are, and the reason in the log
        _log.exception("max_array_length is not enforced: asyncua's array decoding is not the one expected")
