"""Tests for pywg.allowedips: the cryptokey-routing table (whitepaper §3)."""

from __future__ import annotations

import ipaddress
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pywg import _fast
from pywg.allowedips import AllowedIPs, parse_network
from pywg.exceptions import LocalProtocolError

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "allowedips_selftest.json"
PURE = AllowedIPs


@pytest.fixture(autouse=True, scope="module", params=["pure", "native"])
def implementation(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test here runs on the pure trie and on the C table (pywg._fast.routes):
    the module's name `AllowedIPs` is each in turn."""
    global AllowedIPs
    if request.param == "native":
        if not _fast.AVAILABLE:
            pytest.skip("the native extension is not built")
        from pywg._fast.routes import NativeAllowedIPs

        AllowedIPs = NativeAllowedIPs  # type: ignore[misc, assignment]
    yield request.param
    AllowedIPs = PURE  # type: ignore[misc]


class Peer:
    """An opaque label compared by identity, like a real Peer object."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Peer({self.name!r})"


class EqualToEverything(Peer):
    """Equal to any object: proves the table compares values by identity."""

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0


# ---------------------------------------------------------------------------
# 1. Known-answer cases: Linux selftest and wireguard-go (vectors/allowedips_selftest.json)
# ---------------------------------------------------------------------------


def _load_vectors() -> dict[str, Any]:
    with VECTORS.open() as f:
        data: dict[str, Any] = json.load(f)
    return data


def _sections() -> list[str]:
    """Every top-level list of {"op": ...} steps, so a section added later is run too."""
    return [
        name
        for name, value in _load_vectors().items()
        if isinstance(value, list) and value and all("op" in step for step in value)
    ]


def test_vector_file_has_expected_sections() -> None:
    data = _load_vectors()
    assert {"linux_selftest", "go_remove_semantics"} <= set(_sections())
    assert "longest matching prefix" in data["semantics"]


@pytest.mark.parametrize("section", _sections())
def test_selftest_vectors(section: str) -> None:
    steps = _load_vectors()[section]
    table: AllowedIPs[Peer] = AllowedIPs()
    peers: dict[str, Peer] = {}

    def peer(label: str | None) -> Peer | None:
        if label is None:
            return None
        return peers.setdefault(label, Peer(label))

    for index, step in enumerate(steps):
        where = f"{section}[{index}] {step}"
        op = step["op"]
        if op == "insert":
            value = peer(step["peer"])
            assert value is not None
            table.insert(f"{step['ip']}/{step['cidr']}", value)
        elif op in ("lookup", "lookup_not"):
            address = ipaddress.ip_address(step["ip"])
            found = table.lookup(step["ip"])
            # every entry point must agree
            assert table.lookup(address) is found, where
            assert table.lookup_packed(address.packed) is found, where
            assert table.lookup(address.packed) is found, where
            if op == "lookup":
                assert found is peer(step["expect"]), where
            else:
                assert found is not peer(step["peer"]), where
        elif op == "remove_by_peer":
            value = peer(step["peer"])
            assert value is not None
            owned = len(table.networks_of(value))
            before = len(table)
            assert table.remove_by_value(value) == owned, where
            assert len(table) == before - owned, where
            assert table.networks_of(value) == [], where
        elif op == "remove":
            value = peer(step["peer"])
            network = parse_network(f"{step['ip']}/{step['cidr']}")
            owned = value is not None and network in table.networks_of(value)
            before = len(table)
            assert table.remove(network, value) is owned, where
            assert len(table) == before - owned, where
        elif op == "clear":
            table.clear()
            assert len(table) == 0
            assert table.node_count() == 0
        elif op == "list_peer":
            value = peer(step["peer"])
            assert value is not None
            listed = sorted(str(net) for net in table.networks_of(value))
            assert listed == step["expect"], where
        else:
            pytest.fail(f"unknown op {op!r} in {where}")
        table._validate()


def test_linux_not_encoded_stress_node_freeing() -> None:
    """The selftest part the JSON describes but does not encode (Linux allowedips.c).

    128 host routes, each all-ones with one bit cleared in the upper or the
    lower 64-bit half; then everything is freed again.
    """
    table: AllowedIPs[Peer] = AllowedIPs()
    a = Peer("a")
    ones = (1 << 128) - 1
    for i in range(128):
        half = 64 if i < 64 else 0  # upper half first, then lower half
        address = ones & ~(1 << (half + i % 64))
        table.insert(IPv6Network((address, 128)), a)
    table._validate()
    assert len(table) == 128
    assert table.lookup(IPv6Address(ones)) is None
    assert table.lookup(IPv6Address(ones & ~(1 << 5))) is a
    assert table.remove_by_value(a) == 128
    assert len(table) == 0
    assert table.node_count() == 0


# ---------------------------------------------------------------------------
# 2. Randomized comparison with a naive list
# ---------------------------------------------------------------------------


@dataclass
class Naive:
    """Reference model: a list of (version, bits, cidr, value), scanned linearly."""

    entries: list[tuple[int, int, int, Peer]] = field(default_factory=list)

    def _index(self, version: int, bits: int, cidr: int) -> int | None:
        for i, (v, b, c, _) in enumerate(self.entries):
            if (v, b, c) == (version, bits, cidr):
                return i
        return None

    def insert(self, version: int, bits: int, cidr: int, value: Peer) -> None:
        i = self._index(version, bits, cidr)
        if i is None:
            self.entries.append((version, bits, cidr, value))
        else:
            self.entries[i] = (version, bits, cidr, value)

    def remove(self, version: int, bits: int, cidr: int, value: Peer) -> bool:
        i = self._index(version, bits, cidr)
        if i is None or self.entries[i][3] is not value:
            return False
        del self.entries[i]
        return True

    def remove_by_value(self, value: Peer) -> int:
        kept = [e for e in self.entries if e[3] is not value]
        removed = len(self.entries) - len(kept)
        self.entries = kept
        return removed

    def lookup(self, version: int, address: int) -> Peer | None:
        width = 32 if version == 4 else 128
        best: Peer | None = None
        best_cidr = -1
        for v, bits, cidr, value in self.entries:
            if v == version and cidr > best_cidr and (address ^ bits) >> (width - cidr) == 0:
                best, best_cidr = value, cidr
        return best

    def networks(self, value: Peer) -> set[str]:
        return {
            str(ipaddress.ip_network((b, c))) if v == 4 else str(IPv6Network((b, c)))
            for v, b, c, val in self.entries
            if val is value
        }


class PrefixSource:
    """Random prefixes clustered around a few base addresses, so they nest and collide."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.bases = {
            4: [rng.getrandbits(32) for _ in range(4)],
            6: [rng.getrandbits(128) for _ in range(4)],
        }

    def address(self, version: int) -> int:
        width = 32 if version == 4 else 128
        rng = self.rng
        if rng.random() < 0.1:
            return rng.getrandbits(width)
        address = rng.choice(self.bases[version])
        for _ in range(rng.randint(0, 3)):
            address ^= 1 << rng.randrange(width)
        return address

    def prefix(self, version: int) -> tuple[int, int]:
        width = 32 if version == 4 else 128
        rng = self.rng
        roll = rng.random()
        if roll < 0.02:
            cidr = 0
        elif roll < 0.15:
            cidr = width
        elif version == 4:
            cidr = rng.randint(1, 32)
        else:
            cidr = rng.choice((rng.randint(1, 128), rng.randint(1, 64), rng.randint(96, 128)))
        return self.address(version), cidr  # host bits are left for the table to mask

    def network_text(self, version: int) -> tuple[str, int, int]:
        """A prefix as text with host bits left set, plus its masked (bits, cidr)."""
        address, cidr = self.prefix(version)
        width = 32 if version == 4 else 128
        shift = width - cidr
        masked = address >> shift << shift if shift < width else 0
        text_address = IPv4Address(address) if version == 4 else IPv6Address(address)
        return f"{text_address}/{cidr}", masked, cidr


def _run_random_ops(seed: int, steps: int) -> None:
    rng = random.Random(seed)
    source = PrefixSource(rng)
    peers = [Peer(f"p{i}") for i in range(6)]
    table: AllowedIPs[Peer] = AllowedIPs()
    naive = Naive()
    inserted: list[tuple[str, int, int, int]] = []

    for step in range(steps):
        version = rng.choice((4, 6))
        roll = rng.random()
        if roll < 0.40:
            text, bits, cidr = source.network_text(version)
            value = rng.choice(peers)
            table.insert(text, value)
            naive.insert(version, bits, cidr, value)
            inserted.append((text, version, bits, cidr))
        elif roll < 0.55 and inserted:
            # remove a prefix that exists (or existed), with a random (maybe wrong) owner
            text, version, bits, cidr = rng.choice(inserted)
            value = rng.choice(peers)
            assert table.remove(text, value) is naive.remove(version, bits, cidr, value)
        elif roll < 0.58:
            value = rng.choice(peers)
            assert table.remove_by_value(value) == naive.remove_by_value(value)
        else:
            for _ in range(5):
                address = source.address(version)
                packed = address.to_bytes(4 if version == 4 else 16)
                expected = naive.lookup(version, address)
                assert table.lookup_packed(packed) is expected, (seed, step, packed.hex())
        assert len(table) == len(naive.entries)
        if step % 97 == 0:
            table._validate()
            for value in peers:
                assert {str(n) for n in table.networks_of(value)} == naive.networks(value)
            assert table.node_count() <= max(0, 2 * len(table) - 1)

    table._validate()
    for value in peers:
        table.remove_by_value(value)
    assert len(table) == 0
    assert table.node_count() == 0


@pytest.mark.parametrize("seed", [1, 2, 3, 20240601])
def test_random_against_naive(seed: int) -> None:
    _run_random_ops(seed, steps=3000)


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["insert", "remove", "remove_by_value", "lookup"]),
            st.sampled_from([4, 6]),
            st.integers(min_value=0, max_value=(1 << 128) - 1),
            st.integers(min_value=0, max_value=128),
            st.integers(min_value=0, max_value=2),
        ),
        max_size=120,
    )
)
def test_hypothesis_against_naive(ops: list[tuple[str, int, int, int, int]]) -> None:
    peers = [Peer(f"p{i}") for i in range(3)]
    table: AllowedIPs[Peer] = AllowedIPs()
    naive = Naive()
    for op, version, raw, raw_cidr, who in ops:
        width = 32 if version == 4 else 128
        # Fold everything into a small address space so prefixes overlap a lot.
        address = (raw & 0xFF) << (width - 8) | (raw >> 8) & ((1 << (width - 8)) - 1)
        cidr = raw_cidr % (width + 1)
        shift = width - cidr
        bits = address >> shift << shift if shift < width else 0
        net = IPv4Network((bits, cidr)) if version == 4 else IPv6Network((bits, cidr))
        value = peers[who]
        if op == "insert":
            table.insert(net, value)
            naive.insert(version, bits, cidr, value)
        elif op == "remove":
            assert table.remove(net, value) is naive.remove(version, bits, cidr, value)
        elif op == "remove_by_value":
            assert table.remove_by_value(value) == naive.remove_by_value(value)
        else:
            ip = IPv4Address(address) if version == 4 else IPv6Address(address)
            assert table.lookup(ip) is naive.lookup(version, address)
        table._validate()
    for value in peers:
        assert {str(n) for n in table.networks_of(value)} == naive.networks(value)


def test_churn_returns_node_count_to_zero() -> None:
    rng = random.Random(7)
    source = PrefixSource(rng)
    peers = [Peer(f"p{i}") for i in range(8)]
    table: AllowedIPs[Peer] = AllowedIPs()
    owners: dict[str, Peer] = {}
    for _ in range(10_000):
        # Linux's random test: any prefix length from 1 to the width
        version = rng.choice((4, 6))
        width = 32 if version == 4 else 128
        cidr = rng.randint(1, width)
        shift = width - cidr
        bits = rng.getrandbits(width) >> shift << shift
        net = str(IPv4Network((bits, cidr)) if version == 4 else IPv6Network((bits, cidr)))
        value = rng.choice(peers)
        table.insert(net, value)
        owners[net] = value
        # sprinkle in some clustered prefixes too
        text, _, _ = source.network_text(version)
        table.insert(text, value)
        owners[str(parse_network(text))] = value
    table._validate()
    assert len(table) == len(owners)
    peak = table.node_count()
    assert len(table) <= peak <= 2 * len(table) - 1

    # Remove half one by one (some with the wrong owner first: no-ops), in random order.
    order = list(owners)
    rng.shuffle(order)
    for net in order[: len(order) // 2]:
        wrong = next(p for p in peers if p is not owners[net])
        assert table.remove(net, wrong) is False
        assert table.remove(net, owners[net]) is True
        assert table.remove(net, owners[net]) is False
    table._validate()
    assert table.node_count() <= 2 * len(table) - 1
    # Re-insert some, remove the rest by value.
    for net in order[: len(order) // 4]:
        table.insert(net, owners[net])
    total = len(table)
    assert sum(table.remove_by_value(p) for p in peers) == total
    assert len(table) == 0
    assert table.node_count() == 0
    assert list(table.items()) == []


def test_churn_one_by_one_returns_node_count_to_zero() -> None:
    rng = random.Random(11)
    table: AllowedIPs[Peer] = AllowedIPs()
    a = Peer("a")
    nets: set[IPv4Network | IPv6Network] = set()
    for _ in range(10_000):
        version = rng.choice((4, 6))
        width = 32 if version == 4 else 128
        cidr = rng.randint(0, width)
        shift = width - cidr
        bits = rng.getrandbits(width) >> shift << shift if shift < width else 0
        net = IPv4Network((bits, cidr)) if version == 4 else IPv6Network((bits, cidr))
        table.insert(net, a)
        nets.add(net)
    assert len(table) == len(nets)
    for net in nets:
        assert table.remove(net, a)
    assert len(table) == 0
    assert table.node_count() == 0


# ---------------------------------------------------------------------------
# 3. Edge cases
# ---------------------------------------------------------------------------


def test_default_routes_are_per_family() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    v4, v6 = Peer("v4"), Peer("v6")
    table.insert("0.0.0.0/0", v4)
    assert table.lookup("255.255.255.255") is v4
    assert table.lookup("0.0.0.0") is v4
    assert table.lookup("::") is None
    assert table.lookup("::1") is None
    table.insert("::/0", v6)
    assert table.lookup("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") is v6
    assert table.lookup("1.2.3.4") is v4
    assert table.lookup_packed(bytes(4)) is v4
    assert table.lookup_packed(bytes(16)) is v6
    assert table.networks_of(v4) == [IPv4Network("0.0.0.0/0")]
    assert table.remove("0.0.0.0/0", v4)
    assert table.lookup("1.2.3.4") is None
    assert table.lookup("::1") is v6


def test_default_route_with_more_specifics() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    default, lan, host = Peer("default"), Peer("lan"), Peer("host")
    table.insert("10.0.0.0/8", lan)
    table.insert("10.1.2.3/32", host)
    table.insert("0.0.0.0/0", default)  # inserted last: becomes the root above the others
    table._validate()
    assert table.lookup("10.1.2.3") is host
    assert table.lookup("10.1.2.4") is lan
    assert table.lookup("11.0.0.0") is default
    table.remove_by_value(lan)
    assert table.lookup("10.1.2.4") is default
    assert table.lookup("10.1.2.3") is host


def test_host_routes() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    a, b, c, d = Peer("a"), Peer("b"), Peer("c"), Peer("d")
    table.insert("198.19.0.2/32", a)
    table.insert("198.19.0.3", b)  # a bare address is a host route
    table.insert("fd19::2/128", c)
    table.insert("fd19::3", d)
    assert table.lookup("198.19.0.2") is a
    assert table.lookup("198.19.0.3") is b
    assert table.lookup("198.19.0.1") is None
    assert table.lookup("198.19.0.4") is None
    assert table.lookup("fd19::2") is c
    assert table.lookup("fd19::3") is d
    assert table.lookup("fd19::1") is None
    assert table.lookup("fd19::2:0") is None
    assert table.networks_of(b) == [IPv4Network("198.19.0.3/32")]
    assert table.networks_of(d) == [IPv6Network("fd19::3/128")]
    # All 32 neighbours that differ in one bit miss.
    base = int(IPv4Address("198.19.0.2"))
    for bit in range(32):
        assert table.lookup(IPv4Address(base ^ 1 << bit)) is not a


def test_v4_and_v6_tables_are_separate() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    a, b = Peer("a"), Peer("b")
    table.insert("1.2.3.4/32", a)
    # Same integer value in the other family must not match.
    assert table.lookup(IPv6Address(int(IPv4Address("1.2.3.4")))) is None
    assert table.lookup("::1.2.3.4") is None
    table.insert("::102:304/128", b)
    assert table.lookup("1.2.3.4") is a
    assert table.lookup("::1.2.3.4") is b
    assert len(table) == 2


def test_v4_mapped_v6_stays_in_v6_table() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    v4, mapped = Peer("v4"), Peer("mapped")
    table.insert("1.2.3.0/24", v4)
    assert table.lookup("::ffff:1.2.3.4") is None
    assert table.lookup_packed(IPv6Address("::ffff:1.2.3.4").packed) is None
    table.insert("::ffff:0:0/96", mapped)
    assert table.lookup("::ffff:1.2.3.4") is mapped
    assert table.lookup_packed(IPv6Address("::ffff:1.2.3.4").packed) is mapped
    assert table.lookup("1.2.3.4") is v4
    assert table.lookup("5.6.7.8") is None
    assert table.networks_of(mapped) == [IPv6Network("::ffff:0:0/96")]
    table.insert("::ffff:1.2.3.4/128", v4)
    assert table.networks_of(v4) == [IPv4Network("1.2.3.0/24"), IPv6Network("::ffff:102:304/128")]


def test_host_bits_are_masked_off() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    a, b = Peer("a"), Peer("b")
    table.insert("10.0.0.5/8", a)
    assert table.networks_of(a) == [IPv4Network("10.0.0.0/8")]
    table.insert("10.255.255.255/8", b)  # same prefix after masking: moves to b
    assert len(table) == 1
    assert table.networks_of(a) == []
    assert table.networks_of(b) == [IPv4Network("10.0.0.0/8")]
    assert table.remove("10.9.9.9/8", b)
    assert len(table) == 0
    table.insert("2001:db8::dead:beef/32", a)
    assert table.networks_of(a) == [IPv6Network("2001:db8::/32")]


def test_reassignment_moves_prefix_between_values() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    a, b = Peer("a"), Peer("b")
    for net in ("10.0.0.0/24", "10.0.1.0/24", "fd00::/64"):
        table.insert(net, a)
    table.insert("10.0.1.0/24", b)
    assert len(table) == 3
    assert table.lookup("10.0.1.1") is b
    assert [str(n) for n in table.networks_of(a)] == ["10.0.0.0/24", "fd00::/64"]
    assert [str(n) for n in table.networks_of(b)] == ["10.0.1.0/24"]
    assert table.remove("10.0.1.0/24", a) is False  # a no longer owns it
    assert table.remove_by_value(a) == 2
    assert table.lookup("10.0.1.1") is b
    # Re-inserting with the same owner changes nothing.
    table.insert("10.0.1.0/24", b)
    assert len(table) == 1


def test_networks_of_is_in_assignment_order() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    a, b = Peer("a"), Peer("b")
    order = ["192.168.0.0/16", "fd19::/16", "10.0.0.0/8", "198.19.0.2/32", "::/0"]
    for net in order:
        table.insert(net, a)
    assert [str(n) for n in table.networks_of(a)] == order
    table.insert("10.0.0.0/8", b)
    table.insert("10.0.0.0/8", a)  # moved away and back: now the newest
    assert [str(n) for n in table.networks_of(a)] == [*order[:2], *order[3:], order[2]]
    assert table.networks_of(Peer("nobody")) == []


def test_values_are_compared_by_identity() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    a = EqualToEverything("a")
    twin = EqualToEverything("twin")
    assert a == twin
    table.insert("10.0.0.0/8", a)
    assert table.lookup("10.1.1.1") is a
    assert table.remove("10.0.0.0/8", twin) is False
    assert table.remove_by_value(twin) == 0
    assert table.networks_of(twin) == []
    table.insert("10.0.0.0/8", twin)  # an equal but distinct value takes the prefix over
    assert table.networks_of(a) == []
    assert table.lookup("10.1.1.1") is twin


def test_remove_semantics() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    a = Peer("a")
    assert table.remove("10.0.0.0/8", a) is False  # empty table
    table.insert("10.0.0.0/8", a)
    table.insert("10.0.0.0/16", a)
    assert table.remove("10.0.0.0/9", a) is False  # between two stored prefixes
    assert table.remove("10.0.0.0/24", a) is False  # below the deepest
    assert table.remove("10.0.0.0/8", None) is False
    assert table.remove("::/0", a) is False
    assert table.remove("10.0.0.0/8", a) is True
    assert table.lookup("10.0.0.1") is a  # the /16 is still there
    assert table.lookup("10.1.0.1") is None
    assert table.node_count() == 1
    with pytest.raises(LocalProtocolError):
        table.remove("10.0.0.0/99", a)


def test_intermediate_node_kept_and_pruned() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    a, b, c = Peer("a"), Peer("b"), Peer("c")
    table.insert("10.0.0.0/24", a)
    table.insert("10.0.1.0/24", b)  # forks at /23: one intermediate node
    assert table.node_count() == 3
    table.insert("10.0.0.0/23", c)  # lands on the fork and gives it a value
    assert table.node_count() == 3
    assert table.lookup("10.0.1.1") is b
    assert table.remove("10.0.0.0/23", c)
    assert table.node_count() == 3  # the fork stays: it has two children
    assert table.remove("10.0.0.0/24", a)
    assert table.node_count() == 1  # fork had one child left: pruned
    table._validate()
    assert table.lookup("10.0.1.255") is b
    assert table.lookup("10.0.0.1") is None


def test_clear() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    a = Peer("a")
    table.insert("10.0.0.0/8", a)
    table.insert("fd00::/8", a)
    table.clear()
    assert len(table) == 0
    assert table.node_count() == 0
    assert table.lookup("10.0.0.1") is None
    assert table.lookup("fd00::1") is None
    assert table.networks_of(a) == []
    assert table.remove_by_value(a) == 0
    table.insert("10.0.0.0/8", a)
    assert table.lookup("10.0.0.1") is a


def test_items_sorted_and_snapshot() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    a, b = Peer("a"), Peer("b")
    nets = ["fd19::2/128", "10.0.0.0/8", "0.0.0.0/0", "10.0.0.0/24", "9.0.0.0/8", "::/0"]
    for i, net in enumerate(nets):
        table.insert(net, a if i % 2 else b)
    got = [(str(n), v) for n, v in table.items()]
    assert got == [
        ("0.0.0.0/0", b),
        ("9.0.0.0/8", b),
        ("10.0.0.0/8", a),
        ("10.0.0.0/24", a),
        ("::/0", a),
        ("fd19::2/128", b),
    ]
    for network, value in table.items():  # mutation while iterating is allowed
        table.remove(network, value)
    assert len(table) == 0
    assert table.node_count() == 0


def test_lookup_input_types() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    a, b = Peer("a"), Peer("b")
    table.insert(IPv4Network("10.0.0.0/8"), a)
    table.insert(IPv6Network("fd00::/8"), b)
    assert table.lookup(IPv4Address("10.2.3.4")) is a
    assert table.lookup(IPv6Address("fd00::1")) is b
    assert table.lookup(b"\x0a\x02\x03\x04") is a
    assert table.lookup(" 10.2.3.4 ") is a
    assert table.lookup_packed(bytearray(b"\x0a\x02\x03\x04")) is a
    assert table.lookup_packed(memoryview(b"\xff\x0a\x02\x03\x04")[1:]) is a
    assert table.lookup_packed(IPv6Address("fd00::1").packed) is b
    assert table.lookup("fe80::1%eth0") is None  # scope ids are accepted and ignored


@pytest.mark.parametrize("size", [0, 1, 3, 5, 8, 15, 17, 20, 32])
def test_lookup_packed_wrong_length_returns_none(size: int) -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    table.insert("0.0.0.0/0", Peer("a"))
    table.insert("::/0", Peer("b"))
    assert table.lookup_packed(bytes(size)) is None
    assert table.lookup(bytes(size)) is None


@pytest.mark.parametrize(
    "network",
    [
        "",
        "   ",
        "garbage",
        "10.0.0.0/33",
        "10.0.0.0/-1",
        "10.0.0.0/",
        "10.0.0/8",
        "256.0.0.0/8",
        "10.0.0.0/8/8",
        "fd00::/129",
        "fd00:::1/64",
        "10.0.0.0/8,10.1.0.0/16",
        5,
        None,
        b"\x0a\x00\x00\x00",
        ("10.0.0.0", 8),
        IPv4Address("10.0.0.0"),
    ],
)
def test_insert_rejects_bad_networks(network: Any) -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    with pytest.raises(LocalProtocolError, match="network"):
        table.insert(network, Peer("a"))
    assert len(table) == 0


def test_insert_rejects_none_value() -> None:
    table: AllowedIPs[object] = AllowedIPs()
    with pytest.raises(LocalProtocolError, match="None"):
        table.insert("10.0.0.0/8", None)


@pytest.mark.parametrize(
    "address", ["", "garbage", "10.0.0.256", "10.0.0.0/8", "fd00:::1", 5, None]
)
def test_lookup_rejects_bad_addresses(address: Any) -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    with pytest.raises(LocalProtocolError, match="address"):
        table.lookup(address)


def test_error_message_names_the_input() -> None:
    with pytest.raises(LocalProtocolError, match=r"'10\.0\.0\.0/33'"):
        AllowedIPs[Peer]().insert("10.0.0.0/33", Peer("a"))


def test_repr_and_len() -> None:
    table: AllowedIPs[Peer] = AllowedIPs()
    a = Peer("a")
    table.insert("10.0.0.0/8", a)
    table.insert("fd00::/8", a)
    assert len(table) == 2
    assert repr(table) == "<AllowedIPs prefixes=2 owners=1>"
