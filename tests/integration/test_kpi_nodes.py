"""KPI variables: a day's figures under QualityBridge/Kpis/<day>, an order's under the order, read back from an
in-process asyncua server as a client would find them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from asyncua import ua

from qualitybridge.domain.kpis import ConfirmedQuantities, KpiReport, PartMeasurement, kpi_figures
from qualitybridge.server.address_space.kpi_nodes import KpiNodes
from qualitybridge.server.address_space.namespace import QualityBridgeNamespace
from qualitybridge.server.address_space.view import AddressSpaceView
from tests.builders import gauge, order
from tests.harness import standard_server

AT = datetime(2026, 11, 21, 0, 15, tzinfo=UTC)


async def test_day_and_order_kpis_become_variables_once() -> None:
    server = await standard_server()
    namespace = await QualityBridgeNamespace.load(server)
    await AddressSpaceView(server, namespace).show([order("A")], [gauge()])
    nodes = KpiNodes(server, namespace)
    await nodes.start()
    confirmations = [ConfirmedQuantities("A", "M1", "WC-10", 90, 6, 4)]
    measured = [PartMeasurement("A", "M1", "WC-10", "A-1", True), PartMeasurement("A", "M1", "WC-10", "A-2", False)]
    day = KpiReport(period="day", period_key="2026-11-20", computed_at=AT, figures=kpi_figures(confirmations, measured))
    whole = KpiReport(
        period="order", period_key="A", computed_at=AT, figures=kpi_figures([], measured, scopes=("order",))
    )
    await nodes.show(day)
    await nodes.show(day)  # a second show adds nothing and does not fail
    await nodes.show(whole)
    await nodes.show(KpiReport(period="order", period_key="GONE", computed_at=AT, figures=whole.figures))

    def value(identifier: str) -> ua.DataValue:
        return server.iserver.aspace.read_attribute_value(namespace.node_id(identifier), ua.AttributeIds.Value)

    folder = server.get_node(namespace.root_child("Kpis"))
    assert [(await c.read_browse_name()).Name for c in await folder.get_children()] == ["2026-11-20"]
    wc = "Kpis/2026-11-20/work_centre:WC-10"
    assert value(f"{wc}.FirstPassYield").Value.Value == pytest.approx(0.9)
    assert value(f"{wc}.ScrapRate").Value.Value == pytest.approx(0.06)
    assert value(f"{wc}.Ppm").Value.Value == pytest.approx(500_000)
    assert value(f"{wc}.InspectedParts").Value.Value == 2
    assert value("Kpis/2026-11-20/plant:*.ReworkRate").Value.Value == pytest.approx(0.04)
    # The order's life: measured, never confirmed: no basis for the rates, which say so instead of reading 0.
    assert value("Order/A.Kpis.Ppm").Value.Value == pytest.approx(500_000)
    no_basis = value("Order/A.Kpis.FirstPassYield")
    assert no_basis.StatusCode.value == ua.StatusCodes.BadWaitingForInitialData
    assert server.iserver.aspace.get(namespace.node_id("Order/GONE.Kpis")) is None
