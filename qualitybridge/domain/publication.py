"""Which released orders the address space publishes: a plant serves the orders its machines need.

Orders outside the scope stay in the store and in master data: reports against them are still accepted, stored,
relayed and counted in the KPIs; they are only not browsable. The default scope publishes every released order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from qualitybridge.domain.model import OrderState, ProductionOrder

__all__ = ["PublicationScope"]


@dataclass(frozen=True)
class PublicationScope:
    """Work centres, states and a window of planned dates; an empty or absent criterion does not restrict."""

    work_centres: frozenset[str] = frozenset()
    states: frozenset[OrderState] = frozenset()
    # Orders whose planned period ended more than `planned_days_back` days ago, or starts more than
    # `planned_days_ahead` days from now, are left out. An order without planned dates is always in the window.
    planned_days_back: float | None = None
    planned_days_ahead: float | None = None

    @property
    def depends_on_time(self) -> bool:
        """Whether an order can enter or leave the scope as time passes (then it is re-evaluated every sync)."""
        return self.planned_days_back is not None or self.planned_days_ahead is not None

    def includes(self, order: ProductionOrder, now: datetime) -> bool:
        if self.work_centres and not self.work_centres.intersection(_work_centres(order)):
            return False
        if self.states and order.state not in self.states:
            return False
        start = order.planned_start or order.planned_end
        end = order.planned_end or order.planned_start
        back, ahead = self.planned_days_back, self.planned_days_ahead
        if back is not None and end is not None and end < now - timedelta(days=back):
            return False
        return not (ahead is not None and start is not None and start > now + timedelta(days=ahead))


def _work_centres(order: ProductionOrder) -> set[str]:
    """The order's own work centre and those of its operations (an operation may run elsewhere)."""
    return {centre for centre in (order.work_centre, *(op.work_centre for op in order.operations)) if centre}
