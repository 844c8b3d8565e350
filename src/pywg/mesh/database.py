"""The database under the coordinator's store: one interface, SQLite or PostgreSQL behind it.

`store.Store` holds the logic of the mesh's state once, written against
`Database`: a DB-API connection reduced to what the store uses, with the
few places where the two dialects differ behind methods. Its SQL is the
subset both understand: ``?`` parameters (the PostgreSQL adapter turns them
into its own), ``INSERT ... ON CONFLICT``, ``count``/``max``/``coalesce``,
integers, text and byte strings. Each implementation owns the rest:

- `SqliteDatabase` (here): one file in the state directory, the embedded
  default. A write transaction is ``BEGIN IMMEDIATE`` (the file's write lock
  up front: no upgrade deadlock between processes); a snapshot ``BEGIN``.
- ``pywg.mesh.postgres.PostgresDatabase``: one database shared by several
  coordinators (docs/postgresql.md). A write transaction takes one advisory
  lock, so writers queue as they do on SQLite; every roster version it
  commits is announced with NOTIFY, and `listen` hears the others'.

Where the tables are made and migrated is the implementation's: the SQLite
schema is `store`'s (with its column migrations), the PostgreSQL one
`postgres`'s, and the two list the same tables and columns.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

Row = tuple[Any, ...]
Params = Sequence[object]


class Cursor(Protocol):
    """What an executed statement gives back (a DB-API cursor, iterable over its rows)."""

    @property
    def rowcount(self) -> int: ...

    @property
    def description(self) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Listening(Protocol):
    """A running listener for other writers' roster versions; `close` stops it."""

    def close(self) -> None: ...


class Database(Protocol):
    """The connection under a `store.Store`: not shared between threads without its lock.

    Reads outside a transaction each see the latest commit. `begin_write`
    starts a transaction that no other writer (in any process) overlaps;
    `begin_read` one whose reads all see the same moment.
    """

    kind: str  # "sqlite" or "postgresql"
    where: str  # the file or the database, for messages (no password)

    def execute(self, sql: str, params: Params = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Params]) -> None: ...

    def begin_write(self) -> None: ...

    def begin_read(self) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def bump_version(self) -> int:
        """Move the roster version on by one, inside a write transaction; the new version
        (announced to the other coordinators when the transaction commits)."""
        ...

    def listen(self, heard: Callable[[int], None]) -> Listening | None:
        """Call `heard(version)` (from another thread) when any writer commits a new roster
        version; None if this database has no such notice (the caller polls)."""
        ...

    def tables(self) -> list[str]:
        """The names of the tables there are."""
        ...

    def follow_copied_ids(self, tables: Iterable[str]) -> None:
        """After rows were copied in with their ids (`pywg.mesh.migrate`): the ids this
        database hands out next in `tables` come after theirs."""
        ...

    def close(self) -> None: ...


def get_meta(db: Database, key: str) -> str | None:
    """A value of the ``meta`` table, as text (None: not set)."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_meta(db: Database, key: str, value: object) -> None:
    """Set a value of the ``meta`` table (inside a write transaction)."""
    db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def errors(*more: type[Exception]) -> tuple[type[Exception], ...]:
    """The exceptions a database driver in use may raise (and `more`, to catch with them):
    SQLite's, and psycopg's once it is loaded (it is imported only for a PostgreSQL
    store, so none of its errors can arise before)."""
    psycopg = sys.modules.get("psycopg")
    extra: tuple[type[Exception], ...] = (psycopg.Error,) if psycopg is not None else ()
    return (*more, sqlite3.Error, *extra)


def is_url(text: str | None) -> bool:
    """Whether `text` names a PostgreSQL database (a libpq URI)."""
    return text is not None and text.startswith(("postgresql://", "postgres://"))


class SqliteDatabase:
    """`Database` on one SQLite connection (autocommit; transactions begun explicitly)."""

    kind = "sqlite"

    def __init__(self, path: str, busy_timeout_ms: int) -> None:
        self.where = path
        self._db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
        )

    @property
    def connection(self) -> sqlite3.Connection:
        """The sqlite3 connection itself (its own settings: a test's progress handler)."""
        return self._db

    def execute(self, sql: str, params: Params = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        self._db.executemany(sql, rows)

    def begin_write(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")  # the write lock up front: no upgrade deadlock

    def begin_read(self) -> None:
        self._db.execute("BEGIN")  # WAL: the reads see the moment of the first one

    def commit(self) -> None:
        self._db.execute("COMMIT")

    def rollback(self) -> None:
        self._db.execute("ROLLBACK")

    def bump_version(self) -> int:
        self._db.execute("UPDATE meta SET value = value + 1 WHERE key = 'version'")
        return int(self._db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()[0])

    def listen(self, heard: Callable[[int], None]) -> Listening | None:
        return None  # another process's change is seen by polling the version

    def tables(self) -> list[str]:
        rows = self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
        return [str(name) for (name,) in rows]

    def follow_copied_ids(self, tables: Iterable[str]) -> None:
        pass  # a new rowid is one past the largest there is

    def close(self) -> None:
        self._db.close()
