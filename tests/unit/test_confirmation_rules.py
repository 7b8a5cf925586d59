"""ConfirmationService's rules (docs/report-methods.md, ReportConfirmation): quantities, units, order states, the
over-confirmation tolerance, the final confirmation and repeated client ids, against the in-memory FakeStore."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from qualitybridge.domain.errors import (
    ClientIdReused,
    InconsistentReport,
    InvalidValue,
    ReportRefused,
    UnknownReference,
    WrongOrderState,
)
from qualitybridge.domain.events import ConfirmationAccepted
from qualitybridge.domain.model import Confirmation, OrderState
from qualitybridge.domain.order_states import state_name
from qualitybridge.services.confirmations import ConfirmationRequest, ConfirmationService
from qualitybridge.services.event_bus import EventBus
from qualitybridge.services.master_data import MasterData
from tests.builders import order
from tests.fakes import FakeStore, FixedClock, RecordingPublisher

ORDER = "1000"  # Running, 10 pieces (C62) planned, operations 0010 and 0020
BY_WEIGHT = "2000"  # Running, planned in kilograms (KGM)


def request(**fields: Any) -> ConfirmationRequest:
    """One good piece of ORDER/0010 unless `fields` say otherwise."""
    defaults: dict[str, Any] = {
        "order_no": ORDER,
        "operation_no": "0010",
        "yield_quantity": 1.0,
        "scrap_quantity": 0.0,
        "rework_quantity": 0.0,
    }
    return ConfirmationRequest(**{**defaults, **fields})


@dataclass
class Confirming:
    service: ConfirmationService
    store: FakeStore
    master: MasterData
    published: RecordingPublisher
    clock: FixedClock

    async def confirm(self, **fields: Any) -> Confirmation:
        return (await self.service.report_confirmation(request(**fields), "machine1")).confirmation

    async def refusal(self, **fields: Any) -> ReportRefused:
        """The refusal of `request(**fields)`, after checking that it stored and announced nothing."""
        stored_before = list(self.store.confirmation_records)
        events_before = list(self.published.events)
        with pytest.raises(ReportRefused) as refused:
            await self.service.report_confirmation(request(**fields), "machine1")
        assert self.store.confirmation_records == stored_before, "a refused confirmation is not stored"
        assert self.published.events == events_before, "a refused confirmation is not announced"
        return refused.value


def _service(
    store: FakeStore, master: MasterData, bus: EventBus, clock: FixedClock, **options: Any
) -> ConfirmationService:
    return ConfirmationService(store.as_store(), master, events=bus, clock=clock, **options)


@pytest.fixture
def confirming(bus: EventBus, published: RecordingPublisher, clock: FixedClock) -> Confirming:
    orders = [
        order(ORDER, state=OrderState.RUNNING, operation_nos=("0010", "0020")),
        order(BY_WEIGHT, state=OrderState.RUNNING).model_copy(update={"quantity_unit": "KGM"}),
    ]
    master = MasterData()
    master.replace(orders, ())
    store = FakeStore(orders)
    return Confirming(_service(store, master, bus, clock), store, master, published, clock)


async def test_an_accepted_confirmation_is_stored_queued_and_announced(confirming: Confirming) -> None:
    record = await confirming.service.report_confirmation(
        request(yield_quantity=4, scrap_quantity=1, rework_quantity=2, reason_code="R07", client_confirmation_id="c-1"),
        "machine1",
    )
    assert record.confirmation == Confirmation(
        order_no=ORDER,
        operation_no="0010",
        yield_quantity=4,
        scrap_quantity=1,
        rework_quantity=2,
        unit="C62",
        reason_code="R07",
        final=False,
    )
    assert (record.client_confirmation_id, record.reported_by) == ("c-1", "machine1")
    assert record.received_at == confirming.clock.now
    assert confirming.store.confirmation_records == [record]
    assert confirming.published.events == [ConfirmationAccepted(record)]


@pytest.mark.parametrize(
    ("fields", "error", "field"),
    [
        ({"yield_quantity": float("nan")}, InvalidValue, "YieldQuantity"),
        ({"scrap_quantity": float("inf"), "reason_code": "R01"}, InvalidValue, "ScrapQuantity"),
        ({"rework_quantity": float("-inf"), "reason_code": "R01"}, InvalidValue, "ReworkQuantity"),
        ({"yield_quantity": -1.0}, InvalidValue, "YieldQuantity"),
        ({"scrap_quantity": -0.5, "reason_code": "R01"}, InvalidValue, "ScrapQuantity"),
        ({"yield_quantity": 0.0}, InconsistentReport, "YieldQuantity"),  # all three zero: nothing to confirm
        ({"scrap_quantity": 1.0}, InconsistentReport, "ReasonCode"),
        ({"rework_quantity": 1.0}, InconsistentReport, "ReasonCode"),
    ],
)
async def test_quantities_are_checked_each_naming_its_argument(
    confirming: Confirming, fields: dict[str, Any], error: type[ReportRefused], field: str
) -> None:
    refused = await confirming.refusal(**fields)
    assert type(refused) is error
    assert refused.field == field


@pytest.mark.parametrize(
    ("order_no", "unit", "booked"),
    [(ORDER, "", "C62"), (ORDER, "C62", "C62"), (BY_WEIGHT, "", "KGM"), (BY_WEIGHT, "KGM", "KGM")],
)
async def test_the_unit_defaults_to_the_orders_and_is_booked(
    confirming: Confirming, order_no: str, unit: str, booked: str
) -> None:
    assert (await confirming.confirm(order_no=order_no, unit=unit)).unit == booked


@pytest.mark.parametrize(
    ("order_no", "unit", "words"),
    [
        (ORDER, "pcs", "not a UNECE"),
        (ORDER, "C62X", "not a UNECE"),
        (ORDER, "KGM", "planned in C62"),
        (BY_WEIGHT, "C62", "planned in KGM"),
    ],
)
async def test_a_unit_must_be_a_unece_code_and_the_orders(
    confirming: Confirming, order_no: str, unit: str, words: str
) -> None:
    refused = await confirming.refusal(order_no=order_no, unit=unit)
    assert type(refused) is InconsistentReport
    assert refused.field == "Unit"
    assert words in refused.message


@pytest.mark.parametrize(
    ("fields", "field"), [({"order_no": "9999"}, "OrderNumber"), ({"operation_no": "0990"}, "OperationNumber")]
)
async def test_an_unknown_order_or_operation_names_its_argument(
    confirming: Confirming, fields: dict[str, str], field: str
) -> None:
    refused = await confirming.refusal(**fields)
    assert type(refused) is UnknownReference
    assert refused.field == field


@pytest.mark.parametrize("final", [False, True])
@pytest.mark.parametrize("state", list(OrderState), ids=state_name)
async def test_which_state_takes_which_confirmation(confirming: Confirming, state: OrderState, final: bool) -> None:
    confirming.master.set_order_state(ORDER, state)
    takes = state in (OrderState.RUNNING, OrderState.INTERRUPTED) or (state is OrderState.ENDED and final)
    if takes:
        assert (await confirming.confirm(final=final)).final is final
        return
    refused = await confirming.refusal(final=final)
    assert type(refused) is WrongOrderState
    assert refused.field == "OrderNumber"
    assert state_name(state) in refused.message


async def test_confirmed_yield_and_scrap_may_exceed_the_plan_by_the_tolerance_only(confirming: Confirming) -> None:
    await confirming.confirm(yield_quantity=6)
    await confirming.confirm(yield_quantity=3, scrap_quantity=2, reason_code="R01")  # 11 = 10 planned + 10 %
    refused = await confirming.refusal(yield_quantity=0.5)
    assert type(refused) is InvalidValue
    assert refused.field == "YieldQuantity"
    assert "11.5" in refused.message
    assert "10 % tolerance" in refused.message
    other = await confirming.confirm(operation_no="0020", yield_quantity=11)  # each operation has its own total
    assert other.operation_no == "0020"
    assert len(confirming.store.confirmation_records) == 3


async def test_scrap_counts_towards_the_plan_and_rework_does_not(confirming: Confirming) -> None:
    await confirming.confirm(yield_quantity=10, rework_quantity=50, reason_code="R09")
    refused = await confirming.refusal(scrap_quantity=1.5, reason_code="R01")
    assert refused.field == "YieldQuantity"
    await confirming.confirm(yield_quantity=0, scrap_quantity=1, reason_code="R01")  # 11: the limit itself
    assert [c.confirmation.scrap_quantity for c in confirming.store.confirmation_records] == [0, 1]


async def test_the_tolerance_is_a_setting(
    confirming: Confirming, bus: EventBus, published: RecordingPublisher, clock: FixedClock
) -> None:
    exact = Confirming(
        _service(confirming.store, confirming.master, bus, clock, tolerance_percent=0),
        confirming.store,
        confirming.master,
        published,
        clock,
    )
    await exact.confirm(yield_quantity=10)
    refused = await exact.refusal(yield_quantity=0.001)
    assert type(refused) is InvalidValue


async def test_rounding_of_summed_quantities_is_no_over_confirmation(confirming: Confirming) -> None:
    # Twenty times 0.55 is 11.000000000000002 in doubles, a hair above the limit of 11.
    for _ in range(20):
        await confirming.confirm(yield_quantity=0.55)
    assert len(confirming.store.confirmation_records) == 20
    refused = await confirming.refusal(yield_quantity=0.01)
    assert type(refused) is InvalidValue


async def test_after_the_final_confirmation_the_operation_takes_no_more(confirming: Confirming) -> None:
    await confirming.confirm(yield_quantity=8, final=True)
    for final in (False, True):
        refused = await confirming.refusal(yield_quantity=1, final=final)
        assert type(refused) is WrongOrderState
        assert refused.field == "OperationNumber"
        assert "finally confirmed" in refused.message
    other = await confirming.confirm(operation_no="0020")  # the order's other operation is still open
    assert (other.operation_no, len(confirming.store.confirmation_records)) == ("0020", 2)


async def test_an_ended_order_takes_its_final_confirmation_once(confirming: Confirming) -> None:
    confirming.master.set_order_state(ORDER, OrderState.ENDED)
    await confirming.confirm(final=True)
    refused = await confirming.refusal(final=True)
    assert refused.field == "OperationNumber"


async def test_a_repeated_client_confirmation_id_returns_the_first_record(confirming: Confirming) -> None:
    first = await confirming.service.report_confirmation(
        request(yield_quantity=4, client_confirmation_id="mes-1"), "machine1"
    )
    again = await confirming.service.report_confirmation(
        request(yield_quantity=4, client_confirmation_id="mes-1"), "machine1"
    )
    assert again == first
    assert confirming.store.confirmation_records == [first]
    assert confirming.published.events == [ConfirmationAccepted(first)], "only the new record is announced"


async def test_a_client_confirmation_id_reused_for_other_quantities_is_refused(confirming: Confirming) -> None:
    first = await confirming.service.report_confirmation(
        request(yield_quantity=4, client_confirmation_id="mes-1"), "machine1"
    )
    with pytest.raises(ClientIdReused):
        await confirming.service.report_confirmation(
            request(yield_quantity=40, client_confirmation_id="mes-1"), "machine1"
        )
    assert confirming.store.confirmation_records == [first]


async def test_a_repeat_is_answered_before_any_check(confirming: Confirming) -> None:
    first = await confirming.service.report_confirmation(request(client_confirmation_id="mes-2"), "machine1")
    confirming.master.set_order_state(ORDER, OrderState.ABORTED)
    assert type(await confirming.refusal(client_confirmation_id="mes-3")) is WrongOrderState
    repeat = request(client_confirmation_id="mes-2")
    assert await confirming.service.report_confirmation(repeat, "machine1") == first
    assert len(confirming.published.events) == 1
