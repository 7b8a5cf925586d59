"""Plan-version tracking through real processes (issue 13, acceptance): the ERP simulator releases a new plan version
of a characteristic; a subscribed client sees the new tolerances as data changes and a PlanVersionChanged event; a
measurement taken before the change but reported after it is judged against the old limits, stored with the old
version and marked, and booked at the ERP with the old version.

Plan P03 allows 10.0 .. 10.2 mm, plan P04 10.1 .. 10.3 mm: 10.05 is OK under P03 and not OK under P04.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from asyncua import Client, ua
from asyncua.common.methods import call_method_full

from tests.builders import GAUGE_FOR_TYPE, VALID_GAUGE, node, results_at_erp
from tests.harness import NAMESPACE_URI, Deployment, deployed, wait_for

pytestmark = pytest.mark.slow

PLAN_VERSION_CHANGED_EVENT_TYPE = 1020
GOOD_ENTRY_INSERTED = ua.StatusCodes.GoodEntryInserted  # accepted, judged against a superseded plan version
VALUE = 10.05
OLD = {"plan_version": "P03", "lower_limit": 10.0, "upper_limit": 10.2, "nominal": 10.1}
NEW = {"plan_version": "P04", "lower_limit": 10.1, "upper_limit": 10.3, "nominal": 10.2}
WATCHED = ("PlanVersion", "LowerLimit", "UpperLimit", "Nominal")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    yield from deployed("sqlite", tmp_path_factory.mktemp("plan-versions"))


def order_at(deployment: Deployment, order_no: str, plan: dict[str, Any], routing_version: str) -> dict[str, Any]:
    """The seeded order 1000417, renumbered, running, with one operation and one characteristic under `plan`."""
    with deployment.erp() as erp:
        template = next(o for o in erp.get("/api/v1/orders").json()["orders"] if o["order_no"] == "1000417")
    operation = template["operations"][0]
    characteristic = {**operation["characteristics"][0], **plan}
    return {
        **template,
        "order_no": order_no,
        "state": "RUNNING",
        "routing_version": routing_version,
        "plan_version": plan["plan_version"],
        "operations": [{**operation, "characteristics": [characteristic]}],
    }


async def eventually(condition: Callable[[], Any], what: str, within: float = 15.0) -> None:
    """Within one sync interval (1 s here), with slack for a loaded machine: only the waiting depends on load."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {within} s")
        await asyncio.sleep(0.1)


async def published(client: Client, idx: int, order_no: str) -> None:
    async def shown() -> bool:
        try:
            await node(client, idx, f"Order/{order_no}.State").read_value()
        except ua.uaerrors.BadNodeIdUnknown:
            return False
        return True

    deadline = time.monotonic() + 15
    while not await shown():
        assert time.monotonic() < deadline, f"order {order_no} not published within 15 s"
        await asyncio.sleep(0.2)


class Changes:
    """Data changes by node, and events, as an asyncua subscription handler receives them."""

    def __init__(self) -> None:
        self.values: dict[str, list[Any]] = {}
        self.events: list[Any] = []

    def datachange_notification(self, changed: Any, value: Any, _data: Any) -> None:
        self.values.setdefault(str(changed.nodeid.Identifier), []).append(value)

    def event_notification(self, event: Any) -> None:
        self.events.append(event)


def stored_row(deployment: Deployment, result_id: str) -> tuple[Any, ...]:
    """What the store holds of one result, read from the SQLite file itself (not through the server)."""
    database = deployment.store_url.split("///", 1)[1]
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
        row = connection.execute(
            "SELECT plan_version, routing_version, plan_version_superseded, evaluation FROM measurement_results "
            "WHERE result_id = ?",
            (result_id,),
        ).fetchone()
    assert row is not None, f"result {result_id} is not in the store"
    return tuple(row)


async def test_a_new_plan_version_reaches_subscribers_and_late_measurements_keep_the_old_one(
    deployment: Deployment,
) -> None:
    order_no = f"78{time.time_ns() % 100000:05d}"
    released = order_at(deployment, order_no, OLD, "R02")
    operation_no = released["operations"][0]["operation_no"]
    characteristic = released["operations"][0]["characteristics"][0]
    char_id = characteristic["characteristic_id"]
    char_node = f"Order/{order_no}/Op/{operation_no}/Char/{char_id}"
    gauge = GAUGE_FOR_TYPE.get(characteristic.get("gauge_type", ""), VALID_GAUGE)
    with deployment.erp() as erp:
        erp.post("/sim/orders", json=released).raise_for_status()

    async with deployment.session("observer") as watcher, deployment.session("machine1") as machine:
        idx = await watcher.get_namespace_index(NAMESPACE_URI)
        await published(watcher, idx, order_no)
        seen = Changes()
        subscription = await watcher.create_subscription(50, seen)
        await subscription.subscribe_data_change([node(watcher, idx, f"{char_node}.{name}") for name in WATCHED])
        at_bridge, at_characteristic = Changes(), Changes()
        event_type = node(watcher, idx, PLAN_VERSION_CHANGED_EVENT_TYPE)
        bridge_subscription = await watcher.create_subscription(50, at_bridge)
        await bridge_subscription.subscribe_events(node(watcher, idx, "QualityBridge"), event_type)
        characteristic_subscription = await watcher.create_subscription(50, at_characteristic)
        await characteristic_subscription.subscribe_events(node(watcher, idx, char_node), event_type)
        await eventually(lambda: "P03" in seen.values.get(f"{char_node}.PlanVersion", []), "initial values")

        measured_before_change = datetime.now(UTC)  # the server keeps P03 in force until its sync, after this
        with deployment.erp() as erp:
            erp.put(f"/sim/orders/{order_no}", json=order_at(deployment, order_no, NEW, "R03")).raise_for_status()

        # The new tolerances as data changes of the existing nodes.
        for name in WATCHED:
            await eventually(lambda name=name: NEW[_key(name)] in seen.values.get(f"{char_node}.{name}", []), name)
        # The event, at QualityBridge and at the characteristic, with the old and the new version and limits.
        for where in (at_bridge, at_characteristic):
            await eventually(lambda where=where: where.events, "PlanVersionChanged event")
            (event,) = where.events
            assert (event.OrderNumber, event.OperationNumber, event.CharacteristicId) == (
                order_no,
                operation_no,
                char_id,
            )
            assert (event.PreviousPlanVersion, event.PlanVersion) == ("P03", "P04")
            assert (event.PreviousLowerLimit, event.PreviousUpperLimit, event.PreviousNominal) == (10.0, 10.2, 10.1)
            assert (event.LowerLimit, event.UpperLimit, event.Nominal) == (10.1, 10.3, 10.2)
            assert event.SourceNode == ua.NodeId(char_node, idx)

        # The late measurement: judged against P03 (OK), answered Good-class GoodEntryInserted with a note.
        midx = await machine.get_namespace_index(NAMESPACE_URI)
        bridge = node(machine, midx, "QualityBridge")
        keys = (order_no, operation_no, char_id)
        late = await call_method_full(
            bridge,
            ua.NodeId("QualityBridge.ReportMeasurement", midx),
            *keys,
            ua.Variant(VALUE, ua.VariantType.Double),
            gauge,
            "SN-LATE",
            measured_before_change,
            "",
        )
        assert late.StatusCode.value == GOOD_ENTRY_INSERTED
        late_id, late_evaluation = late.OutputArguments
        assert late_evaluation == 1  # OK under P03
        measured_at_result = late.InputArgumentResults[6]
        assert measured_at_result.value == GOOD_ENTRY_INSERTED
        assert "plan version P03" in late.InputArgumentDiagnosticInfos[6].AdditionalInfo

        # The same value measured now: judged against P04, plainly Good.
        current_id, current_evaluation = await bridge.call_method(
            ua.NodeId("QualityBridge.ReportMeasurement", midx), *keys, VALUE, gauge, "SN-NOW", datetime.now(UTC), ""
        )
        assert current_evaluation == 2  # NotOK under P04

        # A batch answers a late entry the same way, per entry.
        strings = ua.VariantType.String
        batch = await bridge.call_method(
            ua.NodeId("QualityBridge.ReportMeasurements", midx),
            ua.Variant([order_no], strings),
            ua.Variant([operation_no], strings),
            ua.Variant([char_id], strings),
            ua.Variant([VALUE], ua.VariantType.Double),
            ua.Variant([gauge], strings),
            ua.Variant(["SN-LATE-2"], strings),
            ua.Variant([measured_before_change], ua.VariantType.DateTime),
            ua.Variant([], strings),
        )
        result_ids, evaluations, statuses, messages, _due_soon = batch
        assert evaluations == [1]
        assert [status.value for status in statuses] == [GOOD_ENTRY_INSERTED]
        assert "plan version P03" in messages[0]

    # Stored with the version in force when measured, and marked.
    assert stored_row(deployment, late_id) == ("P03", "R02", 1, 1)
    assert stored_row(deployment, result_ids[0]) == ("P03", "R02", 1, 1)
    assert stored_row(deployment, current_id) == ("P04", "R03", 0, 2)

    # Booked at the ERP with the old version.
    wanted = {late_id, current_id, result_ids[0]}

    def booked() -> dict[str, dict[str, Any]]:
        found = {
            r["body"]["result_id"]: r["body"] for r in results_at_erp(deployment) if r["body"]["result_id"] in wanted
        }
        return found if len(found) == len(wanted) else {}

    bodies = wait_for(booked, 15.0, "the three results at the ERP simulator")
    for result_id in (late_id, result_ids[0]):
        body = bodies[result_id]
        assert (body["plan_version"], body["routing_version"], body["plan_version_superseded"]) == ("P03", "R02", True)
        assert body["evaluation"] == "OK"
    current = bodies[current_id]
    assert (current["plan_version"], current["routing_version"], current["plan_version_superseded"]) == (
        "P04",
        "R03",
        False,
    )
    assert current["evaluation"] == "NOT_OK"


def _key(node_name: str) -> str:
    return {"PlanVersion": "plan_version", "LowerLimit": "lower_limit", "UpperLimit": "upper_limit"}.get(
        node_name, "nominal"
    )
