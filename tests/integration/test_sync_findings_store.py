"""Issue 9, finding 1, at the store: start-up never fails on what the store holds, and a refused ERP record does
not withdraw the last good version of its order."""

from __future__ import annotations

from sqlalchemy import update

from qualitybridge.domain.model import (
    ErpSnapshot,
    InspectionCharacteristic,
    Operation,
    ProductionOrder,
    SyncFinding,
)
from qualitybridge.store import Store, tables


def order(order_no: str) -> ProductionOrder:
    bore = InspectionCharacteristic(
        characteristic_id="C010",
        name="Bore",
        nominal=12.0,
        lower_limit=11.9,
        upper_limit=12.1,
        unit="MMT",
        plan_version="1",
    )
    return ProductionOrder(
        order_no=order_no,
        material_no="MAT-1",
        planned_quantity=10,
        operations=(Operation(operation_no="0010", characteristics=(bore,)),),
    )


async def test_a_stored_order_the_domain_cannot_read_is_skipped_and_reported(store: Store) -> None:
    await store.apply_snapshot(ErpSnapshot(orders=(order("1000"), order("2000")), equipment=()))
    broken = order("1000").model_dump(mode="json")
    broken["operations"] = [broken["operations"][0], broken["operations"][0]]  # as an older version let through
    async with store.engine.begin() as conn:
        await conn.execute(
            update(tables.production_orders)
            .where(tables.production_orders.c.order_no == "1000")
            .values(document=broken)
        )
    assert [o.order_no for o in await store.released_orders()] == ["2000"]
    (finding,) = store.unreadable_orders
    assert finding.key == "order 1000"
    assert "twice" in finding.reason


async def test_a_refused_order_keeps_its_last_good_version(store: Store) -> None:
    await store.apply_snapshot(ErpSnapshot(orders=(order("1000"), order("2000")), equipment=()))
    refused = ErpSnapshot(
        orders=(order("2000"),),
        equipment=(),
        findings=(SyncFinding(key="order 1000", reason="planned_quantity: Input should be a finite number"),),
        refused_order_numbers=("1000",),
    )
    change = await store.apply_snapshot(refused)
    assert change.withdrawn == ()
    assert [o.order_no for o in await store.released_orders()] == ["1000", "2000"]
    change = await store.apply_snapshot(ErpSnapshot(orders=(order("2000"),), equipment=()))
    assert change.withdrawn == ("1000",), "no longer listed at all: withdrawn as before"
