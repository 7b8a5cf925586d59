"""The SAP S/4HANA adapter against the simulator's SAP face over real HTTP, with a real store.

Orders, operations and characteristics arrive with limits and UNECE units; a delta sync asks only for what changed
since the watermark; results and confirmations arrive as A_InspectionResultValue and ProdnOrdConf2 with the right
fields; an expired CSRF token is fetched again; 5xx, timeouts and lost answers are retried and booked once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import httpx
import pytest

from qualitybridge.adapters.combined import ErpWithQms
from qualitybridge.adapters.rest_erp import RestErpClient
from qualitybridge.adapters.sap_s4hana import SapS4HanaClient
from qualitybridge.domain.ids import new_record_id, new_result_id
from qualitybridge.domain.model import (
    Confirmation,
    MasterDataChanges,
    MeasurementReport,
    MeasurementResult,
    OutboxState,
    SpcAlarm,
)
from qualitybridge.domain.records import AcceptedMeasurement, ConfirmationRecord, SpcAlarmRecord
from qualitybridge.services.diagnostics import Diagnostics
from qualitybridge.services.erp_sync import ErpSync
from qualitybridge.services.master_data import MasterData
from qualitybridge.services.outbox_relay import OutboxRelay
from qualitybridge.simulator.app import serve
from qualitybridge.store import Store, open_store
from tests.harness import free_port, run_cli


@dataclass
class SapSim:
    url: str
    http: httpx.AsyncClient

    async def get(self, path: str) -> Any:
        response = await self.http.get(path)
        response.raise_for_status()
        return response.json()

    async def call(self, method: str, path: str, **kwargs: Any) -> None:
        (await self.http.request(method, path, **kwargs)).raise_for_status()

    async def requests(self) -> list[str]:
        return [unquote_plus(line) for line in await self.get("/sap/requests")]


@pytest.fixture
async def sap() -> AsyncIterator[SapSim]:
    port = free_port()
    started = asyncio.Event()
    task = asyncio.create_task(serve("127.0.0.1", port, started=started, flavour="sap"))
    await asyncio.wait_for(started.wait(), 20)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        yield SapSim(f"http://127.0.0.1:{port}", http)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    yield opened
    await opened.aclose()


def _client(sim: SapSim, **kwargs: Any) -> SapS4HanaClient:
    options: dict[str, Any] = {"timeout_seconds": 5.0, "page_size": 3, "orders_per_request": 2, **kwargs}
    return SapS4HanaClient(sim.url, plant="1010", sap_client="100", auth=("QB_COMM_USER", "pw"), **options)


async def _synced(store: Store, client: SapS4HanaClient) -> MasterData:
    master = MasterData()
    await ErpSync(client, store, master, Diagnostics()).run_once()
    return master


def _measurement(master: MasterData, order_no: str, value: float | None = None, index: int = 1) -> AcceptedMeasurement:
    order = master.order(order_no)
    assert order is not None
    operation = order.operations[0]
    characteristic = operation.characteristics[index]
    measured = characteristic.nominal if value is None else value
    return AcceptedMeasurement(
        result=MeasurementResult(
            result_id=new_result_id(),
            report=MeasurementReport(
                order_no=order_no,
                operation_no=operation.operation_no,
                characteristic_id=characteristic.characteristic_id,
                value=measured,
                equipment_id="GA-BOR-0312",
                part_serial="SN-1",
                measured_at=datetime.now(UTC),
            ),
            evaluation=characteristic.evaluate(measured),
            plan_version=characteristic.plan_version,
            unit=characteristic.unit,
            reported_by="machine1",
            received_at=datetime.now(UTC),
        )
    )


def _confirmation(order_no: str, operation_no: str, yield_quantity: float = 9.0) -> ConfirmationRecord:
    return ConfirmationRecord(
        confirmation_id=new_record_id(),
        confirmation=Confirmation(
            order_no=order_no,
            operation_no=operation_no,
            yield_quantity=yield_quantity,
            scrap_quantity=1,
            rework_quantity=2,
            reason_code="S01",
            final=True,
        ),
        reported_by="machine1",
        received_at=datetime.now(UTC),
    )


async def _drain(relay: OutboxRelay, store: Store, seconds: float = 60.0) -> int:
    rounds = 0
    deadline = time.monotonic() + seconds
    while await store.pending_outbox():
        assert time.monotonic() < deadline, "the outbox did not drain"
        await relay.run_once()
        rounds += 1
        await asyncio.sleep(0.05)
    return rounds


def _machine_alarm(characteristic_id: str, rule: str, severity: int, message: str = "") -> SpcAlarmRecord:
    """An SPC alarm machine1 reported on order 1000417, operation 0010."""
    return SpcAlarmRecord(
        alarm_id=new_record_id(),
        alarm=SpcAlarm(
            order_no="1000417",
            operation_no="0010",
            characteristic_id=characteristic_id,
            rule=rule,
            severity=severity,
            message=message,
            raised_at=datetime.now(UTC),
        ),
        reported_by="machine1",
    )


async def test_orders_operations_and_characteristics_arrive_with_limits_and_units(
    sqlite_store: Store, sap: SapSim
) -> None:
    client = _client(sap)
    master = await _synced(sqlite_store, client)
    assert sorted(order.order_no for order in master.orders) == ["1000417", "1000418", "1000421", "1000425"]
    housing = master.order("1000417")
    assert housing is not None
    assert (housing.material_no, housing.plant, housing.quantity_unit) == ("MAT-100233", "1010", "H87")
    assert [op.operation_no for op in housing.operations] == ["0010", "0020", "0030"]
    assert housing.operations[0].work_centre == "WC-DMU-01"
    seat = housing.operations[0].characteristics[1]
    assert (seat.characteristic_id, seat.name) == ("0020", "Bearing seat \u00d862 H7")
    assert (seat.nominal, seat.lower_limit, seat.upper_limit, seat.unit) == (62.015, 62.0, 62.03, "MMT")
    assert (seat.decimal_places, seat.sample_size, seat.gauge_type) == (3, 5, "BORE_GAUGE")
    units = {c.unit for order in master.orders for op in order.operations for c in op.characteristics}
    assert units == {"MMT", "4H", "NU", "CEL"}, "SAP's MM, UM, NM, CEL mapped to UNECE codes"
    assert housing.planned_start is not None
    assert housing.planned_start.hour == 6

    lines = await sap.requests()
    orders_query = next(line for line in lines if "A_ProductionOrder_2?" in line)
    assert "$filter=ProductionPlant eq '1010' and OrderIsReleased eq 'X'" in orders_query
    assert "sap-client=100" in orders_query
    assert any("$skiptoken=3" in line for line in lines), "the second page was fetched by its __next link"
    await client.aclose()


async def test_an_unknown_sap_unit_is_a_finding_not_a_guess(sqlite_store: Store, sap: SapSim) -> None:
    order = next(o for o in (await sap.get("/api/v1/orders"))["orders"] if o["order_no"] == "1000421")
    order["operations"][0]["characteristics"][0]["unit"] = "KMH"  # no SAP code known for it
    await sap.call("PUT", "/sim/orders/1000421", json=order)
    client = _client(sap)
    changes = await client.fetch_all()
    (finding,) = changes.findings
    assert finding.key == "order 1000421"
    assert (
        finding.reason == "operation 0010 characteristic 0010: unknown SAP unit 'KMH' (no UNECE code known); left out"
    )
    flange = next(o for o in changes.orders if o.order_no == "1000421")
    assert [c.characteristic_id for c in flange.operations[0].characteristics] == [
        "0020",
        "0030",
        "0040",
        "0050",
        "0060",
    ]
    await client.aclose()


async def test_a_change_at_sap_arrives_as_a_delta(sqlite_store: Store, sap: SapSim) -> None:
    client = _client(sap)
    master = MasterData()
    sync = ErpSync(client, sqlite_store, master, Diagnostics())
    await asyncio.sleep(1.1)  # not in the second the seed data was changed: else that second is asked for again
    await sync.run_once()
    watermark = await sqlite_store.watermark("erp")
    assert watermark is not None
    assert len(watermark) == 14
    await asyncio.sleep(1.1)  # LastChangeDateTime has whole seconds: the changes below come in a later one

    orders = {o["order_no"]: o for o in (await sap.get("/api/v1/orders"))["orders"]}
    shaft = orders["1000418"]
    shaft["operations"][0]["characteristics"][2]["upper_limit"] = 245.3  # new limits
    await sap.call("PUT", "/sim/orders/1000418", json=shaft)
    await sap.call("DELETE", "/sim/orders/1000421")  # technically completed at SAP
    new = {**orders["1000425"], "order_no": "1000430"}
    await sap.call("POST", "/sim/orders", json=new)  # newly released
    before = len(await sap.requests())

    change = await sync.run_once()
    assert (change.released, change.changed, change.withdrawn) == (("1000430",), ("1000418",), ("1000421",))
    shaft_now = master.order("1000418")
    assert shaft_now is not None
    assert shaft_now.operations[0].characteristics[2].upper_limit == 245.3
    assert master.order("1000421") is None

    delta = (await sap.requests())[before:]
    orders_query = next(line for line in delta if "A_ProductionOrder_2?" in line)
    print("delta query:", orders_query)  # the closing note quotes it
    assert f"$filter=ProductionPlant eq '1010' and LastChangeDateTime ge '{watermark}'" in orders_query
    detail_queries = [line for line in delta if "A_ProductionOrderOperation_2" in line]
    assert detail_queries
    assert all("1000417" not in line for line in delta), "an unchanged order is not fetched again"
    assert await sqlite_store.watermark("erp") > watermark  # type: ignore[operator]
    await client.aclose()


async def test_a_report_and_a_confirmation_arrive_with_the_right_fields(sqlite_store: Store, sap: SapSim) -> None:
    client = _client(sap)
    master = await _synced(sqlite_store, client)
    item = _measurement(master, "1000417", value=62.0123456)
    await sqlite_store.record_measurements([item])
    await sqlite_store.record_confirmation(_confirmation("1000417", "0010"))
    await sqlite_store.record_confirmation(_confirmation("1000418", "0020", yield_quantity=1234567.5))
    assert (await OutboxRelay(sqlite_store, client, Diagnostics()).run_once()).sent == 3

    (result,) = await sap.get("/sap/results")
    body = result["body"]
    assert body["InspectionLot"] == "10001000417"
    assert body["InspPlanOperationInternalID"] == "00000001"
    assert body["InspectionCharacteristic"] == "0020"
    assert body["InspResultFrmtdMeasuredValue"] == "62.012", "formatted with the characteristic's decimals"
    confirmation, large = await sap.get("/sap/confirmations")
    assert large["body"]["ConfirmationYieldQuantity"] == "1234567.5", "a decimal, never an exponent"
    fields = confirmation["body"]
    assert (fields["OrderID"], fields["OrderOperation"]) == ("1000417", "0010")
    assert (fields["ConfirmationYieldQuantity"], fields["ConfirmationScrapQuantity"]) == ("9", "1")
    assert (fields["ConfirmationReworkQuantity"], fields["ConfirmationUnit"]) == ("2", "PC")
    assert (fields["VarianceReasonCode"], fields["FinalConfirmationType"]) == ("S01", "X")
    documents = sorted(entry.erp_document or "" for entry in await sqlite_store.outbox_entries())
    assert documents[0].startswith("0100041701/"), "the confirmation's SAP keys are its document number"
    assert documents[2].startswith("10001000417/00000001/0020/")
    await client.aclose()


async def test_an_expired_csrf_token_is_fetched_again(sqlite_store: Store, sap: SapSim) -> None:
    client = _client(sap)
    master = await _synced(sqlite_store, client)
    relay = OutboxRelay(sqlite_store, client, Diagnostics())
    await sqlite_store.record_measurements([_measurement(master, "1000417")])
    assert (await relay.run_once()).sent == 1
    await sap.call("POST", "/sim/sap/csrf/expire")
    await sqlite_store.record_measurements([_measurement(master, "1000418")])
    assert (await relay.run_once()).sent == 1
    stats = await sap.get("/sap/stats")
    assert stats["csrf_refused"] == 1
    fetches = [line for line in await sap.requests() if line.startswith("GET") and line.split("?")[0].endswith("/")]
    assert len(fetches) == 2, "one token at first, one after SAP answered 403 X-CSRF-Token: Required"
    assert stats["booked"]["results"] == 2
    await client.aclose()


async def test_refusals_are_readable_and_spc_alarms_stay_visible(sqlite_store: Store, sap: SapSim) -> None:
    client = _client(sap)
    master = await _synced(sqlite_store, client)
    await sap.call("DELETE", "/sim/orders/1000421")
    await sqlite_store.record_measurements([_measurement(master, "1000421")])
    alarm = _machine_alarm("0020", "WE1", 700)
    await sqlite_store.record_spc_alarm(alarm)
    assert (await OutboxRelay(sqlite_store, client, Diagnostics()).run_once()).dead == 2
    errors = sorted(entry.last_error or "" for entry in await sqlite_store.outbox_entries([OutboxState.DEAD]))
    assert errors[0].startswith("SAP POST A_InspectionResultValue: HTTP 400 QPLOT/002: Inspection lot 10001000421")
    assert errors[1].startswith("SPC alarms are not deliverable to SAP S/4HANA")
    await client.aclose()


async def test_with_a_qms_gauges_come_from_it_and_spc_alarms_go_to_it(sqlite_store: Store, sap: SapSim) -> None:
    asked: list[str] = []

    class Recorder(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            asked.append(f"{request.method} {request.url.path}?{request.url.query.decode()}".rstrip("?"))
            return await super().handle_async_request(request)

    combined = ErpWithQms(_client(sap), RestErpClient(sap.url, timeout_seconds=5, transport=Recorder()))
    master = MasterData()
    sync = ErpSync(combined, sqlite_store, master, Diagnostics())
    await sync.run_once()
    assert len(master.orders) == 4
    assert len(master.equipment) == 9
    await sap.call("PATCH", "/sim/equipment/GA-CAL-0101", json={"calibration_status": "LOCKED"})
    assert (await sync.run_once()).equipment_changed == ("GA-CAL-0101",)
    assert asked == ["GET /api/v1/equipment", "GET /api/v1/equipment?changed_since=1"], "gauges only, as a delta"
    alarm = _machine_alarm("C0020", "WE1", 700)
    await sqlite_store.record_spc_alarm(alarm)
    await sqlite_store.record_measurements([_measurement(master, "1000417")])
    assert (await OutboxRelay(sqlite_store, combined, Diagnostics()).run_once()).sent == 2
    assert len(await sap.get("/spc-alarms")) == 1
    assert len(await sap.get("/sap/results")) == 1
    await combined.aclose()


async def test_chaos_5xx_timeouts_and_lost_answers_book_each_posting_once(sqlite_store: Store, sap: SapSim) -> None:
    client = _client(sap, timeout_seconds=0.3)
    master = await _synced(sqlite_store, client)
    orders = ("1000417", "1000418", "1000421")
    results = [_measurement(master, orders[n % 3], value=None, index=n % 2) for n in range(45)]
    for item in results:
        await sqlite_store.record_measurements([item])
    confirmations = [_confirmation(no, "0010", yield_quantity=n + 1) for n, no in enumerate(orders)]
    for record in confirmations:
        await sqlite_store.record_confirmation(record)
    faults = {"rate": 0.3, "kinds": ["error", "timeout", "lost_response"], "timeout_seconds": 0.5, "seed": 12}
    await sap.call("PUT", "/sim/faults", json=faults)
    # Backoff above the fault's delay: a confirmation is looked up before it is repeated (docs/sap-s4hana.md).
    relay = OutboxRelay(sqlite_store, client, Diagnostics(), backoff_base_seconds=1.2, backoff_max_seconds=2.0)
    started = time.monotonic()
    rounds = await _drain(relay, sqlite_store, seconds=120)
    await sap.call("DELETE", "/sim/faults")
    await asyncio.sleep(0.6)  # let a delayed request still inside the simulator finish

    stats = await sap.get("/sap/stats")
    booked_results = await sap.get("/sap/results")
    booked_confirmations = await sap.get("/sap/confirmations")
    print(  # the closing note quotes these counts
        f"SAP chaos: {len(results)} results + {len(confirmations)} confirmations in {rounds} relay rounds, "
        f"{time.monotonic() - started:.1f} s; faults {stats['faults_injected']}; "
        f"repeats refused as existing keys {stats['duplicates_refused']}; "
        f"booked {stats['booked']}"
    )
    assert sum(stats["faults_injected"].values()) > 0
    assert len(booked_results) == len(results), "every result once"
    assert len({r["key"] for r in booked_results}) == len(results)
    assert sorted(c["body"]["ExternalSystemConfirmation"] for c in booked_confirmations) == sorted(
        record.confirmation_id for record in confirmations
    ), "every confirmation once"
    assert {entry.state for entry in await sqlite_store.outbox_entries()} == {OutboxState.SENT}
    await client.aclose()


async def test_when_sap_does_not_answer_the_round_stops_at_the_first_posting(sqlite_store: Store, sap: SapSim) -> None:
    client = _client(sap)
    master = await _synced(sqlite_store, client)
    await client.aclose()
    for order_no in ("1000417", "1000418", "1000421"):
        await sqlite_store.record_measurements([_measurement(master, order_no)])
    unreachable = SapS4HanaClient(f"http://127.0.0.1:{free_port()}", plant="1010", auth=("U", "P"), timeout_seconds=2)
    outcome = await OutboxRelay(sqlite_store, unreachable, Diagnostics()).run_once()
    assert (outcome.sent, outcome.retried) == (0, 1), "one posting learnt that SAP is down; the others were spared"
    attempts = [entry.attempts for entry in await sqlite_store.outbox_entries()]
    assert attempts == [1, 0, 0]
    await unreachable.aclose()


async def test_a_restarted_adapter_finds_lot_and_decimals_of_an_order_it_has_not_synced(
    sqlite_store: Store, sap: SapSim
) -> None:
    client = _client(sap)
    master = await _synced(sqlite_store, client)
    await client.aclose()
    item = _measurement(master, "1000417", value=62.0123456, index=4)  # flatness on the CMM, 4 decimals
    await sqlite_store.record_measurements([item])
    restarted = _client(sap)  # knows no order: the relay runs before (or without) a full sync
    assert (await OutboxRelay(sqlite_store, restarted, Diagnostics()).run_once()).sent == 1
    (result,) = await sap.get("/sap/results")
    assert result["body"]["InspResultFrmtdMeasuredValue"] == "62.0123"
    await restarted.aclose()


async def test_a_plant_without_released_orders_starts_its_deltas_at_sap_time_not_1970(sap: SapSim) -> None:
    for order_no in ("1000417", "1000418", "1000421", "1000425"):
        await sap.call("DELETE", f"/sim/orders/{order_no}")
    await asyncio.sleep(1.1)  # closed a while before the first sync
    client = _client(sap)
    changes = await client.fetch_all()
    assert changes.orders == ()
    assert changes.watermark[:4] == str(datetime.now(UTC).year)
    later = await client.fetch_changes(changes.watermark)
    assert later.withdrawn == (), "the orders closed before the first sync are not asked for again"
    await client.aclose()


async def test_an_spc_alarm_becomes_one_quality_notification_where_configured(sqlite_store: Store, sap: SapSim) -> None:
    client = _client(sap, quality_notification_type="Q3")
    master = await _synced(sqlite_store, client)
    alarm = _machine_alarm("0020", "WE2", 650, message="9 points on one side of the centre line")
    await sqlite_store.record_spc_alarm(alarm)
    await sqlite_store.record_measurements([_measurement(master, "1000417")])
    await sap.call("PUT", "/sim/faults", json={"rate": 1.0, "kinds": ["lost_response"], "seed": 1})
    relay = OutboxRelay(sqlite_store, client, Diagnostics(), backoff_base_seconds=0.01, backoff_max_seconds=0.02)
    assert (await relay.run_once()).sent == 0, "booked at SAP, but the answers were lost"
    await sap.call("DELETE", "/sim/faults")
    await asyncio.sleep(0.05)
    assert (await relay.run_once()).sent == 2, "the repeat finds the notification and collides on the result key"

    (notification,) = await sap.get("/sap/notifications")
    body = notification["body"]
    assert body["NotificationType"] == "Q3"
    assert body["NotificationText"] == f"SPC WE2 1000417/0010/0020 #{alarm.alarm_id.replace('-', '')[:8]}"
    assert len(body["NotificationText"]) <= 40
    assert (body["NotificationPriority"], body["Plant"], body["Material"]) == ("2", "1010", "MAT-100233")
    assert body["InspectionLot"] == "10001000417"
    assert len(await sap.get("/sap/results")) == 1
    await client.aclose()


async def test_resync_on_demand_fetches_everything_once_then_deltas_again(
    sqlite_store: Store, sap: SapSim, tmp_path: Path
) -> None:
    client = _client(sap)
    sync = ErpSync(client, sqlite_store, MasterData(), Diagnostics())
    await sync.run_once()
    assert await sqlite_store.watermark("erp") is not None
    # What `qualitybridge resync` does to the store of a running server:
    assert await sqlite_store.forget_watermarks() == ["erp"]
    before = len(await sap.requests())
    await sync.run_once()
    orders_query = next(line for line in (await sap.requests())[before:] if "A_ProductionOrder_2?" in line)
    assert "OrderIsReleased eq 'X'" in orders_query, "a full fetch"
    before = len(await sap.requests())
    await sync.run_once()
    orders_query = next(line for line in (await sap.requests())[before:] if "A_ProductionOrder_2?" in line)
    assert "LastChangeDateTime ge" in orders_query, "then deltas again"
    await client.aclose()


async def test_the_resync_command_forgets_the_watermarks_and_says_so(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    store = await open_store(f"sqlite+aiosqlite:///{data_dir / 'qualitybridge.db'}")
    await store.apply_changes(MasterDataChanges(watermark="20261129120000", full=True), source="erp")
    await store.aclose()
    said = await asyncio.to_thread(run_cli, "resync", "--data-dir", str(data_dir))
    assert "the next sync of erp fetches everything once" in said
    store = await open_store(f"sqlite+aiosqlite:///{data_dir / 'qualitybridge.db'}")
    assert await store.watermark("erp") is None
    await store.aclose()
