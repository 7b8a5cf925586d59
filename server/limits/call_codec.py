"""The request path's decoding and encoding by hand for the shapes the shop floor sends; asyncua's own decoder and
encoder for the rest.

asyncua decodes with its generic dataclass decoder: per field a look-up of the field's decoder, a keyword dict, and
per Variant an enum construction, a `Buffer` read per primitive and the constructor's checks. For ReportMeasurement
(two NodeIds and eight scalar Variants) the parameters were about a tenth of the server's CPU per call and every
request's header another 4-5 % (docs/performance.md, issue 11). Here the same bytes are read with `struct` at
offsets into the same objects, built with the same constructors:

- `decode_request_start`: every request's type id and RequestHeader (an additional header must be null);
- `decode_call_parameters`: a CallRequest's parameters, with NodeIds in the TwoByte, FourByte, Numeric and String
  encodings (no namespace URI, no server index) and Variants holding one scalar of Null, Boolean, the integer
  types, Float, Double, String, DateTime or ByteString, or a one-dimensional array of any of them but Null (a
  ReportMeasurements batch: eight arrays; asyncua read them at 5.3 µs per measurement, here 2.2 µs);
- `decode_call_parameters` charges the lists it reads to the message's array budget (`[limits] max_array_length`,
  server/limits/array_limits.py) before reading their elements and leaves a list past it to asyncua's decoder, which
  (wrapped) refuses it with BadEncodingLimitsExceeded or fails earlier exactly as it would;
- `encode_call_response`: the bytes `struct_to_binary` writes for a CallResponse whose header carries no
  diagnostics, string table or additional header, and whose results carry StatusCodes and scalar output arguments
  of the same types and no diagnostic infos (the answer of every QualityBridge method that accepts).

Anything else (arrays of Null, matrices, ExtensionObjects, Guid or ByteString NodeIds, ExpandedNodeIds, a null list,
truncated data, a value the type cannot hold) goes to asyncua's own decoder or encoder from the first byte, which
then answers or raises exactly as before. tests/unit/test_call_codec.py holds the results equal to asyncua's for
many shapes, damaged and truncated ones among them.

Pinned to asyncua 2.1.0's binary encoding (`ua_binary.nodeid_from_binary`, `variant_from_binary`,
`variant_to_binary`, `extensionobject_from_binary`, the `_Bytes`, `_String`, `_DateTime` and `_Primitive1`
unpackers and packers, the dataclass and list codecs); the test fails when any of their sources changes.

A NodeId decoded here is shared between the requests that name it (decoded NodeIds are kept by their bytes, at
most `_NODE_IDS_KEPT` of them): asyncua uses a request's type id, session token, ObjectId and MethodId only to
compare and look up, never changes them.
"""

from __future__ import annotations

import struct
from typing import Any

from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import (
    get_string_encoding,
    nodeid_from_binary,
    nodeid_to_binary,
    struct_from_binary,
    struct_to_binary,
)

from qualitybridge.server.limits.array_limits import charged, start_message

__all__ = ["decode_call_parameters", "decode_request_start", "encode_call_response"]


class _Unusual(Exception):
    """A shape the hand-written decoder leaves to asyncua's."""


_INT32 = struct.Struct("<i")
_INT64 = struct.Struct("<q")
_FOUR_BYTE = struct.Struct("<BH")
_NUMERIC = struct.Struct("<HI")
_UINT16 = struct.Struct("<H")
_UINT32 = struct.Struct("<I")

# Variant type id -> (its VariantType, the struct reading its fixed-size value) for the fixed-size scalars.
_FIXED: dict[int, tuple[ua.VariantType, struct.Struct]] = {
    vtype.value: (vtype, struct.Struct(fmt))
    for vtype, fmt in (
        (ua.VariantType.Boolean, "<?"),
        (ua.VariantType.SByte, "<b"),
        (ua.VariantType.Byte, "<B"),
        (ua.VariantType.Int16, "<h"),
        (ua.VariantType.UInt16, "<H"),
        (ua.VariantType.Int32, "<i"),
        (ua.VariantType.UInt32, "<I"),
        (ua.VariantType.Int64, "<q"),
        (ua.VariantType.UInt64, "<Q"),
        (ua.VariantType.Float, "<f"),
        (ua.VariantType.Double, "<d"),
    )
}
_NULL = ua.VariantType.Null.value
_STRING = ua.VariantType.String.value
_DATE_TIME = ua.VariantType.DateTime.value
_BYTE_STRING = ua.VariantType.ByteString.value
_TEXT_TYPES = {_STRING: ua.VariantType.String, _BYTE_STRING: ua.VariantType.ByteString}
_ARRAY_TYPES = {**_TEXT_TYPES, _DATE_TIME: ua.VariantType.DateTime}  # besides _FIXED's
_ARRAY, _DIMENSIONS = 0x80, 0x40  # a Variant's encoding byte: an array; with its dimensions after it
_ARRAY_FLAGS = _ARRAY | _DIMENSIONS
_TYPE_BITS = 0x3F

_NODE_IDS_KEPT = 4096
_node_ids: dict[bytes, ua.NodeId] = {}
_node_ids_encoding = ["utf-8"]  # the string encoding the kept NodeIds were decoded with


_NO_ADDITIONAL_HEADER = b"\x00\x00\x00"  # a null NodeId (TwoByte 0) and no body: what every client sends
_HEADER_NUMBERS = struct.Struct("<qII")  # Timestamp, RequestHandle, ReturnDiagnostics


def decode_request_start(body: Buffer) -> tuple[ua.NodeId, ua.RequestHeader]:
    """The request's type id and RequestHeader, as asyncua's `process_message` decodes them (`nodeid_from_binary`,
    `struct_from_binary(ua.RequestHeader, ...)`); `body` is left at the request's parameters, as asyncua leaves it."""
    data = body.copy().read(len(body))
    try:
        encoding = _string_encoding()
        type_id, position = _node_id(data, 0, encoding)
        header, position = _request_header(data, position, encoding)
    except (_Unusual, struct.error, IndexError):
        return nodeid_from_binary(body), struct_from_binary(ua.RequestHeader, body)
    body.skip(position)
    return type_id, header


def _request_header(data: bytes, position: int, encoding: str) -> tuple[ua.RequestHeader, int]:
    token, position = _node_id(data, position, encoding)
    ticks, handle, diagnostics = _HEADER_NUMBERS.unpack_from(data, position)
    position += _HEADER_NUMBERS.size
    (length,) = _INT32.unpack_from(data, position)
    position += 4
    if length == -1:
        audit_entry_id = None
    elif 0 <= length <= len(data) - position:
        audit_entry_id = str(data[position : position + length], encoding, "surrogateescape")
        position += length
    else:
        raise _Unusual
    (timeout_hint,) = _UINT32.unpack_from(data, position)
    position += 4
    if data[position : position + 3] != _NO_ADDITIONAL_HEADER:
        raise _Unusual
    header = ua.RequestHeader(
        AuthenticationToken=token,
        Timestamp=ua.win_epoch_to_datetime(ticks),
        RequestHandle=handle,
        ReturnDiagnostics=diagnostics,
        AuditEntryId=audit_entry_id,
        TimeoutHint=timeout_hint,
        AdditionalHeader=ua.ExtensionObject(),
    )
    return header, position + 3


def _string_encoding() -> str:
    """asyncua's string encoding; the kept NodeIds are forgotten when it changed."""
    encoding = get_string_encoding()
    if encoding != _node_ids_encoding[0]:
        _node_ids.clear()
        _node_ids_encoding[0] = encoding
    return encoding


def decode_call_parameters(body: Buffer) -> ua.CallParameters:
    """The CallParameters at the start of `body` (the rest of the request is left unread, as asyncua leaves it)."""
    data = body.read(len(body))
    try:
        return _decode(data)
    except (_Unusual, struct.error, IndexError):
        start_message(data)  # asyncua's decoder charges the lists again, from the first byte
        return struct_from_binary(ua.CallParameters, Buffer(data))


def _decode(data: bytes) -> ua.CallParameters:
    start_message(data)  # the message's lists are charged from its first byte (the same bytes may be decoded twice)
    (count,) = _INT32.unpack_from(data, 0)
    if count < 0:
        raise _Unusual
    if not charged(data, count):
        raise _Unusual  # asyncua's decoder refuses it (or fails earlier, as it would)
    position = 4
    encoding = _string_encoding()
    requests = []
    for _ in range(count):
        object_id, position = _node_id(data, position, encoding)
        method_id, position = _node_id(data, position, encoding)
        (argument_count,) = _INT32.unpack_from(data, position)
        if argument_count < 0:
            raise _Unusual
        if not charged(data, argument_count):
            raise _Unusual
        position += 4
        arguments = []
        for _ in range(argument_count):
            argument, position = _variant(data, position, encoding)
            arguments.append(argument)
        requests.append(ua.CallMethodRequest(ObjectId=object_id, MethodId=method_id, InputArguments=arguments))
    return ua.CallParameters(MethodsToCall=requests)


def _node_id(data: bytes, position: int, encoding: str) -> tuple[ua.NodeId, int]:
    kind = data[position]
    if kind == 0:  # TwoByte
        end = position + 2
    elif kind == 1:  # FourByte
        end = position + 4
    elif kind == 2:  # Numeric
        end = position + 7
    elif kind == 3:  # String (a null identifier is asyncua's to refuse)
        (length,) = _INT32.unpack_from(data, position + 3)
        if length < 0:
            raise _Unusual
        end = position + 7 + length
    else:  # ByteString, Guid, or a flag for a namespace URI or server index
        raise _Unusual
    if end > len(data):
        raise _Unusual
    key = data[position:end]
    known = _node_ids.get(key)
    if known is not None:
        return known, end
    if kind == 0:
        node_id = ua.NodeId(ua.Int32(data[position + 1]), ua.Int16(0), ua.NodeIdType.TwoByte)
    elif kind == 1:
        index, identifier = _FOUR_BYTE.unpack_from(data, position + 1)
        node_id = ua.NodeId(ua.Int32(identifier), ua.Int16(index), ua.NodeIdType.FourByte)
    elif kind == 2:
        index, identifier = _NUMERIC.unpack_from(data, position + 1)
        node_id = ua.NodeId(ua.Int32(identifier), ua.Int16(index), ua.NodeIdType.Numeric)
    else:
        (index,) = _UINT16.unpack_from(data, position + 1)
        text = str(data[position + 7 : end], encoding, "surrogateescape")
        node_id = ua.NodeId(ua.String(text), ua.Int16(index), ua.NodeIdType.String)
    if len(_node_ids) >= _NODE_IDS_KEPT:
        _node_ids.clear()
    _node_ids[key] = node_id
    return node_id, end


_new_object = object.__new__


def _built(value: Any, vtype: ua.VariantType, is_array: bool = False) -> ua.Variant:
    """`ua.Variant(value, vtype, None, is_array)` without its dataclass `__init__` and `__post_init__` (three quarters
    of the cost; 8 Variants per ReportMeasurement): for a scalar of a known type, or a one-dimensional list of such
    scalars (or a null array), the post-init checks change nothing (no guessing; None only where a scalar may be
    None; the shape of a list of scalars is one dimension). Every slot is set as `__init__` sets it;
    tests/unit/test_call_codec.py compares them (their repr) with asyncua's decoding."""
    variant = _new_object(ua.Variant)
    variant.Value = value
    variant.VariantType = vtype
    variant.Dimensions = None
    variant.is_array = is_array
    return variant


def _text(data: bytes, position: int, kind: int, encoding: str) -> tuple[str | bytes | None, int]:
    """A String (decoded as asyncua decodes it) or ByteString at `position`: Int32 length, -1 for null, the bytes."""
    (length,) = _INT32.unpack_from(data, position)
    position += 4
    if length < 0:
        if length != -1:  # asyncua reads a negative length other than -1 as a (failing) read
            raise _Unusual
        return None, position
    end = position + length
    if end > len(data):
        raise _Unusual
    raw = data[position:end]
    return (str(raw, encoding, "surrogateescape") if kind == _STRING else raw), end


def _variant(data: bytes, position: int, encoding: str) -> tuple[ua.Variant, int]:
    kind = data[position]  # an array or dimensions flag makes the kind one _FIXED and the others do not hold
    if kind & _ARRAY_FLAGS == _ARRAY:
        return _one_dimension(data, position + 1, kind & _TYPE_BITS, encoding)
    position += 1
    fixed = _FIXED.get(kind)
    if fixed is not None:
        vtype, reader = fixed
        (value,) = reader.unpack_from(data, position)
        return _built(value, vtype), position + reader.size
    text_type = _TEXT_TYPES.get(kind)
    if text_type is not None:
        text, position = _text(data, position, kind, encoding)
        return _built(text, text_type), position
    if kind == _DATE_TIME:
        (ticks,) = _INT64.unpack_from(data, position)
        return _built(ua.win_epoch_to_datetime(ticks), ua.VariantType.DateTime), position + 8
    if kind == _NULL:
        return _built(None, ua.VariantType.Null), position
    raise _Unusual


def _one_dimension(data: bytes, position: int, kind: int, encoding: str) -> tuple[ua.Variant, int]:
    """An array Variant without dimensions (a ReportMeasurements batch: eight of them), read as asyncua's
    `unpack_uatype_array` reads it and charged to the message's array budget first, as its wrapped decoder is."""
    (length,) = _INT32.unpack_from(data, position)
    position += 4
    fixed = _FIXED.get(kind)
    vtype = fixed[0] if fixed is not None else _ARRAY_TYPES.get(kind)
    # A null element type takes no bytes per element (asyncua builds a list of any length from nothing); a negative
    # length other than -1 reads as asyncua reads it. Both are asyncua's.
    if vtype is None or length < -1:
        raise _Unusual
    if length == -1:
        return _built(None, vtype, is_array=True), position
    if not charged(data, length):
        raise _Unusual  # asyncua's decoder refuses it (BadEncodingLimitsExceeded)
    if fixed is not None:
        reader = fixed[1]
        values = list(struct.unpack_from(f"<{length}{reader.format[1:]}", data, position))
        return _built(values, vtype, is_array=True), position + reader.size * length
    if kind == _DATE_TIME:
        end = position + 8 * length
        if end > len(data):
            raise _Unusual
        to_datetime = ua.win_epoch_to_datetime
        moments = [to_datetime(ticks) for ticks in struct.unpack_from(f"<{length}q", data, position)]
        return _built(moments, vtype, is_array=True), end
    # `_text` per element, written out: a call per element cost a quarter more (2.2 -> 2.8 µs per batched
    # measurement; half a batch's arrays are strings). tests/unit/test_call_codec.py holds the two to asyncua's.
    texts: list[Any] = []
    append = texts.append
    unpack_length = _INT32.unpack_from
    size = len(data)
    for _ in range(length):
        (count,) = unpack_length(data, position)
        position += 4
        if count < 0:
            if count != -1:
                raise _Unusual
            append(None)
            continue
        end = position + count
        if end > size:
            raise _Unusual
        append(str(data[position:end], encoding, "surrogateescape") if kind == _STRING else data[position:end])
        position = end
    return _built(texts, vtype, is_array=True), position


_CALL_RESPONSE_TYPE_ID = ua.CallResponse().TypeId
_CALL_RESPONSE_TYPE_ID_BINARY = nodeid_to_binary(_CALL_RESPONSE_TYPE_ID)
_NULL_LIST = _INT32.pack(-1)
_EMPTY_LIST = _INT32.pack(0)
_STATUS_CODE = ua.StatusCode
_CALL_METHOD_RESULT = ua.CallMethodResult
_VARIANT = ua.Variant
# VariantType -> (its encoding byte, the struct writing its fixed-size value).
_FIXED_OUT: dict[ua.VariantType, tuple[bytes, struct.Struct]] = {
    vtype: (bytes((vtype.value,)), reader) for vtype, reader in _FIXED.values()
}


def encode_call_response(response: ua.CallResponse) -> bytes:
    """`struct_to_binary(response)`, for a CallResponse."""
    try:
        if type(response) is not ua.CallResponse or response.TypeId != _CALL_RESPONSE_TYPE_ID:
            raise _Unusual
        response_infos: list[ua.DiagnosticInfo] | None = response.DiagnosticInfos  # None is encodable too
        if response_infos is None:
            diagnostics = _NULL_LIST
        elif not response_infos:
            diagnostics = _EMPTY_LIST
        else:
            raise _Unusual
        results = _call_method_results(response.Results)
    except (_Unusual, struct.error, TypeError, AttributeError, UnicodeError):
        return struct_to_binary(response)
    return b"".join((_CALL_RESPONSE_TYPE_ID_BINARY, _response_header(response.ResponseHeader), results, diagnostics))


_DEFAULT_HEADER = ua.ResponseHeader()
_TIMESTAMP_HANDLE_RESULT = struct.Struct("<qII")
# What follows the ServiceResult in a header without diagnostics, string table or additional header (every one).
_PLAIN_HEADER_TAIL = struct_to_binary(_DEFAULT_HEADER)[_TIMESTAMP_HANDLE_RESULT.size :]


def _response_header(header: ua.ResponseHeader) -> bytes:
    if (
        type(header) is ua.ResponseHeader
        and header.ServiceDiagnostics == _DEFAULT_HEADER.ServiceDiagnostics
        and header.StringTable == []
        and header.AdditionalHeader == _DEFAULT_HEADER.AdditionalHeader
        and type(header.ServiceResult) is _STATUS_CODE
        and header.Timestamp is not None
    ):
        start = _TIMESTAMP_HANDLE_RESULT.pack(
            ua.datetime_to_win_epoch(header.Timestamp), header.RequestHandle, header.ServiceResult.value
        )
        return start + _PLAIN_HEADER_TAIL
    return struct_to_binary(header)


def _call_method_results(results: list[ua.CallMethodResult] | None) -> bytes:
    if results is None:
        return _NULL_LIST
    parts = [_INT32.pack(len(results))]
    for result in results:
        if type(result) is not _CALL_METHOD_RESULT:
            raise _Unusual
        parts.append(_status_code(result.StatusCode))
        statuses: list[ua.StatusCode] | None = result.InputArgumentResults  # None is encodable too
        if statuses is None:
            parts.append(_NULL_LIST)
        else:
            parts.append(_INT32.pack(len(statuses)))
            parts.extend(_status_code(status) for status in statuses)
        infos: list[ua.DiagnosticInfo] | None = result.InputArgumentDiagnosticInfos
        if infos is None:
            parts.append(_NULL_LIST)
        elif infos:
            raise _Unusual
        else:
            parts.append(_EMPTY_LIST)
        outputs: list[ua.Variant] | None = result.OutputArguments
        if outputs is None:
            parts.append(_NULL_LIST)
        else:
            parts.append(_INT32.pack(len(outputs)))
            parts.extend(_scalar_variant(output) for output in outputs)
    return b"".join(parts)


def _status_code(status: ua.StatusCode) -> bytes:
    if type(status) is not _STATUS_CODE:
        raise _Unusual
    return _UINT32.pack(status.value)


def _scalar_variant(variant: ua.Variant) -> bytes:
    if type(variant) is not _VARIANT or variant.is_array or isinstance(variant.Value, list | tuple):
        raise _Unusual
    vtype = variant.VariantType
    value = variant.Value
    fixed = _FIXED_OUT.get(vtype)
    if fixed is not None:
        kind, writer = fixed
        return kind + writer.pack(value)
    if vtype is ua.VariantType.String:
        if value is None:
            return b"\x0c" + _NULL_LIST
        if type(value) is not str:
            raise _Unusual
        text = value.encode(get_string_encoding(), "surrogateescape")
        return b"\x0c" + _INT32.pack(len(text)) + text
    if vtype is ua.VariantType.ByteString:
        if value is None:
            return b"\x0f" + _NULL_LIST
        if type(value) is not bytes:
            raise _Unusual
        return b"\x0f" + _INT32.pack(len(value)) + value
    if vtype is ua.VariantType.DateTime and value is not None:
        return b"\x0d" + _INT64.pack(ua.datetime_to_win_epoch(value))
    if vtype is ua.VariantType.Null and value is None:
        return b"\x00"
    raise _Unusual
