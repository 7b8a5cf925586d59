"""`qualitybridge report ORDER`: a seeded order renders to one self-contained HTML file with what an auditor
asks for; 100k measurements render in seconds; headless Chromium shows the charts where it is installed."""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, text

from qualitybridge.config import QualityBridgeConfig
from qualitybridge.domain.ids import new_record_id
from qualitybridge.domain.model import (
    CalibrationStatus,
    Confirmation,
    ErpSnapshot,
    InspectionCharacteristic,
    MeasurementReport,
    MeasurementResult,
    Operation,
    ProductionOrder,
    ResultEvaluation,
    TestEquipment,
)
from qualitybridge.domain.records import AcceptedMeasurement, ConfirmationRecord
from qualitybridge.services.order_report import gather_order_report, render_order_report
from qualitybridge.store import Store, open_store
from tests.harness import invoke_cli

START = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def _order(order_no: str) -> ProductionOrder:
    bore = InspectionCharacteristic(
        characteristic_id="C010",
        name="Bore diameter",
        nominal=12.009,
        lower_limit=12.0,
        upper_limit=12.018,
        unit="MMT",
        plan_version="3",
        classification="critical",
        center_line=12.009,
        upper_control_limit=12.015,
        lower_control_limit=12.003,
    )
    length = InspectionCharacteristic(
        characteristic_id="C020",
        name="Length",
        nominal=40.0,
        lower_limit=39.9,
        upper_limit=40.1,
        unit="MMT",
        plan_version="3",
    )
    return ProductionOrder(
        order_no=order_no,
        material_no="MAT-7",
        part_no="P-7",
        work_centre="WC-10",
        planned_quantity=10,
        plan_version="3",
        operations=(Operation(operation_no="0010", characteristics=(bore, length)),),
    )


GAUGES = (
    TestEquipment(
        equipment_id="G-BORE-1",
        description="Bore gauge 12 mm",
        calibration_status=CalibrationStatus.DUE_SOON,
        last_calibration=date(2025, 12, 1),
        next_due=date(2026, 12, 1),
        certificate_no="CAL-4711",
    ),
)


def _result(order_no: str, characteristic_id: str, value: float, index: int, *, not_ok: bool) -> AcceptedMeasurement:
    at = START + timedelta(minutes=index)
    return AcceptedMeasurement(
        result=MeasurementResult(
            result_id=new_record_id(),
            report=MeasurementReport(
                order_no=order_no,
                operation_no="0010",
                characteristic_id=characteristic_id,
                value=value,
                equipment_id="G-BORE-1",
                part_serial=f"SN-{index:04d}",
                measured_at=at,
            ),
            evaluation=ResultEvaluation.NOT_OK if not_ok else ResultEvaluation.OK,
            plan_version="3",
            unit="MMT",
            reported_by="machine1",
            received_at=at,
        ),
        gauge_due_soon=index >= 20,
    )


async def _seed(store: Store) -> None:
    await store.apply_snapshot(ErpSnapshot(orders=(_order("1000"),), equipment=GAUGES))
    rng = random.Random(7)
    bore = [12.009 + rng.gauss(0, 0.0015) for _ in range(30)]
    bore[12] = 12.025  # out of tolerance (and beyond UCL: Nelson rule 1)
    bore[25] = 11.990  # out of tolerance
    measured = [_result("1000", "C010", v, i, not_ok=not 12.0 <= v <= 12.018) for i, v in enumerate(bore)]
    measured += [_result("1000", "C020", 40.0 + i / 1000, i, not_ok=False) for i in range(5)]
    await store.record_measurements(measured)
    for good, scrap, rework in ((8, 1, 1), (1, 0, 0)):
        await store.record_confirmation(
            ConfirmationRecord(
                confirmation_id=new_record_id(),
                confirmation=Confirmation(
                    order_no="1000",
                    operation_no="0010",
                    yield_quantity=good,
                    scrap_quantity=scrap,
                    rework_quantity=rework,
                    reason_code="R07" if scrap else "",
                ),
                reported_by="machine1",
                received_at=START + timedelta(hours=1),
            )
        )


async def _seeded(data_dir: Path) -> Path:
    store = await open_store(QualityBridgeConfig(data_dir=data_dir).store_url)
    try:
        await _seed(store)
    finally:
        await store.aclose()
    return data_dir / "report-1000.html"


def test_cli_writes_a_self_contained_report_with_charts_gauges_confirmations_and_kpis(tmp_path: Path) -> None:
    output = asyncio.run(_seeded(tmp_path))
    assert invoke_cli("report", "1000", "--data-dir", str(tmp_path), "-o", str(output)).returncode == 0
    page = output.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)=["']https?:""", page), "the report must not load anything"
    assert page.count("<svg") == 2  # one control chart per characteristic
    assert "0010 / C010 Bore diameter" in page
    assert "0010 / C020 Length" in page
    for line in ("USL 12.018", "LSL 12.000", "UCL 12.015", "CL 12.009", "LCL 12.003"):
        assert line in page
    assert page.count('class="nok"') == 2  # the two values out of tolerance are marked
    assert "Nelson rule 1" in page  # the value beyond UCL is marked as a rule violation
    assert "<th>Cp</th>" in page
    assert "<th>Cpk</th>" in page
    # The gauge: its calibration at measurement time (due soon for bore results 20..29, 10 of 35) and now.
    assert "G-BORE-1" in page
    assert "CAL-4711" in page
    assert "due soon for 10, valid for 25" in page
    # Confirmations and the KPIs: yield 9, scrap 1, rework 1 of 11; 2 defective of 30 inspected parts.
    assert "R07" in page
    assert "81.82 %" in page  # first-pass yield 9/11
    assert "66667" in page  # PPM 2/30 × 10⁶


def test_unknown_order_is_an_error_not_an_empty_report(tmp_path: Path) -> None:
    asyncio.run(_seeded(tmp_path))
    assert invoke_cli("report", "9999", "--data-dir", str(tmp_path), "-o", str(tmp_path / "x.html")).returncode == 2
    assert not (tmp_path / "x.html").exists()


async def test_an_order_of_100k_measurements_is_gathered_in_a_few_queries_into_a_small_page(tmp_path: Path) -> None:
    # What keeps a 100k-value report at seconds is that it is read in a few set-wise queries, not one per value, and
    # that the page carries an envelope, not every point. Both are counted here; the seconds themselves depend on the
    # machine and are measured by bench/order_report.py (docs/performance.md).
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'big.db'}")
    try:
        await store.apply_snapshot(ErpSnapshot(orders=(_order("2000"),), equipment=GAUGES))
        await store_many_measurements(store, "2000", 100_000)
        statements: list[str] = []

        def count(conn: object, cursor: object, statement: str, *args: object) -> None:
            statements.append(statement)

        event.listen(store.engine.sync_engine, "before_cursor_execute", count)
        try:
            report = await gather_order_report(store, "2000")
        finally:
            event.remove(store.engine.sync_engine, "before_cursor_execute", count)
        page = render_order_report(report)
    finally:
        await store.aclose()
    assert report.value_count == 100_000
    assert "100000 measurements" in page
    assert len(statements) <= 20, f"{len(statements)} SQL statements for one report: reads must not grow with values"
    assert len(page) < 2_000_000, f"{len(page)} bytes: the envelope should keep the file small"


async def store_many_measurements(store: Store, order_no: str, count: int) -> None:
    """Rows written straight into the table: the report's reading is under test, not the report path.

    One INSERT … SELECT that SQLite fills from a counter (a recursive CTE), instead of `count` rows built in Python
    and bound one by one (4 CPU-s under coverage for 100k, more than the report's own queries of them): odd rows C010
    around 12.009, even rows C020 around 40.0, a deterministic spread of ±0.004 and ±0.04 (i × 7919 mod 2001 scatters
    the values over the run), every 997th NOT_OK, one part per two rows, one second apart from START.
    """
    statement = text(
        """
        WITH RECURSIVE counter(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM counter WHERE i + 1 < :count)
        INSERT INTO measurement_results (result_id, order_no, operation_no, characteristic_id, value, unit,
            evaluation, plan_version, equipment_id, part_serial, measured_at, received_at, reported_by,
            gauge_due_soon)
        SELECT printf('r%06d', i), :order_no, '0010', CASE i % 2 WHEN 1 THEN 'C010' ELSE 'C020' END,
            CASE i % 2 WHEN 1 THEN 12.009 + 0.000004 * ((i * 7919) % 2001 - 1000)
                ELSE 40.0 + 0.00004 * ((i * 7919) % 2001 - 1000) END,
            'MMT', CASE WHEN i % 997 = 0 THEN :not_ok ELSE :ok END, '3', 'G-BORE-1', printf('SN-%06d', i / 2),
            datetime(:start, '+' || i || ' seconds'), datetime(:start, '+' || i || ' seconds'), 'machine1', 0
        FROM counter
        """
    )
    async with store.engine.begin() as conn:
        await conn.execute(
            statement,
            {
                "count": count,
                "order_no": order_no,
                "ok": int(ResultEvaluation.OK),
                "not_ok": int(ResultEvaluation.NOT_OK),
                "start": START.strftime("%Y-%m-%d %H:%M:%S"),
            },
        )


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium (Debian package chromium) is not installed here")
def test_headless_chromium_screenshot_shows_the_charts(tmp_path: Path) -> None:
    output = asyncio.run(_seeded(tmp_path))
    assert invoke_cli("report", "1000", "--data-dir", str(tmp_path), "-o", str(output)).returncode == 0
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1000,1400",
            f"--screenshot={shot}",
            output.as_uri(),
        ],
        check=True,
        timeout=120,
        capture_output=True,
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    # A blank page compresses to a few KiB; the charts' lines, labels and markers make it much larger.
    assert len(data) > 20_000, f"screenshot of {len(data)} bytes looks blank"
