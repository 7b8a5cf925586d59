"""KPIs of a seeded day and of an ended order, from a real store, delivered to the real simulator over HTTP:
the figures equal the hand-computed ones of docs/kpis.md, and each period arrives exactly once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from qualitybridge.adapters.rest_erp import RestErpClient
from qualitybridge.domain.events import KpiReportQueued, OrderStateChanged
from qualitybridge.domain.ids import new_record_id
from qualitybridge.domain.model import (
    Confirmation,
    ErpSnapshot,
    MeasurementReport,
    MeasurementResult,
    OrderState,
    OutboxState,
    ResultEvaluation,
)
from qualitybridge.domain.records import AcceptedMeasurement, ConfirmationRecord
from qualitybridge.services.diagnostics import Diagnostics
from qualitybridge.services.event_bus import EventBus
from qualitybridge.services.kpis import KpiService
from qualitybridge.services.outbox_relay import OutboxRelay
from qualitybridge.store import Store
from tests.builders import order

DAY = date(2026, 11, 20)
NOON = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
AFTER = datetime(2026, 11, 21, 0, 15, tzinfo=UTC)


def _confirmation(order_no: str, good: float, scrap: float, rework: float, at: datetime) -> ConfirmationRecord:
    return ConfirmationRecord(
        confirmation_id=new_record_id(),
        confirmation=Confirmation(
            order_no=order_no,
            operation_no="0010",
            yield_quantity=good,
            scrap_quantity=scrap,
            rework_quantity=rework,
            reason_code="R01" if scrap else "",
        ),
        reported_by="machine1",
        received_at=at,
    )


def _measured(order_no: str, serial: str, not_ok: bool, at: datetime) -> AcceptedMeasurement:
    return AcceptedMeasurement(
        result=MeasurementResult(
            result_id=new_record_id(),
            report=MeasurementReport(
                order_no=order_no,
                operation_no="0010",
                characteristic_id="C010",
                value=12.5 if not_ok else 12.01,
                equipment_id="G-1",
                part_serial=serial,
                measured_at=at,
            ),
            evaluation=ResultEvaluation.NOT_OK if not_ok else ResultEvaluation.OK,
            plan_version="3",
            unit="MMT",
            reported_by="machine1",
            received_at=at,
        )
    )


async def _seed(store: Store) -> None:
    """The example of docs/kpis.md, plus data on the day before and after that must not count for the day."""
    a = order("A").model_copy(update={"material_no": "M1", "work_centre": "WC-10"})
    b = order("B").model_copy(update={"material_no": "M1", "work_centre": "WC-20"})
    await store.apply_snapshot(ErpSnapshot(orders=(a, b), equipment=()))
    for record in (
        _confirmation("A", 60, 4, 0, NOON),
        _confirmation("A", 30, 2, 4, NOON + timedelta(hours=1)),
        _confirmation("B", 40, 5, 5, NOON),
        _confirmation("A", 7, 7, 7, NOON - timedelta(days=1)),  # the day before
        _confirmation("B", 7, 7, 7, NOON + timedelta(days=1)),  # the day after
    ):
        await store.record_confirmation(record)
    parts = {
        "A": {"A-1": [False], "A-2": [False, True], "A-3": [True, True], "A-4": [False]},
        "B": {"B-1": [False], "B-2": [False], "B-3": [True], "B-4": [False], "B-5": [False]},
    }
    await store.record_measurements(
        [
            _measured(order_no, serial, not_ok, NOON)
            for order_no, by_serial in parts.items()
            for serial, outcomes in by_serial.items()
            for not_ok in outcomes
        ]
        + [_measured("A", "A-9", True, NOON - timedelta(days=1))]  # the day before: counts only for the order
    )


async def _kpis_at_erp(erp_url: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=erp_url, timeout=10) as http:
        answer: list[dict[str, Any]] = (await http.get("/kpis")).json()
        return answer


async def test_day_and_order_kpis_equal_the_hand_computed_ones_and_arrive_once(store: Store, erp_url: str) -> None:
    await _seed(store)
    events = EventBus()
    woken: list[KpiReportQueued] = []

    async def record(event: KpiReportQueued) -> None:
        woken.append(event)

    events.subscribe(KpiReportQueued, record)
    kpis = KpiService(store, events=events, clock=lambda: AFTER)
    kpis.subscribe()

    assert await kpis.post_finished_days() is True  # the scheduled run for the day before AFTER, i.e. DAY
    assert await kpis.post_day(DAY) is False  # a rerun (restart catching up) queues nothing
    ended = order("A", state=OrderState.ENDED)
    await events.publish(OrderStateChanged(ended))
    await events.publish(OrderStateChanged(ended))  # EndOrder seen twice: still one posting
    assert [event.report.idempotency_key for event in woken] == ["kpi-day-2026-11-20", "kpi-order-A"]

    erp = RestErpClient(erp_url)
    try:
        relay = OutboxRelay(store, erp, Diagnostics(), clock=lambda: AFTER + timedelta(minutes=1))
        await relay.run_once()
        await relay.run_once()
    finally:
        await erp.aclose()
    # The simulator does not know orders A and B, so it refuses their results and confirmations; KPI postings are
    # not checked against released orders (an ended order may be gone) and are booked.
    kpi_entries = [entry for entry in await store.outbox_entries() if entry.kind == "kpi"]
    assert [entry.state for entry in kpi_entries] == [OutboxState.SENT, OutboxState.SENT]

    booked = await _kpis_at_erp(erp_url)
    assert [item["idempotency_key"] for item in booked] == ["kpi-day-2026-11-20", "kpi-order-A"]
    assert all(item["deliveries"] == 1 for item in booked)
    day = {(f["scope"], f["key"]): f for f in booked[0]["body"]["figures"]}
    assert set(day) == {
        ("order", "A"),
        ("order", "B"),
        ("material", "M1"),
        ("work_centre", "WC-10"),
        ("work_centre", "WC-20"),
        ("plant", "*"),
    }
    a = day[("order", "A")]
    assert (a["processed_quantity"], a["first_pass_yield"], a["scrap_rate"], a["rework_rate"]) == (
        100,
        pytest.approx(0.9),
        pytest.approx(0.06),
        pytest.approx(0.04),
    )
    assert (a["inspected_parts"], a["defective_parts"], a["ppm"]) == (4, 2, pytest.approx(500_000))
    b = day[("work_centre", "WC-20")]
    assert (b["first_pass_yield"], b["ppm"]) == (pytest.approx(0.8), pytest.approx(200_000))
    plant = day[("plant", "*")]
    assert plant["processed_quantity"] == 150
    assert plant["first_pass_yield"] == pytest.approx(130 / 150)
    assert plant["ppm"] == pytest.approx(1_000_000 / 3)

    # The order's life: the day before counts too (yield 97, scrap 13, rework 11; 3 defective of 5 parts).
    (whole_order,) = booked[1]["body"]["figures"]
    assert (whole_order["scope"], whole_order["key"]) == ("order", "A")
    assert whole_order["processed_quantity"] == 121
    assert whole_order["first_pass_yield"] == pytest.approx(97 / 121)
    assert (whole_order["inspected_parts"], whole_order["defective_parts"]) == (5, 3)
    assert whole_order["ppm"] == pytest.approx(600_000)


async def test_a_day_without_confirmations_or_measurements_posts_nothing(store: Store) -> None:
    kpis = KpiService(store, events=EventBus(), clock=lambda: AFTER)
    assert await kpis.post_finished_days() is False
    assert await store.outbox_entries() == []
