"""Native LPM table (pywg._fast.lpm) vs the pure-Python AllowedIPs trie.

Run: python -m pytest benches/bench_lpm.py --benchmark-enable -q

Three ways to pay for a lookup in a table of 10,000 prefixes:

- ``test_lookup_10k``: a Python loop over BATCH packed addresses calling
  ``NativeLpm.lookup`` (cffi + wrapper) or ``AllowedIPs.lookup_packed``;
- ``test_lookup_10k_cffi``: the same loop calling ``lib.pywg_lpm_lookup``
  directly, the floor for any call from Python;
- ``test_lookup_10k_c_loop``: ``pywg_lpm_bench`` runs BATCH x C_ROUNDS lookups
  inside C, which is what the data plane pays per packet.

``extra_info["ns_per_lookup"]`` is the mean time per round divided by the
lookups in a round. Layouts: ``random`` (uniform addresses and lengths
/1-/32 or /1-/128, as in Linux's randomized selftest and bench_allowedips),
``clustered`` (lengths /16 and longer inside one /16) and ``hosts`` (host
routes inside one /16: a big server's peers). Addresses are ``inside`` a random
stored prefix (always a hit) or uniformly ``random``.
"""

from __future__ import annotations

import random
from ipaddress import IPv4Network, IPv6Network
from typing import Any

import pytest

from pywg import _fast
from pywg.allowedips import AllowedIPs

PREFIXES = 10_000
BATCH = 1_000
C_ROUNDS = 1_000
SEED = 0x5EED
PEERS = 64

native = pytest.mark.skipif(
    not _fast.AVAILABLE, reason=f"native extension not importable: {_fast.IMPORT_ERROR}"
)

Prefix = tuple[IPv4Network | IPv6Network, int, int]  # (network, bits, cidr)


def make_prefixes(width: int, layout: str) -> list[Prefix]:
    """PREFIXES distinct prefixes of one family in the given layout."""
    rng = random.Random(SEED + width + len(layout))
    cluster = rng.getrandbits(16) << (width - 16)
    seen: set[tuple[int, int]] = set()
    out: list[Prefix] = []
    while len(out) < PREFIXES:
        if layout == "random":
            cidr = rng.randint(1, width)
            address = rng.getrandbits(width)
        elif layout == "clustered":
            cidr = rng.randint(16, width)
            address = cluster | rng.getrandbits(width - 16)
        else:
            cidr = width
            address = cluster | rng.getrandbits(width - 16)
        shift = width - cidr
        bits = address >> shift << shift
        if (bits, cidr) in seen:
            continue
        seen.add((bits, cidr))
        net = IPv4Network((bits, cidr)) if width == 32 else IPv6Network((bits, cidr))
        out.append((net, bits, cidr))
    return out


def make_addresses(width: int, prefixes: list[Prefix], kind: str) -> list[bytes]:
    """BATCH packed addresses: ``inside`` a random stored prefix, or uniformly ``random``."""
    rng = random.Random(SEED)
    out = []
    for _ in range(BATCH):
        if kind == "inside":
            _, bits, cidr = rng.choice(prefixes)
            address = bits | rng.getrandbits(width - cidr) if cidr < width else bits
        else:
            address = rng.getrandbits(width)
        out.append(address.to_bytes(width // 8))
    return out


def make_native(prefixes: list[Prefix]) -> Any:
    from pywg._fast.lpm import NativeLpm

    rng = random.Random(SEED)
    table = NativeLpm()
    for net, _, _ in prefixes:
        table.insert(net, rng.randrange(PEERS))
    table._validate()
    return table


def make_pure(prefixes: list[Prefix]) -> AllowedIPs[object]:
    rng = random.Random(SEED)
    peers = [object() for _ in range(PEERS)]
    table: AllowedIPs[object] = AllowedIPs()
    for net, _, _ in prefixes:
        table.insert(net, peers[rng.randrange(PEERS)])
    return table


def _report(benchmark: Any, lookups_per_round: int) -> None:
    benchmark.extra_info["lookups_per_round"] = lookups_per_round
    stats = getattr(benchmark, "stats", None)
    if stats is not None and stats.stats.mean:
        mean = stats.stats.mean
        benchmark.extra_info["ns_per_lookup"] = round(mean / lookups_per_round * 1e9, 1)
        benchmark.extra_info["lookups_per_s"] = round(lookups_per_round / mean)


IMPLEMENTATIONS = [pytest.param("native", marks=native), "pure"]
WIDTHS = [pytest.param(32, id="v4"), pytest.param(128, id="v6")]


@pytest.mark.parametrize("kind", ["inside", "random"])
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_lookup_10k(benchmark: Any, impl: str, width: int, kind: str) -> None:
    """Per lookup from Python: NativeLpm.lookup vs AllowedIPs.lookup_packed (random layout)."""
    prefixes = make_prefixes(width, "random")
    batch = make_addresses(width, prefixes, kind)
    table = make_native(prefixes) if impl == "native" else make_pure(prefixes)
    lookup = table.lookup if impl == "native" else table.lookup_packed

    def run() -> int:
        hits = 0
        for address in batch:
            if lookup(address) is not None:
                hits += 1
        return hits

    hits = benchmark(run)
    if kind == "inside":
        assert hits == BATCH
    _report(benchmark, BATCH)


@native
@pytest.mark.parametrize("width", WIDTHS)
def test_lookup_10k_cffi(benchmark: Any, width: int) -> None:
    """The bare cffi call, no wrapper: what any lookup from Python costs at least."""
    prefixes = make_prefixes(width, "random")
    batch = make_addresses(width, prefixes, "inside")
    table = make_native(prefixes)
    handle = table._table
    lookup = _fast.lib.pywg_lpm_lookup
    family = 4 if width == 32 else 6

    def run() -> int:
        hits = 0
        for address in batch:
            if lookup(handle, family, address) >= 0:
                hits += 1
        return hits

    assert benchmark(run) == BATCH
    _report(benchmark, BATCH)


@native
@pytest.mark.parametrize("strategy", ["default", "trie"])
@pytest.mark.parametrize("kind", ["inside", "random"])
@pytest.mark.parametrize("layout", ["random", "clustered", "hosts"])
@pytest.mark.parametrize("width", WIDTHS)
def test_lookup_10k_c_loop(
    benchmark: Any, width: int, layout: str, kind: str, strategy: str
) -> None:
    """Per lookup inside C (pywg_lpm_bench): the data plane's cost, no cffi in the loop.

    ``trie`` forces trie walks (no hash probes) to show what the hash buys.
    """
    prefixes = make_prefixes(width, layout)
    batch = make_addresses(width, prefixes, kind)
    table = make_native(prefixes)
    if strategy == "trie":
        table.set_hash_lengths(0)
    version = 4 if width == 32 else 6
    expected = table.bench(batch, version, 1)  # same lookups as NativeLpm.lookup
    checksum = 0
    for address in batch:
        found = table.lookup(address)
        checksum = (checksum * 31 + (0 if found is None else found + 1)) % (1 << 64)
    assert checksum == expected

    benchmark(table.bench, batch, version, C_ROUNDS)
    _report(benchmark, BATCH * C_ROUNDS)
    benchmark.extra_info["memory_bytes"] = table.memory


@native
def test_lookup_packet_cffi(benchmark: Any) -> None:
    """NativeLpm.lookup_packet on IPv4 headers (the wrapper of the plane's entry point)."""
    prefixes = make_prefixes(32, "hosts")
    table = make_native(prefixes)
    rng = random.Random(SEED)
    header = bytes.fromhex("4500005400004000401100000a000001")
    packets = [header + rng.choice(prefixes)[0].network_address.packed for _ in range(BATCH)]
    lookup_packet = table.lookup_packet

    def run() -> int:
        hits = 0
        for packet in packets:
            if lookup_packet(packet, "destination") is not None:
                hits += 1
        return hits

    assert benchmark(run) == BATCH
    _report(benchmark, BATCH)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_insert_10k(benchmark: Any, impl: str, width: int) -> None:
    nets = [net for net, _, _ in make_prefixes(width, "random")]

    if impl == "native":
        from pywg._fast.lpm import NativeLpm

        def run_native() -> None:
            table = NativeLpm()
            for value, net in enumerate(nets):
                table.insert(net, value)

        benchmark.pedantic(run_native, rounds=5, iterations=1)
    else:
        peer = object()

        def run_pure() -> None:
            table: AllowedIPs[object] = AllowedIPs()
            for net in nets:
                table.insert(net, peer)

        benchmark.pedantic(run_pure, rounds=5, iterations=1)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and stats.stats.mean:
        benchmark.extra_info["inserts_per_s"] = round(PREFIXES / stats.stats.mean)
