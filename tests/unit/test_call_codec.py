"""The hand-written CallParameters decoder and CallResponse encoder (server/limits/call_codec.py) against asyncua's.

For every shape, valid or not, `decode_call_parameters` must give what asyncua's `struct_from_binary` gives: the
same objects (compared by `repr`, which shows every field, the Python types of the values and the NodeId and
Variant types), or the same exception; `encode_call_response` the same bytes as `struct_to_binary`, or the same
exception. asyncua's functions whose behaviour they repeat are pinned by their source.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import random
import struct
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua import ua_binary
from asyncua.ua.ua_binary import nodeid_from_binary, nodeid_to_binary, struct_from_binary, struct_to_binary

from qualitybridge.config import LimitsSettings
from qualitybridge.server.limits import array_limits, call_codec
from qualitybridge.server.limits.call_codec import decode_call_parameters, decode_request_start, encode_call_response

# sha256 of asyncua 2.1.0's source of the functions the decoder repeats. A different asyncua fails here: compare
# what changed with call_codec.py, adjust it, then these digests.
_PINNED_SOURCES = {
    "extensionobject_from_binary": "1fd0586b9b4775395f965ad507e5e71dec99c534eafddf976317dcd22ef41c1e",
    "variant_to_binary": "62b1add89490db8d903ee436491a9a82795aa0bf870b5fc4d47486069f6b992d",
    "_Bytes.pack": "88650485040d91585f103dcef484e9e59c888d235ebb3407d96195124c7e67e4",
    "_String.pack": "20de7ed83cdb9910b39bd169bbe2e091d5f3dc2a30730055037ce2c2c7fe3507",
    "_DateTime.pack": "277ef45302465566cd6f5770e31b2061833e0c8fd3b8aa0d83bd3efb52c5824d",
    "_Primitive1.pack": "15fa3518c67fb86338b4d82fef2772fcb070ca1e72f18314f036ea2f7d8246cc",
    "create_list_serializer": "3c1cfc433f0a0df7621beedc3e59836e201aa5e1a885057df0938611698df7fd",
    "create_dataclass_serializer": "76225d0ea8f294b2bd3a12f4a798db6b7766cafb77b3456466bfa8361cc1974d",
    "nodeid_to_binary": "dcf99647d1e1a147a12c3786f83325719c60935771cf97cd4aaafe63dc946de3",
    "datetime_to_win_epoch": "030343f5af29e02844d0f49efe3d1718cecfb96cb487a95acb26a81e9964f411",
    "nodeid_from_binary": "827f4d41a9429a646ec546548d1bd86bb479872d14a3a4631b7c7465a5e0d143",
    "variant_from_binary": "6f5e95888458c5e3a15d86fbb4e93b3056d97800981a4fa4ce30ae17e0eb249a",
    "_Bytes.unpack": "9c3b8c71617009517cc34ab508864cb6a9048d88dc84db5965f442e226b9f758",
    "_String.unpack": "df2aa75eee4f59775c2f896257a382d9d9771b5ee6cebac16e9515105a1b5063",
    "_DateTime.unpack": "b62cdd7858ddb3d8e885dbaf2bdc0c14ff7952d6044653a7971d4751b22715f3",
    "_Primitive1.unpack": "35cb1a43c02fade4965a56acd3565b6fbf8f88d218955fcfe209da5d7a522c19",
    "_Primitive1.unpack_array": "dafb9633f6d87e841ab849bb362b3aa837bbfe79c2f9af2a61fbcc0f20381a5c",
    "_create_uatype_array_deserializer": "6f780984bfe171bbc0c0c58a27997a26d4fc6c4b0fe83623c8a3d760b883115d",
    "_create_list_deserializer": "ea68c12936f3ddf537bbdfda45baecbe9ce6b5501a6d678e29eae9caf160e6fe",
    "_create_dataclass_deserializer": "df2090ec842f79de7431c4eb0eb10619a97b2113cb997c6797ffbea494b5be09",
    "win_epoch_to_datetime": "a976b0440e9ee6a6225ba84556717b923ad7aa2b400f8d2ddc4bd80ac3af7f35",
    "Variant.__post_init__": "188feefce2a045ff24c2ab1538081cb2e22d5aa2a4c92df39ba7984528c490e8",
    "NodeId.__post_init__": "dd7a2ca138458be103c85ffe9be65ffcde4a49a760591b1df6aaa855dbbf94db",
}


def _source_of(name: str) -> str:
    owner: Any = ua_binary
    if name in ("win_epoch_to_datetime", "datetime_to_win_epoch", "Variant.__post_init__", "NodeId.__post_init__"):
        owner = ua
    for part in name.split("."):
        owner = getattr(owner, part)
    # asyncua's own, not server/limits/array_limits.py's wrapper of it (installed by any LimitedServer)
    owner = getattr(owner, "__wrapped_factory__", owner)
    return inspect.getsource(owner)


@pytest.mark.parametrize("name", sorted(_PINNED_SOURCES))
def test_the_repeated_asyncua_functions_are_asyncua_2_1_0s(name: str) -> None:
    digest = hashlib.sha256(_source_of(name).encode()).hexdigest()
    assert digest == _PINNED_SOURCES[name], f"asyncua's {name} changed: check call_codec.py against it"


def _asyncua(raw: bytes) -> Any:
    try:
        return repr(struct_from_binary(ua.CallParameters, Buffer(raw)))
    except Exception as exc:  # the failure is part of what must agree
        return type(exc)


def _ours(raw: bytes) -> Any:
    try:
        return repr(decode_call_parameters(Buffer(raw)))
    except Exception as exc:
        return type(exc)


def _encoded(*requests: ua.CallMethodRequest) -> bytes:
    return struct_to_binary(ua.CallParameters(MethodsToCall=list(requests)))


_S = ua.VariantType.String
_BRIDGE = ua.NodeId("QualityBridge", 2)
_REPORT = ua.NodeId("QualityBridge.ReportMeasurement", 2)


def _report(*arguments: ua.Variant, object_id: ua.NodeId = _BRIDGE, method_id: ua.NodeId = _REPORT) -> bytes:
    return _encoded(ua.CallMethodRequest(ObjectId=object_id, MethodId=method_id, InputArguments=list(arguments)))


_MEASUREMENT = (
    ua.Variant("4711000123", _S),
    ua.Variant("0010", _S),
    ua.Variant("C-001", _S),
    ua.Variant(12.345, ua.VariantType.Double),
    ua.Variant("GAUGE-1", _S),
    ua.Variant("SN-000123", _S),
    ua.Variant(datetime(2026, 11, 30, 6, 30, 0, 123456, tzinfo=UTC), ua.VariantType.DateTime),
    ua.Variant("m1-123", _S),
)

_SCALARS = [
    ua.Variant(True, ua.VariantType.Boolean),
    ua.Variant(False, ua.VariantType.Boolean),
    ua.Variant(-128, ua.VariantType.SByte),
    ua.Variant(255, ua.VariantType.Byte),
    ua.Variant(-32768, ua.VariantType.Int16),
    ua.Variant(65535, ua.VariantType.UInt16),
    ua.Variant(-(2**31), ua.VariantType.Int32),
    ua.Variant(2**32 - 1, ua.VariantType.UInt32),
    ua.Variant(-(2**63), ua.VariantType.Int64),
    ua.Variant(2**64 - 1, ua.VariantType.UInt64),
    ua.Variant(1.5, ua.VariantType.Float),
    ua.Variant(0.1, ua.VariantType.Float),
    ua.Variant(math.nan, ua.VariantType.Double),
    ua.Variant(-math.inf, ua.VariantType.Double),
    ua.Variant(-0.0, ua.VariantType.Double),
    ua.Variant(2.0, ua.VariantType.Double),
    ua.Variant("", _S),
    ua.Variant(None, _S),
    ua.Variant("Prüfmerkmal Ø 12 – 日本", _S),
    ua.Variant(b"\xff\xfe not UTF-8", _S),  # encoded as given; decoded with surrogate escapes
    ua.Variant(b"\x00\xff", ua.VariantType.ByteString),
    ua.Variant(b"", ua.VariantType.ByteString),
    ua.Variant(None, ua.VariantType.ByteString),
    ua.Variant(None, ua.VariantType.Null),
    ua.Variant(datetime(1601, 1, 1, tzinfo=UTC), ua.VariantType.DateTime),
    ua.Variant(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), ua.VariantType.DateTime),
    ua.Variant(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=7), ua.VariantType.DateTime),
]

# One-dimensional arrays (a ReportMeasurements batch sends eight): decoded by hand, element type by element type.
_ARRAYS = [
    *(ua.Variant([scalar.Value, scalar.Value], scalar.VariantType) for scalar in _SCALARS),
    ua.Variant([1, 2, 3], ua.VariantType.Int32),
    ua.Variant([], ua.VariantType.Int32),
    ua.Variant([], _S),
    ua.Variant(["a", None, "c", ""], _S),
    ua.Variant(None, _S, is_array=True),  # a null array
    ua.Variant(None, ua.VariantType.Double, is_array=True),
    ua.Variant(None, ua.VariantType.DateTime, is_array=True),
    ua.Variant([b"\x00", None, b""], ua.VariantType.ByteString),
    ua.Variant([12.5 + n / 1000 for n in range(1000)], ua.VariantType.Double),
    ua.Variant(
        [datetime(2026, 11, 30, 6, 30, tzinfo=UTC) + timedelta(microseconds=n) for n in range(100)],
        ua.VariantType.DateTime,
    ),
]

# Shapes the decoder hands to asyncua's: the result must still be asyncua's.
_UNUSUAL = [
    ua.Variant([None, None], ua.VariantType.Null),  # Null elements take no bytes: asyncua's to read
    ua.Variant([[1.0, 2.0], [3.0, 4.0]], ua.VariantType.Double),
    ua.Variant([1.0, 2.0], ua.VariantType.Double, Dimensions=[2]),
    ua.Variant(uuid.UUID("12345678-1234-5678-1234-567812345678"), ua.VariantType.Guid),
    ua.Variant(ua.LocalizedText("Text", "de"), ua.VariantType.LocalizedText),
    ua.Variant(ua.QualifiedName("Name", 3), ua.VariantType.QualifiedName),
    ua.Variant(ua.NodeId("x", 4), ua.VariantType.NodeId),
    ua.Variant(ua.StatusCode(ua.StatusCodes.BadNotFound), ua.VariantType.StatusCode),
    ua.Variant(ua.Range(Low=1.0, High=2.0), ua.VariantType.ExtensionObject),
    ua.Variant(ua.Argument(Name="a", DataType=ua.NodeId(11)), ua.VariantType.ExtensionObject),
    ua.Variant([ua.Range(Low=1.0, High=2.0)], ua.VariantType.ExtensionObject),
    ua.Variant(None, ua.VariantType.ExtensionObject),
    ua.Variant(ua.Variant(5, ua.VariantType.Int32), ua.VariantType.Variant),
    ua.Variant([ua.Variant("in", _S), ua.Variant(1.0, ua.VariantType.Double)], ua.VariantType.Variant),
    ua.Variant(ua.DataValue(ua.Variant(1, ua.VariantType.Int32)), ua.VariantType.DataValue),
]

_NODE_IDS = [
    ua.NodeId(5, 0, ua.NodeIdType.TwoByte),
    ua.NodeId(300, 2, ua.NodeIdType.FourByte),
    ua.NodeId(70_000, 2, ua.NodeIdType.Numeric),
    ua.NodeId(5, 300, ua.NodeIdType.Numeric),
    ua.NodeId("", 2, ua.NodeIdType.String),
    ua.NodeId("QualityBridge.Orders.4711 – Ø", 2, ua.NodeIdType.String),
    ua.NodeId(b"\x01\x02", 2, ua.NodeIdType.ByteString),
    ua.NodeId(uuid.UUID("12345678-1234-5678-1234-567812345678"), 2, ua.NodeIdType.Guid),
    ua.ExpandedNodeId("x", 2, ua.NodeIdType.String, NamespaceUri="urn:q", ServerIndex=0),
    ua.ExpandedNodeId(7, 2, ua.NodeIdType.FourByte, ServerIndex=3),
]


def _agree(raw: bytes) -> None:
    expected = _asyncua(raw)
    assert _ours(raw) == expected
    assert _ours(raw) == expected  # and again, with the NodeIds now kept


def test_a_report_measurement_call_decodes_as_asyncua_decodes_it() -> None:
    raw = _report(*_MEASUREMENT)
    _agree(raw)
    _agree(raw + b"the rest of the request")
    assert decode_call_parameters(Buffer(raw)) == struct_from_binary(ua.CallParameters, Buffer(raw))


@pytest.mark.parametrize("argument", _SCALARS + _ARRAYS + _UNUSUAL, ids=repr)
def test_each_argument_shape_decodes_as_asyncua_decodes_it(argument: ua.Variant) -> None:
    _agree(_report(argument))
    _agree(_report(*_MEASUREMENT[:3], argument, *_MEASUREMENT[3:]))


@pytest.mark.parametrize("node_id", _NODE_IDS, ids=repr)
def test_each_node_id_encoding_decodes_as_asyncua_decodes_it(node_id: ua.NodeId) -> None:
    _agree(_report(*_MEASUREMENT, object_id=node_id))
    _agree(_report(*_MEASUREMENT, method_id=node_id))


def test_lists_of_calls_and_arguments_of_any_length_decode_as_asyncua_decodes_them() -> None:
    one = ua.CallMethodRequest(ObjectId=_BRIDGE, MethodId=_REPORT, InputArguments=list(_MEASUREMENT))
    other = ua.CallMethodRequest(ObjectId=ua.NodeId(85), MethodId=ua.NodeId(11492), InputArguments=_SCALARS)
    empty = ua.CallMethodRequest(ObjectId=_BRIDGE, MethodId=_REPORT, InputArguments=[])
    for requests in ([], [one], [one, other], [other, empty, one], [empty]):
        _agree(_encoded(*requests))
    null_methods = struct.pack("<i", -1)
    _agree(null_methods)
    null_arguments = _report()[:-4] + struct.pack("<i", -1)
    _agree(null_arguments)


def test_a_report_measurements_batch_decodes_as_asyncua_decodes_it() -> None:
    count = 100
    batch = [ua.Variant([argument.Value] * count, argument.VariantType) for argument in _MEASUREMENT]
    raw = _report(*batch)
    _agree(raw)
    decoded = decode_call_parameters(Buffer(raw))
    assert decoded == struct_from_binary(ua.CallParameters, Buffer(raw))
    assert all(
        argument.is_array and len(argument.Value) == count for argument in decoded.MethodsToCall[0].InputArguments
    )


@pytest.fixture
def array_budget() -> Iterator[None]:
    """The server's array budget on asyncua's decoder too (a LimitedServer installs it): a damaged length can make a
    list of millions of elements that take no bytes (Null Variants met by a misread), which it refuses at once."""
    array_limits.install(10_000)
    yield
    array_limits.install(LimitsSettings().max_array_length)


@pytest.mark.usefixtures("array_budget")
@pytest.mark.parametrize("arrays", [False, True], ids=["scalars", "arrays"])
def test_truncated_and_damaged_requests_fail_or_decode_as_in_asyncua(arrays: bool) -> None:
    raw = _report(*_MEASUREMENT, _SCALARS[0], _SCALARS[10], _SCALARS[19])
    if arrays:
        raw = _report(*(ua.Variant([a.Value, a.Value, a.Value], a.VariantType) for a in (*_MEASUREMENT, _SCALARS[0])))
    for end in range(len(raw)):
        _agree(raw[:end])
    # No damage writes an array of Null elements (0x80, 0xC0): they take no bytes, so a length in the millions makes
    # asyncua build a list of millions of Nones for seconds, which is not what this test is about.
    values = [value for value in range(256) if value not in (0x80, 0xC0)]
    generator = random.Random(11)
    for _ in range(1500):
        damaged = bytearray(raw)
        for _ in range(generator.randint(1, 3)):
            damaged[generator.randrange(len(damaged))] = generator.choice(values)
        _agree(bytes(damaged))


def test_kept_node_ids_are_bounded_and_follow_the_string_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(call_codec, "_NODE_IDS_KEPT", 3)
    monkeypatch.setattr(call_codec, "_node_ids", {})
    for number in range(10):
        _agree(_report(*_MEASUREMENT, object_id=ua.NodeId(f"object {number}", 2)))
        assert len(call_codec._node_ids) <= 3
    name = ua.NodeId("Prüfung", 2)
    _agree(_report(*_MEASUREMENT, method_id=name))
    token = ua_binary._string_encoding.set("latin-1")
    try:
        _agree(_report(*_MEASUREMENT, method_id=name))
    finally:
        ua_binary._string_encoding.reset(token)
    _agree(_report(*_MEASUREMENT, method_id=name))


# ---- the response ---------------------------------------------------------------------------------------------


def _encodings_agree(response: ua.CallResponse) -> None:
    try:
        expected: Any = struct_to_binary(response)
    except Exception as exc:  # the failure is part of what must agree
        expected = type(exc)
    try:
        ours: Any = encode_call_response(response)
    except Exception as exc:
        ours = type(exc)
    assert ours == expected


def _answer(
    outputs: list[ua.Variant] | None,
    *,
    statuses: list[ua.StatusCode] | None = None,
    infos: list[ua.DiagnosticInfo] | None = None,
    status: int = ua.StatusCodes.Good,
) -> ua.CallMethodResult:
    result = ua.CallMethodResult()
    result.StatusCode = ua.StatusCode(status)
    result.InputArgumentResults = [ua.StatusCode(ua.StatusCodes.Good)] * 8 if statuses is None else statuses
    result.InputArgumentDiagnosticInfos = [] if infos is None else infos
    result.OutputArguments = outputs  # type: ignore[assignment]
    return result


def _response(*results: ua.CallMethodResult, handle: int = 4711) -> ua.CallResponse:
    response = ua.CallResponse()
    response.Results = list(results)
    response.ResponseHeader.RequestHandle = handle
    return response


_REPORT_ANSWER = [ua.Variant("0f3c1a9e-7d2b-4c55-9a1e-3b2c1d0e9f8a", _S), ua.Variant(1, ua.VariantType.Int32)]


def test_a_report_measurement_answer_encodes_as_asyncua_encodes_it() -> None:
    response = _response(_answer(_REPORT_ANSWER))
    assert encode_call_response(response) == struct_to_binary(response)
    for handle in (0, 1, 2**32 - 1):
        _encodings_agree(_response(_answer(_REPORT_ANSWER), handle=handle))


@pytest.mark.parametrize("output", _SCALARS + _UNUSUAL, ids=repr)
def test_each_output_shape_encodes_as_asyncua_encodes_it(output: ua.Variant) -> None:
    _encodings_agree(_response(_answer([output])))
    _encodings_agree(_response(_answer([*_REPORT_ANSWER, output, *_REPORT_ANSWER])))


def test_refusals_lists_and_headers_of_every_kind_encode_as_asyncua_encodes_them() -> None:
    refused = _answer(
        [],
        status=ua.StatusCodes.BadOutOfRange,
        statuses=[ua.StatusCode(ua.StatusCodes.BadOutOfRange)] + [ua.StatusCode()] * 7,
        infos=[ua.DiagnosticInfo(AdditionalInfo="NaN is not a value")] + [ua.DiagnosticInfo()] * 7,
    )
    superseded = _answer(_REPORT_ANSWER, status=ua.StatusCodes.GoodEntryInserted)
    for results in ([], [refused], [superseded], [superseded, refused, _answer(None)], [_answer([], statuses=[])]):
        _encodings_agree(_response(*results))
    _encodings_agree(_response(_answer(_REPORT_ANSWER, statuses=None)))
    nulls = _answer(None)
    nulls.InputArgumentResults = None  # type: ignore[assignment]
    nulls.InputArgumentDiagnosticInfos = None  # type: ignore[assignment]
    _encodings_agree(_response(nulls))
    no_results = _response()
    no_results.Results = None  # type: ignore[assignment]
    _encodings_agree(no_results)
    for diagnostics in (None, [ua.DiagnosticInfo()], [ua.DiagnosticInfo(SymbolicId=3)]):
        response = _response(_answer(_REPORT_ANSWER))
        response.DiagnosticInfos = diagnostics  # type: ignore[assignment]
        _encodings_agree(response)
    headers = [
        ua.ResponseHeader(ServiceResult=ua.StatusCode(ua.StatusCodes.BadTooManyOperations)),
        ua.ResponseHeader(ServiceDiagnostics=ua.DiagnosticInfo(AdditionalInfo="why")),
        ua.ResponseHeader(StringTable=["a", "b"]),
        ua.ResponseHeader(StringTable=None),  # type: ignore[arg-type]
        ua.ResponseHeader(AdditionalHeader=ua.ExtensionObject(TypeId=ua.NodeId(5), Body=b"xyz")),
        ua.ResponseHeader(Timestamp=datetime(1601, 1, 1, tzinfo=UTC)),
        ua.ResponseHeader(Timestamp=datetime(2026, 11, 30, 7, 0)),  # noqa: DTZ001 - naive: asyncua takes it as UTC
        ua.ResponseHeader(Timestamp=None),  # type: ignore[arg-type]
    ]
    for header in headers:
        response = _response(_answer(_REPORT_ANSWER))
        response.ResponseHeader = header
        _encodings_agree(response)


def test_values_asyncua_cannot_encode_fail_as_in_asyncua() -> None:
    for output in (
        ua.Variant(2**31, ua.VariantType.Int32, is_array=False),
        ua.Variant(-1, ua.VariantType.UInt32, is_array=False),
        ua.Variant("text", ua.VariantType.Double, is_array=False),
        ua.Variant(b"bytes", _S, is_array=False),
        ua.Variant("text", ua.VariantType.ByteString, is_array=False),
        ua.Variant("\udcff surrogate", _S, is_array=False),
    ):
        _encodings_agree(_response(_answer([output])))
    wrong = _answer(_REPORT_ANSWER)
    wrong.StatusCode = 0  # type: ignore[assignment]
    _encodings_agree(_response(wrong))
    wrong = _answer(_REPORT_ANSWER)
    wrong.OutputArguments = ["not a variant"]  # type: ignore[list-item]
    _encodings_agree(_response(wrong))


# ---- the request's type id and header ---------------------------------------------------------------------------


def _start_of(raw: bytes) -> Any:
    """What asyncua's process_message decodes first, and what it leaves in the buffer; or its exception."""
    body = Buffer(raw)
    try:
        decoded = (nodeid_from_binary(body), struct_from_binary(ua.RequestHeader, body))
    except Exception as exc:  # the failure is part of what must agree
        return type(exc)
    return repr(decoded), bytes(body.read(len(body)))


def _our_start_of(raw: bytes) -> Any:
    body = Buffer(raw)
    try:
        decoded = decode_request_start(body)
    except Exception as exc:
        return type(exc)
    return repr(decoded), bytes(body.read(len(body)))


def _starts_agree(raw: bytes) -> None:
    expected = _start_of(raw)
    assert _our_start_of(raw) == expected
    assert _our_start_of(raw) == expected  # and again, with the type id now kept


_CALL_TYPE = ua.NodeId(ua.ObjectIds.CallRequest_Encoding_DefaultBinary)


def _request(header: ua.RequestHeader, type_id: ua.NodeId = _CALL_TYPE, rest: bytes = b"parameters") -> bytes:
    return nodeid_to_binary(type_id) + struct_to_binary(header) + rest


# A fixed time, not RequestHeader's default (now): the headers are the test ids, which every pytest-xdist worker must
# collect alike.
_SENT_AT = datetime(2026, 11, 30, 8, 0, 0, 123456, tzinfo=UTC)
_HEADERS = [
    ua.RequestHeader(Timestamp=_SENT_AT, AuthenticationToken=ua.NodeId(1001), RequestHandle=77, TimeoutHint=10_000),
    ua.RequestHeader(
        Timestamp=_SENT_AT, AuthenticationToken=ua.NodeId(5), RequestHandle=2**32 - 1, ReturnDiagnostics=0x3FF
    ),
    ua.RequestHeader(Timestamp=_SENT_AT, AuthenticationToken=ua.NodeId(2**31 - 1, 3)),
    ua.RequestHeader(Timestamp=_SENT_AT, AuthenticationToken=ua.NodeId("token", 1), AuditEntryId=""),
    ua.RequestHeader(Timestamp=_SENT_AT, AuthenticationToken=ua.NodeId(b"\x01\x02", 1, ua.NodeIdType.ByteString)),
    ua.RequestHeader(Timestamp=_SENT_AT, AuthenticationToken=ua.NodeId(uuid.UUID(int=7), 1, ua.NodeIdType.Guid)),
    ua.RequestHeader(Timestamp=_SENT_AT, AuditEntryId="audit – Ø"),
    ua.RequestHeader(Timestamp=datetime(1601, 1, 1, tzinfo=UTC)),
    ua.RequestHeader(Timestamp=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ua.RequestHeader(Timestamp=_SENT_AT, AdditionalHeader=ua.ExtensionObject(TypeId=ua.NodeId(5), Body=b"xyz")),
    ua.RequestHeader(Timestamp=_SENT_AT, AdditionalHeader=ua.ExtensionObject(TypeId=ua.NodeId(0, 2), Body=b"xyz")),
    ua.RequestHeader(Timestamp=_SENT_AT, AdditionalHeader=ua.Range(Low=1.0, High=2.0)),  # type: ignore[arg-type]
]


@pytest.mark.parametrize("header", _HEADERS, ids=repr)
def test_each_request_header_decodes_as_asyncua_decodes_it(header: ua.RequestHeader) -> None:
    for type_id in (_CALL_TYPE, ua.NodeId(ua.ObjectIds.ReadRequest_Encoding_DefaultBinary), *_NODE_IDS):
        _starts_agree(_request(header, type_id))
    _starts_agree(_request(header, rest=b""))


def test_truncated_and_damaged_request_headers_fail_or_decode_as_in_asyncua() -> None:
    raw = _request(_HEADERS[0], rest=_report(*_MEASUREMENT))
    for end in range(len(raw)):
        _starts_agree(raw[:end])
    values = [value for value in range(256) if value not in (0x80, 0xC0)]  # see the parameters' damage test
    generator = random.Random(12)
    for _ in range(1500):
        damaged = bytearray(raw)
        for _ in range(generator.randint(1, 3)):
            damaged[generator.randrange(40)] = generator.choice(values)
        _starts_agree(bytes(damaged))
