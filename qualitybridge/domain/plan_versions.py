"""Plan versions: which definition of a characteristic was in force when a part was measured.

The ERP releases a new inspection-plan version (new limits, a new `plan_version`) while parts measured under the
old one may still be on their way: a PLC flushing its buffer, an operator typing in a paper sheet. Such a late
measurement is judged against the version in force at its `MeasuredAt`, not against the one in force when it
arrives. A sync that brings a new version keeps the old one with the moment it stopped being in force
(`superseded_versions`); the report path picks the version for a measurement (`version_in_force`).

A version is in force up to, not including, its `superseded_at`: a part measured at exactly that moment is judged
against the new version (docs/master-data.md, "Plan versions").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from qualitybridge.domain.model import InspectionCharacteristic, ProductionOrder, SupersededPlanVersion

__all__ = ["VersionInForce", "superseded_versions", "version_in_force"]


@dataclass(frozen=True)
class VersionInForce:
    """The definition a measurement is judged against, the order's routing version then, and whether that plan
    version has been superseded since (a late measurement)."""

    characteristic: InspectionCharacteristic
    routing_version: str
    superseded: bool = False


def version_in_force(
    current: InspectionCharacteristic,
    routing_version: str,
    history: Iterable[SupersededPlanVersion],
    measured_at: datetime,
) -> VersionInForce:
    """The version of one characteristic in force at `measured_at`: the earliest kept version that was still in
    force then (measured before its `superseded_at`), else the current one.

    `history` holds this characteristic's superseded versions, in any order. A kept version with the current plan
    version (only the routing changed) gives its routing version, but does not mark the plan as superseded.
    """
    for kept in sorted(history, key=lambda version: version.superseded_at):
        if measured_at < kept.superseded_at:
            return VersionInForce(
                kept.characteristic,
                kept.routing_version,
                superseded=kept.characteristic.plan_version != current.plan_version,
            )
    return VersionInForce(current, routing_version)


def superseded_versions(
    previous: ProductionOrder, current: ProductionOrder, at: datetime
) -> tuple[SupersededPlanVersion, ...]:
    """The characteristic definitions of `previous` that `current` replaces with a new plan version, or under a new
    routing version of the order; each kept as in force until `at`.

    A characteristic whose limits change under the same plan and routing version is corrected in place, not
    versioned; one that disappears has nothing left to judge, so neither is kept.
    """
    routing_changed = previous.routing_version != current.routing_version
    kept: list[SupersededPlanVersion] = []
    for old_operation in previous.operations:
        operation = current.operation(old_operation.operation_no)
        if operation is None:
            continue
        for old in old_operation.characteristics:
            new = operation.characteristic(old.characteristic_id)
            if new is None or not (routing_changed or new.plan_version != old.plan_version):
                continue
            kept.append(
                SupersededPlanVersion(
                    order_no=previous.order_no,
                    operation_no=old_operation.operation_no,
                    characteristic=old,
                    routing_version=previous.routing_version,
                    superseded_at=at,
                )
            )
    return tuple(kept)
