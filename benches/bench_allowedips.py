"""Benchmarks for pywg.allowedips (run: pytest benches/ --benchmark-enable).

Prefixes are random with a uniformly random length (1-32 / 1-128), as in
Linux's randomized allowedips selftest. Each lookup round resolves a batch of
addresses; ``extra_info["lookups_per_s"]`` is the batch size over the mean.
"""

from __future__ import annotations

import random
from ipaddress import IPv4Network, IPv6Network
from typing import Any

import pytest

from pywg.allowedips import AllowedIPs

PREFIXES = 10_000
BATCH = 1_000
SEED = 0x5EED


def random_prefixes(
    rng: random.Random, width: int, count: int
) -> list[tuple[IPv4Network | IPv6Network, int, int]]:
    """``count`` distinct random prefixes as (network, bits, cidr)."""
    seen: set[tuple[int, int]] = set()
    out: list[tuple[IPv4Network | IPv6Network, int, int]] = []
    while len(out) < count:
        cidr = rng.randint(1, width)
        shift = width - cidr
        bits = rng.getrandbits(width) >> shift << shift
        if (bits, cidr) in seen:
            continue
        seen.add((bits, cidr))
        net = IPv4Network((bits, cidr)) if width == 32 else IPv6Network((bits, cidr))
        out.append((net, bits, cidr))
    return out


def build_table(width: int) -> tuple[AllowedIPs[object], list[tuple[Any, int, int]]]:
    rng = random.Random(SEED + width)
    prefixes = random_prefixes(rng, width, PREFIXES)
    peers = [object() for _ in range(64)]
    table: AllowedIPs[object] = AllowedIPs()
    for net, _, _ in prefixes:
        table.insert(net, rng.choice(peers))
    return table, prefixes


def addresses(width: int, prefixes: list[tuple[Any, int, int]], kind: str) -> list[bytes]:
    """Packed addresses: ``inside`` a random stored prefix (a hit), or uniformly ``random``."""
    rng = random.Random(SEED)
    size = width // 8
    out = []
    for _ in range(BATCH):
        if kind == "inside":
            _, bits, cidr = rng.choice(prefixes)
            address = bits | rng.getrandbits(width - cidr) if cidr < width else bits
        else:
            address = rng.getrandbits(width)
        out.append(address.to_bytes(size))
    return out


def _report(benchmark: Any, per_round: int) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is not None and stats.stats.mean:
        benchmark.extra_info["lookups_per_s"] = round(per_round / stats.stats.mean)


@pytest.mark.parametrize("kind", ["inside", "random"])
@pytest.mark.parametrize("width", [32, 128], ids=["v4", "v6"])
def test_lookup_packed_10k(benchmark: Any, width: int, kind: str) -> None:
    table, prefixes = build_table(width)
    batch = addresses(width, prefixes, kind)
    lookup = table.lookup_packed

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


def test_lookup_packed_small_config(benchmark: Any) -> None:
    """A typical server: 50 peers with a /32 and a /128 each, plus default routes."""
    table: AllowedIPs[object] = AllowedIPs()
    peers = [object() for _ in range(50)]
    for i, peer in enumerate(peers):
        table.insert(f"198.19.{i // 250}.{i % 250 + 1}/32", peer)
        table.insert(f"fd19::{i + 1:x}/128", peer)
    table.insert("0.0.0.0/0", peers[0])
    table.insert("::/0", peers[0])
    rng = random.Random(SEED)
    batch = [bytes((198, 19, 0, rng.randint(1, 50))) for _ in range(BATCH)]
    lookup = table.lookup_packed

    def run() -> None:
        for address in batch:
            lookup(address)

    benchmark(run)
    _report(benchmark, BATCH)


@pytest.mark.parametrize("width", [32, 128], ids=["v4", "v6"])
def test_insert_10k(benchmark: Any, width: int) -> None:
    rng = random.Random(SEED + width)
    nets = [net for net, _, _ in random_prefixes(rng, width, PREFIXES)]
    peer = object()

    def setup() -> tuple[tuple[AllowedIPs[object]], dict[str, Any]]:
        return (AllowedIPs(),), {}

    def run(table: AllowedIPs[object]) -> None:
        for net in nets:
            table.insert(net, peer)

    benchmark.pedantic(run, setup=setup, rounds=5, iterations=1)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and stats.stats.mean:
        benchmark.extra_info["inserts_per_s"] = round(PREFIXES / stats.stats.mean)
