"""`qualitybridge report ORDER`: one self-contained HTML file per order for auditors and quality engineers.

Everything is inline (CSS, SVG charts), so the file opens in any browser without a server or network. Per
characteristic: a control chart of the values in measurement order with tolerance (LSL/USL), nominal and control
limits (CL/UCL/LCL) and the violations marked (out of tolerance, and Nelson rules fired); Cp/Cpk. Then the gauges
used with their calibration state at measurement time, the confirmations, the SPC alarms and the order's KPIs.

Long orders stay fast and small: a chart with more points than it has pixel columns is drawn as a min/max envelope
per column (every extreme stays visible), and at most `_MAX_MARKERS` violations are marked per chart.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from qualitybridge.domain.kpis import KpiFigures, kpi_figures
from qualitybridge.domain.model import (
    CalibrationStatus,
    InspectionCharacteristic,
    OrderState,
    ProductionOrder,
    ResultEvaluation,
    TestEquipment,
)
from qualitybridge.domain.records import ConfirmationRecord, SpcAlarmRecord
from qualitybridge.domain.spc import Capability, ControlLimits, SpcChart, SpcPolicy
from qualitybridge.services.spc_monitor import plan_limits
from qualitybridge.store import Store
from qualitybridge.store.quality_figures import ReportedValue

__all__ = ["CharacteristicSection", "OrderReport", "gather_order_report", "render_order_report"]

_WIDTH, _HEIGHT, _PAD_LEFT, _PAD_RIGHT, _PAD_Y = 960, 260, 84, 12, 14
_MAX_MARKERS = 2000
_MAX_TABLE_ROWS = 500


@dataclass
class CharacteristicSection:
    operation_no: str
    characteristic: InspectionCharacteristic
    values: list[float] = field(default_factory=list)
    out_of_tolerance: list[int] = field(default_factory=list)  # indices into values
    rule_points: dict[int, set[int]] = field(default_factory=dict)  # index → Nelson rules fired there
    limits: ControlLimits | None = None
    capability: Capability | None = None
    first: datetime | None = None
    last: datetime | None = None


@dataclass(frozen=True)
class GaugeUse:
    equipment_id: str
    results: int
    due_soon: int  # results taken while the gauge's calibration was due soon
    first: datetime
    last: datetime
    gauge: TestEquipment | None


@dataclass
class OrderReport:
    order: ProductionOrder
    generated_at: datetime
    sections: list[CharacteristicSection]
    gauges: list[GaugeUse]
    confirmations: list[ConfirmationRecord]
    alarms: list[SpcAlarmRecord]
    kpis: KpiFigures | None
    value_count: int


async def gather_order_report(
    store: Store, order_no: str, *, policy: SpcPolicy | None = None, clock: Callable[[], datetime] | None = None
) -> OrderReport:
    """Everything the report shows, read from the store; LookupError if the store never had the order."""
    order = await store.order_by_number(order_no)
    if order is None:
        raise LookupError(f"order {order_no} is not in the store")
    values = await store.order_values(order_no)
    confirmations, measurements = await store.kpi_inputs(order_no=order_no)
    figures = kpi_figures(confirmations, measurements, ("order",))
    return OrderReport(
        order=order,
        generated_at=(clock or (lambda: datetime.now(UTC)))(),
        sections=_sections(order, values, policy or SpcPolicy()),
        gauges=_gauges(values, {g.equipment_id: g for g in await store.equipment()}),
        confirmations=await store.confirmations(order_no),
        alarms=await store.spc_alarms(order_no),
        kpis=figures[0] if figures else None,
        value_count=len(values),
    )


def _sections(
    order: ProductionOrder, values: Sequence[ReportedValue], policy: SpcPolicy
) -> list[CharacteristicSection]:
    sections: dict[tuple[str, str], CharacteristicSection] = {}
    charts: dict[tuple[str, str], SpcChart] = {}
    for operation in order.operations:
        for characteristic in operation.characteristics:
            key = (operation.operation_no, characteristic.characteristic_id)
            sections[key] = CharacteristicSection(operation.operation_no, characteristic)
            charts[key] = SpcChart(
                sample_size=characteristic.sample_size,
                lower_spec=characteristic.lower_limit,
                upper_spec=characteristic.upper_limit,
                plan_limits=plan_limits(characteristic),
                settings=policy.settings_for(characteristic.characteristic_id, characteristic.classification),
            )
    for item in values:
        key = (item.operation_no, item.characteristic_id)
        section = sections.get(key)
        if section is None or not math.isfinite(item.value):
            continue  # a characteristic no longer in the plan, or a value that could not be measured
        index = len(section.values)
        section.values.append(item.value)
        section.first = section.first or item.measured_at
        section.last = item.measured_at
        if item.evaluation is ResultEvaluation.NOT_OK:
            section.out_of_tolerance.append(index)
        for violation in charts[key].add(item.value, item.result_id):
            section.rule_points.setdefault(index, set()).add(violation.rule)
    for key, section in sections.items():
        status = charts[key].status()
        section.limits, section.capability = status.limits, status.capability
    return list(sections.values())


def _gauges(values: Sequence[ReportedValue], known: dict[str, TestEquipment]) -> list[GaugeUse]:
    uses: dict[str, list[ReportedValue]] = defaultdict(list)
    for item in values:
        uses[item.equipment_id].append(item)
    return [
        GaugeUse(
            equipment_id,
            len(items),
            sum(1 for item in items if item.gauge_due_soon),
            items[0].measured_at,
            items[-1].measured_at,
            known.get(equipment_id),
        )
        for equipment_id, items in sorted(uses.items())
    ]


# ---- rendering ---------------------------------------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _num(value: float | None, places: int = 3) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{places}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.2f} %"


def _when(moment: datetime | None) -> str:
    return "–" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _chart(section: CharacteristicSection) -> str:
    """An inline SVG control chart: x = measurement number, y = value."""
    values = section.values
    char = section.characteristic
    lines: list[tuple[str, float, str, str]] = [
        ("USL", char.upper_limit, "#c62828", "6 4"),
        ("LSL", char.lower_limit, "#c62828", "6 4"),
        ("Nominal", char.nominal, "#9e9e9e", "2 3"),
    ]
    if section.limits is not None:
        lines += [
            ("UCL", section.limits.ucl, "#ef6c00", ""),
            ("CL", section.limits.center, "#2e7d32", ""),
            ("LCL", section.limits.lcl, "#ef6c00", ""),
        ]
    levels = [level for _, level, _, _ in lines]
    low = min([*levels, *(values and [min(values)])])
    high = max([*levels, *(values and [max(values)])])
    span = (high - low) or 1.0
    low, high = low - span * 0.05, high + span * 0.05
    plot_w = _WIDTH - _PAD_LEFT - _PAD_RIGHT
    count = len(values)

    def x(index: float) -> float:
        return _PAD_LEFT + (plot_w * (index / (count - 1)) if count > 1 else plot_w / 2)

    def y(value: float) -> float:
        return _PAD_Y + (_HEIGHT - 2 * _PAD_Y) * (high - value) / (high - low)

    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
        f'width="{_WIDTH}" height="{_HEIGHT}" role="img" aria-label="control chart {_e(char.characteristic_id)}">',
        f'<rect x="{_PAD_LEFT}" y="{_PAD_Y}" width="{plot_w}" height="{_HEIGHT - 2 * _PAD_Y}" fill="#fafafa" '
        'stroke="#ddd"/>',
    ]
    for name, level, colour, dash in lines:
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        # Labels left of the plot; the nominal's inside on the right, as it often coincides with CL.
        label_x, anchor = (_WIDTH - _PAD_RIGHT - 4, "end") if name == "Nominal" else (_PAD_LEFT - 4, "end")
        label_y = y(level) - 3 if name == "Nominal" else y(level) + 4
        parts.append(
            f'<line x1="{_PAD_LEFT}" x2="{_WIDTH - _PAD_RIGHT}" y1="{y(level):.1f}" y2="{y(level):.1f}" '
            f'stroke="{colour}"{dash_attr}/><text x="{label_x}" y="{label_y:.1f}" text-anchor="{anchor}" '
            f'font-size="10" fill="{colour}">{name} {_num(level, char.decimal_places)}</text>'
        )
    if count:
        if count <= 2 * plot_w:
            points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        else:  # min/max envelope per pixel column: the extremes stay visible, the file stays small
            columns: list[str] = []
            per = count / plot_w
            for column in range(plot_w):
                chunk = values[int(column * per) : max(int((column + 1) * per), int(column * per) + 1)]
                px = _PAD_LEFT + column
                columns.append(f"{px},{y(max(chunk)):.1f} {px},{y(min(chunk)):.1f}")
            points = " ".join(columns)
        parts.append(f'<polyline fill="none" stroke="#1565c0" stroke-width="1" points="{points}"/>')
        if count <= 500:
            parts.extend(
                f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2" fill="#1565c0"/>' for i, v in enumerate(values)
            )
        for index in sorted(section.rule_points)[:_MAX_MARKERS]:
            rules = ",".join(map(str, sorted(section.rule_points[index])))
            parts.append(
                f'<rect class="rule" x="{x(index) - 4:.1f}" y="{y(values[index]) - 4:.1f}" width="8" height="8" '
                f'fill="none" stroke="#ef6c00" stroke-width="1.5"><title>#{index + 1}: Nelson rule {rules}</title>'
                "</rect>"
            )
        for index in section.out_of_tolerance[:_MAX_MARKERS]:
            parts.append(
                f'<circle class="nok" cx="{x(index):.1f}" cy="{y(values[index]):.1f}" r="4" fill="#c62828">'
                f"<title>#{index + 1}: {_num(values[index], char.decimal_places)} out of tolerance</title></circle>"
            )
    else:
        parts.append(f'<text x="{_WIDTH / 2}" y="{_HEIGHT / 2}" text-anchor="middle" fill="#777">no values</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, total: int | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    more = ""
    if total is not None and total > len(rows):
        more = f'<p class="note">{len(rows)} of {total} rows shown.</p>'
    if not rows:
        body = f'<tr><td colspan="{len(headers)}" class="note">none</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def _section_html(section: CharacteristicSection) -> str:
    char = section.characteristic
    values = section.values
    cap = section.capability
    mean = sum(values) / len(values) if values else None
    stats = _table(
        ["values", "mean", "out of tolerance", "rule violations", "Cp", "Cpk", "Pp", "Ppk", "first", "last"],
        [
            [
                len(values),
                _num(mean, char.decimal_places + 1),
                len(section.out_of_tolerance),
                len(section.rule_points),
                _num(cap.cp if cap else None, 2),
                _num(cap.cpk if cap else None, 2),
                _num(cap.pp if cap else None, 2),
                _num(cap.ppk if cap else None, 2),
                _when(section.first),
                _when(section.last),
            ]
        ],
    )
    limits = section.limits
    source = f"control limits from the {limits.source.value}" if limits else "control limits not yet known"
    return (
        f'<section class="characteristic" id="char-{_e(section.operation_no)}-{_e(char.characteristic_id)}">'
        f"<h3>{_e(section.operation_no)} / {_e(char.characteristic_id)} {_e(char.name)}</h3>"
        f'<p class="spec">Nominal {_num(char.nominal, char.decimal_places)} {_e(char.unit)}, tolerance '
        f"{_num(char.lower_limit, char.decimal_places)} … {_num(char.upper_limit, char.decimal_places)}; "
        f"{_e(char.classification.value)}, sample size {char.sample_size}, plan version {_e(char.plan_version)}; "
        f"{source}. Cp/Cpk over the last values of the capability window (as the server's Spc nodes).</p>"
        f"{_chart(section)}{stats}</section>"
    )


_CALIBRATION_NAMES = {status: status.name.replace("_", " ").lower() for status in CalibrationStatus}


def _gauge_rows(gauges: Sequence[GaugeUse]) -> list[list[object]]:
    rows: list[list[object]] = []
    for use in gauges:
        gauge = use.gauge
        at_time = (
            "valid" if not use.due_soon else f"due soon for {use.due_soon}, valid for {use.results - use.due_soon}"
        )
        rows.append(
            [
                use.equipment_id,
                gauge.description if gauge else "(unknown to the ERP now)",
                use.results,
                at_time,
                _CALIBRATION_NAMES[gauge.calibration_status] if gauge else "–",
                gauge.last_calibration or "–" if gauge else "–",
                gauge.next_due or "–" if gauge else "–",
                gauge.certificate_no or "–" if gauge else "–",
                f"{_when(use.first)} … {_when(use.last)}",
            ]
        )
    return rows


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#212121;max-width:1000px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ccc}
h3{font-size:15px;margin:18px 0 4px} table{border-collapse:collapse;font-size:12px;margin:6px 0}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:left} th{background:#f0f0f0}
.note,.spec{color:#555;font-size:12px} .chart{display:block;margin:6px 0}
.legend span{margin-right:14px;font-size:12px} @media print{section{break-inside:avoid}}
"""


def render_order_report(report: OrderReport) -> str:
    order = report.order
    kpi = report.kpis
    kpi_table = _table(
        [
            "processed",
            "yield",
            "scrap",
            "rework",
            "first-pass yield",
            "scrap rate",
            "rework rate",
            "inspected parts",
            "defective parts",
            "PPM",
        ],
        []
        if kpi is None
        else [
            [
                _num(kpi.processed_quantity, 0),
                _num(kpi.yield_quantity, 0),
                _num(kpi.scrap_quantity, 0),
                _num(kpi.rework_quantity, 0),
                _pct(kpi.first_pass_yield),
                _pct(kpi.scrap_rate),
                _pct(kpi.rework_rate),
                kpi.inspected_parts,
                kpi.defective_parts,
                _num(kpi.ppm, 0),
            ]
        ],
    )
    confirmations = _table(
        ["received", "operation", "yield", "scrap", "rework", "unit", "reason", "final", "by"],
        [
            [
                _when(c.received_at),
                c.confirmation.operation_no,
                _num(c.confirmation.yield_quantity, 0),
                _num(c.confirmation.scrap_quantity, 0),
                _num(c.confirmation.rework_quantity, 0),
                c.confirmation.unit,
                c.confirmation.reason_code or "–",
                "yes" if c.confirmation.final else "no",
                c.reported_by,
            ]
            for c in report.confirmations[:_MAX_TABLE_ROWS]
        ],
        total=len(report.confirmations),
    )
    alarms = _table(
        ["raised", "operation / characteristic", "rule", "severity", "message"],
        [
            [
                _when(a.alarm.raised_at),
                f"{a.alarm.operation_no} / {a.alarm.characteristic_id}",
                a.alarm.rule,
                a.alarm.severity,
                a.alarm.message,
            ]
            for a in report.alarms[:_MAX_TABLE_ROWS]
        ],
        total=len(report.alarms),
    )
    gauges = _table(
        [
            "gauge",
            "description",
            "results",
            "calibration at measurement time",
            "status now",
            "last calibration",
            "next due",
            "certificate",
            "used",
        ],
        _gauge_rows(report.gauges),
    )
    state = OrderState(order.state).name.replace("_", " ").lower()
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Quality report, order {_e(order.order_no)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>Quality report, order {_e(order.order_no)}</h1>"
        f'<p class="note">Material {_e(order.material_no)} {_e(order.part_no)}, work centre {_e(order.work_centre)}, '
        f"planned {_num(order.planned_quantity, 0)} {_e(order.quantity_unit)}, state {_e(state)}, plan version "
        f"{_e(order.plan_version)}. {report.value_count} measurements. Generated {_when(report.generated_at)} by "
        "QualityBridge from its store.</p>"
        '<p class="legend"><span style="color:#c62828">● out of tolerance (NOT OK)</span>'
        '<span style="color:#ef6c00">□ Nelson rule violated</span><span style="color:#c62828">- - LSL/USL</span>'
        '<span style="color:#ef6c00">— UCL/LCL</span><span style="color:#2e7d32">— CL</span></p>'
        f"<h2>KPIs</h2>{kpi_table}"
        '<p class="note">Definitions: docs/kpis.md (first-pass yield = yield ÷ (yield + scrap + rework); PPM = '
        "defective ÷ inspected parts × 10⁶).</p>"
        f"<h2>Characteristics</h2>{''.join(_section_html(s) for s in report.sections)}"
        f"<h2>Gauges used</h2>{gauges}"
        '<p class="note">Calibration at measurement time: a blocked (expired, locked) gauge is refused at the '
        "report, so every stored value was taken with a valid gauge or one whose calibration was due soon.</p>"
        f"<h2>Confirmations</h2>{confirmations}"
        f"<h2>SPC alarms</h2>{alarms}"
        "</body></html>"
    )
