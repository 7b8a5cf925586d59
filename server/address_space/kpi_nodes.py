"""The quality KPIs as variables: each day's figures under Objects/QualityBridge/Kpis/<day>/<scope>:<key>, and an
order's figures under the order (Order/<no>.Kpis), shown when the figures are computed and queued for the QMS
(docs/kpis.md). Nodes are added once per period, as the postings are; a rate without a basis (denominator 0) reads
BadWaitingForInitialData rather than 0. KPIs computed before a restart are not shown again (they are in the ERP and
in `qualitybridge report`)."""

from __future__ import annotations

import logging
from typing import Any

from asyncua import Server, ua

from qualitybridge.domain.kpis import KpiFigures, KpiReport
from qualitybridge.server.address_space.namespace import QualityBridgeNamespace
from qualitybridge.server.methods.arguments import status_code

__all__ = ["KpiNodes"]

_log = logging.getLogger(__name__)
_V = ua.VariantType
_NO_BASIS = ua.DataValue(StatusCode=status_code(ua.StatusCodes.BadWaitingForInitialData))


def _members(figures: KpiFigures) -> list[tuple[str, Any, ua.VariantType]]:
    return [
        ("FirstPassYield", figures.first_pass_yield, _V.Double),
        ("ScrapRate", figures.scrap_rate, _V.Double),
        ("ReworkRate", figures.rework_rate, _V.Double),
        ("Ppm", figures.ppm, _V.Double),
        ("ProcessedQuantity", figures.processed_quantity, _V.Double),
        ("InspectedParts", figures.inspected_parts, _V.UInt32),
        ("DefectiveParts", figures.defective_parts, _V.UInt32),
    ]


class KpiNodes:
    def __init__(self, server: Server, namespace: QualityBridgeNamespace) -> None:
        self._server = server
        self._ns = namespace

    @property
    def folder(self) -> ua.NodeId:
        return self._ns.root_child("Kpis")

    async def start(self) -> None:
        await self._server.get_node(self._ns.root).add_folder(self.folder, ua.QualifiedName("Kpis", self._ns.index))

    async def show(self, report: KpiReport) -> None:
        if report.period == "day":
            day = self._ns.node_id(f"Kpis/{report.period_key}")
            if self._server.iserver.aspace.get(day) is None:
                await self._server.get_node(self.folder).add_object(
                    day, ua.QualifiedName(report.period_key, self._ns.index)
                )
            for figures in report.figures:
                name = f"{figures.scope}:{figures.key}"
                await self._add_figures(day, self._ns.node_id(f"Kpis/{report.period_key}/{name}"), name, figures)
            return
        order = self._ns.order(report.period_key)
        if self._server.iserver.aspace.get(order) is None:
            _log.info("order %s is no longer published: its KPIs go to the QMS only", report.period_key)
            return
        for figures in report.figures:
            await self._add_figures(order, self._ns.member(order, "Kpis"), "Kpis", figures)

    async def _add_figures(self, parent: ua.NodeId, node_id: ua.NodeId, name: str, figures: KpiFigures) -> None:
        if self._server.iserver.aspace.get(node_id) is not None:
            return  # shown before: a period's figures are computed once
        holder = await self._server.get_node(parent).add_object(node_id, ua.QualifiedName(name, self._ns.index))
        for member, value, variant_type in _members(figures):
            variable_id = self._ns.member(node_id, member)
            await holder.add_variable(
                variable_id, ua.QualifiedName(member, self._ns.index), 0.0 if value is None else value, variant_type
            )
            if value is None:
                await self._server.write_attribute_value(variable_id, _NO_BASIS)
