"""The shop-floor life of a production order: ISA-95 job order states and which command moves it where.

The ERP releases an order (NotAllowedToStart or AllowedToStart); from then on the shop floor owns its state
and moves it with five commands, modelled on the job order control of OPC 10031-4 (ISA-95):

    AllowedToStart ──Start──▶ Running ──Interrupt──▶ Interrupted
                                 ▲ │                     │
                                 │ └──────End────────┐   │
                                 └──────Resume───────┼───┤
                                                     ▼   │End
                                                   Ended ◀┘
    NotAllowedToStart, AllowedToStart, Running, Interrupted ──Abort──▶ Aborted

Ended and Aborted are final. NotAllowedToStart → AllowedToStart is the ERP's decision (planning), not a
shop-floor command. The same table decides what may be reported in which state (`accepts_measurements`,
`accepts_confirmation`); docs/report-methods.md explains the choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from qualitybridge.domain.errors import WrongOrderState
from qualitybridge.domain.model import OrderState

__all__ = [
    "MEASURING_STATES",
    "TRANSITIONS",
    "OrderCommand",
    "accepts_confirmation",
    "accepts_measurements",
    "next_state",
    "state_name",
]

_S = OrderState


class OrderCommand(StrEnum):
    START = "start"
    INTERRUPT = "interrupt"
    RESUME = "resume"
    END = "end"
    ABORT = "abort"


TRANSITIONS: Mapping[OrderCommand, Mapping[OrderState, OrderState]] = MappingProxyType(
    {
        OrderCommand.START: {_S.ALLOWED_TO_START: _S.RUNNING},
        OrderCommand.INTERRUPT: {_S.RUNNING: _S.INTERRUPTED},
        OrderCommand.RESUME: {_S.INTERRUPTED: _S.RUNNING},
        # An interrupted order may be closed short (e.g. the material ran out for good) without resuming it first.
        OrderCommand.END: {_S.RUNNING: _S.ENDED, _S.INTERRUPTED: _S.ENDED},
        # Before it ran, OPC 10031-4 calls this Cancel; for the shop floor it is the same decision: not to be done.
        OrderCommand.ABORT: {
            _S.NOT_ALLOWED_TO_START: _S.ABORTED,
            _S.ALLOWED_TO_START: _S.ABORTED,
            _S.RUNNING: _S.ABORTED,
            _S.INTERRUPTED: _S.ABORTED,
        },
    }
)

# Measurements belong to production in progress. Interrupted is included: a part measured just before the
# interruption may be reported a moment later, and inspections often continue while the machine waits.
MEASURING_STATES = frozenset({_S.RUNNING, _S.INTERRUPTED})


def state_name(state: OrderState) -> str:
    """The state as the OPC UA enumeration names it (AllowedToStart), for messages people read."""
    return "".join(part.capitalize() for part in state.name.split("_"))


def next_state(current: OrderState, command: OrderCommand) -> OrderState:
    """The state `command` leads to from `current`, or WrongOrderState saying what is possible instead."""
    allowed = TRANSITIONS[command]
    target = allowed.get(current)
    if target is None:
        possible = ", ".join(sorted(c.value for c, table in TRANSITIONS.items() if current in table)) or "none"
        raise WrongOrderState(
            "OrderNumber",
            f"cannot {command.value} an order that is {state_name(current)} "
            f"(needs {' or '.join(state_name(s) for s in allowed)}; possible now: {possible})",
        )
    return target


def accepts_measurements(state: OrderState) -> bool:
    return state in MEASURING_STATES


def accepts_confirmation(state: OrderState, *, final: bool) -> bool:
    """Running and Interrupted take any confirmation; an Ended order only its closing (final) confirmation."""
    if state in MEASURING_STATES:
        return True
    return state is _S.ENDED and final
