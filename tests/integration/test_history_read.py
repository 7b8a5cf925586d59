"""HistoryRead of a characteristic's LastValue through a real asyncua client, answered from the store.

An in-process asyncua server with the QualityBridge model, one published order and a SQLite store seeded with
more values than one answer holds (the answer limit is set to 100), in shuffled insertion order.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from asyncua import Client, ua
from asyncua.common.events import Event, get_filter_from_event_type

from qualitybridge.domain.model import MeasurementReport, MeasurementResult, OutboxState, ResultEvaluation, SpcAlarm
from qualitybridge.domain.records import AcceptedMeasurement, SpcAlarmRecord
from qualitybridge.server.address_space.history import install_store_history
from qualitybridge.server.address_space.namespace import QualityBridgeNamespace
from qualitybridge.server.address_space.view import AddressSpaceView
from qualitybridge.store import Store, open_store
from qualitybridge.store.measurement_history import SeriesQuery
from tests.builders import gauge, order
from tests.harness import standard_server

START = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
SERIES = "Order/1000/Op/0010/Char/C010.LastValue"
COUNT = 250  # values 0..249, one per second; every 10th out of tolerance
ANSWER_LIMIT = 100

module_loop = pytest.mark.asyncio(loop_scope="module")
ALARM = SpcAlarmRecord(
    alarm_id="alarm-1",
    alarm=SpcAlarm(
        order_no="1000",
        operation_no="0010",
        characteristic_id="C010",
        rule="Nelson 1",
        severity=900,
        message="one point beyond 3 sigma",
        raised_at=START + timedelta(seconds=100, milliseconds=6),
        rule_number=1,
        value=12.5,
    ),
    reported_by="qualitybridge-spc",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _measurement(index: int, *, order_no: str = "1000", at: datetime | None = None) -> AcceptedMeasurement:
    out = index % 10 == 0
    measured_at = at or START + timedelta(seconds=index)
    return AcceptedMeasurement(
        result=MeasurementResult(
            result_id=f"r-{order_no}-{index:05d}",
            report=MeasurementReport(
                order_no=order_no,
                operation_no="0010",
                characteristic_id="C010",
                value=12.5 if out else 12.0 + index / 100_000,
                equipment_id="G-1",
                part_serial=f"SN-{index}",
                measured_at=measured_at,
            ),
            evaluation=ResultEvaluation.NOT_OK if out else ResultEvaluation.OK,
            plan_version="3",
            unit="MMT",
            reported_by="machine1",
            received_at=measured_at + timedelta(milliseconds=5),
        )
    )


@dataclass
class Running:
    url: str
    index: int
    store: Store


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    folder: Path = tmp_path_factory.mktemp("history")
    store = await open_store(f"sqlite+aiosqlite:///{folder / 'store.db'}")
    seeded = [_measurement(i) for i in range(COUNT)]
    random.Random(15).shuffle(seeded)
    await store.record_measurements(seeded)
    await store.record_measurements([_measurement(i, order_no="2000") for i in range(5)])  # another series
    await store.record_spc_alarm(ALARM)
    url = f"opc.tcp://127.0.0.1:{_free_port()}/qb"
    server = await standard_server()
    server.set_endpoint(url)
    namespace = await QualityBridgeNamespace.load(server)
    view = AddressSpaceView(server, namespace)
    await view.show([order("1000")], [gauge()])
    install_store_history(server, namespace.index, store, max_values=ANSWER_LIMIT)
    await server.start()
    try:
        yield Running(url, namespace.index, store)
    finally:
        await server.stop()
        await store.aclose()


@pytest_asyncio.fixture(loop_scope="module")
async def client(running: Running) -> AsyncIterator[Client]:
    async with Client(running.url, timeout=10) as connected:
        yield connected


def _node(client: Client, running: Running, identifier: str = SERIES) -> ua.NodeId:
    return ua.NodeId(identifier, running.index)


def _details(start: datetime | None, end: datetime | None, count: int = 0) -> ua.ReadRawModifiedDetails:
    return ua.ReadRawModifiedDetails(
        IsReadModified=False,
        StartTime=start or ua.get_win_epoch(),
        EndTime=end or ua.get_win_epoch(),
        NumValuesPerNode=count,
        ReturnBounds=False,
    )


async def _read(
    client: Client,
    node_id: ua.NodeId,
    details: ua.ReadRawModifiedDetails,
    point: bytes | None = None,
    *,
    release: bool = False,
) -> ua.HistoryReadResult:
    params = ua.HistoryReadParameters(
        HistoryReadDetails=details,
        TimestampsToReturn=ua.TimestampsToReturn.Both,
        ReleaseContinuationPoints=release,
        NodesToRead=[ua.HistoryReadValueId(NodeId=node_id, ContinuationPoint=point)],
    )
    return (await client.uaclient.history_read(params))[0]


@module_loop
async def test_last_value_declares_history_read_so_uaexpert_offers_its_history(
    client: Client, running: Running
) -> None:
    node = client.get_node(_node(client, running))
    access = await node.read_attribute(ua.AttributeIds.AccessLevel)
    user_access = await node.read_attribute(ua.AttributeIds.UserAccessLevel)
    historizing = await node.read_attribute(ua.AttributeIds.Historizing)
    assert access.Value.Value & ua.AccessLevel.HistoryRead.mask
    assert access.Value.Value & ua.AccessLevel.CurrentRead.mask
    assert not access.Value.Value & ua.AccessLevel.CurrentWrite.mask
    assert user_access.Value.Value & ua.AccessLevel.HistoryRead.mask
    assert historizing.Value.Value is True


@module_loop
async def test_whole_series_arrives_in_measurement_order_across_continuation_points(
    client: Client, running: Running
) -> None:
    node = client.get_node(_node(client, running))
    began = time.perf_counter()
    values = await node.read_raw_history(START - timedelta(hours=1), START + timedelta(hours=1))
    elapsed = time.perf_counter() - began
    assert len(values) == COUNT, f"{len(values)} of {COUNT} values ({elapsed:.3f} s)"
    assert [v.SourceTimestamp for v in values] == [START + timedelta(seconds=i) for i in range(COUNT)]
    assert [v.ServerTimestamp for v in values] == [START + timedelta(seconds=i, milliseconds=5) for i in range(COUNT)]
    assert values[1].Value.Value == pytest.approx(12.00001)
    statuses = [v.StatusCode.value for v in values]
    assert statuses[0] == ua.StatusCodes.UncertainEngineeringUnitsExceeded
    assert statuses[1] == ua.StatusCodes.Good
    assert statuses.count(ua.StatusCodes.UncertainEngineeringUnitsExceeded) == COUNT // 10


@module_loop
async def test_num_values_per_node_pages_with_continuation_points_then_ends(client: Client, running: Running) -> None:
    node_id = _node(client, running)
    details = _details(START, START + timedelta(hours=1), count=40)
    pages: list[list[ua.DataValue]] = []
    point: bytes | None = None
    while True:
        answer = await _read(client, node_id, details, point)
        assert answer.StatusCode.is_good()
        pages.append(answer.HistoryData.DataValues)
        point = answer.ContinuationPoint
        if not point:
            break
    assert [len(page) for page in pages] == [40, 40, 40, 40, 40, 40, 10]
    stamps = [value.SourceTimestamp for page in pages for value in page]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == COUNT


@module_loop
async def test_time_range_includes_start_and_excludes_end(client: Client, running: Running) -> None:
    node = client.get_node(_node(client, running))
    values = await node.read_raw_history(START + timedelta(seconds=10), START + timedelta(seconds=20))
    assert [v.SourceTimestamp for v in values] == [START + timedelta(seconds=i) for i in range(10, 20)]


@module_loop
async def test_start_after_end_reads_backwards(client: Client, running: Running) -> None:
    answer = await _read(
        client, _node(client, running), _details(START + timedelta(seconds=249), START + timedelta(seconds=239))
    )
    stamps = [v.SourceTimestamp for v in answer.HistoryData.DataValues]
    assert stamps == [START + timedelta(seconds=i) for i in range(249, 239, -1)]


@module_loop
async def test_only_end_time_reads_the_values_before_it_newest_first(client: Client, running: Running) -> None:
    answer = await _read(client, _node(client, running), _details(None, START + timedelta(seconds=100), count=3))
    stamps = [v.SourceTimestamp for v in answer.HistoryData.DataValues]
    assert stamps == [START + timedelta(seconds=i) for i in (99, 98, 97)]
    assert answer.ContinuationPoint


@module_loop
async def test_release_continuation_points_answers_good_without_data(client: Client, running: Running) -> None:
    node_id = _node(client, running)
    details = _details(START, START + timedelta(hours=1), count=10)
    first = await _read(client, node_id, details)
    assert first.ContinuationPoint
    released = await _read(client, node_id, details, first.ContinuationPoint, release=True)
    assert released.StatusCode.is_good()
    assert not released.ContinuationPoint
    assert not getattr(released.HistoryData, "DataValues", None)


@module_loop
async def test_unknown_continuation_point_and_non_historized_nodes_are_refused(
    client: Client, running: Running
) -> None:
    details = _details(START, START + timedelta(hours=1))
    damaged = await _read(client, _node(client, running), details, b"garbage")
    assert damaged.StatusCode.value == ua.StatusCodes.BadContinuationPointInvalid
    other = await _read(client, _node(client, running, "Order/1000/Op/0010/Char/C010.Nominal"), details)
    assert other.StatusCode.value == ua.StatusCodes.BadHistoryOperationUnsupported
    open_ended = await _read(client, _node(client, running), _details(START, None))
    assert open_ended.StatusCode.value == ua.StatusCodes.BadHistoryOperationInvalid


@module_loop
async def test_equal_measurement_times_are_neither_lost_nor_repeated_at_a_page_boundary(running: Running) -> None:
    same = START + timedelta(days=1)
    await running.store.record_measurements([_measurement(1000 + i, order_no="3000", at=same) for i in range(7)])
    seen: list[str] = []
    after = None
    while True:
        query = SeriesQuery("3000", "0010", "C010", start=same, end=same + timedelta(seconds=1), limit=3, after=after)
        page = await running.store.measurement_series(query)
        if not page:
            break
        seen.extend(point.result_id for point in page)
        after = (page[-1].measured_at, page[-1].result_id)
    assert seen == [f"r-3000-{1000 + i:05d}" for i in range(7)]


@module_loop
async def test_purge_keeps_what_the_outbox_still_owes(running: Running, tmp_path: Path) -> None:
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'purge.db'}")
    try:
        await store.record_measurements([_measurement(i, order_no="4000") for i in range(6)])
        pending = await store.pending_outbox(limit=10)
        sent = [entry for entry in pending if entry.idempotency_key in {"mr-r-4000-00000", "mr-r-4000-00001"}]
        for entry in sent:
            await store.mark_sent(entry.seq, erp_document="ERP-1")
        # All six are past retention; two reached the ERP, four are still owed.
        removed = await store.purge_measurements(START + timedelta(days=1))
        assert removed == 2
        left = {m.result.result_id for m in await store.stored_measurements("4000")}
        assert left == {f"r-4000-{i:05d}" for i in range(2, 6)}
        states = {entry.idempotency_key: entry.state for entry in await store.pending_outbox(limit=10)}
        assert all(state is OutboxState.PENDING for state in states.values())
    finally:
        await store.aclose()


async def _events(
    client: Client, running: Running, type_ids: list[int], count: int
) -> tuple[list[Event], int, list[ua.SimpleAttributeOperand]]:
    """All quality events of the first hour at the QualityBridge object, page by page; (events, pages, selects)."""
    event_filter = await get_filter_from_event_type([client.get_node(ua.NodeId(t, running.index)) for t in type_ids])
    details = ua.ReadEventDetails(
        NumValuesPerNode=count, StartTime=START, EndTime=START + timedelta(hours=1), Filter=event_filter
    )
    events: list[Event] = []
    pages = 0
    point: bytes | None = None
    while True:
        params = ua.HistoryReadParameters(
            HistoryReadDetails=details,
            TimestampsToReturn=ua.TimestampsToReturn.Both,
            ReleaseContinuationPoints=False,  # asyncua's default is True
            NodesToRead=[
                ua.HistoryReadValueId(NodeId=ua.NodeId("QualityBridge", running.index), ContinuationPoint=point)
            ],
        )
        answer = (await client.uaclient.history_read(params))[0]
        assert answer.StatusCode.is_good(), answer.StatusCode
        pages += 1
        events.extend(
            Event.from_event_fields(event_filter.SelectClauses, e.EventFields) for e in answer.HistoryData.Events
        )
        point = answer.ContinuationPoint
        if not point:
            return events, pages, event_filter.SelectClauses


@module_loop
async def test_event_history_returns_measurements_and_alarms_in_time_order_with_the_filter(
    client: Client, running: Running
) -> None:
    root = client.get_node(ua.NodeId("QualityBridge", running.index))
    notifier = (await root.read_attribute(ua.AttributeIds.EventNotifier)).Value.Value
    assert notifier & ua.EventNotifier.HistoryRead.mask

    events, pages, _ = await _events(client, running, [1010, 1011], count=60)
    # 250 + 5 measurements (orders 1000 and 2000) and one SPC alarm in the hour, in pages of 60.
    assert len(events) == COUNT + 5 + 1
    assert pages == 5
    times = [event.Time for event in events]
    assert times == sorted(times)
    alarms = [event for event in events if getattr(event, "AlarmId", None) == "alarm-1"]
    assert len(alarms) == 1
    assert alarms[0].Severity == 900
    measured = [event for event in events if getattr(event, "ResultId", None) == "r-1000-00010"]
    assert measured[0].OrderNumber == "1000"
    assert measured[0].Evaluation == int(ResultEvaluation.NOT_OK)
    assert measured[0].Value == 12.5

    only_alarms, _, _ = await _events(client, running, [1011], count=0)
    assert [event.AlarmId for event in only_alarms] == ["alarm-1"]
