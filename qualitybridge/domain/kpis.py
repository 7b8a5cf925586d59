"""Quality KPIs from what the shop floor confirmed and measured: first-pass yield, scrap rate, rework rate and PPM.

Pure: the facts come in, the figures go out; docs/kpis.md defines each figure and computes an example by hand.

- Quantities come from confirmations. `processed = yield + scrap + rework`; a part confirmed at two operations is
  processed twice (each operation passage counts).
- first-pass yield (right first time) = yield / processed; scrap rate = scrap / processed; rework rate =
  rework / processed.
- PPM comes from measurements: a part (order, part serial) is inspected if it has a result in scope and defective
  if at least one of those results is NotOK; PPM = defective parts / inspected parts × 1,000,000.
- A rate whose denominator is 0 is None ("no basis"), never 0.

Scopes: one order, one material, one work centre (the operation's, else the order's) and the whole plant. A report
covers one period: a UTC day (confirmations by arrival, measurements by measurement time), or an order's whole life.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "ConfirmedQuantities",
    "KpiFigures",
    "KpiPeriod",
    "KpiReport",
    "KpiScope",
    "PartMeasurement",
    "day_key",
    "kpi_figures",
    "kpi_idempotency_key",
]

KpiScope = Literal["order", "material", "work_centre", "plant"]
KpiPeriod = Literal["day", "order"]
PLANT = "*"  # the key of the plant scope
_SCOPES: tuple[KpiScope, ...] = ("order", "material", "work_centre", "plant")


@dataclass(frozen=True)
class ConfirmedQuantities:
    """One confirmation's quantities with the scopes it belongs to."""

    order_no: str
    material_no: str
    work_centre: str
    yield_quantity: float
    scrap_quantity: float
    rework_quantity: float


@dataclass(frozen=True)
class PartMeasurement:
    """One measurement result, reduced to what PPM needs."""

    order_no: str
    material_no: str
    work_centre: str
    part_serial: str
    not_ok: bool


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KpiFigures(_Frozen):
    scope: KpiScope
    key: str  # order number, material number, work centre, or "*" for the plant
    processed_quantity: float
    yield_quantity: float
    scrap_quantity: float
    rework_quantity: float
    inspected_parts: int
    defective_parts: int
    first_pass_yield: float | None
    scrap_rate: float | None
    rework_rate: float | None
    ppm: float | None


class KpiReport(_Frozen):
    """The figures of one period, as posted to the ERP/QMS once."""

    period: KpiPeriod
    period_key: str  # ISO date for "day", the order number for "order"
    computed_at: datetime
    figures: tuple[KpiFigures, ...]

    @property
    def idempotency_key(self) -> str:
        return kpi_idempotency_key(self.period, self.period_key)


def kpi_idempotency_key(period: KpiPeriod, period_key: str) -> str:
    """One key per period and scope: a second computation of the same period is the same posting."""
    return f"kpi-{period}-{period_key}"


def day_key(day: date) -> str:
    return day.isoformat()


def _scope_key(scope: KpiScope, order_no: str, material_no: str, work_centre: str) -> str:
    return {"order": order_no, "material": material_no, "work_centre": work_centre, "plant": PLANT}[scope]


def _rate(part: float, whole: float) -> float | None:
    return None if whole <= 0 else part / whole


@dataclass
class _Tally:
    yield_quantity: float = 0.0
    scrap_quantity: float = 0.0
    rework_quantity: float = 0.0


def kpi_figures(
    confirmations: Iterable[ConfirmedQuantities],
    measurements: Iterable[PartMeasurement],
    scopes: Iterable[KpiScope] = _SCOPES,
) -> tuple[KpiFigures, ...]:
    """The figures of every key of every scope that has a confirmation or a measurement, sorted by scope and key."""
    wanted = tuple(scopes)
    tallies: dict[tuple[KpiScope, str], _Tally] = defaultdict(_Tally)
    inspected: dict[tuple[KpiScope, str], set[tuple[str, str]]] = defaultdict(set)
    defective: dict[tuple[KpiScope, str], set[tuple[str, str]]] = defaultdict(set)
    for item in confirmations:
        for scope in wanted:
            tally = tallies[(scope, _scope_key(scope, item.order_no, item.material_no, item.work_centre))]
            tally.yield_quantity += item.yield_quantity
            tally.scrap_quantity += item.scrap_quantity
            tally.rework_quantity += item.rework_quantity
    for measured in measurements:
        part = (measured.order_no, measured.part_serial)
        for scope in wanted:
            slot = (scope, _scope_key(scope, measured.order_no, measured.material_no, measured.work_centre))
            inspected[slot].add(part)
            if measured.not_ok:
                defective[slot].add(part)
    figures = []
    for scope, key in sorted(tallies.keys() | inspected.keys(), key=lambda k: (_SCOPES.index(k[0]), k[1])):
        tally = tallies.get((scope, key), _Tally())
        processed = tally.yield_quantity + tally.scrap_quantity + tally.rework_quantity
        parts = len(inspected.get((scope, key), ()))
        bad = len(defective.get((scope, key), ()))
        ppm = _rate(bad, parts)
        figures.append(
            KpiFigures(
                scope=scope,
                key=key,
                processed_quantity=processed,
                yield_quantity=tally.yield_quantity,
                scrap_quantity=tally.scrap_quantity,
                rework_quantity=tally.rework_quantity,
                inspected_parts=parts,
                defective_parts=bad,
                first_pass_yield=_rate(tally.yield_quantity, processed),
                scrap_rate=_rate(tally.scrap_quantity, processed),
                rework_rate=_rate(tally.rework_quantity, processed),
                ppm=None if ppm is None else ppm * 1_000_000,
            )
        )
    return tuple(figures)
