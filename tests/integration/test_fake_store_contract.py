"""The unit tier's FakeStore answers as the real store does: the same calls on both, the answers compared.

If the store's behaviour changes (a repeat answered differently, a compare-and-set that ignores the expected
state), this fails and the fake must follow, or the unit tests of the service rules would test a fiction.
"""

from __future__ import annotations

from typing import Any

import pytest

from qualitybridge.domain.mapping import InvalidMapping, MappingEntry, MappingKind
from qualitybridge.domain.mapping_gaps import MissingMapping
from qualitybridge.domain.model import ErpSnapshot, OrderState
from qualitybridge.store import Store
from tests.builders import NOW, accepted, confirmation_record, order, refused_attempt, spc_alarm_record
from tests.fakes import FakeStore

S = OrderState


async def test_measurement_batches_and_their_repeats(store: Store) -> None:
    first_batch = [accepted("plc-7", due_soon=True)]
    second_batch = [accepted("plc-7", value=99.0), accepted("plc-8"), accepted("plc-8", value=98.0), accepted()]
    refused = [refused_attempt()]

    async def story(target: Any) -> list[Any]:
        return [
            await target.measurements_by_client_ids([]),
            await target.record_measurements(first_batch),
            await target.record_measurements(second_batch, refused),
            await target.measurements_by_client_ids(["plc-7", "plc-8", "never"]),
        ]

    real = await story(store)
    assert real[2][0] == (first_batch[0], False), "the story must exercise a repeat"
    assert await story(FakeStore()) == real
    assert await store.refused_measurements() == refused


async def test_order_state_compare_and_set(store: Store) -> None:
    orders = (order("1000"), order("1001", state=S.NOT_ALLOWED_TO_START))
    await store.apply_snapshot(ErpSnapshot(orders=orders, equipment=()))
    steps = [
        ("1000", S.ALLOWED_TO_START, S.RUNNING),
        ("1000", S.ALLOWED_TO_START, S.RUNNING),
        ("1000", S.RUNNING, S.INTERRUPTED),
        ("1000", S.RUNNING, S.ENDED),
        ("1001", S.ALLOWED_TO_START, S.ABORTED),
        ("1001", S.NOT_ALLOWED_TO_START, S.ABORTED),
        ("4711", S.ALLOWED_TO_START, S.RUNNING),
    ]
    real = [await store.change_order_state(*step) for step in steps]
    fake_store = FakeStore(orders)
    assert [await fake_store.change_order_state(*step) for step in steps] == real
    assert real == [True, False, True, False, False, True, False]
    assert {o.order_no: o.state for o in await store.released_orders()} == fake_store.order_states


async def test_confirmations_their_repeats_and_totals(store: Store) -> None:
    first = confirmation_record("mes-1", yield_quantity=4)
    repeat = confirmation_record("mes-1", yield_quantity=40)
    final = confirmation_record(yield_quantity=3, scrap=1, final=True)

    async def story(target: Any) -> list[Any]:
        return [
            await target.confirmation_totals("1000", "0010"),
            await target.record_confirmation(first),
            await target.record_confirmation(repeat),
            await target.confirmation_by_client_id("mes-1"),
            await target.confirmation_by_client_id("never"),
            await target.record_confirmation(final),
            await target.confirmation_totals("1000", "0010"),
            await target.confirmation_totals("1000", "0020"),
        ]

    real = await story(store)
    assert real[2] == (first, False), "the story must exercise a repeat"
    assert await story(FakeStore()) == real


async def test_spc_alarm_batches_and_stored_measurements(store: Store) -> None:
    alarms = [spc_alarm_record(rule) for rule in (1, 2, 5)]
    batch = [accepted(), accepted("plc-9"), accepted()]

    async def story(target: Any) -> list[Any]:
        return [
            await target.record_spc_alarms_once([]),
            await target.record_spc_alarms_once(alarms[:2]),
            await target.record_spc_alarms_once([alarms[1], alarms[2], alarms[2]]),
            await target.record_measurements(batch),
            await target.stored_measurements(),
            await target.stored_measurements("1000"),
            await target.stored_measurements("4711"),
        ]

    real = await story(store)
    assert real[2] == [False, True, False], "the story must exercise repeats"
    assert await story(FakeStore()) == real


async def test_mapping_tables_set_replace_remove(store: Store) -> None:
    material, unit = MappingKind.MATERIAL, MappingKind.UNIT
    stamped = {"changed_at": NOW, "changed_by": "admin"}
    first_import = [
        MappingEntry(material, "MAT-1", "P-100", **stamped),
        MappingEntry(material, "MAT-2", "P-200", **stamped),
    ]
    broken_import = [
        MappingEntry(material, "MAT-3", "P-300", **stamped),
        MappingEntry(material, "MAT-3", "P-301", **stamped),
        MappingEntry(material, "", "P-302", **stamped),
    ]

    async def story(target: Any) -> list[Any]:
        answers: list[Any] = [await target.list_mappings(), await target.mapping_tables()]
        await target.replace_mappings(material, first_import)
        await target.set_mapping(MappingEntry(unit, "mm", "MMT", **stamped))
        await target.set_mapping(MappingEntry(material, "MAT-2", "P-222", changed_at=NOW, changed_by="quality"))
        answers.append(await target.list_mappings())
        for bad in (
            lambda: target.replace_mappings(material, broken_import),
            lambda: target.set_mapping(MappingEntry(unit, "Grad", "degree", **stamped)),
        ):
            with pytest.raises(InvalidMapping) as refused:
                await bad()
            answers.append(refused.value.problems)
        answers += [
            await target.list_mappings(material),
            await target.remove_mapping(material, "MAT-1"),
            await target.remove_mapping(material, "MAT-1"),
            await target.remove_mapping(unit, "MAT-2"),
            await target.mapping_tables(),
        ]
        await target.replace_mappings(material, [])
        answers.append(await target.list_mappings())
        return answers

    real = await story(store)
    assert len(real[3]) == 2, "the story must exercise a duplicate and an empty key in one import"
    assert [(e.source_key, e.target_key) for e in real[5]] == [("MAT-1", "P-100"), ("MAT-2", "P-222")], (
        "a refused import leaves the table as it was"
    )
    assert await story(FakeStore()) == real


async def test_mapping_gaps_keep_their_since_until_closed(store: Store) -> None:
    material = MissingMapping(MappingKind.MATERIAL, "4711-000")
    unit = MissingMapping(MappingKind.UNIT, "Grad")
    rounds = [
        {material: ["1000"]},
        {material: ["1000", "1001"], unit: ["1001"]},
        {unit: ["1001"]},
        {},
        {material: ["1002"]},
    ]

    async def story(target: Any) -> list[Any]:
        answers = [await target.mapping_gaps()]
        for waiting in rounds:
            recorded = await target.record_mapping_gaps(waiting)
            assert recorded == await target.mapping_gaps(), "the answer is what a later read finds"
            answers.append(recorded)
        return answers

    real = await story(store)
    since = {(gap.kind, gap.source_key, index): gap.since for index, gaps in enumerate(real) for gap in gaps}
    assert since[(MappingKind.MATERIAL, "4711-000", 1)] == since[(MappingKind.MATERIAL, "4711-000", 2)]
    assert since[(MappingKind.UNIT, "Grad", 2)] == since[(MappingKind.UNIT, "Grad", 3)]
    assert since[(MappingKind.MATERIAL, "4711-000", 5)] >= since[(MappingKind.MATERIAL, "4711-000", 2)], (
        "a gap closed and opened again starts anew"
    )

    def without_since(answers: list[Any]) -> list[Any]:
        return [[(gap.kind, gap.source_key, gap.orders) for gap in gaps] for gaps in answers]

    assert without_since(await story(FakeStore())) == without_since(real)
    assert without_since(real)[2] == [
        (MappingKind.MATERIAL, "4711-000", ("1000", "1001")),
        (MappingKind.UNIT, "Grad", ("1001",)),
    ]
