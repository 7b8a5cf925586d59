"""Settings shared by every tier. Fixtures live with the tier that needs them (tests/integration/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import POSTGRES_SKIP_REASON, POSTGRES_URL

REPO_ROOT = Path(__file__).resolve().parents[1]

# `make test` runs the suite on two pytest-xdist workers (--dist loadgroup). The unit of work a worker takes is a
# group: one test module, or for end-to-end modules whose deployment is parametrized by backend, one module on one
# backend, so a deployment (module-scoped or not) is started by one worker and used by all its tests. Groups are
# handed out longest first, so the long ones start at once and the short ones fill in at the end: both workers
# finish at about the same time. The figures are rough seconds on a quiet machine (sqlite; a PostgreSQL group
# costs about as much when QB_TEST_POSTGRES_URL is set and nothing when it is skipped); a module not listed counts
# as short. Refresh them from `--durations` when a module grows by more than a few seconds.
EXPECTED_SECONDS = {
    "tests/e2e/test_chaos.py": 75,
    "tests/e2e/test_limits.py": 60,
    "tests/interop/test_interop_node_opcua.py": 50,  # with `npm ci` on a clean clone
    "tests/e2e/test_durability.py": 35,
    "tests/e2e/test_end_to_end.py": 25,
    "tests/e2e/test_demo.py": 20,
    "tests/integration/test_cli.py": 20,
    "tests/e2e/test_security_matrix.py": 18,
    "tests/e2e/test_reporting_methods.py": 15,
    "tests/e2e/test_spc_events.py": 15,
    "tests/integration/test_audit_trail.py": 10,
    "tests/integration/test_outbox_cli.py": 5,
}
BACKEND_FIXTURE = "deployment"


def pytest_report_header() -> str:
    state = f"on ({POSTGRES_URL})" if POSTGRES_URL else f"skipped, {POSTGRES_SKIP_REASON}"
    return f"PostgreSQL store tests: {state}"


def _group(item: pytest.Item) -> tuple[str, str]:
    """(module, backend or ""): what one worker runs as a whole."""
    module = item.path.relative_to(REPO_ROOT).as_posix() if item.path.is_relative_to(REPO_ROOT) else str(item.path)
    callspec = getattr(item, "callspec", None)
    backend = (
        callspec.params.get(BACKEND_FIXTURE, "") if callspec is not None and module.startswith("tests/e2e/") else ""
    )
    return module, str(backend)


def _expected_seconds(group: tuple[str, str]) -> float:
    module, backend = group
    if backend == "postgresql" and not POSTGRES_URL:
        return 0.0
    return EXPECTED_SECONDS.get(module, 0.0)


@pytest.hookimpl(tryfirst=True)  # before xdist turns the xdist_group marks into the node ids it schedules by
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    groups: dict[tuple[str, str], list[pytest.Item]] = {}
    for item in items:
        groups.setdefault(_group(item), []).append(item)
    ordered = sorted(groups, key=_expected_seconds, reverse=True)  # stable: equal ones keep collection order
    items[:] = [item for group in ordered for item in groups[group]]
    if config.pluginmanager.hasplugin("xdist"):
        for (module, backend), members in groups.items():
            name = f"{module}[{backend}]" if backend else module
            for item in members:
                item.add_marker(pytest.mark.xdist_group(name))
