"""Handing out tunnel addresses and node ids in O(log n) a join, reusing them late.

A *pool* is a range of offsets (node ids 1..MAX_NODE_ID; the host offsets of
a mesh network, without the network and the IPv4 broadcast address). It
hands out the offset under its pointer (``meta``: ``next_<pool>``) and moves
the pointer on; an offset released (its node or device removed) goes to the
back of the ``released`` queue and is handed out again only once the pointer
has reached the end of the range, oldest first. So an address or id comes
back as late as possible: a peer that has not yet seen the removal of its
old holder (its roster is behind) does not meet a new holder under it.

Each step is an indexed lookup: whether an offset is taken is asked of the
owner's UNIQUE index (a row made before the pool existed, or a value both
released and under the pointer, is skipped there), so a join costs O(log n)
amortized: no scan of what is used.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Final

from .database import Database, set_meta
from .schema import Networks

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS released (
    id INTEGER PRIMARY KEY,
    pool TEXT NOT NULL,
    value INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS released_by_pool ON released (pool, id)
"""
MAX_OFFSET: Final = (1 << 62) - 1  # SQLite integer, PostgreSQL BIGINT; no /64 is used that far

Taken = Callable[[Database, int], bool]


class Exhausted(Exception):
    """Every value of the pool is in use."""


def _meta(db: Database, key: str) -> int | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else int(row[0])


def take(db: Database, pool: str, first: int, last: int, taken: Taken) -> int:
    """A free value of `pool` (first..last): the pointer's (it starts at `first`), else the
    oldest released; Exhausted if there is none. Inside the caller's write transaction."""
    key = f"next_{pool}"
    pointer = max(_meta(db, key) or first, first)
    while pointer <= last:
        value, pointer = pointer, pointer + 1
        if not taken(db, value):
            set_meta(db, key, pointer)
            return value
    set_meta(db, key, pointer)
    while True:
        row = db.execute(
            "SELECT id, value FROM released WHERE pool = ? ORDER BY id LIMIT 1", (pool,)
        ).fetchone()
        if row is None:
            raise Exhausted(pool)
        db.execute("DELETE FROM released WHERE id = ?", (row[0],))
        if first <= row[1] <= last and not taken(db, row[1]):
            return int(row[1])


def release(db: Database, pool: str, value: int) -> None:
    """`value` is free again: at the back of the queue."""
    db.execute("INSERT INTO released (pool, value) VALUES (?, ?)", (pool, value))


def start_after(db: Database, pool: str, value: int) -> None:
    """The pointer of `pool` is past `value` (at least): for a pool whose values were handed
    out before it existed."""
    key = f"next_{pool}"
    if _meta(db, key) is None:
        set_meta(db, key, value + 1)


# -- tunnel addresses ----------------------------------------------------------------------


def _host_range(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[int, int]:
    """The offsets of the network's host addresses (no network address, no IPv4 broadcast)."""
    last = net.num_addresses - (2 if net.version == 4 else 1)
    return 1, min(last, MAX_OFFSET)


def _address_taken(column: str, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Taken:
    def taken(db: Database, offset: int) -> bool:
        address = str(net.network_address + offset)
        row = db.execute(
            f"SELECT 1 FROM nodes WHERE {column} = ? UNION ALL "
            f"SELECT 1 FROM devices WHERE {column} = ? LIMIT 1",
            (address, address),
        ).fetchone()
        return row is not None

    return taken


def take_addresses(db: Database, networks: Networks) -> tuple[str, str]:
    """A free address of each mesh network (nodes and devices share them)."""
    result = []
    for column, net in (("ipv4", networks.ipv4), ("ipv6", networks.ipv6)):
        first, last = _host_range(net)
        offset = take(db, column, first, last, _address_taken(column, net))
        result.append(str(net.network_address + offset))
    return result[0], result[1]


def release_addresses(db: Database, networks: Networks, ipv4: str, ipv6: str) -> None:
    """The addresses of a node or device removed: free again, late."""
    for column, net, text in (("ipv4", networks.ipv4, ipv4), ("ipv6", networks.ipv6, ipv6)):
        address = ipaddress.ip_address(text)
        if address in net:
            release(db, column, int(address) - int(net.network_address))


# -- node ids ------------------------------------------------------------------------------


def _id_taken(db: Database, node_id: int) -> bool:
    return db.execute("SELECT 1 FROM nodes WHERE id = ?", (node_id,)).fetchone() is not None


def take_node_id(db: Database, most: int) -> int:
    """A free node id (1..`most`); the pointer starts after the highest id there is."""
    highest = db.execute("SELECT max(id) FROM nodes").fetchone()[0]
    start_after(db, "node_id", int(highest or 0))
    return take(db, "node_id", 1, most, _id_taken)
