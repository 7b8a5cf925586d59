"""Plan history at the store, on SQLite and PostgreSQL (docs/master-data.md, "Plan versions"): a sync that brings a
new plan version keeps the previous definition, in the sync's transaction, with the moment it stopped being in
force; the sync raises PlanVersionChanged; a late measurement's versions and mark survive the store and the outbox.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from qualitybridge.domain.events import MasterDataChanged, PlanVersionChanged
from qualitybridge.domain.model import (
    ErpSnapshot,
    InspectionCharacteristic,
    MasterDataChanges,
    OrderState,
    ProductionOrder,
    ResultEvaluation,
)
from qualitybridge.domain.postings import MeasurementPosting
from qualitybridge.domain.records import AcceptedMeasurement
from qualitybridge.services.diagnostics import Diagnostics
from qualitybridge.services.erp_sync import ErpSync
from qualitybridge.services.event_bus import EventBus
from qualitybridge.services.master_data import MasterData
from qualitybridge.store import Store
from tests.builders import gauge, measurement_report, order, result
from tests.fakes import RecordingPublisher


def with_plan(version: str, lower: float, upper: float, *, routing: str = "R1") -> ProductionOrder:
    """Order 1000, operation 0010, bore C010 under plan `version` with these limits."""
    base = order("1000", state=OrderState.RUNNING)
    bore = (
        base.operations[0]
        .characteristics[0]
        .model_copy(
            update={"plan_version": version, "lower_limit": lower, "upper_limit": upper, "nominal": (lower + upper) / 2}
        )
    )
    operation = base.operations[0].model_copy(update={"characteristics": (bore,)})
    return base.model_copy(update={"routing_version": routing, "plan_version": version, "operations": (operation,)})


V3 = with_plan("3", 12.0, 12.018)
V4 = with_plan("4", 12.005, 12.025, routing="R2")


def bore(released: ProductionOrder) -> InspectionCharacteristic:
    return released.operations[0].characteristics[0]


class Planner:
    """A master-data source whose planners release whatever the test sets; every fetch is a delta of it."""

    source_id = "erp"

    def __init__(self, *orders: ProductionOrder) -> None:
        self.orders = orders
        self.revision = 0

    async def fetch_all(self) -> MasterDataChanges:
        self.revision += 1
        return MasterDataChanges(orders=self.orders, equipment=(gauge(),), watermark=str(self.revision), full=True)

    async def fetch_changes(self, since: str) -> MasterDataChanges:
        self.revision += 1
        return MasterDataChanges(orders=self.orders, watermark=str(self.revision))


async def test_a_new_plan_version_keeps_the_previous_definition_until_the_sync(store: Store) -> None:
    await store.apply_changes(MasterDataChanges(orders=(V3,), watermark="1", full=True), source="erp")
    before = datetime.now(UTC)
    change = await store.apply_changes(MasterDataChanges(orders=(V4,), watermark="2"), source="erp")
    after = datetime.now(UTC)

    (kept,) = change.superseded
    assert (kept.order_no, kept.operation_no, kept.characteristic, kept.routing_version) == (
        "1000",
        "0010",
        bore(V3),
        "R1",
    )
    assert before <= kept.superseded_at <= after
    assert await store.plan_history() == [kept]
    assert await store.plan_history(["1000"]) == [kept]
    assert await store.plan_history(["2000"]) == []
    # The same order again is no change, and keeps nothing more.
    assert (await store.apply_changes(MasterDataChanges(orders=(V4,), watermark="3"), source="erp")).superseded == ()
    assert len(await store.plan_history()) == 1


async def test_a_snapshot_keeps_versions_too_and_a_withdrawn_order_takes_its_history_out_of_service(
    store: Store,
) -> None:
    await store.apply_snapshot(ErpSnapshot(orders=(V3,), equipment=()))
    change = await store.apply_snapshot(ErpSnapshot(orders=(V4,), equipment=()))
    assert [version.characteristic for version in change.superseded] == [bore(V3)]
    await store.apply_snapshot(ErpSnapshot(orders=(), equipment=()))
    assert await store.plan_history() == [], "only released orders' history is served"
    assert [version.characteristic for version in await store.plan_history(["1000"])] == [bore(V3)]


async def test_a_late_measurements_versions_and_mark_survive_the_store_and_the_outbox(store: Store) -> None:
    late = result(value=12.002).model_copy(
        update={"plan_version": "3", "routing_version": "R1", "plan_version_superseded": True}
    )
    await store.record_measurements([AcceptedMeasurement(result=late)])
    (stored,) = await store.stored_measurements()
    assert stored.result == late
    (entry,) = await store.pending_outbox()
    assert isinstance(entry.posting, MeasurementPosting)
    assert entry.posting.result == late


async def test_the_sync_raises_plan_version_changed_and_the_report_path_judges_late_values_by_the_old_plan(
    store: Store,
) -> None:
    published = RecordingPublisher()
    events = EventBus()
    events.add_publisher(published)
    planner = Planner(V3)
    master = MasterData()
    sync = ErpSync(planner, store, master, Diagnostics(), events=events)
    await sync.run_once()
    assert published.of(PlanVersionChanged) == []

    planner.orders = (V4,)
    await sync.run_once()
    (changed,) = published.of(PlanVersionChanged)
    assert (changed.order_no, changed.operation_no, changed.previous, changed.current) == (
        "1000",
        "0010",
        bore(V3),
        bore(V4),
    )
    assert published.events.index(changed) > published.events.index(published.of(MasterDataChanged)[-1])
    in_force = master.version_in_force(
        measurement_report("1000", measured_at=changed.changed_at - timedelta(seconds=1))
    )
    assert (in_force.characteristic, in_force.routing_version, in_force.superseded) == (bore(V3), "R1", True)
    assert bore(V3).evaluate(12.002) is ResultEvaluation.OK
    assert bore(V4).evaluate(12.002) is ResultEvaluation.NOT_OK

    # A restart serves the same history from the store.
    restarted = MasterData()
    await ErpSync(planner, store, restarted, Diagnostics()).load_from_store()
    late = measurement_report("1000", measured_at=changed.changed_at - timedelta(seconds=1))
    assert restarted.version_in_force(late) == in_force
