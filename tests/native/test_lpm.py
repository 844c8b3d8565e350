"""Native longest-prefix-match table (pywg._fast.lpm, lpm.c): cryptokey routing in C.

Known cases, the shared allowed-IPs vectors (vectors/allowedips_selftest.json),
packet-header lookups, then differential tests against the pure-Python
reference :class:`pywg.allowedips.AllowedIPs`. Every table-level test runs
with each lookup strategy forced (trie only, hash only) and with the
default mix, and checks the C invariants (``_validate``) as it goes.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.ip_packets import ip4, ip6
from helpers.known_answers import load
from pywg import _fast
from pywg._fast.lpm import UNMAPPED, VALUE_MAX, NativeLpm
from pywg.allowedips import AllowedIPs, Prefix, PrefixList, parse_prefix

if not _fast.AVAILABLE:
    pytest.skip(f"native extension not importable: {_fast.IMPORT_ERROR}", allow_module_level=True)

DEFAULT_HASH_LENGTHS = _fast.lib.PYWG_LPM_HASH_LENGTHS
# (id, hash_lengths): the trie alone, the hash alone, the default mix.
STRATEGIES = [("trie", 0), ("hash", 129), ("default", DEFAULT_HASH_LENGTHS)]

Network = IPv4Network | IPv6Network


@pytest.fixture(params=[s[1] for s in STRATEGIES], ids=[s[0] for s in STRATEGIES])
def make_table(request: pytest.FixtureRequest) -> Iterator[Callable[[], NativeLpm]]:
    """A factory of tables in one lookup strategy; every table is validated at the end."""
    made: list[NativeLpm] = []

    def make() -> NativeLpm:
        table = NativeLpm()
        table.set_hash_lengths(request.param)
        made.append(table)
        return table

    yield make
    for table in made:
        table._validate()


# ---------------------------------------------------------------------------
# 1. Known cases
# ---------------------------------------------------------------------------


def test_empty_table(make_table: Callable[[], NativeLpm]) -> None:
    table = make_table()
    assert len(table) == 0
    assert table.lookup("0.0.0.0") is None
    assert table.lookup("255.255.255.255") is None
    assert table.lookup("::") is None
    assert table.lookup("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") is None
    assert table.remove("10.0.0.0/8") is False
    assert table.remove_value(1) == 0
    assert table.get("::/0") is None


def test_default_routes(make_table: Callable[[], NativeLpm]) -> None:
    table = make_table()
    table.insert("0.0.0.0/0", 4)
    assert table.lookup("1.2.3.4") == 4
    assert table.lookup("255.255.255.255") == 4
    assert table.lookup("::1") is None  # a v4 default route says nothing about v6
    table.insert("::/0", 6)
    assert table.lookup("::1") == 6
    assert table.lookup("fd19::2") == 6
    table.insert("10.0.0.0/8", 10)
    table.insert("10.1.2.3/32", 11)
    assert table.lookup("10.1.2.3") == 11
    assert table.lookup("10.1.2.4") == 10
    assert table.lookup("11.0.0.0") == 4
    assert table.remove("0.0.0.0/0")
    assert table.lookup("11.0.0.0") is None
    assert table.lookup("10.9.9.9") == 10
    assert table.lookup("::1") == 6
    assert len(table) == 3


def test_host_routes(make_table: Callable[[], NativeLpm]) -> None:
    table = make_table()
    table.insert("198.19.0.2/32", 1)
    table.insert("198.19.0.3", 2)  # a bare address is a host route
    table.insert("fd19::2/128", 3)
    table.insert("fd19::3", 4)
    assert table.lookup("198.19.0.2") == 1
    assert table.lookup("198.19.0.3") == 2
    assert table.lookup("198.19.0.1") is None
    assert table.lookup("fd19::2") == 3
    assert table.lookup("fd19::3") == 4
    assert table.lookup("fd19::2:0") is None
    # Every neighbour that differs in one bit misses.
    v4 = int(IPv4Address("198.19.0.2"))
    for bit in range(32):
        assert table.lookup(IPv4Address(v4 ^ 1 << bit)) != 1
    v6 = int(IPv6Address("fd19::2"))
    for bit in range(128):
        assert table.lookup(IPv6Address(v6 ^ 1 << bit)) != 3
    assert table.lookup("255.255.255.255") is None
    table.insert("255.255.255.255/32", 5)
    table.insert("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", 6)
    assert table.lookup("255.255.255.255") == 5
    assert table.lookup("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") == 6
    assert table.lookup("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe") is None


def test_overlapping_prefixes_nest(make_table: Callable[[], NativeLpm]) -> None:
    """Every length of one address: each level answers for its own range."""
    table = make_table()
    for width, base in ((32, int(IPv4Address("10.170.85.165"))), (128, 0xFD19 << 112 | 0xA5A5)):
        for cidr in range(width + 1):
            table.insert(_net(width, base, cidr), 1000 * width + cidr)
        for cidr in range(width + 1):
            # flip the bit just past the prefix: only prefixes up to cidr still match
            address = base ^ 1 << (width - 1 - cidr) if cidr < width else base
            assert table.lookup(_addr(width, address)) == 1000 * width + cidr, cidr
    assert len(table) == 33 + 129
    # Remove every other length, from the longest: answers fall back to the next shorter.
    for cidr in range(32, -1, -2):
        assert table.remove(_net(32, int(IPv4Address("10.170.85.165")), cidr))
    base = int(IPv4Address("10.170.85.165"))
    for cidr in range(33):
        address = base ^ 1 << (31 - cidr) if cidr < 32 else base
        expect = cidr if cidr % 2 else cidr - 1
        assert table.lookup(_addr(32, address)) == (32000 + expect if expect >= 0 else None)


def test_siblings_and_forks(make_table: Callable[[], NativeLpm]) -> None:
    table = make_table()
    table.insert("10.0.0.0/24", 1)
    table.insert("10.0.1.0/24", 2)  # fork at /23
    assert table.lookup("10.0.0.9") == 1
    assert table.lookup("10.0.1.9") == 2
    assert table.lookup("10.0.2.9") is None
    table.insert("10.0.0.0/23", 3)  # lands on the fork
    assert table.lookup("10.0.1.9") == 2
    assert table.remove("10.0.0.0/23")
    assert table.lookup("10.0.0.9") == 1
    assert table.remove("10.0.0.0/24")  # the fork is pruned
    assert table.lookup("10.0.0.9") is None
    assert table.lookup("10.0.1.255") == 2
    table._validate()


def test_v4_and_v6_are_separate(make_table: Callable[[], NativeLpm]) -> None:
    table = make_table()
    table.insert("1.2.3.4/32", 1)
    assert table.lookup("::1.2.3.4") is None
    assert table.lookup("::ffff:1.2.3.4") is None
    assert table.lookup(IPv6Address(int(IPv4Address("1.2.3.4")))) is None
    table.insert("::102:304/128", 2)
    table.insert("::ffff:0:0/96", 3)
    assert table.lookup("1.2.3.4") == 1
    assert table.lookup("::1.2.3.4") == 2
    assert table.lookup("::ffff:1.2.3.4") == 3
    assert table.remove_value(1) == 1
    assert table.lookup("::1.2.3.4") == 2
    table.insert("0.0.0.0/0", 4)
    assert table.lookup("::") is None
    assert table.remove("::/0") is False
    assert len(table) == 3


def test_replace_and_host_bits(make_table: Callable[[], NativeLpm]) -> None:
    table = make_table()
    table.insert("10.0.0.5/8", 1)
    assert table.get("10.0.0.0/8") == 1
    assert table.get("10.9.9.9/8") == 1  # host bits ignored in queries too
    table.insert("10.255.255.255/8", 2)  # the same prefix after masking: new value
    assert len(table) == 1
    assert table.lookup("10.1.1.1") == 2
    table.insert("10.0.0.0/8", 2)  # same value again: nothing changes
    assert len(table) == 1
    table.insert("2001:db8::dead:beef/32", 3)
    assert table.get("2001:db8::/32") == 3
    table.insert(IPv6Network("2001:db8::/32"), VALUE_MAX)
    assert table.lookup("2001:db8:1::1") == VALUE_MAX  # the top value is not "no route"
    table.insert("10.0.0.0/8", 0)  # nor is zero
    assert table.lookup("10.1.1.1") == 0
    assert table.remove("10.9.9.9/8")
    assert len(table) == 1


def test_remove_exact_only(make_table: Callable[[], NativeLpm]) -> None:
    table = make_table()
    table.insert("10.0.0.0/8", 1)
    table.insert("10.0.0.0/16", 2)
    assert table.remove("10.0.0.0/9") is False  # between two stored prefixes
    assert table.remove("10.0.0.0/24") is False  # below the deepest
    assert table.remove("10.0.0.0/7") is False  # above
    assert table.remove("::/0") is False
    assert table.remove("10.0.0.0/8") is True
    assert table.remove("10.0.0.0/8") is False
    assert table.lookup("10.0.0.1") == 2
    assert table.lookup("10.1.0.1") is None
    assert len(table) == 1


def test_remove_value(make_table: Callable[[], NativeLpm]) -> None:
    table = make_table()
    nets = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "fd00::/8", "fd00:1::/32", "::/0"]
    for i, net in enumerate(nets):
        table.insert(net, i % 2)
    assert table.remove_value(7) == 0
    assert table.remove_value(0) == 3  # 10/8, 10.1.2/24, fd00:1::/32
    assert len(table) == 3
    assert table.lookup("10.1.2.3") == 1  # 10.1/16 is value 1
    assert table.lookup("10.2.0.0") is None
    assert table.lookup("fd00:1::1") == 1  # fd00::/8
    assert table.remove_value(0) == 0
    assert table.remove_value(1) == 3
    assert len(table) == 0
    assert table.lookup("::1") is None


def test_clear_releases_memory(make_table: Callable[[], NativeLpm]) -> None:
    table = make_table()
    empty = table.memory
    assert empty < 16 * 1024
    rng = random.Random(5)
    for _ in range(3000):
        width = rng.choice((32, 128))
        table.insert(_net(width, rng.getrandbits(width), rng.randint(0, width)), rng.randint(0, 9))
    assert table.memory > empty
    table._validate()
    table.clear()
    assert len(table) == 0
    assert table.memory == empty
    assert table.lookup("10.0.0.1") is None
    table.insert("10.0.0.0/8", 1)
    assert table.lookup("10.0.0.1") == 1


def test_churn_returns_to_empty(make_table: Callable[[], NativeLpm]) -> None:
    """Insert and delete thousands of prefixes; memory stays within the peak's."""
    table = make_table()
    rng = random.Random(11)
    live: dict[Network, int] = {}
    peak = 0
    for round_ in range(4):
        for _ in range(2500):
            width = rng.choice((32, 128))
            net = _net(width, rng.getrandbits(width), rng.randint(0, width))
            table.insert(net, round_)
            live[net] = round_
        peak = max(peak, table.memory)
        table._validate()
        for net in rng.sample(sorted(live, key=str), len(live) // 2):
            assert table.remove(net)
            del live[net]
        assert len(table) == len(live)
        table._validate()
        assert table.memory <= peak
    total = sum(table.remove_value(v) for v in range(4))
    assert total == len(live)
    assert len(table) == 0
    table._validate()


def test_long_chain_and_all_ones(make_table: Callable[[], NativeLpm]) -> None:
    """Linux's node-freeing stress: 128 /128s, all-ones with one bit cleared."""
    table = make_table()
    ones = (1 << 128) - 1
    for i in range(128):
        half = 64 if i < 64 else 0
        table.insert(IPv6Network((ones & ~(1 << (half + i % 64)), 128)), 1)
    assert len(table) == 128
    assert table.lookup(IPv6Address(ones)) is None
    assert table.lookup(IPv6Address(ones & ~(1 << 5))) == 1
    table._validate()
    assert table.remove_value(1) == 128
    assert len(table) == 0


def test_get(make_table: Callable[[], NativeLpm]) -> None:
    table = make_table()
    table.insert("192.168.0.0/16", 1)
    assert table.get("192.168.0.0/16") == 1
    assert table.get("192.168.0.0/17") is None
    assert table.get("192.168.0.0/15") is None
    assert table.get(IPv4Network("192.168.0.0/16")) == 1
    assert table.get("::/0") is None


# ---------------------------------------------------------------------------
# 2. Input handling
# ---------------------------------------------------------------------------


def test_lookup_input_types() -> None:
    table = NativeLpm()
    table.insert(IPv4Network("10.0.0.0/8"), 1)
    table.insert(IPv6Network("fd00::/8"), 2)
    assert table.lookup(IPv4Address("10.2.3.4")) == 1
    assert table.lookup(IPv6Address("fd00::1")) == 2
    assert table.lookup(b"\x0a\x02\x03\x04") == 1
    assert table.lookup(bytearray(b"\x0a\x02\x03\x04")) == 1
    assert table.lookup(memoryview(b"\xff\x0a\x02\x03\x04")[1:]) == 1
    assert table.lookup(IPv6Address("fd00::1").packed) == 2
    assert table.lookup(" 10.2.3.4 ") == 1
    assert table.lookup("fe80::1%eth0") is None  # scope ids are accepted and ignored


@pytest.mark.parametrize(
    ("network", "error"),
    [
        ("", ValueError),
        ("garbage", ValueError),
        ("10.0.0.0/33", ValueError),
        ("10.0.0.0/-1", ValueError),
        ("fd00::/129", ValueError),
        ("10.0.0.0/8,10.1.0.0/16", ValueError),
        (5, TypeError),
        (None, TypeError),
        (b"\x0a\x00\x00\x00", TypeError),
        (("10.0.0.0", 8), TypeError),
        (IPv4Address("10.0.0.0"), TypeError),
    ],
)
def test_bad_networks(network: Any, error: type[Exception]) -> None:
    table = NativeLpm()
    with pytest.raises(error, match="network"):
        table.insert(network, 1)
    with pytest.raises(error, match="network"):
        table.remove(network)
    with pytest.raises(error, match="network"):
        table.get(network)
    assert len(table) == 0


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (-1, ValueError),
        (VALUE_MAX + 1, ValueError),
        (1 << 64, ValueError),
        (True, TypeError),
        ("1", TypeError),
        (1.0, TypeError),
        (None, TypeError),
    ],
)
def test_bad_values(value: Any, error: type[Exception]) -> None:
    table = NativeLpm()
    with pytest.raises(error, match="value"):
        table.insert("10.0.0.0/8", value)
    with pytest.raises(error, match="value"):
        table.remove_value(value)
    assert len(table) == 0


@pytest.mark.parametrize(
    ("address", "error"),
    [
        ("", ValueError),
        ("garbage", ValueError),
        ("10.0.0.256", ValueError),
        ("10.0.0.0/8", ValueError),
        (b"", ValueError),
        (b"\x0a\x00\x00", ValueError),
        (b"\x0a\x00\x00\x00\x00", ValueError),
        (bytes(15), ValueError),
        (bytes(17), ValueError),
        (5, TypeError),
        (None, TypeError),
        (IPv4Network("10.0.0.0/8"), TypeError),
    ],
)
def test_bad_addresses(address: Any, error: type[Exception]) -> None:
    table = NativeLpm()
    table.insert("0.0.0.0/0", 1)
    table.insert("::/0", 2)
    with pytest.raises(error, match="address"):
        table.lookup(address)


def test_tuning_and_repr() -> None:
    table = NativeLpm()
    with pytest.raises(ValueError, match="max_lengths"):
        table.set_hash_lengths(-1)
    with pytest.raises(ValueError, match="max_lengths"):
        table.set_hash_lengths(130)
    table.insert("10.0.0.0/8", 1)
    table.insert("fd00::/8", 1)
    assert repr(table) == f"<NativeLpm prefixes=2 memory={table.memory}>"


def test_many_tables_are_freed() -> None:
    for i in range(2000):
        table = NativeLpm()
        table.insert("10.0.0.0/8", i)
        assert table.lookup("10.0.0.1") == i


# ---------------------------------------------------------------------------
# 3. Shared known answers: Linux selftest and wireguard-go (allowedips_selftest.json)
# ---------------------------------------------------------------------------


def _sections() -> list[str]:
    return [
        name
        for name, value in load("allowedips_selftest.json").items()
        if isinstance(value, list) and value and all("op" in step for step in value)
    ]


@pytest.mark.parametrize("section", _sections())
def test_selftest_vectors(section: str, make_table: Callable[[], NativeLpm]) -> None:
    steps = load("allowedips_selftest.json")[section]
    table = make_table()
    ids: dict[str, int] = {}
    owners: dict[Network, int] = {}  # what the table should hold, to check list_peer

    def peer(label: str) -> int:
        return ids.setdefault(label, len(ids) + 1)

    for index, step in enumerate(steps):
        where = f"{section}[{index}] {step}"
        op = step["op"]
        if op == "insert":
            net = ipaddress.ip_network(f"{step['ip']}/{step['cidr']}", strict=False)
            table.insert(net, peer(step["peer"]))
            owners[net] = peer(step["peer"])
        elif op in ("lookup", "lookup_not"):
            address = ipaddress.ip_address(step["ip"])
            found = table.lookup(step["ip"])
            assert table.lookup(address.packed) == found, where
            if op == "lookup":
                expect = step["expect"]
                assert found == (None if expect is None else peer(expect)), where
            else:
                assert found != peer(step["peer"]), where
        elif op == "remove_by_peer":
            value = peer(step["peer"])
            owned = [net for net, v in owners.items() if v == value]
            assert table.remove_value(value) == len(owned), where
            for net in owned:
                del owners[net]
        elif op == "remove":
            # wireguard-go semantics: only if that exact prefix belongs to that peer
            net = ipaddress.ip_network(f"{step['ip']}/{step['cidr']}", strict=False)
            owner = table.get(net)
            assert owner == owners.get(net), where
            if step["peer"] is not None and owner == peer(step["peer"]):
                assert table.remove(net), where
                del owners[net]
        elif op == "clear":
            table.clear()
            owners.clear()
        elif op == "list_peer":
            value = peer(step["peer"])
            listed = sorted(str(net) for net, v in owners.items() if v == value)
            assert listed == step["expect"], where
            for text in step["expect"]:
                assert table.get(text) == value, where
        else:
            pytest.fail(f"unknown op {op!r} in {where}")
        assert len(table) == len(owners), where
        table._validate()


# ---------------------------------------------------------------------------
# 4. Packet headers (the data plane's entry point)
# ---------------------------------------------------------------------------


@pytest.fixture
def routes() -> NativeLpm:
    table = NativeLpm()
    table.insert("198.19.0.0/24", 1)
    table.insert("198.19.0.2/32", 2)
    table.insert("fd19::/64", 3)
    table.insert("fd19::2/128", 4)
    return table


def test_lookup_packet_ipv4(routes: NativeLpm) -> None:
    packet = ip4("198.19.0.2", "198.19.0.7")
    assert routes.lookup_packet(packet, "source") == 2
    assert routes.lookup_packet(packet, "destination") == 1
    assert routes.lookup_packet(packet) == 1  # destination by default
    assert routes.lookup_packet(ip4("10.0.0.1", "198.19.0.2"), "source") is None
    assert routes.lookup_packet(ip4("10.0.0.1", "198.19.0.2"), "destination") == 2
    # Padding after the packet (WireGuard pads plaintext to 16 bytes) is fine.
    assert routes.lookup_packet(packet + bytes(13), "source") == 2
    # The header alone is enough.
    assert routes.lookup_packet(packet[:20], "destination") == 1
    # Options (IHL 6): the addresses stay at 12 and 16.
    with_options = bytes([0x46]) + packet[1:20] + b"\x01\x01\x01\x00" + packet[20:]
    assert routes.lookup_packet(with_options, "source") == 2
    assert routes.lookup_packet(bytearray(packet), "source") == 2
    assert routes.lookup_packet(memoryview(packet), "destination") == 1


def test_lookup_packet_ipv6(routes: NativeLpm) -> None:
    packet = ip6("fd19::2", "fd19::7")
    assert routes.lookup_packet(packet, "source") == 4
    assert routes.lookup_packet(packet, "destination") == 3
    assert routes.lookup_packet(ip6("fd18::1", "fd19::2"), "source") is None
    assert routes.lookup_packet(ip6("fd18::1", "fd19::2"), "destination") == 4
    assert routes.lookup_packet(packet[:40], "source") == 4
    assert routes.lookup_packet(packet + bytes(7), "destination") == 3


def test_lookup_packet_families_do_not_mix(routes: NativeLpm) -> None:
    # An IPv6 header whose bytes at the IPv4 offsets spell 198.19.0.2 is still IPv6.
    tricky = bytearray(ip6("::", "::"))
    tricky[12:16] = IPv4Address("198.19.0.2").packed
    assert routes.lookup_packet(bytes(tricky), "source") is None
    # And an IPv4 header is never read as IPv6, however long.
    assert routes.lookup_packet(ip4("198.19.0.9", "1.1.1.1", b"\0" * 60), "source") == 1


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"\x45",
        ip4("198.19.0.2", "198.19.0.2")[:19],  # one short of a header
        ip6("fd19::2", "fd19::2")[:39],
        bytes([0x44]) + ip4("198.19.0.2", "198.19.0.2")[1:],  # IHL 4 < 5
        bytes([0x40]) + ip4("198.19.0.2", "198.19.0.2")[1:],  # IHL 0
        bytes([0x4F]) + ip4("198.19.0.2", "198.19.0.2")[1:],  # IHL 15: 60 > 40 bytes
        bytes([0x05]) + ip4("198.19.0.2", "198.19.0.2")[1:],  # version 0
        bytes([0x55]) + ip4("198.19.0.2", "198.19.0.2")[1:],  # version 5
        bytes([0x75]) + ip4("198.19.0.2", "198.19.0.2")[1:],  # version 7
        bytes([0xF0]) + ip6("fd19::2", "fd19::2")[1:],  # version 15
        b"\x60" + bytes(38),
        b"\x45" + bytes(18),
    ],
)
def test_lookup_packet_malformed(routes: NativeLpm, packet: bytes) -> None:
    routes.insert("0.0.0.0/0", 9)  # so that any v4 read would find something
    routes.insert("::/0", 9)
    assert routes.lookup_packet(packet, "source") is None
    assert routes.lookup_packet(packet, "destination") is None


def test_lookup_packet_every_truncation(routes: NativeLpm) -> None:
    routes.insert("0.0.0.0/0", 9)
    routes.insert("::/0", 9)
    cases = [(ip4("198.19.0.2", "1.1.1.1"), 20, 2), (ip6("fd19::2", "::1"), 40, 4)]
    for packet, header, source in cases:
        for size in range(len(packet) + 1):
            found = routes.lookup_packet(packet[:size], "source")
            assert found == (None if size < header else source), size


def test_lookup_packet_bad_which(routes: NativeLpm) -> None:
    with pytest.raises(ValueError, match="which"):
        routes.lookup_packet(ip4("1.1.1.1", "2.2.2.2"), "both")  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=64))
def test_lookup_packet_never_reads_garbage_as_a_match(data: bytes) -> None:
    """Arbitrary bytes: an answer only for a well-formed header, and then the right one."""
    table = NativeLpm()
    table.insert("0.0.0.0/1", 1)
    table.insert("128.0.0.0/1", 2)
    table.insert("::/1", 3)
    table.insert("8000::/1", 4)
    for which, v4_at, v6_at in (("source", 12, 8), ("destination", 16, 24)):
        found = table.lookup_packet(data, which)  # type: ignore[arg-type]
        version = data[0] >> 4 if data else 0
        if version == 4 and len(data) >= 20 and 20 <= (data[0] & 15) * 4 <= len(data):
            assert found == table.lookup(data[v4_at : v4_at + 4])
        elif version == 6 and len(data) >= 40:
            assert found == table.lookup(data[v6_at : v6_at + 16])
        else:
            assert found is None


# ---------------------------------------------------------------------------
# 5. Differential: the same answers as pywg.allowedips.AllowedIPs
# ---------------------------------------------------------------------------


class Mirror:
    """A NativeLpm and an AllowedIPs driven with the same operations, compared as it goes."""

    def __init__(self, hash_lengths: int, values: int = 6) -> None:
        self.native = NativeLpm()
        self.native.set_hash_lengths(hash_lengths)
        self.pure: AllowedIPs[object] = AllowedIPs()
        self.peers = [object() for _ in range(values)]
        self.ids = {id(p): i for i, p in enumerate(self.peers)}

    def insert(self, net: Network, value: int) -> None:
        self.native.insert(net, value)
        self.pure.insert(net, self.peers[value])

    def remove(self, net: Network) -> None:
        owner = self.native.get(net)
        if owner is not None:
            assert self.pure.remove(net, self.peers[owner]) is True
        else:
            assert not any(self.pure.remove(net, p) for p in self.peers)
        assert self.native.remove(net) is (owner is not None)

    def remove_value(self, value: int) -> None:
        assert self.native.remove_value(value) == self.pure.remove_by_value(self.peers[value])

    def clear(self) -> None:
        self.native.clear()
        self.pure.clear()

    def check(self, packed: bytes) -> None:
        found = self.pure.lookup_packed(packed)
        expect = None if found is None else self.ids[id(found)]
        assert self.native.lookup(packed) == expect, packed.hex()
        assert len(self.native) == len(self.pure)


@settings(max_examples=150, deadline=None)
@given(
    hash_lengths=st.sampled_from([0, 1, DEFAULT_HASH_LENGTHS, 129]),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["insert", "insert", "remove", "remove_value", "lookup", "clear"]),
            st.sampled_from([4, 6]),
            st.integers(min_value=0, max_value=(1 << 128) - 1),
            st.integers(min_value=0, max_value=128),
            st.integers(min_value=0, max_value=2),
        ),
        max_size=150,
    ),
)
def test_hypothesis_against_allowedips(
    hash_lengths: int, ops: list[tuple[str, int, int, int, int]]
) -> None:
    mirror = Mirror(hash_lengths, values=3)
    for op, version, raw, raw_cidr, value in ops:
        width = 32 if version == 4 else 128
        # Fold into a small address space (8 random top bits, the rest from raw)
        # so that prefixes nest and collide.
        address = (raw & 0xFF) << (width - 8) | (raw >> 8) & ((1 << (width - 8)) - 1)
        cidr = raw_cidr % (width + 1)
        net = _net(width, address, cidr)
        if op == "insert":
            mirror.insert(net, value)
        elif op == "remove":
            mirror.remove(net)
        elif op == "remove_value":
            mirror.remove_value(value)
        elif op == "clear":
            if raw % 4 == 0:  # rarely
                mirror.clear()
        else:
            mirror.check(_addr(width, address).packed)
            mirror.check(_addr(width, address ^ 1 << (raw_cidr % width)).packed)
    mirror.native._validate()


class Clustered:
    """Random prefixes around a few base addresses (they nest and share long paths)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.bases = {32: [rng.getrandbits(32) for _ in range(4)]}
        self.bases[128] = [rng.getrandbits(128) for _ in range(4)]

    def address(self, width: int) -> int:
        rng = self.rng
        if rng.random() < 0.1:
            return rng.getrandbits(width)
        address = rng.choice(self.bases[width])
        for _ in range(rng.randint(0, 3)):
            address ^= 1 << rng.randrange(width)
        return address

    def cidr(self, width: int, lengths: list[int] | None) -> int:
        rng = self.rng
        if lengths is not None:
            return rng.choice(lengths)
        roll = rng.random()
        if roll < 0.02:
            return 0
        if roll < 0.15:
            return width
        return rng.randint(1, width)


@pytest.mark.parametrize("hash_lengths", [0, DEFAULT_HASH_LENGTHS, 129])
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("few_lengths", [False, True], ids=["all-lengths", "few-lengths"])
def test_random_ops_against_allowedips(seed: int, hash_lengths: int, few_lengths: bool) -> None:
    rng = random.Random(seed)
    source = Clustered(rng)
    mirror = Mirror(hash_lengths)
    inserted: list[Network] = []
    lengths = {32: [0, 8, 24, 32], 128: [0, 48, 64, 128]} if few_lengths else None
    for step in range(2500):
        width = rng.choice((32, 128))
        roll = rng.random()
        if roll < 0.45:
            cidr = source.cidr(width, None if lengths is None else lengths[width])
            net = _net(width, source.address(width), cidr)
            mirror.insert(net, rng.randrange(6))
            inserted.append(net)
        elif roll < 0.6 and inserted:
            mirror.remove(rng.choice(inserted))
        elif roll < 0.62:
            mirror.remove_value(rng.randrange(6))
        else:
            for _ in range(4):
                mirror.check(_addr(width, source.address(width)).packed)
        if step % 250 == 0:
            mirror.native._validate()
    mirror.native._validate()


@pytest.mark.parametrize("width", [32, 128], ids=["v4", "v6"])
@pytest.mark.parametrize("layout", ["random", "clustered", "hosts"])
def test_large_tables_against_allowedips(width: int, layout: str) -> None:
    """10,000 prefixes: big enough for jump tables to form below the root."""
    rng = random.Random(width * 7 + len(layout))
    mirror = Mirror(DEFAULT_HASH_LENGTHS, values=64)
    stored: list[tuple[int, int]] = []
    base = rng.getrandbits(width) >> (width - 16) << (width - 16)  # a /16 to cluster in
    for _ in range(10_000):
        if layout == "random":
            cidr = rng.randint(1, width)
            address = rng.getrandbits(width)
        elif layout == "clustered":
            cidr = rng.randint(16, width)
            address = base | rng.getrandbits(width - 16)
        else:
            cidr = width
            address = base | rng.getrandbits(width - 16)
        net = _net(width, address, cidr)
        mirror.insert(net, rng.randrange(64))
        stored.append((int(net.network_address), cidr))
    mirror.native._validate()
    for _ in range(3000):
        bits, cidr = rng.choice(stored)
        inside = bits | rng.getrandbits(width - cidr) if cidr < width else bits
        mirror.check(_addr(width, inside).packed)
        mirror.check(_addr(width, rng.getrandbits(width)).packed)
        mirror.check(_addr(width, base | rng.getrandbits(width - 16)).packed)
    # Forcing either strategy gives the same answers.
    probes = [_addr(width, rng.getrandbits(width)).packed for _ in range(500)]
    for bits, cidr in rng.sample(stored, 500):
        inside = bits | rng.getrandbits(width - cidr) if cidr < width else bits
        probes.append(_addr(width, inside).packed)
    answers = [mirror.native.lookup(p) for p in probes]
    for hash_lengths in (0, 129):
        mirror.native.set_hash_lengths(hash_lengths)
        assert [mirror.native.lookup(p) for p in probes] == answers
    # Delete half, check again.
    for bits, cidr in rng.sample(stored, len(stored) // 2):
        mirror.remove(_net(width, bits, cidr))
    mirror.native.set_hash_lengths(DEFAULT_HASH_LENGTHS)
    mirror.native._validate()
    for packed in probes:
        mirror.check(packed)


def test_bench_checksum_matches_lookups() -> None:
    """pywg_lpm_bench runs the same lookups: its checksum is reproducible from Python."""
    table = NativeLpm()
    rng = random.Random(3)
    for _ in range(500):
        width = rng.choice((32, 128))
        table.insert(_net(width, rng.getrandbits(width), rng.randint(0, width)), rng.randrange(9))
    for version, size in ((4, 4), (6, 16)):
        addresses = [rng.randbytes(size) for _ in range(100)]
        checksum = 0
        for _ in range(3):
            for address in addresses:
                found = table.lookup(address)
                checksum = (checksum * 31 + (0 if found is None else found + 1)) % (1 << 64)
        assert table.bench(addresses, version, 3) == checksum  # type: ignore[arg-type]
    assert table.bench([], 4, 10) == 0
    with pytest.raises(ValueError, match="16 bytes"):
        table.bench([bytes(4)], 6, 1)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _net(width: int, address: int, cidr: int) -> Network:
    """The prefix address/cidr, host bits masked off."""
    shift = width - cidr
    bits = address >> shift << shift if shift < width else 0
    return IPv4Network((bits, cidr)) if width == 32 else IPv6Network((bits, cidr))


def _addr(width: int, address: int) -> IPv4Address | IPv6Address:
    return IPv4Address(address) if width == 32 else IPv6Address(address)


# ---------------------------------------------------------------------------
# Bulk forms on packed records (pywg_lpm_insert_many and friends)
# ---------------------------------------------------------------------------


def _random_prefixes(rnd: random.Random, count: int, lengths: list[int]) -> PrefixList:
    """Prefixes of both families in a small space, so that they nest and repeat."""
    found = PrefixList()
    for _ in range(count):
        cidr = rnd.choice(lengths)
        if rnd.random() < 0.5:
            width, bits = 32, 0x0A000000 | rnd.getrandbits(18) << 6
        else:
            width, bits = 128, 0xFD19 << 112 | rnd.getrandbits(20) << 60 | rnd.getrandbits(8)
        cidr = min(cidr, width)
        found.append(Prefix(width, bits >> (width - cidr) << (width - cidr), cidr))
    return found


def _addresses(prefixes: PrefixList, rnd: random.Random) -> list[bytes]:
    out = []
    for prefix in prefixes:
        host = rnd.getrandbits(prefix.width - prefix.cidr) if prefix.cidr < prefix.width else 0
        out.append((prefix.bits | host).to_bytes(prefix.width // 8, "big"))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_bulk_insert_answers_as_inserts_one_by_one(
    make_table: Callable[[], NativeLpm], seed: int
) -> None:
    """insert_records settles its lookup tables once at the end (past 64 prefixes of a
    family): the table is valid and every answer is the one of single inserts."""
    rnd = random.Random(seed)
    lengths = [8, 12, 16, 20, 24, 26, 28, 30, 32, 48, 64, 96, 120, 128]
    bulk, single = make_table(), make_table()
    for round_ in range(4):
        batch = _random_prefixes(rnd, rnd.choice([10, 300, 3000]), lengths)
        bulk.insert_records(batch.records, round_)
        for prefix in batch:
            single.insert(str(prefix.network()), round_)
        bulk._validate()
        assert len(bulk) == len(single)
        for address in _addresses(batch, rnd) + _addresses(
            _random_prefixes(rnd, 500, lengths), rnd
        ):
            assert bulk.lookup(address) == single.lookup(address), address.hex()
        assert bulk.dump() == single.dump()


def test_bulk_insert_is_all_or_nothing() -> None:
    table = NativeLpm()
    table.insert_records(PrefixList([parse_prefix("10.0.0.0/8")]).records, 1)
    good = PrefixList([parse_prefix("10.1.0.0/16"), parse_prefix("fd19::/16")]).records
    for bad in (b"\x05\x08" + bytes(16), b"\x04\x21" + bytes(16), b"\x06\x81" + bytes(16)):
        with pytest.raises(MemoryError):
            table.insert_records(good + bad, 2)
        assert len(table) == 1 and table.lookup("10.1.0.1") == 1
    with pytest.raises(ValueError):
        table.insert_records(good[:-1], 2)  # not whole records
    table._validate()


def test_records_of_keep_assignment_order_and_dump_keeps_address_order() -> None:
    table = NativeLpm()
    texts = ["10.9.0.0/16", "fd19::/64", "10.0.0.0/8", "10.9.1.0/24", "::/0"]
    table.insert_records(PrefixList(parse_prefix(t) for t in texts).records, 7)
    table.insert("10.0.0.0/8", 8)  # moves to 8: the end of 8's list
    table.insert("10.0.0.0/8", 7)  # and back: the end of 7's list
    table.insert("10.9.0.0/16", 7)  # already 7's: keeps its place
    order = [str(p) for p in _records(table.records_of(7))]
    assert order == ["10.9.0.0/16", "fd19::/64", "10.9.1.0/24", "::/0", "10.0.0.0/8"]
    records, values = table.dump()
    assert [str(p) for p in _records(records)] == [
        "10.0.0.0/8",
        "10.9.0.0/16",
        "10.9.1.0/24",
        "::/0",
        "fd19::/64",
    ]
    assert values == [7] * 5
    assert table.value_count(7) == 5 and table.value_count(8) == 0 and table.owners == 1
    removed = PrefixList([parse_prefix("fd19::/64"), parse_prefix("10.9.1.0/24")]).records
    assert table.remove_records(removed, 8) == 0  # not 8's
    assert table.remove_records(removed, 7) == 2
    assert table.remove_value(7) == 3 and len(table) == 0 and table.nodes == 0
    table._validate()


def test_copy_maps_values_and_stands_alone() -> None:
    table = NativeLpm()
    rnd = random.Random(5)
    batches = [_random_prefixes(rnd, 400, [16, 24, 32, 64, 128]) for _ in range(3)]
    for value, batch in enumerate(batches):
        table.insert_records(batch.records, value)
    copy = table.copy([10, 11])  # value 2 is past the map: UNMAPPED
    copy._validate()
    for batch in batches:
        for address in _addresses(batch, rnd):
            found = table.lookup(address)
            assert copy.lookup(address) == (None if found is None else [10, 11, UNMAPPED][found])
    assert copy.owners == table.owners and copy.value_count(10) == table.value_count(0)
    assert copy.records_of(11) == table.records_of(1)
    merged = table.copy([])  # every value unmapped: one owner, the lists joined
    merged._validate()
    assert merged.owners == 1 and merged.value_count(UNMAPPED) == len(table)
    table.clear()  # the copies keep their own memory
    assert len(copy) == len(merged) > 0
    copy._validate()
    assert table.copy().dump() == (b"", [])


def _records(records: bytes) -> PrefixList:
    found = PrefixList()
    found.extend_records(records)
    return found
