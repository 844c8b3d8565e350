"""The allowed-IPs table in C and the native plane's copy of it, against the pure-Python trie.

Random steps through a `Device` (on the native backend its table is
`pywg._fast.routes.NativeAllowedIPs`): peers added with allowed IPs, updates
that add, remove and replace them (in bulk too, past the size where the C
table settles its lookup tables once at the end), peers removed. After each
step `NativePlane.sync` mirrors the table, and three answers must agree for
addresses at both ends of every stored prefix and at random: the pure
`AllowedIPs` fed the same steps, the device's table, and the plane's copy
(what its loops route with). The prefixes, their owners and each peer's
order must agree too.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from pywg import _fast
from pywg.allowedips import AllowedIPs, Prefix, PrefixList, parse_prefix
from pywg.backend import BACKEND
from pywg.device import Device
from pywg.keys import PrivateKey, PublicKey
from pywg.peer import Peer

pytestmark = pytest.mark.skipif(
    not _fast.AVAILABLE or BACKEND != "native", reason="the native backend is not selected"
)

if _fast.AVAILABLE:
    from pywg._fast.plane import NativePlane
    from pywg._fast.routes import NativeAllowedIPs


def random_prefix(rnd: random.Random) -> Prefix:
    """A prefix in a small space, so that they nest, collide and move between peers."""
    if rnd.random() < 0.5:
        cidr = rnd.choice([0, 8, 12, 16, 20, 24, 28, 30, 31, 32])
        text = f"10.{rnd.randrange(4)}.{rnd.randrange(4)}.{rnd.randrange(16)}/{cidr}"
    else:
        cidr = rnd.choice([0, 16, 32, 48, 64, 96, 120, 127, 128])
        text = f"fd00:{rnd.randrange(4):x}::{rnd.randrange(4):x}:{rnd.randrange(16):x}/{cidr}"
    return parse_prefix(text)


def probes(reference: AllowedIPs[Peer], rnd: random.Random) -> Iterator[bytes]:
    """Both ends of every stored prefix, and random addresses of the same space."""
    for prefix, _ in reference.prefixes():
        size = prefix.width // 8
        yield prefix.bits.to_bytes(size, "big")
        last = prefix.bits | ((1 << (prefix.width - prefix.cidr)) - 1)
        yield last.to_bytes(size, "big")
    for _ in range(64):
        prefix = random_prefix(rnd)
        host = rnd.getrandbits(prefix.width - prefix.cidr) if prefix.cidr < prefix.width else 0
        yield (prefix.bits | host).to_bytes(prefix.width // 8, "big")


def check(
    device: Device, plane: NativePlane, reference: AllowedIPs[Peer], rnd: random.Random
) -> None:
    plane.sync(device)
    table = device.routing_table
    assert isinstance(table, NativeAllowedIPs)
    table._validate()
    for address in probes(reference, rnd):
        expected = reference.lookup_packed(address)
        assert table.lookup_packed(address) is expected, address.hex()
        assert plane.route(address) is expected, address.hex()
    assert [(p, id(v)) for p, v in table.prefixes()] == [
        (p, id(v)) for p, v in reference.prefixes()
    ]
    for peer in device.peers.values():
        assert table.prefixes_of(peer) == reference.prefixes_of(peer)
    assert len(table) == len(reference) and table.node_count() == reference.node_count()


def step(device: Device, reference: AllowedIPs[Peer], rnd: random.Random) -> None:
    """One random change, to the device and to the reference alike."""
    peers = list(device.peers.values())
    roll = rnd.random()
    if not peers or (roll < 0.2 and len(peers) < 8):
        nets = [random_prefix(rnd) for _ in range(rnd.randrange(12))]
        peer = device.add_peer(PrivateKey.generate().public_key, allowed_ips=[str(n) for n in nets])
        for net in nets:
            reference.insert(net, peer)
    elif roll < 0.3:
        peer = rnd.choice(peers)
        device.remove_peer(peer.public_key)
        reference.remove_by_value(peer)
    else:
        peer = rnd.choice(peers)
        many = rnd.random() < 0.1  # a bulk of both families, past the deferred-settle size
        adds = [random_prefix(rnd) for _ in range(rnd.randrange(400 if many else 8))]
        owned = reference.prefixes_of(peer)
        removes = [*rnd.sample(owned, min(len(owned), rnd.randrange(4))), random_prefix(rnd)]
        replace = rnd.random() < 0.2
        device.update_peer(
            peer.public_key,
            allowed_ips=PrefixList(adds) if many else [str(n) for n in adds],
            remove_allowed_ips=[str(n) for n in removes],
            replace_allowed_ips=replace,
        )
        if replace:
            reference.remove_by_value(peer)
        for net in removes:
            reference.remove(net, peer)
        for net in adds:
            reference.insert(net, peer)


@pytest.mark.parametrize("seed", range(6))
def test_plane_copy_and_device_table_agree_with_the_pure_trie(
    plane: NativePlane, seed: int
) -> None:
    rnd = random.Random(seed)
    device: Device = Device()
    reference: AllowedIPs[Peer] = AllowedIPs()
    for _ in range(120):
        step(device, reference, rnd)
        check(device, plane, reference, rnd)
    for public_key in list(device.peers):  # every peer gone: both tables are empty again
        device.remove_peer(public_key)
    reference.clear()
    check(device, plane, reference, rnd)
    assert device.routing_table.node_count() == 0


def test_a_peer_the_plane_does_not_know_gets_no_route(plane: NativePlane) -> None:
    """Ids without a twin in the plane map to no peer, never to another one."""
    device = Device()
    known = device.add_peer(PrivateKey.generate().public_key, allowed_ips=["10.0.0.0/8"])
    plane.sync(device)
    stranger = Peer(PublicKey(bytes(32)))
    table = device.routing_table
    assert isinstance(table, NativeAllowedIPs)
    table.insert("10.1.0.0/16", stranger)  # behind the device's back: no twin for it
    plane._routing_version = -1
    plane.sync(device)
    assert plane.route(bytes([10, 1, 2, 3])) is None
    assert plane.route(bytes([10, 2, 2, 3])) is known
