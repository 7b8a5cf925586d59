"""The whole loop through real processes: ERP simulator → store → OPC UA → machine → store → outbox → ERP.

Each backend (SQLite, PostgreSQL) gets one deployment for the module: `qualitybridge simulator` and
`qualitybridge serve` as child processes, users created and the client certificate trusted with the CLI.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asyncua import ua

from tests.builders import EXPIRED_GAUGE, first_characteristic, node, report, results_at_erp
from tests.harness import NAMESPACE_URI, Deployment, deployed, wait_for

pytestmark = pytest.mark.slow


# A change at the ERP is shown within SYNC_ROUNDS of the server's ERP sync rounds: the round under way may have read
# the ERP before the change, the next one reads it and publishes, a third leaves the subscription time to notify.
# A server without a sync round for SYNC_STALL_SECONDS has stopped (the rounds run every second here).
SYNC_ROUNDS = 3
SYNC_STALL_SECONDS = 60.0
# How long a test waits for the relay to deliver before calling it stuck (it wakes on every report and runs every
# 0.5 s in these deployments; the bench measures its latency).
RELAY_PATIENCE_SECONDS = 30.0


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    yield from deployed(request.param, tmp_path_factory.mktemp(f"e2e-{request.param}"))


async def test_browse_orders_characteristics_and_limits(deployment: Deployment) -> None:
    async with deployment.session("observer") as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)

        # "ready" means serving; the first ERP sync may still be publishing the seeded orders.
        async def seeded_orders_published() -> bool:
            return len(await node(client, idx, "QualityBridge.ReleasedOrders").read_value() or []) >= 3

        await _within_sync_rounds(client, idx, seeded_orders_published, "seeded orders published")
        orders = await node(client, idx, "QualityBridge.Orders").get_children()
        order_numbers = sorted([(await o.read_browse_name()).Name for o in orders])
        assert len(order_numbers) >= 3
        assert await node(client, idx, "QualityBridge.ReleasedOrders").read_value() == order_numbers
        for order_no in order_numbers:
            key = await first_characteristic(client, idx, order_no)
            base = f"Order/{key[0]}/Op/{key[1]}/Char/{key[2]}"
            lower = await node(client, idx, f"{base}.LowerLimit").read_value()
            upper = await node(client, idx, f"{base}.UpperLimit").read_value()
            nominal = await node(client, idx, f"{base}.Nominal").read_value()
            assert lower <= nominal <= upper
            assert lower < upper
            eu_range = await node(client, idx, f"{base}.LastValue.EURange").read_value()
            assert (eu_range.Low, eu_range.High) == (lower, upper)
            units = await node(client, idx, f"{base}.LastValue.EngineeringUnits").read_value()
            assert units.NamespaceUri == "http://www.opcfoundation.org/UA/units/un/cefact"
            assert units.UnitId > 0
            assert await node(client, idx, f"{base}.PlanVersion").read_value()
        gauges = await node(client, idx, "QualityBridge.TestEquipment").get_children()
        statuses = [await node(client, idx, f"{g.nodeid.Identifier}.CalibrationStatus").read_value() for g in gauges]
        assert statuses.count(2) == 1, "exactly one seeded gauge has an expired calibration"


async def test_in_and_out_of_tolerance_results_reach_the_erp(deployment: Deployment) -> None:
    await deployment.ensure_running("1000418")
    async with deployment.session("machine1") as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        key = await first_characteristic(client, idx, "1000418")
        base = f"Order/{key[0]}/Op/{key[1]}/Char/{key[2]}"
        nominal = await node(client, idx, f"{base}.Nominal").read_value()
        upper = await node(client, idx, f"{base}.UpperLimit").read_value()

        inside_id, inside_evaluation = await report(client, idx, key, nominal)
        outside_id, outside_evaluation = await report(client, idx, key, upper + 0.5)
        assert (inside_evaluation, outside_evaluation) == (1, 2)  # ResultEvaluationEnum OK, NotOK
        assert await node(client, idx, f"{base}.LastResultId").read_value() == outside_id
        assert await node(client, idx, f"{base}.LastEvaluation").read_value() == 2

    reported = time.monotonic()

    def both_arrived() -> list[dict[str, Any]]:
        mine = [r for r in results_at_erp(deployment) if r["body"]["result_id"] in (inside_id, outside_id)]
        return mine if len(mine) == 2 else []

    # That both arrive, each once, is the verdict here; how fast is measured in bench/report_throughput.py (report →
    # booking p50/p99), where a busy machine cannot decide it. The wait only ends a relay that does not deliver.
    arrived = wait_for(both_arrived, RELAY_PATIENCE_SECONDS, "both results at the ERP simulator")
    print(f"both results booked {time.monotonic() - reported:.2f} s after their answers")
    by_id = {r["body"]["result_id"]: r for r in arrived}
    assert by_id[inside_id]["body"]["evaluation"] == "OK"
    assert by_id[outside_id]["body"]["evaluation"] == "NOT_OK"
    assert all(r["deliveries"] == 1 for r in arrived)


async def test_history_read_returns_reported_values_in_measurement_order_with_their_status(
    deployment: Deployment,
) -> None:
    await deployment.ensure_running("1000418")
    async with deployment.session("observer") as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        key = await first_characteristic(client, idx, "1000418")
    base = f"Order/{key[0]}/Op/{key[1]}/Char/{key[2]}"
    # Measured in the order late, early, middle: HistoryRead sorts by MeasuredAt, not by arrival.
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    async with deployment.session("machine1") as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        nominal = await node(client, idx, f"{base}.Nominal").read_value()
        upper = await node(client, idx, f"{base}.UpperLimit").read_value()
        late, _ = await report(client, idx, key, nominal, measured_at=at + timedelta(seconds=2))
        early, _ = await report(client, idx, key, upper + 1.0, measured_at=at)
        middle, _ = await report(client, idx, key, nominal, measured_at=at + timedelta(seconds=1))
    async with deployment.session("observer") as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        values = await node(client, idx, f"{base}.LastValue").read_raw_history(at, at + timedelta(seconds=3))
    assert [v.SourceTimestamp for v in values] == [at + timedelta(seconds=s) for s in range(3)]
    assert [v.Value.Value for v in values] == [upper + 1.0, nominal, nominal]
    assert [v.StatusCode.value for v in values] == [
        ua.StatusCodes.UncertainEngineeringUnitsExceeded,
        ua.StatusCodes.Good,
        ua.StatusCodes.Good,
    ]
    assert len({late, early, middle}) == 3  # three results were stored, none taken for a repeat


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unknown order", ua.StatusCodes.BadNotFound),
        ("unknown operation", ua.StatusCodes.BadNotFound),
        ("unknown characteristic", ua.StatusCodes.BadNotFound),
        ("unknown gauge", ua.StatusCodes.BadNotFound),
        ("expired gauge", ua.StatusCodes.BadInvalidState),
        ("NaN", ua.StatusCodes.BadOutOfRange),
        ("infinity", ua.StatusCodes.BadOutOfRange),
        ("value is a string", ua.StatusCodes.BadTypeMismatch),
        ("value is an Int32", ua.StatusCodes.BadTypeMismatch),
        ("value is an array", ua.StatusCodes.BadTypeMismatch),
        ("measured a day ahead", ua.StatusCodes.BadOutOfRange),
        ("empty order number", ua.StatusCodes.BadInvalidArgument),
        ("order number too long", ua.StatusCodes.BadOutOfRange),
    ],
)
async def test_bad_input_gets_a_precise_status_and_stores_nothing(
    deployment: Deployment, case: str, expected: int
) -> None:
    await deployment.ensure_running("1000417")
    stored_before = await deployment.stored_result_count()
    # Results of the tests before may still be on their way to the ERP: counted before they all arrived, they
    # would look like a posting of the refused report.
    await _relay_drained(deployment)
    at_erp_before = len(results_at_erp(deployment))
    async with deployment.session("machine1") as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        order_no, operation_no, characteristic_id = await first_characteristic(client, idx, "1000417")
        key = (order_no, operation_no, characteristic_id)
        arguments: dict[str, Any] = {"value": 1.0}
        match case:
            case "unknown order":
                key = ("9999999", operation_no, characteristic_id)
            case "unknown operation":
                key = (order_no, "9990", characteristic_id)
            case "unknown characteristic":
                key = (order_no, operation_no, "NOPE")
            case "unknown gauge":
                arguments["gauge"] = "GA-NONE"
            case "expired gauge":
                arguments["gauge"] = EXPIRED_GAUGE
            case "NaN":
                arguments["value"] = float("nan")
            case "infinity":
                arguments["value"] = float("inf")
            case "value is a string":
                arguments["value"] = ua.Variant("12.0", ua.VariantType.String)
            case "value is an Int32":
                arguments["value"] = ua.Variant(12, ua.VariantType.Int32)
            case "value is an array":
                arguments["value"] = ua.Variant([1.0, 2.0], ua.VariantType.Double)
            case "measured a day ahead":
                arguments["measured_at"] = datetime.now(UTC) + timedelta(days=1)
            case "empty order number":
                key = ("", operation_no, characteristic_id)
            case "order number too long":
                key = ("1" * 33, operation_no, characteristic_id)
        value = arguments.pop("value")
        with pytest.raises(ua.UaStatusCodeError) as refused:
            await report(client, idx, key, value, **arguments)
        assert refused.value.code == expected, f"{case}: got {ua.StatusCode(refused.value.code).name}"
    assert await deployment.stored_result_count() == stored_before
    await asyncio.sleep(0.6)  # one relay interval: nothing may have been sent either
    assert len(results_at_erp(deployment)) == at_erp_before


async def _relay_drained(deployment: Deployment, stall_seconds: float = 30.0) -> None:
    """Waits until the relay owes the ERP nothing; fails if the outbox stops shrinking for `stall_seconds`."""
    pending = await deployment.pending_posting_count()
    stalled_after = time.monotonic() + stall_seconds
    while pending:
        await asyncio.sleep(0.05)
        now = await deployment.pending_posting_count()
        if now < pending:
            stalled_after = time.monotonic() + stall_seconds
        assert time.monotonic() < stalled_after, f"{now} postings pending, none delivered for {stall_seconds} s"
        pending = now


async def test_missing_and_extra_arguments(deployment: Deployment) -> None:
    async with deployment.session("machine1") as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        method = ua.NodeId("QualityBridge.ReportMeasurement", idx)
        root = node(client, idx, "QualityBridge")
        with pytest.raises(ua.uaerrors.BadArgumentsMissing):
            await root.call_method(method, "1000417", "0010")
        with pytest.raises(ua.uaerrors.BadTooManyArguments):
            await root.call_method(method, *(["x"] * 9))


async def test_observer_may_read_but_not_report(deployment: Deployment) -> None:
    stored_before = await deployment.stored_result_count()
    async with deployment.session("observer") as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        key = await first_characteristic(client, idx, "1000417")
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await report(client, idx, key, 1.0)
    assert await deployment.stored_result_count() == stored_before


async def test_repeated_client_result_id_returns_the_first_answer(deployment: Deployment) -> None:
    client_result_id = f"plc-7-{time.time_ns()}"
    await deployment.ensure_running("1000421")
    async with deployment.session("machine1") as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        key = await first_characteristic(client, idx, "1000421")
        # A retry repeats the report unchanged (issue 9: the same id with another report is BadEntryExists).
        at = datetime.now(UTC)
        first = await report(client, idx, key, 1.0, measured_at=at, client_result_id=client_result_id)
        again = await report(client, idx, key, 1.0, measured_at=at, client_result_id=client_result_id)
    assert again == first

    def delivered() -> list[dict[str, Any]]:
        return [r for r in results_at_erp(deployment) if r["body"]["client_result_id"] == client_result_id]

    wait_for(delivered, RELAY_PATIENCE_SECONDS, "the result at the ERP")
    await asyncio.sleep(1.0)  # give a wrongly queued second posting the chance to arrive
    arrived = delivered()
    assert len(arrived) == 1
    assert arrived[0]["body"]["result_id"] == first[0]


async def test_release_change_and_withdraw_show_live(deployment: Deployment) -> None:
    order_no = f"77{time.time_ns() % 100000:05d}"
    with deployment.erp() as erp:
        template = erp.get("/api/v1/orders").json()["orders"][0]
    new_order = {**template, "order_no": order_no}

    changes: list[list[str]] = []

    class Handler:
        def datachange_notification(self, _node: Any, value: Any, _data: Any) -> None:
            changes.append(list(value))

    async with deployment.session("observer") as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        subscription = await client.create_subscription(100, Handler())
        await subscription.subscribe_data_change(node(client, idx, "QualityBridge.ReleasedOrders"))

        with deployment.erp() as erp:
            assert erp.post("/sim/orders", json=new_order).status_code in (200, 201)
        await _within_sync_rounds(
            client, idx, lambda: any(order_no in c for c in changes), "data change listing the new order"
        )
        assert await node(client, idx, f"Order/{order_no}.OrderNumber").read_value() == order_no

        key = await first_characteristic(client, idx, order_no)
        upper_node = node(client, idx, f"Order/{key[0]}/Op/{key[1]}/Char/{key[2]}.UpperLimit")
        upper_values: list[float] = []

        class UpperHandler:
            def datachange_notification(self, _node: Any, value: Any, _data: Any) -> None:
                upper_values.append(value)

        upper_subscription = await client.create_subscription(100, UpperHandler())
        await upper_subscription.subscribe_data_change(upper_node)
        changed = {**new_order}
        changed["operations"][0]["characteristics"][0]["upper_limit"] += 1.0
        new_upper = changed["operations"][0]["characteristics"][0]["upper_limit"]
        with deployment.erp() as erp:
            assert erp.put(f"/sim/orders/{order_no}", json=changed).status_code == 200
        await _within_sync_rounds(
            client, idx, lambda: new_upper in upper_values, "data change of the changed upper limit"
        )

        with deployment.erp() as erp:
            assert erp.delete(f"/sim/orders/{order_no}").status_code in (200, 204)
        await _within_sync_rounds(
            client, idx, lambda: changes and order_no not in changes[-1], "data change without the order"
        )
        with pytest.raises(ua.uaerrors.BadNodeIdUnknown):
            await node(client, idx, f"Order/{order_no}.OrderNumber").read_value()


async def _within_sync_rounds(
    client: Any, idx: int, condition: Callable[[], Any], what: str, rounds: int = SYNC_ROUNDS
) -> None:
    """Waits until `condition` (a function, or a coroutine function) is true: before the server has finished
    `rounds` more ERP sync rounds (Diagnostics.LastSyncTime takes a new value after each; one a second in these
    deployments, as far as the machine lets it). Counted in the server's own rounds, not in seconds, so a busy
    machine does not change the verdict; a server that stops syncing fails after SYNC_STALL_SECONDS without one."""
    last_sync = node(client, idx, "QualityBridge.Diagnostics.LastSyncTime")

    async def holds() -> bool:
        answer = condition()
        return bool(await answer if inspect.isawaitable(answer) else answer)

    seen, finished = await last_sync.read_value(), 0
    stalled_after = time.monotonic() + SYNC_STALL_SECONDS
    while not await holds():
        now = await last_sync.read_value()
        if now != seen:
            seen, finished, stalled_after = now, finished + 1, time.monotonic() + SYNC_STALL_SECONDS
        if finished >= rounds:
            assert await holds(), f"no {what} within {rounds} ERP sync rounds"
            return
        assert time.monotonic() < stalled_after, f"no {what}, and no ERP sync round for {SYNC_STALL_SECONDS} s"
        await asyncio.sleep(0.1)


async def test_report_raises_an_event(deployment: Deployment) -> None:
    events: list[Any] = []

    class Handler:
        def event_notification(self, event: Any) -> None:
            events.append(event)

    # 1000425 is NotAllowedToStart (it takes no measurements); 1000417 runs from the start.
    await deployment.ensure_running("1000417")
    async with deployment.session("machine1") as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        subscription = await client.create_subscription(100, Handler())
        event_type = node(client, idx, 1010)
        await subscription.subscribe_events(node(client, idx, "QualityBridge"), event_type)
        key = await first_characteristic(client, idx, "1000417")
        result_id, _evaluation = await report(client, idx, key, 0.0)
        await _within_sync_rounds(
            client, idx, lambda: any(getattr(e, "ResultId", None) == result_id for e in events), "result event"
        )
