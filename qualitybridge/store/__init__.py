"""The store: SQLAlchemy 2 (async) over SQLite or PostgreSQL, schema versioned with Alembic; the single source of
truth of which the address space is a view.

| module               | what it does                                                                  |
| -------------------- | ----------------------------------------------------------------------------- |
| `database`           | engine creation (SQLite pragmas, PostgreSQL pool) and migration to head       |
| `tables`             | the schema as SQLAlchemy Core tables                                          |
| `repository`         | `Store`: master data from the ERP, results, the outbox, users                 |
| `shop_floor_records` | measurements, confirmations, SPC alarms, order states, each with its posting  |
| `measurement_history`| a characteristic's series for HistoryRead (keyset pages), the retention purge   |
| `quality_figures`    | the facts KPIs are computed from; queueing a KPI report once per period         |
| `outbox`             | the one encoding of postings into outbox rows and back                        |
| `outbox_admin`       | listing, retrying and discarding outbox entries for `qualitybridge outbox`    |
| `mapping_tables`     | the mapping tables (material, characteristic, work centre, unit) the sync applies |
| `connect`            | opening at start: waiting for a store that is not up, naming one that never will be |
| `audit_log`          | the audit_log table: batched append, filtered read, purge                     |
| `migrations/`        | Alembic revisions                                                             |

The store imports the domain only; services, server, adapters and the CLI import it.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from qualitybridge.store.connect import StoreMisconfigured, StoreUnavailable, open_store_waiting
from qualitybridge.store.database import create_engine, migrate, store_location
from qualitybridge.store.repository import OutboxCounts, Store, StoredUser

__all__ = [
    "OutboxCounts",
    "Store",
    "StoreMisconfigured",
    "StoreUnavailable",
    "StoredUser",
    "create_engine",
    "migrate",
    "open_store",
    "open_store_waiting",
    "store_location",
]


async def open_store(url: str, *, sqlite_synchronous: str = "FULL", engine: AsyncEngine | None = None) -> Store:
    """Connect, bring the schema to head, and hand back the store (errors named as `StoreMisconfigured` or
    `StoreUnavailable`; `open_store_waiting` retries the latter)."""
    if engine is not None:
        await migrate(engine)
        return Store(engine)
    return await open_store_waiting(url, sqlite_synchronous=sqlite_synchronous, wait_seconds=0)
