"""Between the store and the in-memory master data: the mapping tables in force applied, the unmapped held back.

The store keeps every released order as the ERP sent it; the gate decides, each sync round, which of them the shop
floor sees (mapped: part number, characteristic names, UNECE units filled in) and which wait for a mapping. The sync
asks it at every round whether the tables changed and then passes every stored order through again, so a mapping
added with `qualitybridge mapping` releases the orders that waited for it at the next round, although the ERP's
delta does not mention them again; a mapping removed holds its orders back the same way. Each held-back order is
logged once (again only if what it lacks changes); the gaps are recorded in the store with since when.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from qualitybridge.domain.mapping import MappingKind, MappingTables
from qualitybridge.domain.mapping_gaps import MappedOrder, MappingGap, MissingMapping, apply_mappings, waiting_for
from qualitybridge.domain.model import ProductionOrder, SupersededPlanVersion
from qualitybridge.store import Store

__all__ = ["GateOutcome", "MappingGate"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateOutcome:
    """What the shop floor's view of the orders must take over: orders to show as given (new, changed, or now
    mapped) with their plan history, and order numbers to take out (withdrawn by the ERP, or now held back)."""

    show: tuple[ProductionOrder, ...] = ()
    hide: tuple[str, ...] = ()
    history: tuple[SupersededPlanVersion, ...] = ()


class MappingGate:
    def __init__(self, store: Store, in_force: Collection[MappingKind]) -> None:
        self._store = store
        self.in_force = frozenset(in_force)
        self._tables: MappingTables | None = None
        self._held: dict[str, tuple[MissingMapping, ...]] = {}
        self._recorded: dict[MissingMapping, tuple[str, ...]] | None = None
        self.gaps: tuple[MappingGap, ...] = ()

    @property
    def held_back(self) -> dict[str, tuple[MissingMapping, ...]]:
        """Each order held back, with the keys it lacks."""
        return dict(self._held)

    async def replace(
        self, orders: Iterable[ProductionOrder], history: Iterable[SupersededPlanVersion] = ()
    ) -> GateOutcome:
        """Take over every released order and its plan history (at start, after a full sync, when the tables
        changed); answers those the shop floor sees (`hide` is empty: nothing was shown before)."""
        tables = self._tables = await self._store.mapping_tables()
        previously_held, self._held = self._held, {}
        outcome = self._pass(list(orders), history, tables, previously_held)
        await self._record()
        return GateOutcome(outcome.show, (), outcome.history)

    async def tables_changed(self) -> bool:
        """Whether the tables differ from those last applied; the sync then takes every order over again from the
        store (`replace`), fresh documents and shop-floor states included."""
        return await self._store.mapping_tables() != self._tables

    async def update(
        self,
        orders: Iterable[ProductionOrder],
        withdrawn: Iterable[str],
        history: Iterable[SupersededPlanVersion] = (),
    ) -> GateOutcome:
        """Take over a delta (its orders and their plan history) with the tables last applied: the orders it brought
        are examined, the others keep their verdict (a change of the tables goes through `replace`)."""
        withdrawn = list(withdrawn)
        for order_no in withdrawn:
            if self._held.pop(order_no, None) is not None:
                _log.info("order %s, held back for want of a mapping, is withdrawn by the ERP", order_no)
        orders = list(orders)
        previously_held: dict[str, tuple[MissingMapping, ...]] = {}
        for order in orders:  # a delta's orders are judged anew; what they lacked before only decides the log line
            if order.order_no in self._held:
                previously_held[order.order_no] = self._held.pop(order.order_no)
        outcome = self._pass(orders, history, self._tables or MappingTables(), previously_held)
        await self._record()
        return GateOutcome(outcome.show, (*withdrawn, *outcome.hide), outcome.history)

    def _pass(
        self,
        orders: list[ProductionOrder],
        history: Iterable[SupersededPlanVersion],
        tables: MappingTables,
        previously_held: dict[str, tuple[MissingMapping, ...]],
    ) -> GateOutcome:
        versions: dict[str, list[SupersededPlanVersion]] = {}
        for version in history:
            versions.setdefault(version.order_no, []).append(version)
        show: list[ProductionOrder] = []
        hide: list[str] = []
        shown_history: list[SupersededPlanVersion] = []
        for order in orders:
            mapped = self._examine(order, tables, previously_held.get(order.order_no), versions.get(order.order_no, ()))
            if mapped.order is None:
                hide.append(order.order_no)
            else:
                show.append(mapped.order)
                shown_history.extend(mapped.history)
        return GateOutcome(tuple(show), tuple(hide), tuple(shown_history))

    def _examine(
        self,
        order: ProductionOrder,
        tables: MappingTables,
        before: tuple[MissingMapping, ...] | None,
        history: Sequence[SupersededPlanVersion],
    ) -> MappedOrder:
        """The order as shown, or held back; `before` is what it lacked until now (None: nothing)."""
        result = apply_mappings(order, tables, self.in_force, history)
        if result.order is not None:
            if before is not None:
                _log.info("order %s: its mappings are complete now; shown on the shop floor", order.order_no)
            return result
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
        return result

    async def _record(self) -> None:
        waiting = waiting_for(self._held)
        if waiting != self._recorded:
            self.gaps = tuple(await self._store.record_mapping_gaps(waiting))
            self._recorded = waiting
