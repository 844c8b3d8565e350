"""The native plane's Python boundary: keypair twins, sockaddr encoding, mirroring.

The loops themselves are exercised end to end by the namespace tests (pywgd
runs on the native plane by default); here the parts Python calls directly.
"""

from __future__ import annotations

import os
import socket

import pytest

from pywg import _fast
from pywg.constants import REJECT_AFTER_MESSAGES
from pywg.device import Device
from pywg.keypair import Keypair
from pywg.keys import PrivateKey

pytestmark = pytest.mark.skipif(not _fast.AVAILABLE, reason="native extension not built")


def _plane() -> tuple[object, socket.socket, int]:
    from pywg._fast.plane import NativePlane

    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    r, w = os.pipe()  # stands in for the TUN fd; the loops are never started here
    plane = NativePlane(r, udp, 1420, lambda reason: None)
    os.close(w)
    return plane, udp, r


def _pair() -> tuple[Keypair, Keypair]:
    k1, k2 = os.urandom(32), os.urandom(32)
    a = Keypair(k1, k2, 1, 2, is_initiator=True, created=0.0)
    b = Keypair(k2, k1, 2, 1, is_initiator=False, created=0.0)
    return a, b


def test_sockaddr_round_trip_both_families() -> None:
    from pywg._fast.plane import endpoint_of, sockaddr

    for endpoint in (("198.18.0.1", 51820), ("fd18::1", 1), ("::", 65535)):
        assert endpoint_of(sockaddr(endpoint, socket.AF_INET6)) == endpoint
    assert endpoint_of(sockaddr(("198.18.0.1", 7), socket.AF_INET)) == ("198.18.0.1", 7)
    assert sockaddr(("fd18::1", 7), socket.AF_INET) == b""  # unreachable from IPv4-only
    assert endpoint_of(b"\x02\x00") is None


def test_linked_keypair_seals_like_python_and_keeps_the_counter() -> None:
    from pywg._fast.plane import NativeKeypair, NativePlane

    plane, udp, fd = _plane()
    assert isinstance(plane, NativePlane)
    try:
        a, b = _pair()
        reference, _ = _pair()
        reference.send_key, reference.receive_key = a.send_key, a.receive_key
        first = a.seal(bytes(16))  # counter 0 on the Python path
        assert b.open(0, first[16:]) == bytes(16)
        device = Device(PrivateKey.generate())
        peer = device.add_peer(PrivateKey.generate().public_key, ["198.19.0.2/32"])
        peer.current = a
        plane.sync(device)
        assert isinstance(a.native, NativeKeypair)
        assert a.send_counter == 1  # carried over
        message = a.seal(b"x" * 32)
        assert message[:16] == bytes([4, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0])
        assert b.open(1, message[16:]) == b"x" * 32  # the pure side opens the C seal
        assert a.send_counter == 2
        with pytest.raises(ValueError, match="native plane"):
            a.send_counter = 0
        a.zero()
        assert a.native is not None and a.native.send_counter == 0  # freed in C
    finally:
        plane.stop()
        udp.close()
        os.close(fd)


def test_linked_keypair_opens_and_rejects_replays_with_the_carried_window() -> None:
    from pywg._fast.plane import NativePlane

    plane, udp, fd = _plane()
    assert isinstance(plane, NativePlane)
    try:
        a, b = _pair()
        m0, m1, m2 = (a.seal(bytes([i]) * 16) for i in range(3))
        assert b.open(0, m0[16:]) is not None  # seen before the link
        device = Device(PrivateKey.generate())
        peer = device.add_peer(PrivateKey.generate().public_key, ["198.19.0.2/32"])
        peer.current = b
        plane.sync(device)
        assert b.native is not None
        assert b.open(0, m0[16:]) is None  # the window came along
        assert b.open(2, m2[16:]) == bytes([2]) * 16
        assert b.open(1, m1[16:]) == bytes([1]) * 16
        assert b.open(1, m1[16:]) is None
        forged = bytearray(m1[16:])
        forged[0] ^= 1
        assert b.open(3, bytes(forged)) is None
        assert b.open(REJECT_AFTER_MESSAGES, m1[16:]) is None
        assert b.open(1 << 64, m1[16:]) is None
    finally:
        plane.stop()
        udp.close()
        os.close(fd)


def test_sync_mirrors_peers_routes_and_forgets_removed_ones() -> None:
    from pywg._fast.plane import NativePlane

    plane, udp, fd = _plane()
    assert isinstance(plane, NativePlane)
    try:
        device = Device(PrivateKey.generate())
        keys = [PrivateKey.generate().public_key for _ in range(3)]
        for i, key in enumerate(keys):
            device.add_peer(key, [f"198.19.0.{i + 1}/32"], endpoint=("198.18.0.1", 1000 + i))
        plane.sync(device)
        version = device.routing_version
        plane.sync(device)  # nothing changed: nothing to do
        assert device.routing_version == version
        device.remove_peer(keys[1])
        a, _ = _pair()
        device.peer(keys[0]).current = a
        plane.sync(device)
        assert a.native is not None
        device.remove_peer(keys[0])  # zeroes a, which frees its twin
        plane.sync(device)
        assert a.native.send_counter == 0
        assert plane.stats()["queue_drops"] == 0
    finally:
        plane.stop()
        udp.close()
        os.close(fd)
