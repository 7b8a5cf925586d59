"""Builders shared by the tests: domain objects with sensible defaults, and the OPC UA calls of a deployment.

Domain objects (every tier): `order`, `gauge`, `measurement_report`, `result`, `accepted`, `refused_attempt`,
`confirmation_record`, all at the fixed instant `NOW`. Every order has the same shape: operation 0010 (or the ones
named) with the bore diameter C010 (12.0 .. 12.018 mm, plan version 3), ten pieces planned; a report measures it
with gauge G-1.

Deployment helpers (end-to-end tier): the seeded gauges of the simulator and the calls a machine makes through a
real asyncua client against `tests.harness.Deployment`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from asyncua import Client, ua

from qualitybridge.domain.ids import new_record_id, new_result_id
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
