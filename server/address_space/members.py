"""What each published node shows: the member values of an order, operation, characteristic, gauge and its SPC.

One definition for both ways a value reaches a client: written into a node that exists, or built into a node made
on first access (server/address_space/catalogue.py).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from asyncua import ua

from qualitybridge.domain.model import InspectionCharacteristic, Operation, ProductionOrder, TestEquipment
from qualitybridge.domain.spc import SpcStatus
from qualitybridge.domain.units import unit_description, unit_id, unit_symbol
from qualitybridge.server.methods.arguments import status_code

__all__ = [
    "EVENT_FIELD_TYPES",
    "HISTORIZING",
    "WAITING",
    "Member",
    "characteristic_members",
    "equipment_members",
    "operation_members",
    "order_members",
    "spc_members",
]

_UNECE_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"
_V = ua.VariantType
Member = tuple[str, Any, ua.VariantType]
EVENT_FIELD_TYPES = {
    "OrderNumber": _V.String,
    "OperationNumber": _V.String,
    "CharacteristicId": _V.String,
    "ResultId": _V.String,
    "Value": _V.Double,
    "Evaluation": _V.Int32,
}


def _day(day: date | None) -> datetime | None:
    return None if day is None else datetime.combine(day, time(), tzinfo=UTC)


def order_members(order: ProductionOrder) -> list[Member]:
    return [
        ("OrderNumber", order.order_no, _V.String),
        ("MaterialNumber", order.material_no, _V.String),
        ("PartNumber", order.part_no, _V.String),
        ("Plant", order.plant, _V.String),
        ("WorkCentre", order.work_centre, _V.String),
        ("PlannedQuantity", float(order.planned_quantity), _V.Double),
        ("QuantityUnit", order.quantity_unit, _V.String),
        ("RoutingVersion", order.routing_version, _V.String),
        ("PlanVersion", order.plan_version, _V.String),
        ("PlannedStart", order.planned_start, _V.DateTime),
        ("PlannedEnd", order.planned_end, _V.DateTime),
        ("State", int(order.state), _V.Int32),
    ]


def operation_members(operation: Operation) -> list[Member]:
    return [
        ("OperationNumber", operation.operation_no, _V.String),
        ("Description", operation.description, _V.String),
        ("WorkCentre", operation.work_centre, _V.String),
    ]


def characteristic_members(characteristic: InspectionCharacteristic) -> list[Member]:
    units = ua.EUInformation(
        NamespaceUri=_UNECE_NAMESPACE,
        UnitId=unit_id(characteristic.unit),
        DisplayName=ua.LocalizedText(unit_symbol(characteristic.unit)),
        Description=ua.LocalizedText(unit_description(characteristic.unit)),
    )
    return [
        ("CharacteristicId", characteristic.characteristic_id, _V.String),
        ("Description", characteristic.description or characteristic.name, _V.String),
        ("Unit", characteristic.unit, _V.String),
        ("Classification", characteristic.classification.value, _V.String),
        ("GaugeType", characteristic.gauge_type, _V.String),
        ("PlanVersion", characteristic.plan_version, _V.String),
        ("DecimalPlaces", characteristic.decimal_places, _V.Byte),
        ("SampleSize", characteristic.sample_size, _V.UInt32),
        ("Nominal", characteristic.nominal, _V.Double),
        ("LowerLimit", characteristic.lower_limit, _V.Double),
        ("UpperLimit", characteristic.upper_limit, _V.Double),
        ("LastValue.EURange", ua.Range(characteristic.lower_limit, characteristic.upper_limit), _V.ExtensionObject),
        ("LastValue.EngineeringUnits", units, _V.ExtensionObject),
    ]


def spc_members(
    status: SpcStatus | None, plan: InspectionCharacteristic | None = None
) -> dict[str, tuple[Any, ua.VariantType]]:
    """The Spc object's values; None where nothing is known yet (written as BadWaitingForInitialData, not 0).

    Before the first value, the limits are the plan's if it gives them.
    """
    limits = status.limits if status is not None else None
    capability = status.capability if status is not None else None
    center: float | None
    ucl: float | None
    lcl: float | None
    if limits is not None:
        center, ucl, lcl = limits.center, limits.ucl, limits.lcl
    elif status is None and plan is not None:
        center, ucl, lcl = plan.center_line, plan.upper_control_limit, plan.lower_control_limit
    else:
        center = ucl = lcl = None
    return {
        "Spc.CenterLine": (center, _V.Double),
        "Spc.UCL": (ucl, _V.Double),
        "Spc.LCL": (lcl, _V.Double),
        "Spc.Cp": (capability.cp if capability else None, _V.Double),
        "Spc.Cpk": (capability.cpk if capability else None, _V.Double),
        "Spc.SampleCount": (status.sample_count if status else 0, _V.UInt32),
        "Spc.LastViolatedRule": ((status.last_violated_rule or 0) if status else 0, _V.Byte),
    }


HISTORIZING = ua.DataValue(ua.Variant(True, _V.Boolean))
WAITING = ua.DataValue(StatusCode=status_code(ua.StatusCodes.BadWaitingForInitialData))


def equipment_members(gauge: TestEquipment) -> list[Member]:
    return [
        ("EquipmentId", gauge.equipment_id, _V.String),
        ("Description", gauge.description, _V.String),
        ("EquipmentType", gauge.equipment_type, _V.String),
        ("CertificateNumber", gauge.certificate_no, _V.String),
        ("LastCalibration", _day(gauge.last_calibration), _V.DateTime),
        ("NextCalibrationDue", _day(gauge.next_due), _V.DateTime),
        ("CalibrationStatus", int(gauge.calibration_status), _V.Int32),
    ]
