"""Mapping tables in force: what each fills in, what is held back (never guessed), and the gate that lets held-back
orders through once their mapping exists, without the ERP sending them again."""

from __future__ import annotations

import logging
import typing

import pytest

from qualitybridge.config import MappingKindName, QualityBridgeConfig
from qualitybridge.domain.build import installed_build
from qualitybridge.domain.events import DiagnosticsChanged
from qualitybridge.domain.mapping import MappingEntry, MappingKind, MappingTables, entry_problems
from qualitybridge.domain.mapping_gaps import MissingMapping, apply_mappings, waiting_for
from qualitybridge.domain.model import ProductionOrder, SupersededPlanVersion
from qualitybridge.services.mapping import GateOutcome, MappingGate
from qualitybridge.services.metrics import OperationsMetrics
from tests.builders import NOW, order
from tests.fakes import FakeStore

M, C, W, U = MappingKind.MATERIAL, MappingKind.CHARACTERISTIC, MappingKind.WORK_CENTRE, MappingKind.UNIT


def erp_order(order_no: str = "1000", material: str = "MAT-1", unit: str = "mm") -> ProductionOrder:
    """An order as an ERP with its own keys sends it: material number, characteristic C1 in the ERP's unit."""
    plain = order(order_no)
    operation = plain.operations[0]
    characteristic = operation.characteristics[0].model_copy(update={"unit": unit})
    return plain.model_copy(
        update={
            "material_no": material,
            "part_no": "",
            "work_centre": "WC-1",
            "operations": (operation.model_copy(update={"characteristics": (characteristic,), "work_centre": ""}),),
        }
    )


def tables(*entries: tuple[MappingKind, str, str]) -> MappingTables:
    return MappingTables.of(MappingEntry(kind, source, target) for kind, source, target in entries)


def test_no_table_in_force_is_todays_behaviour() -> None:
    sent = erp_order()
    assert apply_mappings(sent, MappingTables(), ()).order is sent


def test_each_table_fills_in_its_target() -> None:
    sent = erp_order()
    characteristic_id = sent.operations[0].characteristics[0].characteristic_id
    mapped = apply_mappings(
        sent,
        tables((M, "MAT-1", "P-100"), (U, "mm", "MMT"), (C, characteristic_id, "Bore diameter"), (W, "WC-1", "CC-9")),
        {M, U, C, W},
    )
    assert mapped.missing == ()
    assert mapped.order is not None
    assert mapped.order.part_no == "P-100"
    shown = mapped.order.operations[0].characteristics[0]
    assert (shown.unit, shown.name) == ("MMT", "Bore diameter")
    assert mapped.order.material_no == "MAT-1", "the ERP's own key stays as it was"


def test_an_unmapped_key_holds_the_order_back_and_names_every_gap() -> None:
    sent = erp_order(unit="Grd")
    characteristic_id = sent.operations[0].characteristics[0].characteristic_id
    mapped = apply_mappings(sent, tables((U, "mm", "MMT")), {M, U, C, W})
    assert mapped.order is None
    assert mapped.missing == (
        MissingMapping(M, "MAT-1"),
        MissingMapping(W, "WC-1"),
        MissingMapping(C, characteristic_id),
        MissingMapping(U, "Grd"),
    )


def test_a_table_not_in_force_is_not_applied_even_with_entries() -> None:
    sent = erp_order()
    mapped = apply_mappings(sent, tables((M, "MAT-1", "P-100"), (U, "mm", "MMT")), {U})
    assert mapped.order is not None
    assert mapped.order.part_no == ""
    assert mapped.order.operations[0].characteristics[0].unit == "MMT"


def test_superseded_plan_versions_pass_the_unit_table_too() -> None:
    """A late measurement judged against an old version must carry a UNECE unit like one judged today."""
    sent = erp_order(unit="mm")
    old = sent.operations[0].characteristics[0].model_copy(update={"unit": "MIM", "plan_version": "1"})
    history = [
        SupersededPlanVersion(
            order_no="1000", operation_no="0010", characteristic=old, routing_version="", superseded_at=NOW
        )
    ]
    held = apply_mappings(sent, tables((U, "mm", "MMT")), {U}, history)
    assert (held.order, held.missing) == (None, (MissingMapping(U, "MIM"),))
    mapped = apply_mappings(sent, tables((U, "mm", "MMT"), (U, "MIM", "4H")), {U}, history)
    assert mapped.order is not None
    [version] = mapped.history
    assert (version.characteristic.unit, version.characteristic.plan_version) == ("4H", "1")


def test_gaps_list_each_key_once_with_the_orders_waiting() -> None:
    material, unit = MissingMapping(M, "MAT-1"), MissingMapping(U, "Grd")
    assert waiting_for({"1002": (material,), "1001": (unit, material)}) == {
        material: ("1001", "1002"),
        unit: ("1001",),
    }


def test_a_unit_target_must_be_a_unece_code() -> None:
    assert entry_problems(MappingEntry(U, "mm", "MMT")) == []
    assert entry_problems(MappingEntry(M, "MAT-1", "anything goes")) == []
    [problem] = entry_problems(MappingEntry(U, "mm", "millimetre"))
    assert problem.startswith("'millimetre' (for ERP unit 'mm') is not a UNECE code QualityBridge knows: use one of")


def test_keys_are_one_clean_line_each() -> None:
    assert entry_problems(MappingEntry(M, "MAT-1\n", "P-1")) == [
        "the ERP material number 'MAT-1\\n' has leading or trailing spaces: remove them"
    ]
    assert entry_problems(MappingEntry(M, "MAT\t1", "P-1")) == [
        "the ERP material number 'MAT\\t1' contains a line break or control character: remove it"
    ]
    assert entry_problems(MappingEntry(C, "C0010", "")) == ["the QMS characteristic name is empty: give the key"]


def test_the_config_names_the_tables_as_the_cli_does() -> None:
    assert typing.get_args(MappingKindName) == tuple(kind.value for kind in MappingKind)
    assert QualityBridgeConfig().master_data.required_mappings == [], "documented default: no table in force"


async def test_the_gate_holds_back_then_releases_when_the_mapping_arrives(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeStore()
    gate = MappingGate(store.as_store(), {M})
    stored = [erp_order("1000", "MAT-1"), erp_order("1001", "MAT-2")]
    await store.set_mapping(MappingEntry(M, "MAT-1", "P-100"))
    caplog.set_level(logging.INFO, logger="qualitybridge.services.mapping")

    shown = (await gate.replace(stored)).show
    assert [o.part_no for o in shown] == ["P-100"]
    assert gate.held_back == {"1001": (MissingMapping(M, "MAT-2"),)}
    [gap] = gate.gaps
    assert (gap.kind, gap.source_key, gap.orders) == (M, "MAT-2", ("1001",))
    assert gap.line.startswith("material, MAT-2, since ")
    assert gap.line.endswith(": holds back order 1001")

    for _ in range(3):  # rounds in which nothing changes: no new log line, no new store write
        assert not await gate.tables_changed()
        assert await gate.update([], []) == GateOutcome()
    held_lines = [r.getMessage() for r in caplog.records if "held back" in r.getMessage()]
    assert len(held_lines) == 1, held_lines
    assert (
        "order 1001 held back: no mapping for material MAT-2; add it, e.g. qualitybridge mapping set --kind "
        in (held_lines[0])
    )
    assert held_lines[0].endswith("material MAT-2 <MES part number>")
    assert len(store.called("record_mapping_gaps")) == 1

    await store.set_mapping(MappingEntry(M, "MAT-2", "P-200"))
    assert await gate.tables_changed(), "the sync then passes every stored order through the gate again"
    shown = (await gate.replace(stored)).show
    assert {o.order_no: o.part_no for o in shown} == {"1000": "P-100", "1001": "P-200"}
    assert gate.held_back == {}
    assert gate.gaps == ()
    assert await store.mapping_gaps() == []
    assert "order 1001: its mappings are complete now; shown on the shop floor" in caplog.text


async def test_the_gate_holds_back_a_delta_order_and_forgets_a_withdrawn_one() -> None:
    store = FakeStore()
    await store.replace_mappings(M, [MappingEntry(M, "MAT-1", "P-100"), MappingEntry(M, "MAT-2", "P-200")])
    gate = MappingGate(store.as_store(), {M})
    await gate.replace([erp_order("1000", "MAT-1"), erp_order("1001", "MAT-2")])

    await store.remove_mapping(M, "MAT-1")
    assert await gate.tables_changed()
    again = await gate.replace([erp_order("1000", "MAT-1"), erp_order("1001", "MAT-2")])
    assert [o.order_no for o in again.show] == ["1001"]
    assert [gap.source_key for gap in gate.gaps] == ["MAT-1"]

    changed = erp_order("1001", "MAT-3")  # the ERP moves an order to a material nobody mapped
    outcome = await gate.update([changed], ["1000"])
    assert outcome == GateOutcome(show=(), hide=("1000", "1001"))
    assert [(gap.source_key, gap.orders) for gap in gate.gaps] == [("MAT-3", ("1001",))]
    assert list(gate.held_back) == ["1001"]


async def test_the_gap_figures_reach_the_metrics() -> None:
    metrics = OperationsMetrics(installed_build())
    await metrics.publish(
        DiagnosticsChanged(
            last_sync_time=None,
            last_sync_succeeded=True,
            sync_error_count=0,
            last_sync_error="",
            outbox_depth=0,
            outbox_dead_letters=0,
            master_data_gaps=("material, MAT-1, since 2026-11-25T12:00:00Z: holds back orders 1000, 1001",),
            held_back_orders=2,
        )
    )
    assert metrics.registry.get_sample_value("qualitybridge_master_data_held_back_orders") == 2
    assert metrics.registry.get_sample_value("qualitybridge_master_data_gaps") == 1
