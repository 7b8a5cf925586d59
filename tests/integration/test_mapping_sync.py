"""The ERP sync with a mapping table in force, against the real simulator over HTTP and a real store: held back
across rounds and restarts (since when survives), shown once mapped — even while the ERP is down."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from qualitybridge.adapters.rest_erp import RestErpClient
from qualitybridge.domain.events import MasterDataChanged
from qualitybridge.domain.mapping import MappingEntry, MappingKind
from qualitybridge.domain.model import OrderState
from qualitybridge.services.diagnostics import Diagnostics
from qualitybridge.services.erp_sync import ErpSync
from qualitybridge.services.event_bus import EventBus
from qualitybridge.services.mapping import MappingGate
from qualitybridge.services.master_data import MasterData
from qualitybridge.store import Store
from tests.fakes import RecordingPublisher
from tests.harness import free_port

MATERIAL = MappingKind.MATERIAL


@dataclass
class Synced:
    sync: ErpSync
    master: MasterData
    diagnostics: Diagnostics
    recorded: RecordingPublisher


@pytest.fixture
async def clients() -> AsyncIterator[list[RestErpClient]]:
    opened: list[RestErpClient] = []
    yield opened
    for client in opened:
        await client.aclose()


def _sync(url: str, store: Store, clients: list[RestErpClient]) -> Synced:
    """A sync as the app builds it with [master_data] required_mappings = ["material"]."""
    events, recorded = EventBus(), RecordingPublisher()
    events.add_publisher(recorded)
    master, diagnostics = MasterData(), Diagnostics()
    clients.append(RestErpClient(url, timeout_seconds=2))
    gate = MappingGate(store, {MATERIAL})
    return Synced(
        ErpSync(clients[-1], store, master, diagnostics, events=events, mapping=gate), master, diagnostics, recorded
    )


async def test_held_back_across_rounds_and_a_restart_then_shown_while_the_erp_is_down(
    store: Store, erp_url: str, clients: list[RestErpClient]
) -> None:
    first = _sync(erp_url, store, clients)
    sync, master, diagnostics = first.sync, first.master, first.diagnostics
    await sync.run_once()
    released = {order.order_no: order.material_no for order in await store.released_orders()}
    assert master.orders == [], "no mapping yet: every order waits"
    assert diagnostics.held_back_orders == len(released)

    waiting = min(released)
    missing = released[waiting]
    await store.replace_mappings(
        MATERIAL, [MappingEntry(MATERIAL, m, f"MES-{m}") for m in sorted(set(released.values())) if m != missing]
    )
    await sync.run_once()  # the ERP's delta is empty; the tables changed
    assert {o.order_no: o.part_no for o in master.orders} == {
        no: f"MES-{m}" for no, m in released.items() if m != missing
    }
    assert master.order(waiting) is None
    [gap] = await store.mapping_gaps()
    assert (gap.kind, gap.source_key, gap.orders) == (MATERIAL, missing, (waiting,))
    assert diagnostics.master_data_gaps == (gap.line,)

    # A restart: memory is rebuilt from the store; the gap is the same, since the same moment.
    second = _sync(f"http://127.0.0.1:{free_port()}", store, clients)  # the ERP is down now
    restarted, master, diagnostics, recorded = second.sync, second.master, second.diagnostics, second.recorded
    await restarted.load_from_store()
    assert master.order(waiting) is None
    assert diagnostics.master_data_gaps == (gap.line,)
    assert await store.mapping_gaps() == [gap]

    await store.set_mapping(MappingEntry(MATERIAL, missing, "MES-LATE"))
    await restarted.run_once()  # the fetch fails; the mapping is local and applies all the same
    assert not diagnostics.last_sync_succeeded
    shown = master.order(waiting)
    assert shown is not None
    assert shown.part_no == "MES-LATE"
    assert (diagnostics.master_data_gaps, diagnostics.held_back_orders) == ((), 0)
    assert await store.mapping_gaps() == []
    [change] = recorded.of(MasterDataChanged)
    assert change.change.released == (waiting,)


async def test_an_order_held_back_and_shown_again_keeps_its_shop_floor_state(
    store: Store, erp_url: str, clients: list[RestErpClient]
) -> None:
    synced = _sync(erp_url, store, clients)
    await synced.sync.run_once()
    released = {order.order_no: order.material_no for order in await store.released_orders()}
    await store.replace_mappings(MATERIAL, [MappingEntry(MATERIAL, m, f"MES-{m}") for m in set(released.values())])
    await synced.sync.run_once()
    order_no = min(released)
    # A state change on the shop floor, as OrderControl makes it: the store first, then memory.
    current = next(order.state for order in await store.released_orders() if order.order_no == order_no)
    moved = OrderState.INTERRUPTED if current is not OrderState.INTERRUPTED else OrderState.RUNNING
    assert await store.change_order_state(order_no, current, moved)
    synced.master.set_order_state(order_no, moved)

    assert await store.remove_mapping(MATERIAL, released[order_no])
    await synced.sync.run_once()
    assert synced.master.order(order_no) is None
    await store.set_mapping(MappingEntry(MATERIAL, released[order_no], "MES-AGAIN"))
    await synced.sync.run_once()
    shown = synced.master.order(order_no)
    assert shown is not None
    assert (shown.part_no, shown.state) == ("MES-AGAIN", moved)
