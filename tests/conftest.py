"""Settings shared by every tier. Fixtures live with the tier that needs them (tests/integration/conftest.py)."""

from __future__ import annotations

from tests.harness import POSTGRES_SKIP_REASON, POSTGRES_URL


def pytest_report_header() -> str:
    state = f"on ({POSTGRES_URL})" if POSTGRES_URL else f"skipped, {POSTGRES_SKIP_REASON}"
    return f"PostgreSQL store tests: {state}"
