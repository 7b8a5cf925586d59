"""Between the store and the in-memory master data: the mapping tables in force applied, the unmapped held back.

The store keeps every released order as the ERP sent it; the gate keeps those orders too and decides, each sync
round, which the shop floor sees (mapped: part number, characteristic names, UNECE units filled in) and which wait
for a mapping. It reads the tables at every round, so a mapping added with `qualitybridge mapping` releases the
orders that waited for it at the next round, although the ERP's delta does not mention them again; a mapping
removed holds its orders back the same way. Each held-back order is logged once (again only if what it lacks
changes); the gaps are recorded in the store with since when.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from qualitybridge.domain.mapping import MappingKind, MappingTables
from qualitybridge.domain.mapping_gaps import MappingGap, MissingMapping, apply_mappings, waiting_for
from qualitybridge.domain.model import ProductionOrder
from qualitybridge.store import Store

__all__ = ["GateOutcome", "MappingGate"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateOutcome:
    """What the shop floor's view of the orders must take over: orders to show as given (new, changed, or now
    mapped) and order numbers to take out (withdrawn by the ERP, or now held back)."""

    show: tuple[ProductionOrder, ...] = ()
    hide: tuple[str, ...] = ()


class MappingGate:
    def __init__(self, store: Store, in_force: Collection[MappingKind]) -> None:
        self._store = store
        self.in_force = frozenset(in_force)
        self._raw: dict[str, ProductionOrder] = {}  # every released order, as the ERP sent it
        self._tables: MappingTables | None = None
        self._held: dict[str, tuple[MissingMapping, ...]] = {}
        self._recorded: dict[MissingMapping, tuple[str, ...]] | None = None
        self.gaps: tuple[MappingGap, ...] = ()

    @property
    def held_back(self) -> dict[str, tuple[MissingMapping, ...]]:
        """Each order held back, with the keys it lacks."""
        return dict(self._held)

    async def replace(self, orders: Iterable[ProductionOrder]) -> list[ProductionOrder]:
        """Take over every released order (at start, after a full sync); answers those the shop floor sees."""
        self._raw = {order.order_no: order for order in orders}
        tables = self._tables = await self._store.mapping_tables()
        previously_held, self._held = self._held, {}
        shown = [mapped for order in self._raw.values() if (mapped := self._examine(order, tables, previously_held))]
        await self._record()
        return shown

    async def update(self, orders: Iterable[ProductionOrder], withdrawn: Iterable[str]) -> GateOutcome:
        """Take over a delta (may be empty) and the tables as they are now; when the tables changed, every order is
        examined again, so one that waited for a mapping is shown without the ERP sending it again."""
        orders = list(orders)
        withdrawn = list(withdrawn)
        tables = await self._store.mapping_tables()
        for order_no in withdrawn:
            self._raw.pop(order_no, None)
            if self._held.pop(order_no, None) is not None:
                _log.info("order %s, held back for want of a mapping, is withdrawn by the ERP", order_no)
        self._raw.update((order.order_no, order) for order in orders)
        considered = list(self._raw.values()) if tables != self._tables else orders
        self._tables = tables
        show: list[ProductionOrder] = []
        hide: list[str] = list(withdrawn)
        previously_held = dict(self._held)
        for order in considered:
            self._held.pop(order.order_no, None)
            mapped = self._examine(order, tables, previously_held)
            if mapped is None:
                hide.append(order.order_no)
            else:
                show.append(mapped)
        await self._record()
        return GateOutcome(tuple(show), tuple(hide))

    def _examine(
        self,
        order: ProductionOrder,
        tables: MappingTables,
        previously_held: dict[str, tuple[MissingMapping, ...]],
    ) -> ProductionOrder | None:
        result = apply_mappings(order, tables, self.in_force)
        before = previously_held.get(order.order_no)
        if result.order is not None:
            if before is not None:
                _log.info("order %s: its mappings are complete now; shown on the shop floor", order.order_no)
            return result.order
        self._held[order.order_no] = result.missing
        if result.missing != before:  # logged once, and again only when what it lacks changes
            first = result.missing[0]
            _log.warning(
                "order %s held back: no mapping for %s; add %s, e.g. qualitybridge mapping set --kind %s %s <%s>",
                order.order_no,
                ", ".join(map(str, result.missing)),
                "them" if len(result.missing) > 1 else "it",
                first.kind.value,
                first.source_key or "''",
                first.kind.target_name,
            )
        return None

    async def _record(self) -> None:
        waiting = waiting_for(self._held)
        if waiting != self._recorded:
            self.gaps = tuple(await self._store.record_mapping_gaps(waiting))
            self._recorded = waiting
