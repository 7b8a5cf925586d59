"""Quality events from the domain events, against the NodeSet in a bare asyncua server: each is fired at
QualityBridge, at its source node and at the Server object, with the business keys as fields of their own.

Fast and exhaustive where tests/e2e/test_spc_events.py is end to end: every event type here (the dead letter too,
which a real deployment cannot provoke in seconds), a gauge's moves into and out of DueSoon/Expired, and the
statuses that must raise nothing (the first seen, an unchanged one, Valid ↔ Locked).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from asyncua import Server, ua

from qualitybridge.domain.events import PostingDeadLettered
from qualitybridge.domain.model import CalibrationStatus, OrderState, ResultEvaluation
from qualitybridge.server.address_space.namespace import QualityBridgeNamespace
from qualitybridge.server.address_space.notifiers import SERVER_OBJECT
from qualitybridge.server.address_space.quality_events import (
    GAUGE_CALIBRATION_EVENT_TYPE,
    MEASUREMENT_OUT_OF_TOLERANCE_EVENT_TYPE,
    ORDER_STATE_CHANGED_EVENT_TYPE,
    POSTING_DEAD_LETTERED_EVENT_TYPE,
    QualityEvents,
)
from qualitybridge.services.master_data import MasterData
from tests.builders import gauge, order, result
from tests.harness import standard_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

S = CalibrationStatus


@dataclass
class Fired:
    """(event type id, emitting node, fields) of every event handed to the subscription service."""

    ns: QualityBridgeNamespace
    events: list[tuple[int, ua.NodeId, dict[str, Any]]] = field(default_factory=list)

    def of(self, type_id: int) -> list[dict[str, Any]]:
        """The events of this type, as fired at QualityBridge (each one is also fired at its source and Server)."""
        return [fields for fired, node, fields in self.events if fired == type_id and node == self.ns.root]

    def notifiers(self) -> list[ua.NodeId]:
        return [node for _type, node, _fields in self.events]


@dataclass
class Rig:
    quality: QualityEvents
    master: MasterData
    fired: Fired


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[tuple[Server, QualityBridgeNamespace]]:
    server = await standard_server()
    namespace = await QualityBridgeNamespace.load(server)
    yield server, namespace


@pytest_asyncio.fixture(loop_scope="module")
async def rig(server: tuple[Server, QualityBridgeNamespace], monkeypatch: pytest.MonkeyPatch) -> Rig:
    asyncua_server, namespace = server
    fired = Fired(namespace)
    subscriptions = asyncua_server.iserver.subscription_service

    async def record(event: Any, subscription_id: int | None = None) -> None:
        fields = {name: value for name, value in vars(event).items() if name[:1].isupper()}  # the event's fields
        fired.events.append((event.EventType.Identifier, event.emitting_node, fields))

    monkeypatch.setattr(subscriptions, "trigger_event", record)
    master = MasterData()
    master.replace(
        [order("1000", state=OrderState.RUNNING)], [gauge(equipment_id="G-1"), gauge(S.DUE_SOON, equipment_id="G-2")]
    )
    quality = QualityEvents(asyncua_server, namespace, master)
    await quality.start()
    return Rig(quality, master, fired)


async def test_out_of_tolerance_carries_its_keys_and_fires_at_bridge_characteristic_and_server(rig: Rig) -> None:
    ns = rig.fired.ns
    await rig.quality.measurement_accepted(result(value=12.01))  # inside: nothing
    assert rig.fired.events == []
    outside = result(value=12.5).model_copy(update={"evaluation": ResultEvaluation.NOT_OK})
    await rig.quality.measurement_accepted(outside)
    characteristic = ns.characteristic("1000", "0010", "C010")
    assert rig.fired.notifiers() == [ns.root, characteristic, SERVER_OBJECT]
    fields = rig.fired.of(MEASUREMENT_OUT_OF_TOLERANCE_EVENT_TYPE)[0]
    report = outside.report
    assert (fields["OrderNumber"], fields["OperationNumber"], fields["CharacteristicId"]) == ("1000", "0010", "C010")
    assert (fields["ResultId"], fields["Value"], fields["Evaluation"]) == (
        outside.result_id,
        12.5,
        int(ResultEvaluation.NOT_OK),
    )
    assert (fields["LowerLimit"], fields["UpperLimit"]) == (12.0, 12.018)
    assert (fields["EquipmentId"], fields["PartSerial"]) == (report.equipment_id, report.part_serial)
    assert (fields["SourceNode"], fields["Severity"]) == (characteristic, 700)


async def test_a_gauge_event_only_when_its_status_moves_into_or_out_of_a_watch(rig: Rig) -> None:
    ns = rig.fired.ns
    steps = [
        [gauge(equipment_id="G-1"), gauge(S.DUE_SOON, equipment_id="G-2")],  # as at start: nothing
        [gauge(S.DUE_SOON, equipment_id="G-1"), gauge(S.DUE_SOON, equipment_id="G-2")],  # G-1 due soon
        [gauge(S.EXPIRED, equipment_id="G-1"), gauge(S.VALID, equipment_id="G-2"), gauge(equipment_id="G-3")],
        [gauge(S.LOCKED, equipment_id="G-3")],  # Valid -> Locked: not a calibration watch
    ]
    for equipment in steps:
        await rig.quality.gauges_synced(equipment)
    moves = [
        (f["EquipmentId"], f["PreviousCalibrationStatus"], f["CalibrationStatus"], f["Severity"])
        for f in rig.fired.of(GAUGE_CALIBRATION_EVENT_TYPE)
    ]
    assert moves == [
        ("G-1", S.VALID, S.DUE_SOON, 500),
        ("G-1", S.DUE_SOON, S.EXPIRED, 800),
        ("G-2", S.DUE_SOON, S.VALID, 100),
    ]
    assert rig.fired.notifiers()[:3] == [ns.root, ns.equipment("G-1"), SERVER_OBJECT]


async def test_the_daily_reminder_repeats_each_watched_gauge_with_its_unchanged_status(rig: Rig) -> None:
    ns = rig.fired.ns
    await rig.quality.calibration_reminder(
        [gauge(S.DUE_SOON, equipment_id="G-2"), gauge(S.EXPIRED, equipment_id="G-7")]
    )
    reminders = [
        (f["EquipmentId"], f["PreviousCalibrationStatus"], f["CalibrationStatus"], f["Severity"])
        for f in rig.fired.of(GAUGE_CALIBRATION_EVENT_TYPE)
    ]
    assert reminders == [("G-2", S.DUE_SOON, S.DUE_SOON, 500), ("G-7", S.EXPIRED, S.EXPIRED, 800)]
    assert all("daily reminder" in f["Message"].Text for f in rig.fired.of(GAUGE_CALIBRATION_EVENT_TYPE))
    assert rig.fired.notifiers()[:3] == [ns.root, ns.equipment("G-2"), SERVER_OBJECT]
    # A reminder is not a change: the next sync with the same statuses raises nothing more.
    await rig.quality.gauges_synced([gauge(S.DUE_SOON, equipment_id="G-2"), gauge(S.EXPIRED, equipment_id="G-7")])
    assert len(rig.fired.of(GAUGE_CALIBRATION_EVENT_TYPE)) == 2


async def test_order_state_and_dead_letter_events(rig: Rig) -> None:
    ns = rig.fired.ns
    await rig.quality.order_state_changed(order("1000", state=OrderState.INTERRUPTED))
    await rig.quality.posting_dead_lettered(PostingDeadLettered("mr-1", "measurement", "1000", 20, "HTTP 503"))
    (state,) = rig.fired.of(ORDER_STATE_CHANGED_EVENT_TYPE)
    assert (state["OrderNumber"], state["State"], state["SourceNode"]) == (
        "1000",
        OrderState.INTERRUPTED,
        ns.order("1000"),
    )
    (dead,) = rig.fired.of(POSTING_DEAD_LETTERED_EVENT_TYPE)
    assert (dead["IdempotencyKey"], dead["PostingKind"], dead["OrderNumber"]) == ("mr-1", "measurement", "1000")
    assert (dead["Attempts"], dead["LastError"], dead["Severity"]) == (20, "HTTP 503", 800)
    assert rig.fired.notifiers() == [ns.root, ns.order("1000"), SERVER_OBJECT] * 2
