"""Plan versions (docs/master-data.md, "Plan versions"): which version of a characteristic a measurement is judged
against, what a new version supersedes, and how the report path marks a late measurement.

A version is in force up to, not including, the moment it was superseded: a part measured at exactly that moment
belongs to the new version.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from qualitybridge.domain.model import (
    InspectionCharacteristic,
    OrderState,
    ProductionOrder,
    ResultEvaluation,
    SupersededPlanVersion,
)
from qualitybridge.domain.plan_versions import VersionInForce, superseded_versions, version_in_force
from qualitybridge.services.event_bus import EventBus
from qualitybridge.services.master_data import MasterData
from qualitybridge.services.reporting import ReportingService
from tests.builders import NOW, gauge, measurement_report, order
from tests.fakes import FakeStore, FixedClock

CHANGED_AT = NOW  # when the sync stored plan version 4
V3 = order("1000").operations[0].characteristics[0]  # plan version 3: 12.0 .. 12.018 mm
V4 = V3.model_copy(update={"plan_version": "4", "lower_limit": 12.005, "upper_limit": 12.025, "nominal": 12.015})
V2 = V3.model_copy(update={"plan_version": "2", "upper_limit": 12.03})


def kept(characteristic: InspectionCharacteristic, until: datetime, routing: str = "R1") -> SupersededPlanVersion:
    return SupersededPlanVersion(
        order_no="1000",
        operation_no="0010",
        characteristic=characteristic,
        routing_version=routing,
        superseded_at=until,
    )


def with_version(characteristic: InspectionCharacteristic, *, routing: str = "R1") -> ProductionOrder:
    base = order("1000", state=OrderState.RUNNING)
    operation = base.operations[0].model_copy(update={"characteristics": (characteristic,)})
    return base.model_copy(update={"routing_version": routing, "operations": (operation,)})


# ---- choosing the version in force --------------------------------------------------------------------------


def test_without_history_the_current_version_is_in_force() -> None:
    assert version_in_force(V4, "R1", (), NOW - timedelta(days=1)) == VersionInForce(V4, "R1", superseded=False)


@pytest.mark.parametrize(
    ("measured_at", "expected", "superseded"),
    [
        (CHANGED_AT - timedelta(microseconds=1), V3, True),
        (CHANGED_AT, V4, False),  # the boundary belongs to the new version
        (CHANGED_AT + timedelta(microseconds=1), V4, False),
    ],
    ids=["just-before", "equal", "just-after"],
)
def test_the_version_in_force_is_the_one_not_yet_superseded_at_the_measuring_time(
    measured_at: datetime, expected: InspectionCharacteristic, superseded: bool
) -> None:
    chosen = version_in_force(V4, "R1", (kept(V3, CHANGED_AT),), measured_at)
    assert chosen.characteristic == expected
    assert chosen.superseded is superseded


def test_of_several_kept_versions_the_earliest_still_in_force_wins_in_any_order() -> None:
    earlier = CHANGED_AT - timedelta(hours=1)
    history = (kept(V3, CHANGED_AT), kept(V2, earlier))  # not sorted: the rule must not depend on it
    assert version_in_force(V4, "R1", history, earlier - timedelta(seconds=1)).characteristic == V2
    assert version_in_force(V4, "R1", history, earlier).characteristic == V3
    assert version_in_force(V4, "R1", history, CHANGED_AT).characteristic == V4


def test_a_routing_only_change_gives_the_old_routing_version_but_no_superseded_plan() -> None:
    chosen = version_in_force(V4, "R2", (kept(V4, CHANGED_AT, routing="R1"),), CHANGED_AT - timedelta(seconds=1))
    assert chosen == VersionInForce(V4, "R1", superseded=False)


# ---- what a new version supersedes ---------------------------------------------------------------------------


def test_a_new_plan_version_keeps_the_previous_definition_until_the_sync() -> None:
    (previous,) = superseded_versions(with_version(V3), with_version(V4), CHANGED_AT)
    assert previous == kept(V3, CHANGED_AT)


def test_a_new_routing_version_keeps_every_characteristic_with_the_old_routing() -> None:
    (previous,) = superseded_versions(with_version(V3, routing="R1"), with_version(V3, routing="R2"), CHANGED_AT)
    assert (previous.characteristic, previous.routing_version) == (V3, "R1")


def test_limits_corrected_under_the_same_version_and_removed_characteristics_are_not_kept() -> None:
    corrected = V3.model_copy(update={"upper_limit": 12.02})
    assert superseded_versions(with_version(V3), with_version(corrected), CHANGED_AT) == ()
    emptied = with_version(V3).model_copy(update={"operations": ()})
    assert superseded_versions(with_version(V3), emptied, CHANGED_AT) == ()


# ---- the report path -----------------------------------------------------------------------------------------


@pytest.fixture
def reporting(bus: EventBus) -> ReportingService:
    """Order 1000 at plan version 4 (12.005 .. 12.025) since CHANGED_AT; version 3 (12.0 .. 12.018) before."""
    master = MasterData()
    master.replace([with_version(V4, routing="R2")], [gauge()], [kept(V3, CHANGED_AT)])
    store = FakeStore([with_version(V4)])
    return ReportingService(store.as_store(), master, events=bus, clock=FixedClock(CHANGED_AT + timedelta(hours=1)))


async def test_a_late_measurement_is_judged_against_the_version_in_force_when_measured_and_marked(
    reporting: ReportingService,
) -> None:
    # 12.002 is OK under version 3 and NOT OK under version 4.
    late = await reporting.report_measurement(
        measurement_report("1000", value=12.002, measured_at=CHANGED_AT - timedelta(minutes=5)), "machine1"
    )
    assert (late.evaluation, late.plan_version, late.routing_version) == (ResultEvaluation.OK, "3", "R1")
    assert late.plan_version_superseded


async def test_a_measurement_at_the_change_is_judged_against_the_new_version_unmarked(
    reporting: ReportingService,
) -> None:
    current = await reporting.report_measurement(
        measurement_report("1000", value=12.002, measured_at=CHANGED_AT), "machine1"
    )
    assert (current.evaluation, current.plan_version, current.routing_version) == (ResultEvaluation.NOT_OK, "4", "R2")
    assert not current.plan_version_superseded


def test_a_delta_replaces_the_history_of_the_orders_it_brings_and_drops_that_of_withdrawn_ones() -> None:
    master = MasterData()
    other = kept(V2, CHANGED_AT).model_copy(update={"order_no": "2000"})
    master.replace([with_version(V4), order("2000")], [gauge()], [kept(V3, CHANGED_AT), other])
    master.update([with_version(V4)], ["2000"], [], [kept(V2, CHANGED_AT)])
    late = measurement_report("1000", measured_at=CHANGED_AT - timedelta(seconds=1))
    assert master.version_in_force(late).characteristic == V2
    master.update([order("2000")], [], [])  # released again, with no history of its own
    late_other = measurement_report("2000", measured_at=CHANGED_AT - timedelta(seconds=1))
    assert master.version_in_force(late_other) == VersionInForce(V3, "", superseded=False)
