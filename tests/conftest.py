"""Settings shared by every tier. Fixtures live with the tier that needs them (tests/integration/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import POSTGRES_SKIP_REASON, POSTGRES_URL

REPO_ROOT = Path(__file__).resolve().parents[1]

# `make test` runs the suite on two pytest-xdist workers with --dist loadfile: a test module is the unit of work a
# worker takes, so a deployment (module-scoped or not) is started by the worker that runs all its tests. Modules
# are handed out in collection order (--no-loadscope-reorder), and this hook orders them longest first, so the long
# ones start at once and the short ones fill in at the end: both workers finish at about the same time. The figures
# are rough seconds on a quiet machine for SQLite; a module with PostgreSQL variants costs about twice as much when
# QB_TEST_POSTGRES_URL is set. A module not listed counts as short. Refresh them from `--durations` when a module
# grows by more than a few seconds.
EXPECTED_SECONDS = {
    "tests/e2e/test_chaos.py": 75,
    "tests/e2e/test_limits.py": 60,
    "tests/interop/test_interop_node_opcua.py": 55,  # with `npm ci` on a clean clone
    "tests/e2e/test_durability.py": 35,
    "tests/e2e/test_end_to_end.py": 25,
    "tests/e2e/test_demo.py": 20,
    "tests/integration/test_cli.py": 20,
    "tests/e2e/test_security_matrix.py": 18,
    "tests/e2e/test_reporting_methods.py": 15,
    "tests/e2e/test_spc_events.py": 15,
    "tests/integration/test_audit_trail.py": 10,
    "tests/integration/test_outbox_cli.py": 5,
    # Estimated from their authors' runs on a loaded machine, halved; refresh from `--durations` on a quiet one.
    "tests/e2e/test_start_stop.py": 60,
    "tests/e2e/test_operations.py": 40,
    "tests/e2e/test_client_cli.py": 25,
    "tests/e2e/test_bad_erp_data.py": 25,
    "tests/e2e/test_logs.py": 20,
    "tests/e2e/test_connection_flood.py": 20,
    "tests/integration/test_sap_s4hana.py": 20,
    "tests/e2e/test_bad_input.py": 15,
    "tests/e2e/test_idempotency.py": 15,
    "tests/e2e/test_audit_poison.py": 15,
    "tests/e2e/test_relay_head_of_line.py": 20,
    "tests/e2e/test_catalogue_load.py": 25,
    "tests/integration/test_catalogue_nodes.py": 15,
    "tests/integration/test_sap_demo_end_to_end.py": 15,
    "tests/e2e/test_plan_versions.py": 20,
    "tests/integration/test_master_data_audit_cli.py": 20,
    "tests/e2e/test_mapping_gaps.py": 30,
}


def pytest_report_header() -> str:
    state = f"on ({POSTGRES_URL})" if POSTGRES_URL else f"skipped, {POSTGRES_SKIP_REASON}"
    return f"PostgreSQL store tests: {state}"


def _module(item: pytest.Item) -> str:
    path = item.path
    return path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else str(path)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(_module(item), []).append(item)

    def expected_seconds(module: str) -> float:
        on_postgres = POSTGRES_URL and any(item.get_closest_marker("postgres") for item in modules[module])
        return EXPECTED_SECONDS.get(module, 0.0) * (2 if on_postgres else 1)

    ordered = sorted(modules, key=expected_seconds, reverse=True)  # stable: equal ones keep collection order
    items[:] = [item for module in ordered for item in modules[module]]
