"""Settings shared by every tier. Fixtures live with the tier that needs them (tests/integration/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import POSTGRES_SKIP_REASON, POSTGRES_URL

# Bytecode for the checkout made once before the xdist workers start (see that module).
pytest_plugins = ("tests.bytecode_ahead",)

# `make test` runs the suite on four pytest-xdist workers with --dist loadfile, refined by `work_unit`: a unit of work
# a worker takes is a test module, or the PostgreSQL half of a module whose tests run on both stores (those are two
# deployments anyway, and the long modules then run on two workers at once instead of one after the other). Each
# unit stays in one worker, so its deployments are started once. Units are handed out in collection order
# (--no-loadscope-reorder), and this hook orders them longest first, so the long ones start at once and the short
# ones fill in at the end: the workers finish at about the same time. The figures are the wall seconds of each unit
# (one store; the larger half where a module has two) in `make test` with four workers on 2026-11-30 17:45-17:53 UTC
# (coverage on, PostgreSQL on, a machine ~1.7x slower than the one before), measured by tests/suite_profile.py; only
# their order matters. A module not listed counts as short (under 8 s there). Refresh them with
# `QB_SUITE_PROFILE=profile.tsv make test PYTEST_ADDOPTS="-p tests.suite_profile"` when a module grows by more than a
# few seconds.
EXPECTED_SECONDS = {
    "tests/integration/test_standard_nodes.py": 198,
    "tests/e2e/test_chaos.py": 102,
    "tests/e2e/test_limits.py": 91,
    "tests/e2e/test_start_stop.py": 90,
    "tests/integration/test_sap_s4hana.py": 56,
    "tests/e2e/test_end_to_end.py": 48,
    "tests/interop/test_interop_node_opcua.py": 46,
    "tests/integration/test_order_report.py": 44,
    "tests/e2e/test_operations.py": 42,
    "tests/e2e/test_durability.py": 40,
    "tests/e2e/test_spc_events.py": 39,
    "tests/unit/test_spc_resume.py": 33,
    "tests/integration/test_relay_order_and_kinds.py": 30,
    "tests/integration/test_identity.py": 28,
    "tests/integration/test_catalogue_nodes.py": 27,
    "tests/e2e/test_catalogue_load.py": 25,
    "tests/integration/test_audit_trail.py": 22,
    "tests/e2e/test_reporting_methods.py": 21,
    "tests/integration/test_security.py": 21,
    "tests/e2e/test_connection_flood.py": 20,
    "tests/e2e/test_security_matrix.py": 19,
    "tests/integration/test_shop_floor_store.py": 19,
    "tests/integration/test_sync_and_relay.py": 18,
    "tests/e2e/test_client_cli.py": 17,
    "tests/e2e/test_relay_head_of_line.py": 17,
    "tests/integration/test_sap_demo_end_to_end.py": 17,
    "tests/integration/test_store.py": 17,
    "tests/integration/test_spc_restart.py": 15,
    "tests/integration/test_spc_monitor.py": 14,
    "tests/e2e/test_audit_poison.py": 13,
    "tests/integration/test_group_commit.py": 13,
    "tests/e2e/test_bad_erp_data.py": 12,
    "tests/integration/test_history_read.py": 12,
    "tests/integration/test_relay_read_ahead.py": 11,
    "tests/e2e/test_logs.py": 10,
    "tests/e2e/test_mapping_gaps.py": 10,
    "tests/integration/test_array_limits.py": 10,
    "tests/integration/test_simulator.py": 10,
    "tests/unit/test_call_codec.py": 10,
    "tests/e2e/test_idempotency.py": 9,
    "tests/integration/test_pki_lifecycle.py": 9,
    "tests/integration/test_rest_delta_and_batch.py": 9,
    "tests/integration/test_admin_cli.py": 8,
    "tests/integration/test_fork_server.py": 8,
    "tests/integration/test_kpis.py": 8,
}


def pytest_report_header() -> str:
    state = f"on ({POSTGRES_URL})" if POSTGRES_URL else f"skipped, {POSTGRES_SKIP_REASON}"
    return f"PostgreSQL store tests: {state}"


def work_unit(nodeid: str) -> str:
    """The module of a test id, with "::postgresql" for a test whose first parameter is the PostgreSQL store
    (`test_x.py::test_y[postgresql-...]`)."""
    module, _, test = nodeid.partition("::")
    return f"{module}::postgresql" if test.partition("[")[2].startswith("postgresql") else module


def _expected_seconds(unit: str) -> float:
    return EXPECTED_SECONDS.get(unit.partition("::")[0], 0.0)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    units: dict[str, list[pytest.Item]] = {}
    for item in items:
        units.setdefault(work_unit(item.nodeid), []).append(item)
    ordered = sorted(units, key=_expected_seconds, reverse=True)  # stable: equal ones keep collection order
    items[:] = [item for unit in ordered for item in units[unit]]


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """--dist loadfile, with `work_unit` as the unit a worker takes."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class ModuleAndStoreScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return ModuleAndStoreScheduling(config, log)
