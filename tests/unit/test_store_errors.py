"""What an error opening the store means for the operator: wait for it (the store may still be starting) or fix the
configuration (nothing will change by waiting); each says which store, never its password."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError

from qualitybridge.store.connect import StoreMisconfigured, StoreUnavailable, classify_store_error, open_store_waiting

POSTGRES = "postgresql+asyncpg://qb:secret@db.plant:5432/quality"


def test_a_sqlite_file_that_cannot_be_opened_is_a_configuration_to_fix(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'missing-folder' / 'qb.db'}"
    problem = classify_store_error(url, OSError("unable to open database file"))
    assert isinstance(problem, StoreMisconfigured)
    assert "cannot open" in str(problem)
    assert "unable to open database file" in str(problem)


def test_a_refused_connection_is_waited_for_and_names_the_host_not_the_password() -> None:
    problem = classify_store_error(POSTGRES, ConnectionRefusedError(111, "Connect call failed"))
    assert isinstance(problem, StoreUnavailable)
    assert "db.plant" in str(problem)
    assert "not reachable" in str(problem)
    assert "secret" not in str(problem)


def test_a_database_error_of_another_kind_is_a_configuration_to_fix() -> None:
    error = DBAPIError("SELECT 1", {}, Exception("permission denied for schema public"))
    problem = classify_store_error(POSTGRES, error)
    assert isinstance(problem, StoreMisconfigured)
    assert "permission denied" in str(problem)
    assert "secret" not in str(problem)


def test_anything_else_is_waited_for_with_its_type_named() -> None:
    problem = classify_store_error(POSTGRES, RuntimeError("strange"))
    assert isinstance(problem, StoreUnavailable)
    assert "RuntimeError: strange" in str(problem)


async def test_a_sqlite_library_older_than_the_statements_need_is_refused_before_any_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python links the system's libsqlite3 (RHEL 8's is 3.26): the relay's `UPDATE ... FROM` needs 3.33 and a batch's
    # multi-row INSERT more than the 999 parameters SQLite allowed before 3.32. Failing there would refuse every
    # batch and leave delivered postings unmarked, so the start says it at once.
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 26, 0))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.26.0")
    database = tmp_path / "qb.db"
    with pytest.raises(StoreMisconfigured, match=r"3\.26\.0.*3\.33"):
        await open_store_waiting(f"sqlite+aiosqlite:///{database}", wait_seconds=0)
    assert not database.exists()
