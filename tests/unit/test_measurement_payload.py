"""The outbox payload of a measurement, put together from pieces by `ResultJson` on the report path, is the text
pydantic writes for the result (`model_dump_json`), byte for byte: the relay decodes it as it decodes every row, and
rows written by other paths and earlier releases must read alike."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from qualitybridge.domain.model import MeasurementReport, MeasurementResult, ResultEvaluation
from qualitybridge.domain.postings import MeasurementPosting, decode_posting
from qualitybridge.store.outbox import ResultJson

AT = datetime(2026, 11, 30, 6, 0, 0, 123456, tzinfo=UTC)


def _result(**changed: object) -> MeasurementResult:
    report_fields: dict[str, object] = {
        "order_no": "1000417",
        "operation_no": "0010",
        "characteristic_id": "C0010",
        "value": 20.125,
        "equipment_id": "GA-TMP-0603",
        "part_serial": "SN-1",
        "measured_at": AT,
        "client_result_id": "machine-7-1",
    }
    result_fields: dict[str, object] = {
        "result_id": "01a22b36-d3ac-74a3-8350-28b0d148e7a4",
        "evaluation": ResultEvaluation.OK,
        "plan_version": "3",
        "unit": "CEL",
        "reported_by": "machine",
        "received_at": AT + timedelta(seconds=1),
        "routing_version": "R2",
        "plan_version_superseded": False,
    }
    for name, value in changed.items():
        (report_fields if name in MeasurementReport.model_fields else result_fields)[name] = value
    return MeasurementResult(report=MeasurementReport(**report_fields), **result_fields)  # type: ignore[arg-type]


_ODD_STRINGS = ['a"b', "back\\slash", "äöü € 😀", "\x01\x1f\x7f", "\u2028\u2029", "tab\tnew\nline\r", "<>&/'", ""]
_ODD_VALUES = [0.0, -0.0, 1.0, 1e-05, 1e-07, 0.0001, 1e15, 1e16, 1e22, 1.5e300, 5e-324, -3.25, 0.1 + 0.2, 2.0**53 + 2]
_ODD_TIMES = [
    datetime(2026, 1, 1, tzinfo=UTC),  # no fraction: pydantic leaves it out
    datetime(2026, 1, 1, 0, 0, 0, 500000, tzinfo=UTC),
    datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=1))),
    datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))),  # the same instant as the next, another text
    datetime(2026, 1, 1, 0, tzinfo=UTC),
    datetime(2026, 1, 1, tzinfo=timezone(timedelta(seconds=30))),
    datetime(2026, 1, 1),  # noqa: DTZ001 - naive on purpose
]

_CASES = (
    [_result()]
    + [_result(part_serial=text, client_result_id=text or None) for text in _ODD_STRINGS]
    + [_result(order_no=text, operation_no=text, characteristic_id=text, equipment_id=text) for text in _ODD_STRINGS]
    + [_result(plan_version=text, unit=text, reported_by=text, routing_version=text) for text in _ODD_STRINGS]
    + [_result(value=value) for value in _ODD_VALUES]
    + [_result(measured_at=moment) for moment in _ODD_TIMES]
    + [_result(received_at=moment) for moment in _ODD_TIMES]
    + [_result(routing_version=None, client_result_id=None, plan_version_superseded=True)]
    + [_result(evaluation=evaluation) for evaluation in ResultEvaluation]
)


@pytest.mark.parametrize("result", _CASES, ids=range(len(_CASES)))
def test_the_payload_is_pydantics_json_of_the_result(result: MeasurementResult) -> None:
    assert ResultJson()(result) == result.model_dump_json()


def test_one_builder_for_a_whole_group_writes_each_result_as_pydantic_does() -> None:
    """The parts a builder reuses from the result before must never leak into one that differs in any of them: the
    cases above, and random ones whose every field is drawn on its own from a few values (the same objects again
    and again, as in a batch, or equal ones that are other objects), all through one builder, in both orders."""
    generator = random.Random(11)
    alphabet = 'aZ09-_ /"\\\t\x00é€😀'

    def pool(*values: object) -> list[object]:
        """`values`, and an equal copy of each that is another object."""
        return [*values, *(value.encode().decode() if isinstance(value, str) else copy.copy(value) for value in values)]

    pools: dict[str, list[object]] = {
        "order_no": pool("1000417", "1000418", ""),
        "operation_no": pool("0010", "0020"),
        "characteristic_id": pool("C0010", "C0020", 'C"30'),
        "equipment_id": pool("GA-TMP-0603", "G\\2"),
        "measured_at": pool(*_ODD_TIMES[:3], AT),
        "client_result_id": [None, "plc-1", "plc-2"],
        "plan_version": pool("3", "4"),
        "unit": pool("CEL", "MMT"),
        "reported_by": pool("machine", "machine2"),
        "received_at": pool(AT, AT + timedelta(seconds=1), _ODD_TIMES[2]),
        "routing_version": [None, "R1", "R2"],
        "plan_version_superseded": [False, True],
        "evaluation": list(ResultEvaluation),
    }
    randoms = [
        _result(
            value=generator.uniform(-1, 1) * 10 ** generator.randint(-8, 18),
            part_serial="".join(generator.choices(alphabet, k=generator.randint(0, 12))),
            **{name: generator.choice(values) for name, values in pools.items()},
        )
        for _ in range(3_000)
    ]
    for results in (_CASES + randoms, list(reversed(_CASES + randoms))):
        build = ResultJson()
        assert [build(result) for result in results] == [result.model_dump_json() for result in results]


def test_the_relay_reads_the_payload_back_as_it_reads_pydantics() -> None:
    for result in _CASES:
        posting = decode_posting("measurement", ResultJson()(result))
        assert isinstance(posting, MeasurementPosting)
        assert posting == decode_posting("measurement", result.model_dump_json())
    # What QualityBridge itself stores (UTC times, whole-second offsets) reads back as the result itself.
    assert decode_posting("measurement", ResultJson()(_CASES[0])) == MeasurementPosting(result=_CASES[0])
