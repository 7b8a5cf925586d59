"""Bulk writes of prebuilt rows: one statement compiled once per backend, rows as plain tuples, the driver's own
executemany.

The report path writes hundreds of rows per batch. Through SQLAlchemy's parameter processing each row costs a dict,
a bind processor per column (SQLite's datetime formatting among them) and the statement's cache lookup — about
100 µs per measurement with its outbox row, a budget of its own at 15,000 measurements/s. Here the statement is
compiled once per dialect from the table definition (so column names and the backend's parameter style are the
table's own), and each row is a tuple of values already in the column's stored form: SQLite's DateTime text, a
JSON column's text. PostgreSQL (asyncpg) takes datetimes and JSON text as they are.

SQLite gets one multi-row `VALUES (...), (...)` per chunk of rows instead of an executemany: the sqlite3 module
releases the GIL around every row's step and needs it back to bind the next row, so an executemany in aiosqlite's
thread waits for the event loop's thread once per row (up to the interpreter's switch interval, 5 ms, each time the
loop is busy with other sessions' requests). One statement per chunk binds its rows in one go.

PostgreSQL gets one `INSERT ... SELECT ... FROM unnest($1::type[], ...)` whatever the number of rows: a column per
parameter, as an array. A multi-row VALUES of a thousand rows was a new statement of thousands of parameters for
PostgreSQL to parse and plan at almost every batch size, 40 µs of the database's CPU per measurement with its outbox
row; the arrays' statement is prepared once and costs 12–14 µs (docs/performance.md, "eighth session").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import chain
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["BulkInsert", "renumbered", "stored_moment"]


def _sqlite_moment(moment: datetime) -> str:
    """SQLAlchemy's SQLite DateTime storage format (the column's text, read back by its result processor)."""
    if moment.tzinfo is not None and moment.utcoffset():
        moment = moment.astimezone(UTC)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d} "
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}"
    )


def _as_is(moment: datetime) -> datetime:
    return moment


def stored_moment(dialect: Dialect) -> Any:
    """The function turning a UTC datetime into the value the driver stores in a DateTime(timezone=True) column."""
    return _sqlite_moment if dialect.name == "sqlite" else _as_is


# SQLite binds at most 32,766 parameters per statement (since 3.32); a chunk stays well below. (PostgreSQL takes
# one array per column instead, whatever the number of rows.)
_PARAMETERS_PER_STATEMENT = 8_000
_NUMBERED = re.compile(r"\$(\d+)")


def renumbered(sql: str, offset: int) -> str:
    """`sql`'s numbered parameters ($n, PostgreSQL's style) moved up by `offset`; SQLite's `?` stay as they are."""
    return _NUMBERED.sub(lambda found: f"${int(found.group(1)) + offset}", sql) if offset else sql


class BulkInsert:
    """Inserts of tuples of exactly these columns, in this order: `INSERT INTO table (columns) VALUES (...), (...)`
    in chunks on SQLite, `INSERT INTO table (columns) SELECT ... FROM unnest(...)` on PostgreSQL."""

    def __init__(self, table: Table, columns: Sequence[str]) -> None:
        self.table = table
        self.columns = tuple(columns)
        self._compiled: dict[str, str] = {}
        self._rows_per_statement = max(1, _PARAMETERS_PER_STATEMENT // len(self.columns))
        self._multi_row: dict[tuple[str, int], str] = {}  # (dialect, rows) -> statement
        self._unnest: dict[str, str] = {}  # dialect -> statement taking one array per column

    def sql(self, dialect: Dialect) -> str:
        """The one-row statement, as the dialect compiles it (PostgreSQL's with its casts)."""
        sql = self._compiled.get(dialect.name)
        if sql is None:
            # inline: no RETURNING of the new primary key (PostgreSQL would add one); nobody reads it.
            statement = self.table.insert().inline().compile(dialect=dialect, column_keys=list(self.columns))
            positions = statement.positiontup or []
            if list(positions) != list(self.columns):
                # A dialect with named parameters would take dicts; every backend of the store is positional.
                raise ValueError(f"{dialect.name}: positional parameters {positions} are not {self.columns}")
            sql = self._compiled[dialect.name] = str(statement)
        return sql

    def multi_row_sql(self, dialect: Dialect, rows: int) -> str:
        """SQLite's statement for `rows` rows: the one-row VALUES repeated (its parameters are positional `?`)."""
        sql = self._multi_row.get((dialect.name, rows))
        if sql is None:
            single = self.sql(dialect)
            head, values, tail = single.partition(" VALUES ")
            if not values or not tail.startswith("(") or not tail.endswith(")"):
                raise ValueError(f"unexpected INSERT form: {single}")
            values = ", ".join([tail] * rows)
            sql = self._multi_row[(dialect.name, rows)] = f"{head} VALUES {values}"
        return sql

    def unnest_sql(self, dialect: Dialect) -> str:
        """PostgreSQL's statement for any number of rows: each column an array parameter of the column's type, the
        rows inserted in the arrays' order (the outbox's sequence follows acceptance)."""
        sql = self._unnest.get(dialect.name)
        if sql is None:
            head = self.sql(dialect).partition(" VALUES ")[0]
            types = [self.table.c[name].type.compile(dialect=dialect) for name in self.columns]
            arrays = ", ".join(f"${number}::{type_}[]" for number, type_ in enumerate(types, 1))
            names = ", ".join(f"c{number}" for number in range(len(self.columns)))
            sql = self._unnest[dialect.name] = (
                # Names from the table's definition; every value is a parameter.
                f"{head} SELECT {names} FROM unnest({arrays}) WITH ORDINALITY AS source({names}, ordinal) "  # noqa: S608
                "ORDER BY ordinal"
            )
        return sql

    def statements(self, dialect: Dialect, rows: Sequence[tuple[Any, ...]]) -> list[tuple[str, tuple[Any, ...]]]:
        """The statements inserting `rows`, with their parameters: on SQLite one per chunk of rows (bound in one go,
        see above), on PostgreSQL one with an array parameter per column."""
        if not rows:
            return []
        if dialect.name == "postgresql":
            return [(self.unnest_sql(dialect), tuple(list(column) for column in zip(*rows, strict=True)))]
        step = self._rows_per_statement
        return [
            (self.multi_row_sql(dialect, len(chunk)), tuple(chain.from_iterable(chunk)))
            for chunk in (rows[start : start + step] for start in range(0, len(rows), step))
        ]

    async def execute(self, conn: AsyncConnection, rows: Sequence[tuple[Any, ...]]) -> None:
        for sql, parameters in self.statements(conn.dialect, rows):
            await conn.exec_driver_sql(sql, parameters)
