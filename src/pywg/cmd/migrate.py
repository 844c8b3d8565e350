"""`pywg coordinator migrate --to postgresql://...`: move a mesh from SQLite to PostgreSQL.

    pywg coordinator migrate --to URL [--state DIR]

Copies everything in STATE/coordinator.db (`pywg.mesh.migrate`) into the
PostgreSQL database URL, which must be empty (its tables are made if they
are not there). The key and certificate stay in the state directory: copy
it to every host that will serve the mesh (docs/postgresql.md). Changes
made to the SQLite file after the copy are not carried over: stop `serve`
first, then start it with --database URL.

Exit status: 0 done, 1 failed (nothing copied).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `migrate` to the sub-commands of `pywg coordinator`."""
    parser = sub.add_parser(
        "migrate",
        parents=[common],
        help="copy the mesh in --state (SQLite) into an empty PostgreSQL database",
    )
    parser.add_argument(
        "--to", required=True, metavar="URL", help="the PostgreSQL database (postgresql://...)"
    )
    parser.set_defaults(func=migrate_command)


def migrate_command(args: argparse.Namespace) -> int:
    from pywg.mesh.database import errors, is_url
    from pywg.mesh.migrate import MigrationError, copy_state
    from pywg.mesh.store import Store, StoreError

    if args.database is not None:
        return _fail("migrate reads the SQLite state in --state: give --to, not --database", 2)
    if not is_url(args.to):
        return _fail("--to takes a postgresql:// URL", 2)
    try:
        source = Store(args.state, create=False)
    except errors(StoreError, OSError) as exc:
        return _fail(str(exc))
    try:
        target = Store(args.state, database=args.to)
    except errors(StoreError, OSError) as exc:
        source.close()
        return _fail(f"cannot open the target: {exc}")
    try:
        copied = copy_state(source.database, target.database)
    except errors(MigrationError, OSError) as exc:
        return _fail(str(exc))
    finally:
        source.close()
        target.close()
    counts = ", ".join(f"{n} {table}" for table, n in copied.items())
    print(f"pywg coordinator: copied {counts} to {target.path}", file=sys.stderr)
    return 0


def _fail(message: str, status: int = 1) -> int:
    print(f"pywg coordinator migrate: {message}", file=sys.stderr)
    return status
