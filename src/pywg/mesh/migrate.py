"""Moving a mesh's state from one database to another: SQLite to PostgreSQL.

`copy_state` copies every table of the source, every row and column as it
is (ids, keys, addresses, spent tokens, pending and refused routes, the
relay each node reported, the pools' pointers and released values, the
``meta`` values: networks, domain, key expiry, the admin's secrets, the
roster version), read in one snapshot and written in one transaction, so
a failure leaves the target as it was. It refuses a target that holds
anything, and one that lacks a table or a column of the source (a pywg
older than the state). The tables go in an order that meets their foreign
keys: ``meta`` and ``nodes`` first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from .database import Database, Row, set_meta

FIRST: Final = ("meta", "nodes")  # what the others refer to


class MigrationError(ValueError):
    """The state cannot be moved there; str() says why."""


def _order(tables: Sequence[str]) -> list[str]:
    return [t for t in FIRST if t in tables] + sorted(t for t in tables if t not in FIRST)


def _columns(db: Database, table: str) -> list[str]:
    cursor = db.execute(f"SELECT * FROM {table} LIMIT 0")
    cursor.fetchall()
    return [str(column[0]) for column in cursor.description]


def _check_empty(target: Database, tables: Sequence[str]) -> None:
    """MigrationError unless `target` holds no more than a new store does (version 0)."""
    for table in tables:
        if table == "meta":
            rows = target.execute("SELECT key, value FROM meta").fetchall()
            if any((str(k), str(v)) != ("version", "0") for k, v in rows):
                raise MigrationError("the target database is not empty (it holds a mesh)")
        elif target.execute(f"SELECT count(*) FROM {table}").fetchone()[0]:
            raise MigrationError(f"the target database is not empty ({table} has rows)")


def _read(source: Database, tables: Sequence[str]) -> dict[str, tuple[list[str], list[Row]]]:
    """Every table's columns and rows, in one snapshot (SQLite's in their rowid order)."""
    order = " ORDER BY rowid" if source.kind == "sqlite" else ""
    source.begin_read()
    try:
        found = {}
        for table in tables:
            columns = _columns(source, table)
            rows = source.execute(f"SELECT {', '.join(columns)} FROM {table}{order}").fetchall()
            found[table] = (columns, [tuple(row) for row in rows])
        return found
    finally:
        source.commit()


def copy_state(source: Database, target: Database) -> dict[str, int]:
    """Copy the state in `source` to the empty `target`; the rows copied, by table."""
    tables = _order(source.tables())
    missing = [t for t in tables if t not in target.tables()]
    if missing:
        raise MigrationError(f"the target has no table {', '.join(missing)} (a newer pywg?)")
    content = _read(source, tables)
    target.begin_write()
    try:
        _check_empty(target, tables)
        for table in tables:
            _write_table(target, table, *content[table])
        target.follow_copied_ids(tables)
        _verify(target, content)
    except BaseException:
        target.rollback()
        raise
    target.commit()
    return {table: len(rows) for table, (_, rows) in content.items()}


def _write_table(target: Database, table: str, columns: list[str], rows: list[Row]) -> None:
    absent = set(columns) - set(_columns(target, table))
    if absent:
        raise MigrationError(f"the target's {table} has no column {', '.join(sorted(absent))}")
    if table == "meta":
        for key, value in rows:
            set_meta(target, str(key), str(value))
        return
    marks = ", ".join("?" for _ in columns)
    target.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


def _verify(target: Database, content: dict[str, tuple[list[str], list[Row]]]) -> None:
    """MigrationError unless every table holds as many rows as the source's."""
    for table, (_, rows) in content.items():
        count = int(target.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        if count != len(rows):
            raise MigrationError(f"{table}: {count} rows copied of {len(rows)}")
