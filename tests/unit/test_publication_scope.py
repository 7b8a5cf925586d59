"""Which orders the address space publishes: `[publish]` by work centre, state and a window of planned dates."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from qualitybridge.app import publication_scope
from qualitybridge.config import ConfigError, load_config
from qualitybridge.domain.model import Operation, OrderState
from qualitybridge.domain.publication import PublicationScope
from tests.builders import NOW, order


def test_the_default_scope_publishes_every_order() -> None:
    scope = PublicationScope()
    assert scope.includes(order("1", state=OrderState.ABORTED), NOW)
    assert not scope.depends_on_time


def test_work_centre_of_the_order_or_of_any_operation_counts() -> None:
    scope = PublicationScope(work_centres=frozenset({"WC-DRILL"}))
    on_order = order("1").model_copy(update={"work_centre": "WC-DRILL"})
    on_operation = order("2").model_copy(
        update={"work_centre": "WC-LATHE", "operations": (Operation(operation_no="0010", work_centre="WC-DRILL"),)}
    )
    elsewhere = order("3").model_copy(update={"work_centre": "WC-LATHE"})
    assert scope.includes(on_order, NOW)
    assert scope.includes(on_operation, NOW)
    assert not scope.includes(elsewhere, NOW)


def test_states_filter() -> None:
    scope = PublicationScope(states=frozenset({OrderState.RUNNING}))
    assert scope.includes(order("1", state=OrderState.RUNNING), NOW)
    assert not scope.includes(order("2", state=OrderState.ENDED), NOW)


@pytest.mark.parametrize(
    ("start_days", "end_days", "published"),
    [
        (-10, -3, False),  # ended more than two days ago
        (-10, -1, True),  # ended yesterday
        (6, 8, True),  # starts within a week
        (8, 9, False),  # starts later
        (None, None, True),  # no planned dates: always in the window
        (None, -3, False),  # only an end, long past
        (8, None, False),  # only a start, far ahead
    ],
)
def test_window_of_planned_dates(start_days: int | None, end_days: int | None, published: bool) -> None:
    scope = PublicationScope(planned_days_back=2, planned_days_ahead=7)
    assert scope.depends_on_time
    planned = order("1").model_copy(
        update={
            "planned_start": None if start_days is None else NOW + timedelta(days=start_days),
            "planned_end": None if end_days is None else NOW + timedelta(days=end_days),
        }
    )
    assert scope.includes(planned, NOW) is published


def test_publish_section_becomes_the_scope(tmp_path: Path) -> None:
    path = tmp_path / "qualitybridge.toml"
    path.write_text('[publish]\nwork_centres = ["WC-1"]\nstates = ["RUNNING"]\nplanned_days_ahead = 7\n')
    scope = publication_scope(load_config(path).publish)
    assert scope == PublicationScope(
        work_centres=frozenset({"WC-1"}), states=frozenset({OrderState.RUNNING}), planned_days_ahead=7
    )


def test_an_unknown_state_is_named(tmp_path: Path) -> None:
    path = tmp_path / "qualitybridge.toml"
    path.write_text('[publish]\nstates = ["STARTED"]\n')
    with pytest.raises(ConfigError, match=r"publish\.states"):
        load_config(path)
