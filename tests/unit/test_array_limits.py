"""`[limits] max_array_length`: the array elements of one message, charged before any element is decoded, by asyncua's
generic decoder (wrapped by server/limits/array_limits.py, pinned here to asyncua 2.1.0) and by the Call decoder."""

from __future__ import annotations

import hashlib
import inspect
import struct
import time
from collections.abc import Iterator

import pytest
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua import ua_binary

from qualitybridge.config import ARRAY_ELEMENTS_PER_BATCH_ENTRY, ConfigError, LimitsSettings, QualityBridgeConfig
from qualitybridge.server.limits import array_limits
from qualitybridge.server.limits.call_codec import decode_call_parameters
from qualitybridge.server.methods.measurements import REPORT_MEASUREMENTS_ARGUMENTS

# sha256 of asyncua 2.1.0's sources that array_limits relies on: the two array decoder factories it wraps (their
# decoders read the Int32 length at the buffer's position first), the factories whose caches it clears, the callers
# of the array factories, and the Buffer fields it reads (_data, _cur_pos). A different asyncua fails here: compare,
# adjust array_limits, then the digest.
_ASYNCUA_ARRAY_DECODING = "f0e407434ff01a6c710c2a71c3a774d18f309678dc3009f95a1ec1e8b8a30b47"


def _original(function: object) -> object:
    return getattr(function, "__wrapped_factory__", function)


def _asyncua_sources() -> bytes:
    pinned = (
        _original(ua_binary._create_uatype_array_deserializer),
        _original(ua_binary._create_list_deserializer),
        ua_binary._create_uatype_deserializer,
        ua_binary._create_type_deserializer,
        ua_binary._create_dataclass_deserializer,
        ua_binary.unpack_uatype_array,
        ua_binary.variant_from_binary,
        ua_binary.extensionobject_from_binary,
        getattr(ua_binary._reshape, "__wrapped_reshape__", ua_binary._reshape),
        ua_binary._Primitive1.unpack_array,
        Buffer.__init__,
        Buffer.read,
        Buffer.copy,
    )
    return b"".join(inspect.getsource(function).encode() for function in pinned)  # type: ignore[arg-type]


def test_the_wrapped_array_decoding_is_asyncuas() -> None:
    digest = hashlib.sha256(_asyncua_sources()).hexdigest()
    assert digest == _ASYNCUA_ARRAY_DECODING, "asyncua's array decoding changed: check server/limits/array_limits.py"


@pytest.fixture
def limit() -> Iterator[int]:
    array_limits.install(10_000)
    yield 10_000
    array_limits.install(LimitsSettings().max_array_length)


def _null_array(length: int) -> bytes:
    return b"\x80" + struct.pack("<i", length)


def test_a_variant_declaring_fifty_million_nulls_is_refused_before_its_elements(limit: int) -> None:
    started = time.process_time()
    with pytest.raises(ua.uaerrors.BadEncodingLimitsExceeded):
        ua_binary.variant_from_binary(Buffer(_null_array(50_000_000)))
    assert time.process_time() - started < 0.5, "refused before 50 million elements were made"


def test_an_array_at_the_limit_is_decoded_as_asyncua_decodes_it(limit: int) -> None:
    variant = ua_binary.variant_from_binary(Buffer(_null_array(limit)))
    assert variant.is_array
    assert variant.Value == [None] * limit
    ints = ua_binary.variant_from_binary(Buffer(b"\x86" + struct.pack("<3i", 2, 7, 8)))
    assert ints.Value == [7, 8]
    assert ua_binary.variant_from_binary(Buffer(b"\x80" + struct.pack("<i", -1))).Value is None


def test_the_arrays_of_one_message_together_are_bounded(limit: int) -> None:
    """Arrays nest: a list of Variant arrays each within the limit, together past it, is refused; each message has
    its own budget."""
    each = limit // 2 + 1
    request = ua.CallMethodRequest(InputArguments=[ua.Variant([None] * each, ua.VariantType.Null, is_array=True)] * 2)
    encoded = ua_binary.struct_to_binary(request)
    with pytest.raises(ua.uaerrors.BadEncodingLimitsExceeded):
        ua_binary.struct_from_binary(ua.CallMethodRequest, Buffer(encoded))
    half = ua.CallMethodRequest(InputArguments=[ua.Variant([None] * each, ua.VariantType.Null, is_array=True)])
    encoded_half = ua_binary.struct_to_binary(half)
    for _ in range(3):  # a new message (bytes object) each time: the budget is per message, not per process
        message = bytes(bytearray(encoded_half))
        assert ua_binary.struct_from_binary(ua.CallMethodRequest, Buffer(message)) == half
    with pytest.raises(ua.uaerrors.BadEncodingLimitsExceeded):  # the same bytes decoded again: the same budget
        ua_binary.struct_from_binary(ua.CallMethodRequest, Buffer(message))


def test_lists_of_structures_are_charged(limit: int) -> None:
    """A list of structures (asyncua's other array decoder) is refused by its declared length, before its first
    element (here there is none: a decoder that read them would fail otherwise)."""
    view = b"\x00\x00" + b"\x00" * 12  # ViewId (TwoByte 0), Timestamp, ViewVersion
    nodes_to_browse = struct.pack("<I", 0) + struct.pack("<i", 50_000_000)  # RequestedMaxReferencesPerNode, list
    with pytest.raises(ua.uaerrors.BadEncodingLimitsExceeded):
        ua_binary.struct_from_binary(ua.BrowseParameters, Buffer(view + nodes_to_browse))


def test_the_call_decoder_charges_its_lists(limit: int) -> None:
    """The Call decoder reads its method and argument lists by hand: a list of Null Variants (one byte each) past the
    limit is refused before it is read, and asyncua's decoder, where it hands over, charges from the first byte."""
    arguments = b"\x00" * (limit + 1)
    body = struct.pack("<i", 1) + b"\x00\x55\x00\x56" + struct.pack("<i", limit + 1) + arguments
    with pytest.raises(ua.uaerrors.BadEncodingLimitsExceeded):
        decode_call_parameters(Buffer(body))
    within = struct.pack("<i", 1) + b"\x00\x55\x00\x56" + struct.pack("<i", 3) + b"\x00" + _null_array(limit - 10)
    params = decode_call_parameters(Buffer(within + b"\x00"))
    assert len(params.MethodsToCall[0].InputArguments[1].Value) == limit - 10


def test_a_report_measurements_batch_stays_within_the_default_limit() -> None:
    assert len(REPORT_MEASUREMENTS_ARGUMENTS) == ARRAY_ELEMENTS_PER_BATCH_ENTRY
    QualityBridgeConfig.model_validate({"reporting": {"max_batch_size": 12_000}})
    with pytest.raises((ConfigError, ValueError), match="max_array_length"):
        QualityBridgeConfig.model_validate({"reporting": {"max_batch_size": 50_000}})
    QualityBridgeConfig.model_validate(
        {"reporting": {"max_batch_size": 50_000}, "limits": {"max_array_length": 400_064}}
    )


def test_the_lists_that_array_dimensions_pad_are_charged(limit: int) -> None:
    """An empty Int32 array with dimensions [1000, 1000] takes 17 bytes and makes a million empty lists in asyncua's
    reshape, per Variant; Variants in one message are refused once their padding passes the budget."""
    one = b"\xc6" + struct.pack("<i", 0) + struct.pack("<3i", 2, 100, 99)  # 9,900 lists padded
    variant = ua_binary.variant_from_binary(Buffer(bytes(bytearray(one))))
    assert len(variant.Value) == 100
    assert variant.Dimensions == [100, 99]
    arguments = struct.pack("<i", 2) + one * 2  # two of them: 19,800 lists past the 10,000 allowed
    request = b"\x00\x00\x00\x00" + arguments
    with pytest.raises(ua.uaerrors.BadEncodingLimitsExceeded):
        ua_binary.struct_from_binary(ua.CallMethodRequest, Buffer(request))


def test_the_call_decoder_charges_the_arrays_it_reads_itself(limit: int) -> None:
    """Arrays of Doubles and Strings (a ReportMeasurements batch) are read by the hand-written decoder: charged
    together before their elements, past the limit refused as asyncua's decoder refuses them."""

    def batch(length: int) -> bytes:
        values = ua.Variant([1.5] * length, ua.VariantType.Double)
        serials = ua.Variant([f"SN-{n}" for n in range(length)], ua.VariantType.String)
        call = ua.CallMethodRequest(ObjectId=ua.NodeId(85), MethodId=ua.NodeId(86), InputArguments=[values, serials])
        return ua_binary.struct_to_binary(ua.CallParameters(MethodsToCall=[call]))

    within = (limit - 3) // 2  # the list of methods (1) and of arguments (2) are charged too
    decoded = decode_call_parameters(Buffer(batch(within)))
    assert [len(argument.Value) for argument in decoded.MethodsToCall[0].InputArguments] == [within] * 2
    with pytest.raises(ua.uaerrors.BadEncodingLimitsExceeded):  # each within the limit, together past it
        decode_call_parameters(Buffer(batch(limit // 2 + 1)))
