"""SPC through real processes: a planted stream reported over OPC UA raises each Nelson rule once, at the sample
that completes it, as an SpcAlarmEventType event at the Server object (and at QualityBridge) with the business keys,
updates the characteristic's Spc object, and reaches the QMS (the simulator) once per violation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua

from tests.harness import NAMESPACE_URI, Deployment, deployed, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

ORDER = "7140001"
KEY = (ORDER, "0010", "C0010")  # a copy of seeded 1000417's part temperature, 18..22 °C, THERMOMETER
THERMOMETER = "GA-TMP-0603"
CENTER, SIGMA = 20.0, 0.5  # the plan's control limits: 20 ± 1.5
ALL_RULES_EVERYWHERE = """
[spc.rules]
critical = [1, 2, 3, 4, 5, 6, 7, 8]
major = [1, 2, 3, 4, 5, 6, 7, 8]
minor = [1, 2, 3, 4, 5, 6, 7, 8]
"""

# In σ units: a quiet background, and one pattern per rule whose last point completes it.
QUIET = [0.5, 1.5, -0.5, -0.2, -1.5, -0.3]
PLANTED = {
    1: [4.0],
    2: [0.4, 0.6, 0.3, 0.7, 0.4, 0.8, 0.3, 0.6, 0.5],
    3: [-1.5, -1.0, -0.6, -0.2, 0.2, 0.6],
    4: [-0.5] + [-1.2, 0.5] * 6 + [-1.2],
    5: [2.5, 2.6],
    6: [1.5, 1.2, 0.3, 1.4, 1.3],
    7: [-1.5, 0.5, -0.5, 0.3, 0.4, -0.2, -0.6, 0.5, -0.5, 0.3, 0.4, -0.2, -0.6, 0.5, -0.5, 0.3],
    8: [1.5, -1.5] * 4,
}


def planted_stream() -> tuple[list[float], dict[int, int]]:
    """Values, and per rule the 0-based position of the sample that completes its pattern."""
    zones = list(QUIET)
    completing = {}
    for rule, pattern in PLANTED.items():
        zones += pattern
        completing[rule] = len(zones) - 1
        zones += QUIET * 2
    return [CENTER + SIGMA * z for z in zones], completing


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root: Path = tmp_path_factory.mktemp("spc")
    for started in deployed("sqlite", root, extra_config=ALL_RULES_EVERYWHERE):
        with started.erp() as erp:
            template = next(o for o in erp.get("/api/v1/orders").json()["orders"] if o["order_no"] == "1000417")
            operation = next(op for op in template["operations"] if op["operation_no"] == "0010")
            characteristic = next(c for c in operation["characteristics"] if c["characteristic_id"] == "C0010")
            limits = {"center_line": CENTER, "upper_control_limit": CENTER + 3 * SIGMA}
            limits["lower_control_limit"] = CENTER - 3 * SIGMA
            order = {
                **template,
                "order_no": ORDER,
                "state": "RUNNING",
                "operations": [{**operation, "characteristics": [{**characteristic, **limits}]}],
            }
            erp.post("/sim/orders", json=order).raise_for_status()
        yield started


def node(client: Client, idx: int, identifier: str | int) -> Any:
    return client.get_node(ua.NodeId(identifier, idx))


async def published(client: Client, idx: int) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            await node(client, idx, f"Order/{ORDER}.State").read_value()
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
        root = node(machine, midx, "QualityBridge")
        method = ua.NodeId("QualityBridge.ReportMeasurement", midx)
        start = datetime.now(UTC) - timedelta(seconds=len(values))
        result_ids = []
        for position, value in enumerate(values):
            result_id, _evaluation = await root.call_method(
                method, *KEY, ua.Variant(value, ua.VariantType.Double), THERMOMETER, f"SN-{position}",
                start + timedelta(seconds=position), "",
            )  # fmt: skip
            result_ids.append(result_id)

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
