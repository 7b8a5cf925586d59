"""OrderControl's rules (docs/report-methods.md, order methods): the ISA-95 transitions the shop floor may make,
stored by compare-and-set, kept in the master data, announced as OrderStateChanged."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from qualitybridge.domain.errors import UnknownReference, WrongOrderState
from qualitybridge.domain.events import OrderStateChanged
from qualitybridge.domain.model import OrderState
from qualitybridge.domain.order_states import OrderCommand, state_name
from qualitybridge.services.event_bus import EventBus
from qualitybridge.services.master_data import MasterData
from qualitybridge.services.order_control import OrderControl
from tests.builders import order
from tests.fakes import FakeStore, RecordingPublisher

ORDER = "1000"
S = OrderState
C = OrderCommand

# The documented table (docs/report-methods.md, "Order states"), written out here on its own: every pair not
# listed must be refused.
ALLOWED = {
    (S.ALLOWED_TO_START, C.START): S.RUNNING,
    (S.RUNNING, C.INTERRUPT): S.INTERRUPTED,
    (S.INTERRUPTED, C.RESUME): S.RUNNING,
    (S.RUNNING, C.END): S.ENDED,
    (S.INTERRUPTED, C.END): S.ENDED,
    (S.NOT_ALLOWED_TO_START, C.ABORT): S.ABORTED,
    (S.ALLOWED_TO_START, C.ABORT): S.ABORTED,
    (S.RUNNING, C.ABORT): S.ABORTED,
    (S.INTERRUPTED, C.ABORT): S.ABORTED,
}


@dataclass
class Control:
    service: OrderControl
    store: FakeStore
    master: MasterData
    published: RecordingPublisher

    def state(self) -> tuple[OrderState, OrderState]:
        """(stored, in memory) state of ORDER."""
        in_memory = self.master.order(ORDER)
        assert in_memory is not None
        return self.store.order_states[ORDER], in_memory.state


def _control(state: OrderState, bus: EventBus, published: RecordingPublisher) -> Control:
    orders = [order(ORDER, state=state)]
    master = MasterData()
    master.replace(orders, ())
    store = FakeStore(orders)
    return Control(OrderControl(store.as_store(), master, events=bus), store, master, published)


@pytest.mark.parametrize("command", list(OrderCommand))
@pytest.mark.parametrize("state", list(OrderState), ids=state_name)
async def test_every_command_from_every_state(
    bus: EventBus, published: RecordingPublisher, state: OrderState, command: OrderCommand
) -> None:
    control = _control(state, bus, published)
    target = ALLOWED.get((state, command))
    if target is not None:
        assert await control.service.apply(ORDER, command, "alice") is target
        assert control.state() == (target, target)
        assert control.store.called("change_order_state") == [(ORDER, state, target)]
        assert control.published.events == [OrderStateChanged(order(ORDER, state=target))]
        return
    with pytest.raises(WrongOrderState) as refused:
        await control.service.apply(ORDER, command, "alice")
    assert refused.value.field == "OrderNumber"
    assert state_name(state) in refused.value.message
    assert control.state() == (state, state)
    assert control.store.called("change_order_state") == [], "a refused command does not touch the store"
    assert control.published.events == []


async def test_an_order_walks_through_its_states(bus: EventBus, published: RecordingPublisher) -> None:
    control = _control(S.ALLOWED_TO_START, bus, published)
    walk = [C.START, C.INTERRUPT, C.RESUME, C.INTERRUPT, C.END]
    assert [await control.service.apply(ORDER, command, "alice") for command in walk] == [
        S.RUNNING,
        S.INTERRUPTED,
        S.RUNNING,
        S.INTERRUPTED,
        S.ENDED,
    ]
    assert [event.order.state for event in published.of(OrderStateChanged)] == [
        S.RUNNING,
        S.INTERRUPTED,
        S.RUNNING,
        S.INTERRUPTED,
        S.ENDED,
    ]
    with pytest.raises(WrongOrderState):
        await control.service.apply(ORDER, C.ABORT, "alice")  # Ended is final


async def test_an_unknown_order_is_named(bus: EventBus, published: RecordingPublisher) -> None:
    control = _control(S.ALLOWED_TO_START, bus, published)
    with pytest.raises(UnknownReference) as refused:
        await control.service.apply("9999", C.START, "alice")
    assert refused.value.field == "OrderNumber"
    assert "9999" in refused.value.message
    assert control.store.calls == []
    assert published.events == []


async def test_a_lost_compare_and_set_answers_wrong_order_state(bus: EventBus, published: RecordingPublisher) -> None:
    control = _control(S.ALLOWED_TO_START, bus, published)
    control.store.order_states[ORDER] = S.RUNNING  # another operator's Start won, and this process has not seen it
    with pytest.raises(WrongOrderState) as refused:
        await control.service.apply(ORDER, C.START, "bob")
    assert refused.value.field == "OrderNumber"
    assert "changed state meanwhile" in refused.value.message
    assert control.store.called("change_order_state") == [(ORDER, S.ALLOWED_TO_START, S.RUNNING)]
    assert control.state() == (S.RUNNING, S.ALLOWED_TO_START), "memory is not moved for a change that lost"
    assert published.events == []
