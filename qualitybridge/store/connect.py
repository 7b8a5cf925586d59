"""Opening the store at start: wait for a database that is not up yet, name the cause of one that never will be.

A PostgreSQL server that is still starting (or a network not yet up) is waited for with retries, each logged with
the store's location (host, port, database, user — never the password). A database or user that does not exist,
a refused password, or a SQLite path that cannot be a database file will not get better by waiting: they end at
once with one line naming the cause.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from pathlib import Path

from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from qualitybridge.store.database import create_engine, migrate, store_location
from qualitybridge.store.repository import Store

__all__ = [
    "StoreMisconfigured",
    "StoreUnavailable",
    "classify_store_error",
    "open_store_waiting",
    "schema_is_current",
    "script_heads",
]

_log = logging.getLogger(__name__)
_VERSIONS = Path(__file__).with_name("migrations") / "versions"
_REVISION = re.compile(r"^revision\b[^=\n]*=\s*[\"']([^\"']+)[\"']", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision\b[^=\n]*=(.*)$", re.MULTILINE)


class StoreUnavailable(Exception):
    """The store could not be reached within the wait; it may come up later (exit code 1)."""


class StoreMisconfigured(Exception):
    """The store cannot work as configured (no such database or user, a folder as SQLite file); exit code 2."""


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
    return seen


def classify_store_error(url: str, exc: BaseException) -> StoreMisconfigured | StoreUnavailable:
    """What an error opening the store means: worth waiting for, or a configuration to fix."""
    where = store_location(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":  # a local file: nothing to wait for
        database = Path(parsed.database or "")
        if database.is_dir():
            return StoreMisconfigured(f"store: {database} is a folder, not a SQLite file — fix [store] url")
        cause = _chain(exc)[-1]
        return StoreMisconfigured(
            f"store: cannot open {where}: {(str(cause).splitlines() or [type(cause).__name__])[0]}"
        )
    for cause in _chain(exc):
        name = type(cause).__name__
        first_line = (str(cause).splitlines() or [name])[0]
        if name == "InvalidCatalogNameError":
            return StoreMisconfigured(
                f"store: database {parsed.database!r} does not exist on {where} — create it "
                f"(createdb -O {parsed.username or 'USER'} {parsed.database}) or fix [store] url"
            )
        if name in ("InvalidAuthorizationSpecificationError", "InvalidPasswordError"):
            return StoreMisconfigured(f"store: {where} refused the login: {first_line} — fix [store] url or the role")
    for cause in _chain(exc):
        if isinstance(cause, (OSError, TimeoutError)) or type(cause).__name__ in (
            "CannotConnectNowError",
            "TooManyConnectionsError",
            "ConnectionDoesNotExistError",
        ):
            reason = (str(cause).splitlines() or [type(cause).__name__])[0]
            return StoreUnavailable(f"store: {where} not reachable: {reason}")
    if isinstance(exc, DBAPIError):
        return StoreMisconfigured(f"store: {where}: {(str(exc.orig).splitlines() or ['error'])[0]}")
    return StoreUnavailable(f"store: {where}: {type(exc).__name__}: {exc}")


def script_heads(versions: Path = _VERSIONS) -> frozenset[str] | None:
    """The newest revision of each migration branch, read from the migration files' `revision`/`down_revision`
    lines without Alembic; None when a file does not say them plainly (Alembic then decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in versions.glob("*.py"):
        if path.name == "__init__.py":
            continue
        source = path.read_text(encoding="utf-8")
        revision, down = _REVISION.search(source), _DOWN_REVISION.search(source)
        if revision is None or down is None:
            return None
        revisions.add(revision.group(1))
        parents.update(re.findall(r"[\"']([^\"']+)[\"']", down.group(1)))
    heads = frozenset(revisions - parents)
    return heads or None


async def schema_is_current(engine: AsyncEngine) -> bool:
    """Whether the store's schema is at every head already, so that the start can skip Alembic (its imports and
    its run cost about a second of CPU). Anything unexpected answers False, and Alembic runs as before."""
    heads = script_heads()
    if heads is None:
        return False
    try:
        async with engine.connect() as connection:
            stored = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
    except SQLAlchemyError:  # a new database (no version table yet), or one Alembic should look at
        return False
    return frozenset(stored) == heads


# The oldest SQLite the store's statements run on: UPDATE ... FROM (3.33) marks a relay page's deliveries, and a
# batch's multi-row INSERTs bind thousands of parameters (at most 999 before 3.32).
_OLDEST_SQLITE = (3, 33, 0)


def _sqlite_too_old(url: str) -> str | None:
    """The linked SQLite library's version when the store is SQLite and the library older than the statements need
    (Python uses the system's libsqlite3, which on older distributions predates them)."""
    if make_url(url).get_backend_name() != "sqlite" or sqlite3.sqlite_version_info >= _OLDEST_SQLITE:
        return None
    return sqlite3.sqlite_version


def _sqlite_file_is_a_folder(url: str) -> str | None:
    parsed = make_url(url)
    database = parsed.database or ""
    return database if parsed.get_backend_name() == "sqlite" and database and Path(database).is_dir() else None


async def open_store_waiting(
    url: str, *, sqlite_synchronous: str = "FULL", wait_seconds: float = 60.0, retry_seconds: float = 2.0
) -> Store:
    """Connect and migrate; retry what may get better for up to `wait_seconds`, raise the other at once."""
    # Said before any connection is tried: aiosqlite's worker thread for a failed connect can outlive the event
    # loop and print a traceback after the one line this case deserves.
    if folder := _sqlite_file_is_a_folder(url):
        raise StoreMisconfigured(f"store: {folder} is a folder, not a SQLite file — fix [store] url")
    if too_old := _sqlite_too_old(url):
        oldest = ".".join(map(str, _OLDEST_SQLITE))
        raise StoreMisconfigured(
            f"store: Python's SQLite library is {too_old}; the store needs SQLite {oldest} or newer — "
            "run on a Python linked with a newer libsqlite3, or use PostgreSQL"
        )
    deadline = time.monotonic() + wait_seconds
    attempt = 0
    while True:
        attempt += 1
        engine = None
        try:
            engine = create_engine(url, sqlite_synchronous=sqlite_synchronous)
            if not await schema_is_current(engine):
                await migrate(engine)
        except Exception as exc:
            if engine is not None:
                await engine.dispose()
            problem = classify_store_error(url, exc)
            if isinstance(problem, StoreMisconfigured):
                raise problem from None
            left = deadline - time.monotonic()
            if left <= 0:
                raise StoreUnavailable(
                    f"{problem} — gave up after {wait_seconds:g} s ([store] connect_wait_seconds)"
                ) from None
            _log.warning(
                "%s; retrying in %g s (attempt %d, giving up in %.0f s)", problem, retry_seconds, attempt, left
            )
            await asyncio.sleep(min(retry_seconds, left))
            continue
        except BaseException:
            # Stopped while connecting or migrating (SIGTERM during the start): the engine's connections are closed
            # before the event loop is, or aiosqlite's worker thread answers a statement to a closed loop and prints
            # a traceback.
            if engine is not None:
                await engine.dispose()
            raise
        return Store(engine)
