"""Room to grow in the coordinator's store: the default network, addresses and node ids
handed out without a scan (pywg.mesh.pool) and reused late, and a removal that cannot
take the wrong node. No network: the store alone, in tmp_path.
"""

from __future__ import annotations

import hashlib
import ipaddress
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from pywg.mesh.store import DEFAULT_IPV4, Conflict, Node, Store

pytestmark = pytest.mark.time_limit(30)


def key(n: int, salt: bytes = b"wg") -> bytes:
    return hashlib.sha256(salt + n.to_bytes(4, "big")).digest()


def token(store: Store) -> str:
    token_hash = hashlib.sha256(b"token").hexdigest()
    if not store.tokens():
        store.add_token(token_hash, 2**62, reusable=True)
    return token_hash


def join(store: Store, name: str, n: int) -> Node:
    node, created = store.join(token(store), name, key(n), key(n, b"control"), [], time_ms=1)
    assert created
    return node


def test_new_meshes_get_a_large_network_and_old_ones_keep_theirs(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "new"))
    networks = store.init_networks()
    assert str(networks.ipv4) == DEFAULT_IPV4 == "100.64.0.0/10"
    assert networks.ipv6.prefixlen == 64 and networks.ipv6.network_address.packed[0] == 0xFD
    store.close()
    old = Store(str(tmp_path / "old"))
    old.init_networks("100.72.0.0/24", "fd00:72::/64")  # a mesh made with the former default
    join(old, "a", 1)
    old.close()
    old = Store(str(tmp_path / "old"))
    networks = old.init_networks()
    assert (str(networks.ipv4), str(networks.ipv6)) == ("100.72.0.0/24", "fd00:72::/64")
    assert (join(old, "b", 2).ipv4, old.node_by_name("a").ipv4) == ("100.72.0.2", "100.72.0.1")  # type: ignore[union-attr]
    old.close()


def _instructions_per_join(store: Store, name: str, n: int) -> int:
    """SQLite virtual machine steps (in 100s) that one join takes."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    store._db.connection.set_progress_handler(count, 100)
    try:
        join(store, name, n)
    finally:
        store._db.connection.set_progress_handler(None, 100)
    return steps[0]


def test_a_join_costs_the_same_with_2000_nodes(tmp_path: Path) -> None:
    """No scan of the addresses in use: the 2,000th join takes no more steps than the 20th."""
    store = Store(str(tmp_path))
    store.init_networks()
    store._db.execute("PRAGMA synchronous = OFF")  # the test's speed, not the store's
    for n in range(20):
        join(store, f"n{n}", n)
    early = _instructions_per_join(store, "early", 10_000)
    for n in range(20, 2000):
        join(store, f"n{n}", n)
    late = _instructions_per_join(store, "late", 10_001)
    assert late <= early * 1.5 + 2, (early, late)
    addresses = {ipaddress.ip_address(n.ipv4) for n in store.nodes()}
    assert len(addresses) == 2002 and all(
        a in ipaddress.ip_network(DEFAULT_IPV4) for a in addresses
    )
    store.close()


def test_addresses_and_ids_come_back_last(tmp_path: Path) -> None:
    """Removed nodes' addresses and ids go to the back: fresh ones first, then the longest free."""
    store = Store(str(tmp_path))
    store.init_networks("198.19.5.0/29", "fd19:5::/120")  # six IPv4 hosts
    nodes = [join(store, f"n{i}", i) for i in (1, 2, 3)]
    assert [n.id for n in nodes] == [1, 2, 3]
    store.remove("n3")  # the highest id: the one the database would give again
    store.remove("n1")
    n4 = join(store, "n4", 4)
    assert (n4.id, n4.ipv4, n4.ipv6) == (4, "198.19.5.4", "fd19:5::4")
    device = store.add_device("d5", key(5), "n2")
    assert device.ipv4 == "198.19.5.5"
    n6 = join(store, "n6", 6)
    assert n6.ipv4 == "198.19.5.6"
    # the fresh ones are used up: the longest free first (n3's, then n1's)
    assert join(store, "n7", 7).ipv4 == "198.19.5.3"
    n8 = join(store, "n8", 8)
    assert (n8.ipv4, n8.ipv6) == ("198.19.5.1", "fd19:5::8")  # the IPv6 pool has fresh ones
    with pytest.raises(Conflict, match="no free address"):
        join(store, "n9", 9)
    store.remove_device("d5")
    assert join(store, "n9", 9).ipv4 == "198.19.5.5"
    ids = [n.id for n in store.nodes()]
    assert len(set(ids)) == len(ids)
    store.close()


def test_remove_takes_the_node_named_in_its_own_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process removing the node and a new node joining between `remove`'s lookup
    and its delete (the new one could get the removed one's id) cannot make `remove` delete
    the wrong node: the lookup is inside the write transaction, the other process waits."""
    store = Store(str(tmp_path))
    store.init_networks("198.19.5.0/24", "fd19:5::/64")
    join(store, "a", 1)
    join(store, "b", 2)
    other = Store(str(tmp_path))  # another process: its own connection
    other._db.execute("PRAGMA busy_timeout = 200")
    outcome: dict[str, Any] = {}
    select = store._select

    def racing_select(where: str = "", args: tuple[object, ...] = ()) -> list[Node]:
        found = select(where, args)
        if where == "WHERE name = ?" and "raced" not in outcome:
            outcome["raced"] = True
            try:
                other.remove("b")
                outcome["joined"] = join(other, "c", 3)
            except sqlite3.OperationalError:  # the write lock is held: it waits
                outcome["blocked"] = True
        return found

    monkeypatch.setattr(store, "_select", racing_select)
    removed = store.remove("b")
    monkeypatch.undo()
    assert outcome["raced"] and removed.name == "b"
    names = {n.name for n in store.nodes()}
    if "joined" in outcome:  # the other process went first: its node must stay
        assert names == {"a", "c"}, names
    else:
        assert outcome.get("blocked") and names == {"a"}
    other.close()
    store.close()
