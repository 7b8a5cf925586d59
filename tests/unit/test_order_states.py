"""The ISA-95 order state machine as a pure table: every command from every state, and what may be reported when."""

from __future__ import annotations

import pytest

from qualitybridge.domain.errors import WrongOrderState
from qualitybridge.domain.model import OrderState
from qualitybridge.domain.order_states import (
    TRANSITIONS,
    OrderCommand,
    accepts_confirmation,
    accepts_measurements,
    next_state,
    state_name,
)

S = OrderState
C = OrderCommand

# The whole table written out once more, independently of TRANSITIONS: every (state, command) pair not listed here
# must be refused.
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


@pytest.mark.parametrize("state", list(OrderState))
@pytest.mark.parametrize("command", list(OrderCommand))
def test_every_command_from_every_state(state: OrderState, command: OrderCommand) -> None:
    expected = ALLOWED.get((state, command))
    if expected is not None:
        assert next_state(state, command) is expected
        return
    with pytest.raises(WrongOrderState) as refused:
        next_state(state, command)
    assert refused.value.field == "OrderNumber"
    assert state_name(state) in refused.value.message


def test_the_table_is_exactly_the_documented_one() -> None:
    assert {(state, command): target for command, table in TRANSITIONS.items() for state, target in table.items()} == (
        ALLOWED
    )


@pytest.mark.parametrize("final_state", [S.ENDED, S.ABORTED])
def test_ended_and_aborted_are_final(final_state: OrderState) -> None:
    for command in OrderCommand:
        with pytest.raises(WrongOrderState):
            next_state(final_state, command)


def test_refusal_names_what_is_possible_instead() -> None:
    with pytest.raises(WrongOrderState) as refused:
        next_state(S.INTERRUPTED, C.START)
    assert "AllowedToStart" in refused.value.message
    assert "possible now: abort, end, resume" in refused.value.message


def test_start_to_end_walk() -> None:
    state = S.ALLOWED_TO_START
    for command in (C.START, C.INTERRUPT, C.RESUME, C.INTERRUPT, C.END):
        state = next_state(state, command)
    assert state is S.ENDED


@pytest.mark.parametrize(
    ("state", "measurements", "partial_confirmation", "final_confirmation"),
    [
        (S.NOT_ALLOWED_TO_START, False, False, False),
        (S.ALLOWED_TO_START, False, False, False),
        (S.RUNNING, True, True, True),
        (S.INTERRUPTED, True, True, True),
        (S.ENDED, False, False, True),
        (S.ABORTED, False, False, False),
    ],
)
def test_what_each_state_accepts(
    state: OrderState, measurements: bool, partial_confirmation: bool, final_confirmation: bool
) -> None:
    assert accepts_measurements(state) is measurements
    assert accepts_confirmation(state, final=False) is partial_confirmation
    assert accepts_confirmation(state, final=True) is final_confirmation


def test_state_names_are_the_opc_ua_enumeration_names() -> None:
    assert [state_name(state) for state in OrderState] == [
        "NotAllowedToStart",
        "AllowedToStart",
        "Running",
        "Interrupted",
        "Ended",
        "Aborted",
    ]
