"""Deterministic seed data for the ERP/QMS simulator: released machining orders and the plant's gauges.

The data imitate what an SAP-like ERP with QM publishes for a machining shop (plant 1010): orders with routing
operations, inspection characteristics taken from drawings (ISO 286 fits, lengths, geometric tolerances, roughness,
tightening torque, part temperature) and calibrated test equipment. Everything is derived from random.Random(2026)
and the day of seeding: on a given day every run sees the same data, and calibration dates always agree with the
calibration status on the real calendar (a gauge marked VALID is never past its due date).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from qualitybridge.domain.master_data_audit import (
    CostCentreAssignment,
    MesPart,
    QmsCharacteristic,
    ShopFloorRouting,
)
from qualitybridge.domain.model import (
    CalibrationStatus,
    Classification,
    InspectionCharacteristic,
    Operation,
    OrderState,
    ProductionOrder,
    TestEquipment,
)

SEED = 2026

PLANT = "1010"

# UNECE Rec. 20 common codes
MILLIMETRE = "MMT"
MICROMETRE = "4H"
NEWTON_METRE = "NU"
DEGREE_CELSIUS = "CEL"

CALIPER = "CALIPER"
MICROMETER = "MICROMETER"
BORE_GAUGE = "BORE_GAUGE"
CMM = "CMM"
ROUGHNESS_TESTER = "ROUGHNESS_TESTER"
TORQUE_WRENCH = "TORQUE_WRENCH"
THERMOMETER = "THERMOMETER"


@dataclass(frozen=True)
class _Feature:
    """One drawing feature; limits are absolute, the nominal (target) sits mid-tolerance as QM plans carry it."""

    name: str
    lower: float
    upper: float
    unit: str
    decimals: int
    gauge_type: str
    classification: Classification = Classification.MAJOR
    sample_size: int = 1
    nominal: float | None = None
    # The plan's SPC control limits: centre on the nominal, 3σ at half the tolerance (a process capable at Cp 2).
    plan_control_limits: bool = False


def _fit(
    diameter: float,
    deviation_lower_um: int,
    deviation_upper_um: int,
    fit: str,
    feature: str,
    gauge_type: str,
    classification: Classification = Classification.CRITICAL,
) -> _Feature:
    """A diameter with an ISO 286 tolerance class, deviations in micrometres as tabulated in ISO 286-2."""
    return _Feature(
        name=f"{feature} \u00d8{diameter:g} {fit}",
        lower=round(diameter + deviation_lower_um / 1000, 4),
        upper=round(diameter + deviation_upper_um / 1000, 4),
        unit=MILLIMETRE,
        decimals=4 if gauge_type == CMM else 3,
        gauge_type=gauge_type,
        classification=classification,
        # Fits are critical to function: QM plans sample several parts per lot for them.
        sample_size=5,
    )


def _length(name: str, nominal: float, tolerance: float, gauge_type: str = CALIPER) -> _Feature:
    return _Feature(
        name=name,
        lower=nominal - tolerance,
        upper=nominal + tolerance,
        unit=MILLIMETRE,
        decimals=2 if gauge_type == CALIPER else 3,
        gauge_type=gauge_type,
        nominal=nominal,
    )


def _geometric(name: str, tolerance: float) -> _Feature:
    """Form and position tolerances are one-sided: zero is perfect, the tolerance is the upper limit."""
    return _Feature(name=name, lower=0.0, upper=tolerance, unit=MILLIMETRE, decimals=4, gauge_type=CMM, nominal=0.0)


def _roughness(name: str, ra_max: float) -> _Feature:
    return _Feature(
        name=name,
        lower=0.0,
        upper=ra_max,
        unit=MICROMETRE,
        decimals=2,
        gauge_type=ROUGHNESS_TESTER,
        classification=Classification.MINOR,
        nominal=round(ra_max / 2, 2),
    )


def _torque(name: str, nominal: float, tolerance_percent: float) -> _Feature:
    tolerance = nominal * tolerance_percent / 100
    return _Feature(
        name=name,
        lower=nominal - tolerance,
        upper=nominal + tolerance,
        unit=NEWTON_METRE,
        decimals=1,
        gauge_type=TORQUE_WRENCH,
        classification=Classification.CRITICAL,
        nominal=nominal,
        plan_control_limits=True,
    )


def _part_temperature() -> _Feature:
    # Dimensional checks are only meaningful near the ISO 1 reference temperature of 20 degC.
    return _Feature(
        name="Part temperature before measuring",
        lower=18.0,
        upper=22.0,
        unit=DEGREE_CELSIUS,
        decimals=1,
        gauge_type=THERMOMETER,
        classification=Classification.MINOR,
        nominal=20.0,
    )


@dataclass(frozen=True)
class _OperationTemplate:
    operation_no: str
    description: str
    work_centre: str
    features: tuple[_Feature, ...]


@dataclass(frozen=True)
class _OrderTemplate:
    order_no: str
    material_no: str
    part_no: str
    description: str
    routing_version: str
    plan_version: str
    state: OrderState
    operations: tuple[_OperationTemplate, ...]


_ORDERS: tuple[_OrderTemplate, ...] = (
    _OrderTemplate(
        order_no="1000417",
        material_no="MAT-100233",
        part_no="GH-4711-02",
        description="Gearbox housing",
        routing_version="R02",
        plan_version="P03",
        state=OrderState.RUNNING,
        operations=(
            _OperationTemplate(
                "0010",
                "Mill faces and bore bearing seats",
                "WC-DMU-01",
                (
                    _part_temperature(),
                    _fit(62, 0, 30, "H7", "Bearing seat", BORE_GAUGE),
                    _fit(47, 0, 25, "H7", "Bearing seat", BORE_GAUGE),
                    _length("Centre distance of bearing seats", 96.0, 0.02, CMM),
                    _geometric("Flatness of mounting face", 0.02),
                    _geometric("Perpendicularity of bore to mounting face", 0.015),
                    _roughness("Roughness Ra of bearing seat", 0.8),
                ),
            ),
            _OperationTemplate(
                "0020",
                "Drill and tap flange holes",
                "WC-DMU-01",
                (
                    _length("Overall length", 184.0, 0.1),
                    _length("Flange thickness", 12.0, 0.05, MICROMETER),
                    _geometric("Position of threaded hole pattern", 0.1),
                ),
            ),
            _OperationTemplate(
                "0030",
                "Fit cover and tighten screws",
                "WC-ASSY-01",
                (_torque("Tightening torque cover screws M8", 25.0, 10),),
            ),
        ),
    ),
    _OrderTemplate(
        order_no="1000418",
        material_no="MAT-100871",
        part_no="DS-2230-01",
        description="Drive shaft",
        routing_version="R01",
        plan_version="P05",
        state=OrderState.ALLOWED_TO_START,
        operations=(
            _OperationTemplate(
                "0010",
                "Turn shaft complete",
                "WC-LATHE-02",
                (
                    _fit(35, 2, 18, "k6", "Bearing journal", MICROMETER),
                    _fit(30, -20, -7, "g6", "Coupling seat", MICROMETER),
                    _length("Shaft length", 245.0, 0.2),
                    _length("Shoulder position", 58.0, 0.05, MICROMETER),
                    _roughness("Roughness Ra of bearing journal", 0.4),
                ),
            ),
            _OperationTemplate(
                "0020",
                "Grind bearing journals",
                "WC-GRIND-01",
                (
                    _fit(35, 2, 18, "k6", "Bearing journal after grinding", CMM),
                    _geometric("Circular run-out of journals", 0.01),
                    _geometric("Cylindricity of bearing journal", 0.005),
                    _part_temperature(),
                ),
            ),
        ),
    ),
    _OrderTemplate(
        order_no="1000421",
        material_no="MAT-101402",
        part_no="PF-0815-04",
        description="Pump flange",
        routing_version="R03",
        plan_version="P02",
        state=OrderState.ALLOWED_TO_START,
        operations=(
            _OperationTemplate(
                "0010",
                "Turn flange, bore pilot",
                "WC-LATHE-01",
                (
                    _fit(40, 0, 25, "H7", "Pilot bore", BORE_GAUGE),
                    _length("Flange outer diameter", 120.0, 0.1),
                    _length("Flange thickness", 16.0, 0.05, MICROMETER),
                    _geometric("Flatness of sealing face", 0.01),
                    _roughness("Roughness Ra of sealing face", 1.6),
                    _part_temperature(),
                ),
            ),
        ),
    ),
    _OrderTemplate(
        order_no="1000425",
        material_no="MAT-102090",
        part_no="VB-3307-01",
        description="Hydraulic valve body",
        routing_version="R01",
        plan_version="P01",
        state=OrderState.NOT_ALLOWED_TO_START,
        operations=(
            _OperationTemplate(
                "0010",
                "Mill block and bore spool bore",
                "WC-DMU-02",
                (
                    _fit(16, 0, 18, "H7", "Spool bore", BORE_GAUGE),
                    _length("Block length", 90.0, 0.1),
                    _length("Block width", 60.0, 0.1),
                    _geometric("Straightness of spool bore", 0.005),
                    _roughness("Roughness Ra of spool bore", 0.4),
                ),
            ),
            _OperationTemplate(
                "0020",
                "Mount plugs and test",
                "WC-ASSY-01",
                (
                    _torque("Tightening torque plug G1/4", 35.0, 10),
                    _torque("Tightening torque mounting screws M6", 10.0, 10),
                ),
            ),
        ),
    ),
)


def _characteristic(feature: _Feature, index: int, plan_version: str) -> InspectionCharacteristic:
    nominal = feature.nominal if feature.nominal is not None else round((feature.lower + feature.upper) / 2, 5)
    return InspectionCharacteristic(
        characteristic_id=f"C{index * 10:04d}",
        name=feature.name,
        nominal=nominal,
        lower_limit=round(feature.lower, 5),
        upper_limit=round(feature.upper, 5),
        unit=feature.unit,
        decimal_places=feature.decimals,
        sample_size=feature.sample_size,
        classification=feature.classification,
        gauge_type=feature.gauge_type,
        plan_version=plan_version,
        **_control_limits(feature, nominal),
    )


def _control_limits(feature: _Feature, nominal: float) -> dict[str, float]:
    if not feature.plan_control_limits:
        return {}
    half_width = (feature.upper - feature.lower) / 4
    return {
        "center_line": nominal,
        "upper_control_limit": round(nominal + half_width, 5),
        "lower_control_limit": round(nominal - half_width, 5),
    }


def _today() -> date:
    return datetime.now(UTC).date()


def seed_orders(today: date | None = None) -> list[ProductionOrder]:
    """The released orders the simulated ERP publishes at start and after POST /sim/reset, planned from `today`."""
    rng = random.Random(SEED)  # noqa: S311 - reproducible sample data, not secrets
    orders: list[ProductionOrder] = []
    shift_start = datetime.combine(today or _today(), time(6, 0), tzinfo=UTC)
    for position, template in enumerate(_ORDERS):
        planned_start = shift_start + timedelta(hours=8 * position + rng.choice((0, 2, 4)))
        planned_quantity = float(rng.choice((24, 40, 50, 60, 80, 120)))
        operations = tuple(
            Operation(
                operation_no=operation.operation_no,
                description=operation.description,
                work_centre=operation.work_centre,
                characteristics=tuple(
                    _characteristic(feature, index, template.plan_version)
                    for index, feature in enumerate(operation.features, start=1)
                ),
            )
            for operation in template.operations
        )
        orders.append(
            ProductionOrder(
                order_no=template.order_no,
                material_no=template.material_no,
                part_no=template.part_no,
                plant=PLANT,
                work_centre=template.operations[0].work_centre,
                planned_quantity=planned_quantity,
                quantity_unit="C62",
                state=template.state,
                routing_version=template.routing_version,
                plan_version=template.plan_version,
                planned_start=planned_start,
                planned_end=planned_start + timedelta(minutes=int(planned_quantity) * rng.choice((6, 9, 12))),
                operations=operations,
            )
        )
    return orders


@dataclass(frozen=True)
class _GaugeTemplate:
    equipment_id: str
    description: str
    equipment_type: str
    status: CalibrationStatus


_GAUGES: tuple[_GaugeTemplate, ...] = (
    _GaugeTemplate("GA-CAL-0101", "Digital caliper 0-150 mm, 0.01 mm", CALIPER, CalibrationStatus.VALID),
    _GaugeTemplate("GA-CAL-0102", "Digital caliper 0-300 mm, 0.01 mm", CALIPER, CalibrationStatus.VALID),
    _GaugeTemplate("GA-MIC-0207", "Outside micrometer 25-50 mm, 0.001 mm", MICROMETER, CalibrationStatus.VALID),
    _GaugeTemplate("GA-BOR-0312", "Two-point bore gauge 35-60 mm, 0.001 mm", BORE_GAUGE, CalibrationStatus.VALID),
    _GaugeTemplate("GA-BOR-0315", "Two-point bore gauge 10-50 mm, 0.001 mm", BORE_GAUGE, CalibrationStatus.EXPIRED),
    _GaugeTemplate("GA-CMM-0001", "Bridge coordinate measuring machine 700x1000x600", CMM, CalibrationStatus.VALID),
    _GaugeTemplate("GA-RGH-0402", "Mobile roughness tester, skid probe", ROUGHNESS_TESTER, CalibrationStatus.DUE_SOON),
    _GaugeTemplate("GA-TRQ-0518", "Click torque wrench 5-60 N\u00b7m", TORQUE_WRENCH, CalibrationStatus.VALID),
    _GaugeTemplate("GA-TMP-0603", "Contact thermometer -50..250 \u00b0C", THERMOMETER, CalibrationStatus.VALID),
)


def seed_equipment(today: date | None = None) -> list[TestEquipment]:
    """The gauges of plant 1010: exactly one EXPIRED, one DUE_SOON, the rest VALID as of `today`."""
    reference = today or _today()
    rng = random.Random(SEED)  # noqa: S311 - reproducible sample data, not secrets
    equipment: list[TestEquipment] = []
    for template in _GAUGES:
        if template.status is CalibrationStatus.EXPIRED:
            next_due = reference - timedelta(days=rng.randint(3, 20))
        elif template.status is CalibrationStatus.DUE_SOON:
            next_due = reference + timedelta(days=rng.randint(3, 12))
        else:
            next_due = reference + timedelta(days=rng.randint(45, 300))
        # Twelve-month calibration interval, as usual for hand-held gauges.
        last_calibration = next_due - timedelta(days=365)
        equipment.append(
            TestEquipment(
                equipment_id=template.equipment_id,
                description=template.description,
                equipment_type=template.equipment_type,
                calibration_status=template.status,
                last_calibration=last_calibration,
                next_due=next_due,
                certificate_no=f"CAL-{last_calibration.year}-{rng.randint(1000, 9999):04d}",
            )
        )
    return equipment


# ---------------------------------------------------------------------------------------------------------------
# What the plant's other systems export, for the master-data audit: consistent with the orders above except for
# the gaps every integration project meets (docs/master-data.md, "Master-data audit").


@dataclass(frozen=True)
class ShopFloorExports:
    """The MES part list and routing versions, the QMS characteristic catalogue and the cost-centre list."""

    mes_parts: tuple[MesPart, ...]
    mes_routings: tuple[ShopFloorRouting, ...]
    qms_catalogue: tuple[QmsCharacteristic, ...]
    cost_centres: tuple[CostCentreAssignment, ...]


# The demo's gaps, one per kind a go-live meets:
# - the valve body's part was never created in the MES: its material has no MES part;
_PART_MISSING_IN_MES = "VB-3307-01"
# - the MES still knows the housing's previous revision, which no ERP material makes any more;
_OBSOLETE_MES_PART = MesPart("GH-4711-01", "Gearbox housing, revision 01 (superseded)")
# - the pump flange's new routing R03 never reached the MES, which still runs it on R02;
_OUTDATED_ROUTINGS = {"1000421": "R02"}
# - the QMS calls the drive shaft's length differently from the ERP plan;
_QMS_NAMES = {("MAT-100871", "0010", "C0030"): "Overall shaft length"}
# - the new grinding cell has no cost centre yet.
_COST_CENTRES = {
    "WC-DMU-01": "4711-1010",
    "WC-DMU-02": "4711-1010",
    "WC-LATHE-01": "4712-1010",
    "WC-LATHE-02": "4712-1010",
    "WC-ASSY-01": "4720-1010",
    "WC-GRIND-01": "",
}


def seed_shop_floor_exports(today: date | None = None) -> ShopFloorExports:
    """The exports matching `seed_orders(today)`, with the demo's master-data gaps planted."""
    orders = seed_orders(today)
    descriptions = {template.part_no: template.description for template in _ORDERS}
    parts = [MesPart(part, description) for part, description in descriptions.items() if part != _PART_MISSING_IN_MES]
    catalogue = [
        QmsCharacteristic(
            material_no=order.material_no,
            operation_no=operation.operation_no,
            characteristic_id=c.characteristic_id,
            name=_QMS_NAMES.get((order.material_no, operation.operation_no, c.characteristic_id), c.name),
            unit=c.unit,
            lower_limit=c.lower_limit,
            upper_limit=c.upper_limit,
            decimal_places=c.decimal_places,
        )
        for order in orders
        for operation in order.operations
        for c in operation.characteristics
    ]
    return ShopFloorExports(
        mes_parts=(*parts, _OBSOLETE_MES_PART),
        mes_routings=tuple(
            ShopFloorRouting(
                order.order_no, _OUTDATED_ROUTINGS.get(order.order_no, order.routing_version), order.plan_version
            )
            for order in orders
        ),
        qms_catalogue=tuple(catalogue),
        cost_centres=tuple(CostCentreAssignment(wc, cc) for wc, cc in _COST_CENTRES.items()),
    )
