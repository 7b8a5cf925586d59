"""Engine creation and schema migration for the store (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

import logging
import math
import os
import time
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, event, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from qualitybridge.store.sqlite_driver import one_hop_connector

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

__all__ = ["create_engine", "migrate", "store_location"]

_log = logging.getLogger(__name__)


def create_engine(url: str, *, sqlite_synchronous: str = "FULL") -> AsyncEngine:
    """An async engine; SQLite files run in WAL mode so readers never block the report path."""
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            path = Path(database)
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                # The store holds password hashes and the audit log: owner only. SQLite gives its -wal and -shm
                # files the database file's permissions.
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        # One connection: SQLite has one writer at a time anyway, and a second connection that finds the database
        # locked waits in SQLite's busy handler (sleeping, up to seconds under load), which stalled OPC UA sessions
        # long enough for clients to declare the server dead. Waiting for the pooled connection is an asyncio wait.
        # Connections through OneHopConnection: one thread hand-over per statement, not four (sqlite_driver.py).
        connect_args, connect_kwargs = make_url(url).get_dialect()().create_connect_args(make_url(url))
        engine = create_async_engine(
            url,
            async_creator=one_hop_connector(*connect_args, **{**connect_kwargs, "timeout": 30}),
            pool_size=1,
            max_overflow=0,
            pool_timeout=60,
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={sqlite_synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    engine = create_async_engine(url)
    _ping_after_idle(engine)
    return engine


# A pooled PostgreSQL connection unused for longer than this is pinged before it is handed out (see below).
PING_AFTER_IDLE_SECONDS = 1.0


def _ping_after_idle(engine: AsyncEngine) -> None:
    """Ping a connection at checkout only when it lay idle, not at every checkout as `pool_pre_ping` does.

    `pool_pre_ping` cost a round trip per checkout, so one per group commit. A database restart is found by the
    ping when the server was quiet; when it was busy, the first statement on a dead connection fails, SQLAlchemy
    sees a disconnect and renews the pool, and the group commit writes the failed group's works again one by one
    on fresh connections (a group of one once more) (tests/integration/test_postgres_liveness.py)."""

    @event.listens_for(engine.sync_engine, "connect")
    @event.listens_for(engine.sync_engine, "checkin")
    def _fresh(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _alive(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("idle_since", -math.inf) < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError(f"pooled connection is gone: {exc}") from exc  # the pool takes another


def store_location(url: str) -> str:
    """The store as messages name it: the SQLite file, or PostgreSQL's host, port, database and user (never the
    password)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite file {parsed.database}"
    where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"
    return f"PostgreSQL at {where}" + (f" as {parsed.username}" if parsed.username else "")


def _alembic_config(connection: Connection) -> AlembicConfig:
    # Imported here: alembic costs about half a second of imports, and a start whose schema is current (the usual
    # case, store.connect checks) never needs it.
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(files("qualitybridge.store") / "migrations"))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    from alembic import command

    # "heads": independent migration branches (features developed side by side) are all applied.
    command.upgrade(_alembic_config(connection), "heads")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision; a no-op when it is current."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)
    _log.debug("store schema is at head (%s)", engine.url.render_as_string(hide_password=True))
