"""Builders shared by the tests: domain objects with sensible defaults, and the OPC UA calls of a deployment.

Domain objects (every tier): `order`, `gauge`, `measurement_report`, `result`, `accepted`, `refused_attempt`,
`confirmation_record`, all at the fixed instant `NOW`; `audit_plant` (with `audit_order`), master data that agree
across ERP, MES and QMS, for the master-data audit. Every order has the same shape: operation 0010 (or the ones
named) with the bore diameter C010 (12.0 .. 12.018 mm, plan version 3), ten pieces planned; a report measures it
with gauge G-1.

Deployment helpers (end-to-end tier): the seeded gauges of the simulator and the calls a machine makes through a
real asyncua client against `tests.harness.Deployment`.

The planted SPC stream (every tier): one pattern per Nelson rule in a quiet background, `QUIET` and `PLANTED` in σ
units; `planted_stream` lays them out for a characteristic with control limits, `add_planted_order` gives the
simulator an order with such a characteristic, and `report_planted_stream` reports the stream as a machine does.
The engine's unit tests, the e2e test and the node-opcua interop test all judge this one stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from asyncua import Client, ua

from qualitybridge.domain.ids import new_record_id, new_result_id
from qualitybridge.domain.mapping import MappingEntry, MappingKind
from qualitybridge.domain.master_data_audit import (
    CostCentreAssignment,
    MesPart,
    QmsCharacteristic,
    ShopFloorRouting,
)
from qualitybridge.domain.model import (
    CalibrationStatus,
    Confirmation,
    InspectionCharacteristic,
    MeasurementReport,
    MeasurementResult,
    Operation,
    OrderState,
    ProductionOrder,
    ResultEvaluation,
    SpcAlarm,
    TestEquipment,
)
from qualitybridge.domain.records import AcceptedMeasurement, ConfirmationRecord, RefusedMeasurement, SpcAlarmRecord

if TYPE_CHECKING:
    import httpx

    from tests.harness import Deployment

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

# ---------------------------------------------------------------------------------------------------------------
# Domain objects


def order(
    order_no: str,
    upper: float = 12.018,
    *,
    state: OrderState = OrderState.ALLOWED_TO_START,
    planned_quantity: float = 10,
    gauge_type: str = "",
    operation_nos: tuple[str, ...] = ("0010",),
) -> ProductionOrder:
    """A released order; every operation has the bore diameter C010 (limits 12.0 .. `upper`)."""
    bore = InspectionCharacteristic(
        characteristic_id="C010",
        name="Bore diameter",
        nominal=12.009,
        lower_limit=12.0,
        upper_limit=upper,
        unit="MMT",
        gauge_type=gauge_type,
        plan_version="3",
    )
    return ProductionOrder(
        order_no=order_no,
        material_no="MAT-1",
        planned_quantity=planned_quantity,
        state=state,
        plan_version="3",
        operations=tuple(Operation(operation_no=no, characteristics=(bore,)) for no in operation_nos),
    )


# A plant whose master data agree across ERP, MES and QMS (the master-data audit finds nothing in it). Materials
# reach their MES parts three ways: equal numbers (M-100001, M-100003), the part number on the ERP order
# (M-100002) and the material mapping (M-100004 -> M-900004).
AUDIT_CHARACTERISTICS = (
    ("C0010", "Bore diameter", "MMT", 12.0, 12.018, 3),
    ("C0020", "Tightening torque", "NU", 22.5, 27.5, 1),
    ("C0030", "Part temperature", "CEL", 18.0, 22.0, 1),
)


def audit_order(
    order_no: str,
    material_no: str,
    *,
    part_no: str = "",
    work_centre: str = "WC-01",
    routing_version: str = "R01",
    plan_version: str = "P01",
    units: dict[str, str] | None = None,
) -> ProductionOrder:
    """An order of the audit plant: operation 0010 with the three AUDIT_CHARACTERISTICS (`units` overrides some)."""
    characteristics = tuple(
        InspectionCharacteristic(
            characteristic_id=cid,
            name=name,
            nominal=round((lower + upper) / 2, 4),
            lower_limit=lower,
            upper_limit=upper,
            unit=(units or {}).get(cid, unit),
            decimal_places=decimals,
            plan_version=plan_version,
        )
        for cid, name, unit, lower, upper, decimals in AUDIT_CHARACTERISTICS
    )
    return ProductionOrder(
        order_no=order_no,
        material_no=material_no,
        part_no=part_no,
        work_centre=work_centre,
        planned_quantity=10,
        routing_version=routing_version,
        plan_version=plan_version,
        operations=(Operation(operation_no="0010", work_centre=work_centre, characteristics=characteristics),),
    )


@dataclass
class AuditPlant:
    """The audit plant's ERP orders and its other systems' exports; tests change copies to plant gaps."""

    orders: list[ProductionOrder]
    parts: list[MesPart]
    routings: list[ShopFloorRouting]
    catalogue: list[QmsCharacteristic]
    cost_centres: list[CostCentreAssignment]
    mappings: list[MappingEntry]

    def catalogue_entries_for(self, order: ProductionOrder) -> list[QmsCharacteristic]:
        return [
            QmsCharacteristic(
                order.material_no,
                operation.operation_no,
                c.characteristic_id,
                c.name,
                c.unit,
                c.lower_limit,
                c.upper_limit,
                c.decimal_places,
            )
            for operation in order.operations
            for c in operation.characteristics
        ]

    def add_order(self, order: ProductionOrder) -> None:
        """An order whose material, routing, characteristics and work centre are all known to the other systems."""
        self.orders.append(order)
        self.routings.append(ShopFloorRouting(order.order_no, order.routing_version, order.plan_version))
        self.catalogue.extend(self.catalogue_entries_for(order))


def audit_plant() -> AuditPlant:
    plant = AuditPlant(
        orders=[],
        parts=[MesPart(part) for part in ("M-100001", "M-100002", "M-100003", "M-900004")],
        routings=[],
        catalogue=[],
        cost_centres=[CostCentreAssignment("WC-01", "CC-4711"), CostCentreAssignment("WC-02", "CC-4712")],
        mappings=[MappingEntry(MappingKind.MATERIAL, "M-100004", "M-900004")],
    )
    for order_no, material, part, work_centre in (
        ("5001", "M-100001", "", "WC-01"),
        ("5002", "M-100002", "M-100002", "WC-02"),
        ("5003", "M-100003", "", "WC-01"),
        ("5004", "M-100004", "", "WC-02"),
    ):
        plant.add_order(audit_order(order_no, material, part_no=part, work_centre=work_centre))
    return plant


def gauge(
    status: CalibrationStatus = CalibrationStatus.VALID, *, equipment_id: str = "G-1", equipment_type: str = ""
) -> TestEquipment:
    return TestEquipment(equipment_id=equipment_id, equipment_type=equipment_type, calibration_status=status)


def measurement_report(
    order_no: str = "1000",
    *,
    operation_no: str = "0010",
    characteristic_id: str = "C010",
    value: float = 12.01,
    equipment_id: str = "G-1",
    measured_at: datetime = NOW,
    client_result_id: str | None = None,
) -> MeasurementReport:
    return MeasurementReport(
        order_no=order_no,
        operation_no=operation_no,
        characteristic_id=characteristic_id,
        value=value,
        equipment_id=equipment_id,
        part_serial="SN-1",
        measured_at=measured_at,
        client_result_id=client_result_id,
    )


def result(order_no: str = "1000", client_result_id: str | None = None, value: float = 12.01) -> MeasurementResult:
    return MeasurementResult(
        result_id=new_result_id(),
        report=measurement_report(order_no, value=value, client_result_id=client_result_id),
        evaluation=ResultEvaluation.OK,
        plan_version="3",
        unit="MMT",
        reported_by="machine1",
        received_at=NOW,
    )


def accepted(client_id: str | None = None, *, due_soon: bool = False, value: float = 12.01) -> AcceptedMeasurement:
    return AcceptedMeasurement(result=result(client_result_id=client_id, value=value), gauge_due_soon=due_soon)


def spc_alarm_record(rule: int, result_id: str = "r-1") -> SpcAlarmRecord:
    """An alarm as the SPC engine raises it: its id derived from the result and the rule."""
    return SpcAlarmRecord(
        alarm_id=f"{result_id}/nelson-{rule}",
        alarm=SpcAlarm(
            order_no="1000",
            operation_no="0010",
            characteristic_id="C010",
            rule=f"Nelson {rule}",
            severity=700,
            message="pattern",
            raised_at=NOW,
            rule_number=rule,
            result_id=result_id,
            value=12.3,
            center_line=12.0,
            upper_control_limit=12.2,
            lower_control_limit=11.8,
        ),
        reported_by="qualitybridge-spc",
    )


def refused_attempt(reason: str = "calibration expired") -> RefusedMeasurement:
    return RefusedMeasurement(
        report=result().report,
        calibration_status=CalibrationStatus.EXPIRED,
        reason=reason,
        reported_by="machine1",
        refused_at=NOW,
    )


def confirmation_record(
    client_id: str | None = None, yield_quantity: float = 5, scrap: float = 0, *, final: bool = False
) -> ConfirmationRecord:
    return ConfirmationRecord(
        confirmation_id=new_record_id(),
        confirmation=Confirmation(
            order_no="1000",
            operation_no="0010",
            yield_quantity=yield_quantity,
            scrap_quantity=scrap,
            reason_code="R01" if scrap else "",
            final=final,
        ),
        client_confirmation_id=client_id,
        reported_by="machine1",
        received_at=NOW,
    )


# ---------------------------------------------------------------------------------------------------------------
# The simulator's seeded gauges, and a machine's calls against a running deployment

VALID_GAUGE = "GA-CMM-0001"
EXPIRED_GAUGE = "GA-BOR-0315"
# A seeded gauge with a valid calibration for every GaugeType a seeded characteristic asks for: a report must use
# test equipment of the type the characteristic names (else BadInvalidArgument).
GAUGE_FOR_TYPE = {
    "CALIPER": "GA-CAL-0101",
    "MICROMETER": "GA-MIC-0207",
    "BORE_GAUGE": "GA-BOR-0312",
    "CMM": VALID_GAUGE,
    "ROUGHNESS_TESTER": "GA-RGH-0402",
    "TORQUE_WRENCH": "GA-TRQ-0518",
    "THERMOMETER": "GA-TMP-0603",
}


def node(client: Client, idx: int, identifier: str) -> Any:
    return client.get_node(ua.NodeId(identifier, idx))


async def first_characteristic(client: Client, idx: int, order_no: str) -> tuple[str, str, str]:
    operations = await node(client, idx, f"Order/{order_no}.Operations").get_children()
    operation_no = (await operations[0].read_browse_name()).Name
    characteristics = await node(client, idx, f"Order/{order_no}/Op/{operation_no}.Characteristics").get_children()
    characteristic_id = (await characteristics[0].read_browse_name()).Name
    return order_no, operation_no, characteristic_id


async def gauge_for(client: Client, idx: int, key: tuple[str, str, str]) -> str:
    """A valid gauge of the type the characteristic asks for (its GaugeType node); any for an unknown one."""
    try:
        gauge_type = await node(client, idx, f"Order/{key[0]}/Op/{key[1]}/Char/{key[2]}.GaugeType").read_value()
    except ua.uaerrors.BadNodeIdUnknown:
        return VALID_GAUGE  # the call under test refers to a characteristic that does not exist
    return GAUGE_FOR_TYPE.get(gauge_type, VALID_GAUGE)


async def report(
    client: Client,
    idx: int,
    key: tuple[str, str, str],
    value: Any,
    *,
    gauge: str | None = None,
    measured_at: datetime | None = None,
    client_result_id: str = "",
) -> list[Any]:
    """ReportMeasurement through the client; answers [ResultId, Evaluation] or raises the call's Bad code."""
    order_no, operation_no, characteristic_id = key
    root = node(client, idx, "QualityBridge")
    gauge = gauge or await gauge_for(client, idx, key)
    value_variant = value if isinstance(value, ua.Variant) else ua.Variant(value, ua.VariantType.Double)
    result: list[Any] = await root.call_method(
        ua.NodeId("QualityBridge.ReportMeasurement", idx),
        order_no,
        operation_no,
        characteristic_id,
        value_variant,
        gauge,
        "SN-0001",
        measured_at or datetime.now(UTC),
        client_result_id,
    )
    return result


def catalogue_order(
    number: int, characteristics: int = 30, operations: int = 3, upper: float = 12.018
) -> dict[str, Any]:
    """A released order as the simulator takes it (POST/PUT /sim/orders): `B<number>`, the characteristics spread
    over the operations (`0010`, `0020`, ...), each `C001`, `C002`, ... with limits 12.0 .. `upper` mm."""
    per_operation = max(1, characteristics // operations)
    return {
        "order_no": f"B{number:06d}",
        "material_no": f"MAT-{number % 97}",
        "planned_quantity": 100,
        "plan_version": "1",
        "work_centre": f"WC-{number % 7}",
        "operations": [
            {
                "operation_no": f"{(op + 1) * 10:04d}",
                "description": f"operation {op + 1}",
                "characteristics": [
                    {
                        "characteristic_id": f"C{op * per_operation + index + 1:03d}",
                        "name": f"Feature {index + 1}",
                        "nominal": 12.009,
                        "lower_limit": 12.0,
                        "upper_limit": upper,
                        "unit": "MMT",
                        "plan_version": "1",
                    }
                    for index in range(per_operation)
                ],
            }
            for op in range(operations)
        ],
    }


def results_at_erp(deployment: Deployment) -> list[dict[str, Any]]:
    """Every result the deployment's ERP simulator booked, as it answers GET /results."""
    with deployment.erp() as erp:
        answer: list[dict[str, Any]] = erp.get("/results").json()
        return answer


# ---------------------------------------------------------------------------------------------------------------
# The planted SPC stream: one pattern per Nelson rule

# A quiet background in σ units: crosses the centre line often, leaves 1σ now and then, never rises six times.
QUIET = [0.5, 1.5, -0.5, -0.2, -1.5, -0.3]
# One pattern per rule, in σ units around the centre line; the last point of each completes the pattern.
PLANTED = {
    1: [4.0],
    2: [0.4, 0.6, 0.3, 0.7, 0.4, 0.8, 0.3, 0.6, 0.5],
    3: [-1.5, -1.0, -0.6, -0.2, 0.2, 0.6],
    4: [-0.5] + [-1.2, 0.5] * 6 + [-1.2],
    5: [2.5, 2.6],
    6: [1.5, 1.2, 0.3, 1.4, 1.3],
    7: [-1.5, 0.5, -0.5, 0.3, 0.4, -0.2, -0.6, 0.5, -0.5, 0.3, 0.4, -0.2, -0.6, 0.5, -0.5, 0.3],
    8: [1.5, -1.5] * 4,
}

# The seeded characteristic the simulator orders of the stream copy: order 1000417's part temperature
# (18..22 °C, minor, measured with a thermometer), given the plan control limits 20 ± 3 · 0.5.
PLANTED_TEMPLATE = ("1000417", "0010", "C0010")
PLANTED_GAUGE = GAUGE_FOR_TYPE["THERMOMETER"]
PLANTED_CENTER, PLANTED_SIGMA = 20.0, 0.5


def planted_stream(center: float = PLANTED_CENTER, sigma: float = PLANTED_SIGMA) -> tuple[list[float], dict[int, int]]:
    """Values, and per rule the 0-based position of the sample that completes its pattern (rules 1..8 in order)."""
    zones = list(QUIET)
    completing = {}
    for rule, pattern in PLANTED.items():
        zones += pattern
        completing[rule] = len(zones) - 1
        zones += QUIET * 2
    return [center + sigma * z for z in zones], completing


def add_planted_order(erp: httpx.Client, order_no: str, **characteristic: Any) -> tuple[str, str, str]:
    """A Running order in the ERP simulator with just the planted characteristic; `characteristic` overrides its
    fields (e.g. classification). Answers the stream's key (order, operation, characteristic)."""
    template_no, operation_no, characteristic_id = PLANTED_TEMPLATE
    template = next(o for o in erp.get("/api/v1/orders").json()["orders"] if o["order_no"] == template_no)
    operation = next(op for op in template["operations"] if op["operation_no"] == operation_no)
    seeded = next(c for c in operation["characteristics"] if c["characteristic_id"] == characteristic_id)
    limits = {
        "center_line": PLANTED_CENTER,
        "upper_control_limit": PLANTED_CENTER + 3 * PLANTED_SIGMA,
        "lower_control_limit": PLANTED_CENTER - 3 * PLANTED_SIGMA,
    }
    order = {
        **template,
        "order_no": order_no,
        "state": "RUNNING",
        "operations": [{**operation, "characteristics": [{**seeded, **limits, **characteristic}]}],
    }
    erp.post("/sim/orders", json=order).raise_for_status()
    return order_no, operation_no, characteristic_id


async def report_planted_stream(client: Client, idx: int, key: tuple[str, str, str], values: list[float]) -> list[str]:
    """Report `values` one call each, in order, measured a second apart and ending now; answers their result ids."""
    start = datetime.now(UTC) - timedelta(seconds=len(values))
    result_ids = []
    for position, value in enumerate(values):
        result_id, _evaluation = await report(
            client, idx, key, value, gauge=PLANTED_GAUGE, measured_at=start + timedelta(seconds=position)
        )
        result_ids.append(result_id)
    return result_ids
