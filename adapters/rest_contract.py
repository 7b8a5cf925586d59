"""Wire models of the generic ERP/QMS REST contract, version 1, and their mapping to the domain model.

The contract is what an ERP integrator implements so that QualityBridge can read released orders and test
equipment and book results, confirmations and SPC alarms (see docs/erp-rest-contract.md). JSON is snake_case;
enumerations travel by name ("ALLOWED_TO_START", "EXPIRED", "NOT_OK") so that ERP-side code stays readable and does
not depend on the OPC UA numbering. Unknown fields are ignored so that an ERP may send more than the contract asks.
"""

from __future__ import annotations

import functools
import math
import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field

from qualitybridge.domain.kpis import KpiReport
from qualitybridge.domain.model import (
    CalibrationStatus,
    Classification,
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

CONTRACT_VERSION = "1"
API_PREFIX = "/api/v1"
IDEMPOTENCY_HEADER = "Idempotency-Key"

OrderStateName = Literal["NOT_ALLOWED_TO_START", "ALLOWED_TO_START", "RUNNING", "INTERRUPTED", "ENDED", "ABORTED"]
CalibrationStatusName = Literal["VALID", "DUE_SOON", "EXPIRED", "LOCKED"]
EvaluationName = Literal["UNDEFINED", "OK", "NOT_OK", "NOT_DECIDABLE"]
ClassificationName = Literal["critical", "major", "minor"]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CharacteristicDTO(_Wire):
    characteristic_id: str
    name: str
    description: str = ""
    nominal: float
    lower_limit: float
    upper_limit: float
    unit: str = Field(description="UNECE Rec. 20 common code, e.g. MMT (millimetre), 4H (micrometre)")
    decimal_places: int = 3
    sample_size: int = 1
    classification: ClassificationName = "major"
    gauge_type: str = Field(default="", description="equipment_type a gauge must have to measure this")
    plan_version: str
    center_line: float | None = Field(
        default=None,
        description="SPC centre line of the plotted value (subgroup mean when sample_size > 1). Optional; with "
        "upper_control_limit and lower_control_limit, all three or none. Absent: computed from a baseline",
    )
    upper_control_limit: float | None = Field(default=None, description="SPC upper control limit (UCL)")
    lower_control_limit: float | None = Field(default=None, description="SPC lower control limit (LCL)")


class OperationDTO(_Wire):
    operation_no: str
    description: str = ""
    work_centre: str = ""
    characteristics: list[CharacteristicDTO] = Field(default_factory=list)


class OrderDTO(_Wire):
    order_no: str
    material_no: str
    part_no: str = ""
    plant: str = ""
    work_centre: str = ""
    planned_quantity: float
    quantity_unit: str = "C62"
    state: OrderStateName = "ALLOWED_TO_START"
    routing_version: str = ""
    plan_version: str = ""
    planned_start: datetime | None = None
    planned_end: datetime | None = None
    operations: list[OperationDTO] = Field(default_factory=list)


class EquipmentDTO(_Wire):
    equipment_id: str
    description: str = ""
    equipment_type: str = ""
    calibration_status: CalibrationStatusName = "VALID"
    last_calibration: date | None = None
    next_due: date | None = None
    certificate_no: str = ""


class OrdersPage(_Wire):
    revision: int = Field(description="Increases whenever any released order is added, changed or withdrawn")
    orders: list[OrderDTO]
    withdrawn: list[str] = Field(
        default_factory=list,
        description="v1 addition: with ?changed_since, the orders withdrawn after that revision (else empty)",
    )


class EquipmentPage(_Wire):
    revision: int = Field(description="Increases whenever any test equipment record changes")
    equipment: list[EquipmentDTO]


class ResultDTO(_Wire):
    result_id: str
    client_result_id: str | None = None
    order_no: str
    operation_no: str
    characteristic_id: str
    value: float | None = Field(
        allow_inf_nan=False, description="Measured value; null when no finite value could be measured"
    )
    unit: str
    evaluation: EvaluationName
    plan_version: str = Field(description="The inspection plan version in force at measured_at, judged against")
    equipment_id: str
    part_serial: str
    measured_at: datetime
    received_at: datetime = Field(description="When QualityBridge accepted the report from the machine")
    reported_by: str
    routing_version: str | None = Field(
        default=None,
        description="v1 addition: the order's routing version in force at measured_at; null for a result "
        "QualityBridge stored before it recorded routing versions",
    )
    plan_version_superseded: bool = Field(
        default=False,
        description="v1 addition: true for a late measurement, taken before a newer plan version took effect and "
        "reported after: judged against plan_version (the version then in force), not the current one",
    )


class ConfirmationDTO(_Wire):
    order_no: str
    operation_no: str
    yield_quantity: float = Field(ge=0, allow_inf_nan=False)
    scrap_quantity: float = Field(default=0, ge=0, allow_inf_nan=False)
    rework_quantity: float = Field(default=0, ge=0, allow_inf_nan=False)
    unit: str = "C62"
    reason_code: str = ""
    final: bool = False


class SpcAlarmDTO(_Wire):
    order_no: str
    operation_no: str
    characteristic_id: str
    rule: str
    severity: int = Field(ge=1, le=1000)
    message: str = ""
    raised_at: datetime
    rule_number: int | None = Field(
        default=None, ge=1, le=8, description="Nelson rule 1..8, when QualityBridge's SPC engine found the violation"
    )
    result_id: str | None = Field(default=None, description="The result whose value completed the pattern")
    value: float | None = Field(default=None, description="The plotted value (subgroup mean when sample_size > 1)")
    center_line: float | None = None
    upper_control_limit: float | None = None
    lower_control_limit: float | None = None


class KpiFiguresDTO(_Wire):
    scope: Literal["order", "material", "work_centre", "plant"]
    key: str = Field(description="Order number, material number, work centre, or * for the plant")
    processed_quantity: float = Field(ge=0, description="yield + scrap + rework, summed over operation passages")
    yield_quantity: float = Field(ge=0)
    scrap_quantity: float = Field(ge=0)
    rework_quantity: float = Field(ge=0)
    inspected_parts: int = Field(ge=0, description="Distinct parts (order, part serial) with a result")
    defective_parts: int = Field(ge=0, description="Inspected parts with at least one NOT_OK result")
    first_pass_yield: float | None = Field(description="yield / processed; null without a basis")
    scrap_rate: float | None = Field(description="scrap / processed; null without a basis")
    rework_rate: float | None = Field(description="rework / processed; null without a basis")
    ppm: float | None = Field(description="defective / inspected parts x 1,000,000; null without a basis")


class KpiReportDTO(_Wire):
    period: Literal["day", "order"]
    period_key: str = Field(description="The UTC day (YYYY-MM-DD) or the order number")
    computed_at: datetime
    figures: list[KpiFiguresDTO]


class BookingReceipt(_Wire):
    document_no: str = Field(description="The ERP's document number for the booking, e.g. QR-000001")
    duplicate: bool = Field(description="True when this Idempotency-Key was already booked with the same body")


class ErrorDetail(_Wire):
    code: str
    message: str


class ErrorBody(_Wire):
    error: ErrorDetail


MAX_BATCH_POSTINGS = 500


class ResultPosting(_Wire):
    kind: Literal["result"] = "result"
    idempotency_key: str = Field(min_length=1, max_length=255)
    body: ResultDTO


class ConfirmationPostingDTO(_Wire):
    kind: Literal["confirmation"] = "confirmation"
    idempotency_key: str = Field(min_length=1, max_length=255)
    body: ConfirmationDTO


class SpcAlarmPostingDTO(_Wire):
    kind: Literal["spc_alarm"] = "spc_alarm"
    idempotency_key: str = Field(min_length=1, max_length=255)
    body: SpcAlarmDTO


BatchItem = Annotated[ResultPosting | ConfirmationPostingDTO | SpcAlarmPostingDTO, Field(discriminator="kind")]


class PostingBatch(_Wire):
    """v1 addition: several postings in one request, booked in list order, each under its own idempotency key."""

    postings: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH_POSTINGS)


class BatchOutcome(_Wire):
    idempotency_key: str
    status: int = Field(
        description="What the single posting's path would have answered: 201 booked, 200 repeat (duplicate), "
        "409/422 refused, 424 not attempted because an earlier posting of the same order failed temporarily, "
        "503 temporary failure"
    )
    document_no: str | None = Field(default=None, description="Set when status is 200 or 201")
    duplicate: bool = False
    error: ErrorDetail | None = None


class BatchAnswer(_Wire):
    outcomes: list[BatchOutcome] = Field(description="One per posting, in the order of the request")


def characteristic_from_dto(dto: CharacteristicDTO) -> InspectionCharacteristic:
    return InspectionCharacteristic(
        characteristic_id=dto.characteristic_id,
        name=dto.name,
        description=dto.description,
        nominal=dto.nominal,
        lower_limit=dto.lower_limit,
        upper_limit=dto.upper_limit,
        unit=dto.unit,
        decimal_places=dto.decimal_places,
        sample_size=dto.sample_size,
        classification=Classification(dto.classification),
        gauge_type=dto.gauge_type,
        plan_version=dto.plan_version,
        center_line=dto.center_line,
        upper_control_limit=dto.upper_control_limit,
        lower_control_limit=dto.lower_control_limit,
    )


def characteristic_to_dto(characteristic: InspectionCharacteristic) -> CharacteristicDTO:
    return CharacteristicDTO(
        characteristic_id=characteristic.characteristic_id,
        name=characteristic.name,
        description=characteristic.description,
        nominal=characteristic.nominal,
        lower_limit=characteristic.lower_limit,
        upper_limit=characteristic.upper_limit,
        unit=characteristic.unit,
        decimal_places=characteristic.decimal_places,
        sample_size=characteristic.sample_size,
        classification=characteristic.classification.value,
        gauge_type=characteristic.gauge_type,
        plan_version=characteristic.plan_version,
        center_line=characteristic.center_line,
        upper_control_limit=characteristic.upper_control_limit,
        lower_control_limit=characteristic.lower_control_limit,
    )


def operation_from_dto(dto: OperationDTO) -> Operation:
    return Operation(
        operation_no=dto.operation_no,
        description=dto.description,
        work_centre=dto.work_centre,
        characteristics=tuple(characteristic_from_dto(item) for item in dto.characteristics),
    )


def operation_to_dto(operation: Operation) -> OperationDTO:
    return OperationDTO(
        operation_no=operation.operation_no,
        description=operation.description,
        work_centre=operation.work_centre,
        characteristics=[characteristic_to_dto(item) for item in operation.characteristics],
    )


def order_from_dto(dto: OrderDTO) -> ProductionOrder:
    """Raises pydantic.ValidationError when the ERP sent an order the domain cannot accept (e.g. crossed limits)."""
    return ProductionOrder(
        order_no=dto.order_no,
        material_no=dto.material_no,
        part_no=dto.part_no,
        plant=dto.plant,
        work_centre=dto.work_centre,
        planned_quantity=dto.planned_quantity,
        quantity_unit=dto.quantity_unit,
        state=OrderState[dto.state],
        routing_version=dto.routing_version,
        plan_version=dto.plan_version,
        planned_start=dto.planned_start,
        planned_end=dto.planned_end,
        operations=tuple(operation_from_dto(item) for item in dto.operations),
    )


def order_to_dto(order: ProductionOrder) -> OrderDTO:
    return OrderDTO(
        order_no=order.order_no,
        material_no=order.material_no,
        part_no=order.part_no,
        plant=order.plant,
        work_centre=order.work_centre,
        planned_quantity=order.planned_quantity,
        quantity_unit=order.quantity_unit,
        state=order.state.name,
        routing_version=order.routing_version,
        plan_version=order.plan_version,
        planned_start=order.planned_start,
        planned_end=order.planned_end,
        operations=[operation_to_dto(item) for item in order.operations],
    )


def equipment_from_dto(dto: EquipmentDTO) -> TestEquipment:
    return TestEquipment(
        equipment_id=dto.equipment_id,
        description=dto.description,
        equipment_type=dto.equipment_type,
        calibration_status=CalibrationStatus[dto.calibration_status],
        last_calibration=dto.last_calibration,
        next_due=dto.next_due,
        certificate_no=dto.certificate_no,
    )


def equipment_to_dto(equipment: TestEquipment) -> EquipmentDTO:
    return EquipmentDTO(
        equipment_id=equipment.equipment_id,
        description=equipment.description,
        equipment_type=equipment.equipment_type,
        calibration_status=equipment.calibration_status.name,
        last_calibration=equipment.last_calibration,
        next_due=equipment.next_due,
        certificate_no=equipment.certificate_no,
    )


def result_to_dto(result: MeasurementResult) -> ResultDTO:
    report = result.report
    # JSON has no NaN/Infinity; a value that is not finite travels as null (its evaluation says NOT_DECIDABLE).
    value = report.value if math.isfinite(report.value) else None
    return ResultDTO(
        result_id=result.result_id,
        client_result_id=report.client_result_id,
        order_no=report.order_no,
        operation_no=report.operation_no,
        characteristic_id=report.characteristic_id,
        value=value,
        unit=result.unit,
        evaluation=result.evaluation.name,
        plan_version=result.plan_version,
        equipment_id=report.equipment_id,
        part_serial=report.part_serial,
        measured_at=report.measured_at,
        received_at=result.received_at,
        reported_by=result.reported_by,
        routing_version=result.routing_version,
        plan_version_superseded=result.plan_version_superseded,
    )


@functools.lru_cache(maxsize=4096)
def _wire_moment(moment: datetime) -> str:
    """A datetime as pydantic's JSON writes it (RFC 3339; UTC as "Z"). Cached: a relay page's postings share their
    received time with their batch, and often their MeasuredAt."""
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def result_posting_wire(idempotency_key: str, result: MeasurementResult) -> dict[str, Any]:
    """`ResultPosting(idempotency_key, result_to_dto(result)).model_dump(mode="json")`, built without the models:
    a relay page builds 500 of them, and the two models cost more than the rest of a posting's way to the ERP.
    tests/unit/test_rest_contract_wire.py holds them equal."""
    report = result.report
    value = report.value if math.isfinite(report.value) else None
    return {
        "kind": "result",
        "idempotency_key": idempotency_key,
        "body": {
            "result_id": result.result_id,
            "client_result_id": report.client_result_id,
            "order_no": report.order_no,
            "operation_no": report.operation_no,
            "characteristic_id": report.characteristic_id,
            "value": value,
            "unit": result.unit,
            "evaluation": result.evaluation.name,
            "plan_version": result.plan_version,
            "equipment_id": report.equipment_id,
            "part_serial": report.part_serial,
            "measured_at": _wire_moment(report.measured_at),
            "received_at": _wire_moment(result.received_at),
            "reported_by": result.reported_by,
            "routing_version": result.routing_version,
            "plan_version_superseded": result.plan_version_superseded,
        },
    }


_RESULT_KEYS = frozenset(MeasurementResult.model_fields)
_REPORT_KEYS = frozenset(MeasurementReport.model_fields)
_EVALUATION_NAMES = {evaluation.value: evaluation.name for evaluation in ResultEvaluation}
# The wire body's texts as the model has them: always a string, or a string or null. Exactly str: the model would
# convert anything else, and then the model's path writes the body.
_WIRE_TEXTS = (
    "result_id",
    "order_no",
    "operation_no",
    "characteristic_id",
    "unit",
    "plan_version",
    "equipment_id",
    "part_serial",
    "measured_at",
    "received_at",
    "reported_by",
)
_WIRE_OPTIONAL_TEXTS = ("client_result_id", "routing_version")


# What `_wire_moment` writes (pydantic's form): microseconds only when there are any, UTC as "Z", no offset when naive.
_WIRE_MOMENT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(?!000000)\d{6})?(?:Z|[+-](?!00:00)\d\d:\d\d)?")


@functools.lru_cache(maxsize=4096)
def _wire_moment_of(text: str) -> str | None:
    """A stored time as `_wire_moment` writes it: the text itself when it already is in that form (as pydantic wrote
    it) and a real moment, else None.

    Remembered: the results of one report batch share their received time (and often their measured time), and the
    pattern and the parse per posting were a twentieth of the relay's CPU per posting."""
    if _WIRE_MOMENT.fullmatch(text) is None:
        return None
    try:
        datetime.fromisoformat(text)  # the 30th of February has the form but is no moment
    except ValueError:
        return None
    return text


def result_posting_wire_from_json(idempotency_key: str, record_json: str | bytes) -> dict[str, Any] | None:
    """`result_posting_wire(idempotency_key, MeasurementResult.model_validate_json(record_json))`, read straight
    from the result's JSON as the store keeps it (`MeasurementResult.model_dump_json()`), without the models.

    None when the JSON is not exactly that form (a key missing or extra, a type the model would convert or refuse,
    a time not written as pydantic writes it): the caller then decodes the model, which converts what it may and
    names what is wrong. tests/unit/test_rest_contract_wire.py holds the two equal."""
    try:
        record = pydantic_core.from_json(record_json)
        report = record["report"]
        if record.keys() != _RESULT_KEYS or report.keys() != _REPORT_KEYS:
            return None
        value = report["value"]
        if type(value) is not float:
            if type(value) is not int:
                return None
            value = float(value)
        if not math.isfinite(value):
            value = None
        body = {
            "result_id": record["result_id"],
            "client_result_id": report["client_result_id"],
            "order_no": report["order_no"],
            "operation_no": report["operation_no"],
            "characteristic_id": report["characteristic_id"],
            "value": value,
            "unit": record["unit"],
            "evaluation": _EVALUATION_NAMES[record["evaluation"]],
            "plan_version": record["plan_version"],
            "equipment_id": report["equipment_id"],
            "part_serial": report["part_serial"],
            "measured_at": _wire_moment_of(report["measured_at"]),
            "received_at": _wire_moment_of(record["received_at"]),
            "reported_by": record["reported_by"],
            "routing_version": record["routing_version"],
            "plan_version_superseded": record["plan_version_superseded"],
        }
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
        return None
    if type(record["evaluation"]) is not int or type(body["plan_version_superseded"]) is not bool:
        return None
    for key in _WIRE_TEXTS:
        if type(body[key]) is not str:
            return None
    for key in _WIRE_OPTIONAL_TEXTS:
        if body[key] is not None and type(body[key]) is not str:
            return None
    return {"kind": "result", "idempotency_key": idempotency_key, "body": body}


def result_from_dto(dto: ResultDTO) -> MeasurementResult:
    report = MeasurementReport(
        order_no=dto.order_no,
        operation_no=dto.operation_no,
        characteristic_id=dto.characteristic_id,
        value=math.nan if dto.value is None else dto.value,
        equipment_id=dto.equipment_id,
        part_serial=dto.part_serial,
        measured_at=dto.measured_at,
        client_result_id=dto.client_result_id,
    )
    return MeasurementResult(
        result_id=dto.result_id,
        report=report,
        evaluation=ResultEvaluation[dto.evaluation],
        plan_version=dto.plan_version,
        unit=dto.unit,
        reported_by=dto.reported_by,
        received_at=dto.received_at,
        routing_version=dto.routing_version,
        plan_version_superseded=dto.plan_version_superseded,
    )


def confirmation_to_dto(confirmation: Confirmation) -> ConfirmationDTO:
    return ConfirmationDTO.model_validate(confirmation.model_dump())


def confirmation_from_dto(dto: ConfirmationDTO) -> Confirmation:
    return Confirmation.model_validate(dto.model_dump())


def spc_alarm_to_dto(alarm: SpcAlarm) -> SpcAlarmDTO:
    return SpcAlarmDTO.model_validate(alarm.model_dump())


def spc_alarm_from_dto(dto: SpcAlarmDTO) -> SpcAlarm:
    return SpcAlarm.model_validate(dto.model_dump())


def kpi_report_to_dto(report: KpiReport) -> KpiReportDTO:
    return KpiReportDTO.model_validate(report.model_dump())
