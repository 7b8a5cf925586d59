"""The KPI formulas against figures computed by hand (the same example as docs/kpis.md)."""

from __future__ import annotations

import pytest

from qualitybridge.domain.kpis import ConfirmedQuantities, KpiFigures, PartMeasurement, kpi_figures

CONFIRMATIONS = [
    ConfirmedQuantities("A", "M1", "WC-10", yield_quantity=60, scrap_quantity=4, rework_quantity=0),
    ConfirmedQuantities("A", "M1", "WC-10", yield_quantity=30, scrap_quantity=2, rework_quantity=4),
    ConfirmedQuantities("B", "M1", "WC-20", yield_quantity=40, scrap_quantity=5, rework_quantity=5),
]


def _parts(order_no: str, work_centre: str, results: dict[str, list[bool]]) -> list[PartMeasurement]:
    return [
        PartMeasurement(order_no, "M1", work_centre, serial, not_ok)
        for serial, outcomes in results.items()
        for not_ok in outcomes
    ]


MEASUREMENTS = [
    # A-2 has one NotOK of two results, A-3 two NotOK: 2 defective parts of 4 inspected.
    *_parts("A", "WC-10", {"A-1": [False], "A-2": [False, True], "A-3": [True, True], "A-4": [False]}),
    # One defective part of 5.
    *_parts("B", "WC-20", {"B-1": [False], "B-2": [False], "B-3": [True], "B-4": [False], "B-5": [False]}),
]


def _by_scope() -> dict[tuple[str, str], KpiFigures]:
    return {(f.scope, f.key): f for f in kpi_figures(CONFIRMATIONS, MEASUREMENTS)}


def test_every_scope_and_key_gets_figures_in_a_stable_order() -> None:
    assert list(_by_scope()) == [
        ("order", "A"),
        ("order", "B"),
        ("material", "M1"),
        ("work_centre", "WC-10"),
        ("work_centre", "WC-20"),
        ("plant", "*"),
    ]


def test_order_a_by_hand() -> None:
    a = _by_scope()[("order", "A")]
    # yield 90, scrap 6, rework 4: processed 100
    assert (a.processed_quantity, a.yield_quantity, a.scrap_quantity, a.rework_quantity) == (100, 90, 6, 4)
    assert a.first_pass_yield == pytest.approx(0.90)
    assert a.scrap_rate == pytest.approx(0.06)
    assert a.rework_rate == pytest.approx(0.04)
    assert (a.inspected_parts, a.defective_parts) == (4, 2)
    assert a.ppm == pytest.approx(500_000)


def test_order_b_and_its_work_centre_by_hand() -> None:
    figures = _by_scope()
    for key in (("order", "B"), ("work_centre", "WC-20")):
        b = figures[key]
        assert b.processed_quantity == 50
        assert b.first_pass_yield == pytest.approx(0.80)
        assert b.scrap_rate == pytest.approx(0.10)
        assert b.rework_rate == pytest.approx(0.10)
        assert b.ppm == pytest.approx(200_000)


def test_plant_and_material_add_up_both_orders_by_hand() -> None:
    figures = _by_scope()
    for key in (("plant", "*"), ("material", "M1")):
        total = figures[key]
        # yield 130, scrap 11, rework 9 of 150; 3 defective parts of 9 inspected
        assert total.processed_quantity == 150
        assert total.first_pass_yield == pytest.approx(130 / 150)
        assert total.scrap_rate == pytest.approx(11 / 150)
        assert total.rework_rate == pytest.approx(0.06)
        assert (total.inspected_parts, total.defective_parts) == (9, 3)
        assert total.ppm == pytest.approx(333_333.333, abs=0.001)


def test_no_basis_gives_none_not_zero() -> None:
    only_measured = kpi_figures([], MEASUREMENTS[:1], scopes=["order"])
    assert only_measured[0].first_pass_yield is None
    assert only_measured[0].scrap_rate is None
    assert only_measured[0].ppm == 0
    only_confirmed = kpi_figures(CONFIRMATIONS[:1], [], scopes=["order"])
    assert only_confirmed[0].ppm is None
    assert only_confirmed[0].inspected_parts == 0


def test_a_part_measured_twice_at_different_work_centres_counts_once_for_the_order() -> None:
    twice = [PartMeasurement("A", "M1", "WC-10", "A-1", False), PartMeasurement("A", "M1", "WC-30", "A-1", True)]
    figures = {(f.scope, f.key): f for f in kpi_figures([], twice)}
    assert (figures[("order", "A")].inspected_parts, figures[("order", "A")].defective_parts) == (1, 1)
    assert figures[("work_centre", "WC-10")].defective_parts == 0
    assert figures[("work_centre", "WC-30")].defective_parts == 1
