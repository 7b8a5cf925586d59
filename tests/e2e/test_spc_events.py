"""SPC through real processes: a planted stream reported over OPC UA raises each Nelson rule once, at the sample
that completes it, as an SpcAlarmEventType event at the Server object (and at QualityBridge) with the business keys,
updates the characteristic's Spc object, and reaches the QMS (the simulator) once per violation. The violation is
also an SpcAlarmType condition that a quality engineer acknowledges and confirms (a machine may not), seen by a
second subscriber, audited, and returned by ConditionRefresh after a reconnect while it is retained; an Observer may
call ConditionRefresh (and nothing else), and an alarm a machine reports with ReportSpcAlarm is the same condition.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua

from tests.builders import (
    PLANTED,
    PLANTED_CENTER,
    PLANTED_GAUGE,
    PLANTED_SIGMA,
    PLANTED_TEMPLATE,
    add_planted_order,
    planted_stream,
    report_planted_stream,
)
from tests.harness import NAMESPACE_URI, Deployment, deployed, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

ORDER = "7140001"
CONDITION_ORDER = "7140002"  # its own stream, for the condition's life cycle
REFRESH_ORDER = "7140003"  # its own condition, for an Observer's ConditionRefresh
# The planted characteristic: a copy of seeded 1000417's part temperature (minor), 18..22 °C, control limits 20 ± 1.5.
KEY = (ORDER, *PLANTED_TEMPLATE[1:])
THERMOMETER = PLANTED_GAUGE
CENTER, SIGMA = PLANTED_CENTER, PLANTED_SIGMA
ALL_RULES_EVERYWHERE = """
[spc.rules]
critical = [1, 2, 3, 4, 5, 6, 7, 8]
major = [1, 2, 3, 4, 5, 6, 7, 8]
minor = [1, 2, 3, 4, 5, 6, 7, 8]
"""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root: Path = tmp_path_factory.mktemp("spc")
    for started in deployed("sqlite", root, extra_config=ALL_RULES_EVERYWHERE):
        with started.erp() as erp:
            add_planted_order(erp, ORDER)
            add_planted_order(erp, CONDITION_ORDER)
            add_planted_order(erp, REFRESH_ORDER)
        yield started


def node(client: Client, idx: int, identifier: str | int) -> Any:
    return client.get_node(ua.NodeId(identifier, idx))


async def published(client: Client, idx: int, order_no: str = ORDER) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            await node(client, idx, f"Order/{order_no}.State").read_value()
            return
        except ua.uaerrors.BadNodeIdUnknown:
            assert time.monotonic() < deadline, f"order {ORDER} not published"
            await asyncio.sleep(0.2)


class Events:
    def __init__(self) -> None:
        self.received: list[Any] = []

    def event_notification(self, event: Any) -> None:
        self.received.append(event)


async def test_planted_patterns_raise_each_rule_once_at_server_and_quality_bridge(deployment: Deployment) -> None:
    values, completing = planted_stream()
    char_node = f"Order/{ORDER}/Op/0010/Char/C0010"
    async with deployment.session("observer") as watcher, deployment.session("machine1") as machine:
        idx = await watcher.get_namespace_index(NAMESPACE_URI)
        await published(watcher, idx)
        # Before any value: the plan's limits, no sample, no rule; capability not known yet rather than zero.
        assert await node(watcher, idx, f"{char_node}.Spc.CenterLine").read_value() == CENTER
        assert await node(watcher, idx, f"{char_node}.Spc.UCL").read_value() == CENTER + 3 * SIGMA
        assert await node(watcher, idx, f"{char_node}.Spc.SampleCount").read_value() == 0
        assert await node(watcher, idx, f"{char_node}.Spc.LastViolatedRule").read_value() == 0
        with pytest.raises(ua.uaerrors.BadWaitingForInitialData):
            await node(watcher, idx, f"{char_node}.Spc.Cpk").read_value()

        at_server, at_bridge = Events(), Events()
        spc_alarm_type = node(watcher, idx, 1011)
        server_subscription = await watcher.create_subscription(50, at_server)
        await server_subscription.subscribe_events(watcher.nodes.server, spc_alarm_type)
        bridge_subscription = await watcher.create_subscription(50, at_bridge)
        await bridge_subscription.subscribe_events(node(watcher, idx, "QualityBridge"), spc_alarm_type)

        midx = await machine.get_namespace_index(NAMESPACE_URI)
        result_ids = await report_planted_stream(machine, midx, KEY, values)

        deadline = time.monotonic() + 10
        while len(at_server.received) < len(PLANTED) or len(at_bridge.received) < len(PLANTED):
            assert time.monotonic() < deadline, f"{len(at_server.received)} events at Server"
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # a wrongly repeated event would arrive now
        fired = [(int(e.RuleNumber), e.ResultId) for e in at_server.received]
        assert fired == [(rule, result_ids[position]) for rule, position in completing.items()]
        assert [e.EventId for e in at_bridge.received] == [e.EventId for e in at_server.received]
        first = at_server.received[0]
        assert (first.OrderNumber, first.OperationNumber, first.CharacteristicId) == KEY
        assert first.Value == pytest.approx(CENTER + SIGMA * 4.0)
        assert (first.CenterLine, first.UCL, first.LCL) == (CENTER, CENTER + 3 * SIGMA, CENTER - 3 * SIGMA)
        assert first.Rule == "Nelson 1"
        assert first.Severity == 400  # C0010 is classified minor
        assert first.SourceNode == ua.NodeId(char_node, idx)

        assert await node(watcher, idx, f"{char_node}.Spc.SampleCount").read_value() == len(values)
        assert await node(watcher, idx, f"{char_node}.Spc.LastViolatedRule").read_value() == 8
        assert await node(watcher, idx, f"{char_node}.Spc.Cpk").read_value() > 0

    def booked() -> list[dict[str, Any]]:
        with deployment.erp() as erp:
            alarms = [a for a in erp.get("/spc-alarms").json() if a["body"]["order_no"] == ORDER]
        return alarms if len(alarms) >= len(PLANTED) else []

    alarms = wait_for(booked, 10.0, "the SPC alarms at the QMS")
    assert [(a["body"]["rule_number"], a["body"]["result_id"]) for a in alarms] == fired
    assert len({a["idempotency_key"] for a in alarms}) == len(PLANTED)


SPC_ALARM_TYPE = 1013
ACKNOWLEDGE = ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge)
CONFIRM = ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Confirm)
CONDITION_REFRESH = ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh)


async def until(condition: Any, what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {within} s"
        await asyncio.sleep(0.05)


def field(event: Any, name: str) -> Any:
    return event.get_event_props_as_fields_dict()[name].Value


async def subscribe_conditions(client: Client, idx: int, handler: Events) -> Any:
    subscription = await client.create_subscription(50, handler)
    await subscription.subscribe_events(client.nodes.server, node(client, idx, SPC_ALARM_TYPE))
    return subscription


def audited(deployment: Deployment, action: str) -> list[tuple[str, str]]:
    database = deployment.store_url.split("///", 1)[1]
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
        rows = connection.execute(
            "SELECT user_name, status_code FROM audit_log WHERE action = ? ORDER BY id", (action,)
        ).fetchall()
    return [(user, ua.StatusCode(code).name) for user, code in rows]


async def test_a_violation_is_a_condition_that_a_quality_engineer_acknowledges_and_confirms(
    deployment: Deployment,
) -> None:
    key = (CONDITION_ORDER, "0010", "C0010")
    source = f"Order/{CONDITION_ORDER}/Op/0010/Char/C0010"
    async with (
        deployment.session("quality") as quality,
        deployment.session("observer") as observer,
        deployment.session("machine1") as machine,
    ):
        idx = await quality.get_namespace_index(NAMESPACE_URI)
        await published(quality, idx, CONDITION_ORDER)
        seen_by_quality, seen_by_observer = Events(), Events()
        await subscribe_conditions(quality, idx, seen_by_quality)
        await subscribe_conditions(observer, idx, seen_by_observer)

        midx = await machine.get_namespace_index(NAMESPACE_URI)
        report = ua.NodeId("QualityBridge.ReportMeasurement", midx)
        bridge = node(machine, midx, "QualityBridge")
        for position, z in enumerate([0.5, -0.5, 4.0]):  # the third is beyond 3σ: rule 1
            value = ua.Variant(CENTER + SIGMA * z, ua.VariantType.Double)
            await bridge.call_method(report, *key, value, THERMOMETER, f"C-{position}", datetime.now(UTC), "")
        await until(lambda: seen_by_observer.received and seen_by_quality.received, "condition event")
        raised = seen_by_observer.received[0]
        condition_id = field(raised, "NodeId")
        assert condition_id == ua.NodeId(f"{source}.SpcAlarm", idx)
        assert field(raised, "SourceNode") == ua.NodeId(source, idx)
        assert field(raised, "ConditionClassId") == ua.NodeId(ua.ObjectIds.StatisticalConditionClassType)
        assert (field(raised, "ActiveState/Id"), field(raised, "AckedState/Id")) == (True, False)
        assert (field(raised, "ConfirmedState/Id"), field(raised, "Retain")) == (False, True)
        assert (field(raised, "RuleNumber"), field(raised, "CharacteristicId")) == (1, "C0010")
        assert field(raised, "Severity") == 400
        event_id = field(raised, "EventId")

        # A machine may not acknowledge (BadUserAccessDenied), and nothing changes.
        machine_condition = machine.get_node(ua.NodeId(f"{source}.SpcAlarm", midx))
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await machine_condition.call_method(ACKNOWLEDGE, event_id, ua.LocalizedText("not mine"))
        quality_condition = quality.get_node(condition_id)
        with pytest.raises(ua.uaerrors.BadEventIdUnknown):
            await quality_condition.call_method(ACKNOWLEDGE, b"no such event", ua.LocalizedText(""))
        with pytest.raises(ua.uaerrors.BadInvalidState):
            await quality_condition.call_method(CONFIRM, event_id, ua.LocalizedText("too early"))
        assert len(seen_by_observer.received) == 1

        await quality_condition.call_method(ACKNOWLEDGE, event_id, ua.LocalizedText("tool wear, checking"))
        await until(lambda: len(seen_by_observer.received) == 2, "the acknowledgement at the second subscriber")
        acked = seen_by_observer.received[1]
        assert (field(acked, "AckedState/Id"), field(acked, "ConfirmedState/Id")) == (True, False)
        assert field(acked, "Comment").Text == "tool wear, checking"
        assert field(acked, "ClientUserId") == "quality"
        assert field(acked, "Retain") is True
        with pytest.raises(ua.uaerrors.BadConditionBranchAlreadyAcked):
            await quality_condition.call_method(ACKNOWLEDGE, event_id, ua.LocalizedText("again"))

    # After a reconnect, ConditionRefresh answers with the retained (acknowledged, unconfirmed) condition.
    async with deployment.session("quality") as again:
        refreshed = Events()
        subscription = await subscribe_conditions(again, idx, refreshed)
        condition_type = again.get_node(ua.NodeId(ua.ObjectIds.ConditionType))
        await condition_type.call_method(
            CONDITION_REFRESH, ua.Variant(subscription.subscription_id, ua.VariantType.UInt32)
        )

        def this_condition() -> list[Any]:
            return [e for e in refreshed.received if field(e, "NodeId") == condition_id]

        await until(this_condition, "the refreshed condition")
        (retained,) = this_condition()
        assert (field(retained, "AckedState/Id"), field(retained, "ConfirmedState/Id")) == (True, False)
        last_event = field(retained, "EventId")

        await again.get_node(condition_id).call_method(CONFIRM, last_event, ua.LocalizedText("tool changed"))
        await until(lambda: len(this_condition()) == 2, "the confirmation")
        confirmed = this_condition()[1]
        assert (field(confirmed, "ConfirmedState/Id"), field(confirmed, "ActiveState/Id")) == (True, False)
        assert field(confirmed, "Retain") is False
        await condition_type.call_method(
            CONDITION_REFRESH, ua.Variant(subscription.subscription_id, ua.VariantType.UInt32)
        )
        await asyncio.sleep(0.5)
        assert len(this_condition()) == 2  # no longer retained: not refreshed
        # The other order's condition (never acknowledged) is still retained and refreshed again.
        assert {field(e, "NodeId").Identifier for e in refreshed.received} == {
            f"Order/{ORDER}/Op/0010/Char/C0010.SpcAlarm",
            f"{source}.SpcAlarm",
        }

    def acknowledgements() -> list[tuple[str, str]]:
        found = audited(deployment, "Call Acknowledge")
        return found if len(found) >= 4 else []

    assert wait_for(acknowledgements, 5.0, "audited acknowledgements") == [
        ("machine1", "BadUserAccessDenied"),
        ("quality", "BadEventIdUnknown"),
        ("quality", "Good"),
        ("quality", "BadConditionBranchAlreadyAcked"),
    ]
    assert [user for user, _status in audited(deployment, "Call Confirm")] == ["quality", "quality"]


QUALITY_EVENT_TYPES = {"out_of_tolerance": 1015, "gauge": 1016, "order_state": 1017, "dead_letter": 1018}


async def test_quality_events_reach_a_client_subscribed_at_the_server(deployment: Deployment) -> None:
    """Out of tolerance, a gauge's calibration turning DueSoon, an order's state: at Server, with business keys."""
    async with (
        deployment.session("observer") as watcher,
        deployment.session("machine1") as machine,
        deployment.session("quality") as quality,
    ):
        idx = await watcher.get_namespace_index(NAMESPACE_URI)
        await published(watcher, idx)
        at_server = Events()
        subscription = await watcher.create_subscription(50, at_server)
        # The EventFilter selects the fields of all four types (asyncua joins their select clauses).
        await subscription.subscribe_events(
            watcher.nodes.server, [node(watcher, idx, type_id) for type_id in QUALITY_EVENT_TYPES.values()]
        )
        # The sources are event notifiers of their own: a client may watch just one order or one characteristic.
        at_sources = Events()
        source_subscription = await watcher.create_subscription(50, at_sources)
        char_node = node(watcher, idx, f"Order/{ORDER}/Op/0010/Char/C0010")
        await source_subscription.subscribe_events(
            char_node, node(watcher, idx, QUALITY_EVENT_TYPES["out_of_tolerance"])
        )
        order_node = node(watcher, idx, f"Order/{ORDER}")
        await source_subscription.subscribe_events(order_node, node(watcher, idx, QUALITY_EVENT_TYPES["order_state"]))

        midx = await machine.get_namespace_index(NAMESPACE_URI)
        method = ua.NodeId("QualityBridge.ReportMeasurement", midx)
        result_id, evaluation = await node(machine, midx, "QualityBridge").call_method(
            method, *KEY, ua.Variant(25.0, ua.VariantType.Double), THERMOMETER, "SN-hot",
            datetime.now(UTC) - timedelta(seconds=1), "",
        )  # fmt: skip
        assert evaluation != 0
        qidx = await quality.get_namespace_index(NAMESPACE_URI)
        interrupt = ua.NodeId("QualityBridge.InterruptOrder", qidx)
        assert await node(quality, qidx, "QualityBridge").call_method(interrupt, ORDER) == 4
        with deployment.erp() as erp:
            erp.patch(f"/sim/equipment/{THERMOMETER}", json={"calibration_status": "DUE_SOON"}).raise_for_status()

        def of_type(type_id: int) -> list[Any]:
            wanted = ua.NodeId(type_id, idx)
            return [e for e in at_server.received if e.EventType == wanted]

        await until(
            lambda: all(of_type(QUALITY_EVENT_TYPES[kind]) for kind in ("out_of_tolerance", "gauge", "order_state")),
            "quality events at Server",
        )
        (hot,) = of_type(QUALITY_EVENT_TYPES["out_of_tolerance"])
        assert (hot.OrderNumber, hot.OperationNumber, hot.CharacteristicId) == KEY
        assert (hot.ResultId, hot.Value, hot.EquipmentId, hot.PartSerial) == (result_id, 25.0, THERMOMETER, "SN-hot")
        assert (hot.LowerLimit, hot.UpperLimit, hot.Evaluation) == (18.0, 22.0, evaluation)
        assert hot.SourceNode == ua.NodeId(f"Order/{ORDER}/Op/0010/Char/C0010", idx)
        (state,) = of_type(QUALITY_EVENT_TYPES["order_state"])
        assert (state.OrderNumber, state.State, state.SourceNode) == (ORDER, 4, ua.NodeId(f"Order/{ORDER}", idx))
        (gauge,) = of_type(QUALITY_EVENT_TYPES["gauge"])
        assert (gauge.EquipmentId, gauge.CalibrationStatus, gauge.PreviousCalibrationStatus) == (THERMOMETER, 1, 0)
        assert gauge.SourceNode == ua.NodeId(f"TestEquipment/{THERMOMETER}", idx)
        await until(lambda: len(at_sources.received) >= 2, "quality events at their source nodes")
        await asyncio.sleep(1.5)  # the next syncs see the same status: no second gauge event
        assert len(of_type(QUALITY_EVENT_TYPES["gauge"])) == 1
        at_source = {(e.EventType.Identifier, e.SourceNode.Identifier) for e in at_sources.received}
        assert at_source == {
            (QUALITY_EVENT_TYPES["out_of_tolerance"], f"Order/{ORDER}/Op/0010/Char/C0010"),
            (QUALITY_EVENT_TYPES["order_state"], f"Order/{ORDER}"),
        }
        assert {e.EventId for e in at_sources.received} <= {e.EventId for e in at_server.received}


async def test_an_observer_refreshes_the_retained_conditions_but_may_call_nothing_else(deployment: Deployment) -> None:
    """OPC UA Part 9: ConditionRefresh is for any client with a subscription, an HMI logged in as Observer too."""
    condition_source = f"Order/{REFRESH_ORDER}/Op/0010/Char/C0010"
    async with deployment.session("machine1") as machine:
        midx = await machine.get_namespace_index(NAMESPACE_URI)
        await published(machine, midx, REFRESH_ORDER)
        beyond_3_sigma = ua.Variant(CENTER + SIGMA * 4.0, ua.VariantType.Double)
        await node(machine, midx, "QualityBridge").call_method(
            ua.NodeId("QualityBridge.ReportMeasurement", midx),
            REFRESH_ORDER, "0010", "C0010", beyond_3_sigma, THERMOMETER, "R-1", datetime.now(UTC), "",
        )  # fmt: skip

    # Subscribed only after the alarm: what arrives for the condition comes from the refresh.
    async with deployment.session("observer") as observer:
        idx = await observer.get_namespace_index(NAMESPACE_URI)
        refreshed = Events()
        subscription = await subscribe_conditions(observer, idx, refreshed)
        refresh = ua.Variant(subscription.subscription_id, ua.VariantType.UInt32)
        await observer.get_node(ua.NodeId(ua.ObjectIds.ConditionType)).call_method(CONDITION_REFRESH, refresh)
        condition_id = ua.NodeId(f"{condition_source}.SpcAlarm", idx)

        def this_condition() -> list[Any]:
            return [e for e in refreshed.received if field(e, "NodeId") == condition_id]

        await until(this_condition, "the retained condition, refreshed for the observer")
        (retained,) = this_condition()
        assert (field(retained, "Retain"), field(retained, "ActiveState/Id")) == (True, True)
        assert (field(retained, "RuleNumber"), field(retained, "AckedState/Id")) == (1, False)

        # Only ConditionRefresh: a Call that carries another method beside it is refused whole.
        both = [
            ua.CallMethodRequest(
                ObjectId=ua.NodeId(ua.ObjectIds.ConditionType), MethodId=CONDITION_REFRESH, InputArguments=[refresh]
            ),
            ua.CallMethodRequest(
                ObjectId=ua.NodeId("QualityBridge", idx), MethodId=ua.NodeId("QualityBridge.ReportMeasurement", idx)
            ),
        ]
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await observer.uaclient.call(both)
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await observer.get_node(condition_id).call_method(
                ACKNOWLEDGE, field(retained, "EventId"), ua.LocalizedText("not mine")
            )


async def test_a_machine_reported_alarm_is_the_same_condition_as_a_computed_one(deployment: Deployment) -> None:
    """ReportSpcAlarm makes the characteristic's SpcAlarmType condition active, as a Nelson rule violation does."""
    source = f"Order/{REFRESH_ORDER}/Op/0010/Char/C0010"
    async with deployment.session("observer") as observer, deployment.session("machine1") as machine:
        idx = await observer.get_namespace_index(NAMESPACE_URI)
        await published(observer, idx, REFRESH_ORDER)
        conditions = Events()
        await subscribe_conditions(observer, idx, conditions)
        midx = await machine.get_namespace_index(NAMESPACE_URI)
        alarm_id = await node(machine, midx, "QualityBridge").call_method(
            ua.NodeId("QualityBridge.ReportSpcAlarm", midx),
            REFRESH_ORDER, "0010", "C0010", "WE2", ua.Variant(650, ua.VariantType.UInt16), "nine above the centre line",
        )  # fmt: skip
        assert alarm_id

        await until(lambda: conditions.received, "the condition event of the machine's alarm")
        (event,) = conditions.received
        assert field(event, "NodeId") == ua.NodeId(f"{source}.SpcAlarm", idx)  # the one condition of the characteristic
        assert field(event, "SourceNode") == ua.NodeId(source, idx)
        assert field(event, "ConditionClassId") == ua.NodeId(ua.ObjectIds.StatisticalConditionClassType)
        assert (field(event, "ActiveState/Id"), field(event, "AckedState/Id"), field(event, "Retain")) == (
            True,
            False,
            True,
        )
        assert (field(event, "Rule"), field(event, "Severity")) == ("WE2", 650)  # the machine's rule and severity
        assert (field(event, "RuleNumber"), field(event, "ResultId"), field(event, "Value")) == (0, "", None)
        assert "nine above the centre line" in field(event, "Message").Text
