"""The native plane's Python boundary: keypair twins, sockaddr encoding, mirroring.

The loops themselves are exercised end to end by the namespace tests (pywgd
runs on the native plane by default); here the parts Python calls directly.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from pywg import _fast, stun
from pywg.constants import PLANE_ITEM_DATAGRAM, REJECT_AFTER_MESSAGES
from pywg.cookie import CookieChecker, CookieGenerator, source_bytes
from pywg.device import Device
from pywg.keys import PrivateKey
from pywg.messages import parse_cookie_reply
from pywg.session import Session

if TYPE_CHECKING:
    from pywg._fast.plane import NativePlane

pytestmark = pytest.mark.skipif(not _fast.AVAILABLE, reason="native extension not built")


def _plane() -> tuple[NativePlane, socket.socket, int]:
    from pywg._fast.plane import NativePlane

    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    r, w = os.pipe()  # stands in for the TUN fd; the loops are never started here
    plane = NativePlane(r, udp, 1420, lambda reason: None)
    os.close(w)
    return plane, udp, r


def _pair() -> tuple[Session, Session]:
    k1, k2 = os.urandom(32), os.urandom(32)
    a = Session(k1, k2, 1, 2, is_initiator=True, created=0.0)
    b = Session(k2, k1, 2, 1, is_initiator=False, created=0.0)
    return a, b


def test_sockaddr_round_trip_both_families() -> None:
    from pywg._fast.plane import endpoint_of, sockaddr

    for endpoint in (("198.18.0.1", 51820), ("fd18::1", 1), ("::", 65535)):
        assert endpoint_of(sockaddr(endpoint, socket.AF_INET6)) == endpoint
    assert endpoint_of(sockaddr(("198.18.0.1", 7), socket.AF_INET)) == ("198.18.0.1", 7)
    assert sockaddr(("fd18::1", 7), socket.AF_INET) == b""  # unreachable from IPv4-only
    assert endpoint_of(b"\x02\x00") is None


def test_linked_session_seals_like_python_and_keeps_the_counter() -> None:
    from pywg._fast.plane import NativePlane, NativeSession

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
        assert isinstance(a.native, NativeSession)
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


def test_linked_session_opens_and_rejects_replays_with_the_carried_window() -> None:
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


def _run_rx(plane: NativePlane) -> threading.Thread:
    """The RX loop alone on a thread (the TX loop would read the stand-in TUN)."""
    thread = threading.Thread(target=plane.lib.pywg_plane_run_rx, args=(plane.handle,), daemon=True)
    thread.start()
    plane._threads.append(thread)  # joined by stop()
    return thread


def _drain_until(plane: NativePlane, count: int) -> list[bytes]:
    """Datagrams handed up, until they and the drops counted in C reach `count` (5 s at most)."""
    got: list[bytes] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        got += [data for kind, data, _, _ in plane.drain() if kind == PLANE_ITEM_DATAGRAM]
        stats = plane.stats()
        if len(got) + stats["rx_junk"] + stats["rx_bad_mac1"] >= count:
            break
        time.sleep(0.01)
    return got


def _datagrams(public_key: bytes) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """(worth handing up, junk, bad mac1) datagrams for a device with `public_key`."""
    gen = CookieGenerator(public_key)
    initiation = gen.add_macs(b"\x01\0\0\0" + os.urandom(144), 116, 0.0)
    response = gen.add_macs(b"\x02\0\0\0" + os.urandom(88), 60, 0.0)
    good = [initiation, response, b"\x03\0\0\0" + os.urandom(60)]
    good.append(stun.binding_request(stun.new_transaction_id()))  # endpoint discovery: Python's
    junk = [
        b"",
        b"\x01",
        b"\x05\0\0\0" + bytes(144),  # no such type
        b"\x01\0\0\1" + initiation[4:],  # reserved bytes not zero
        initiation + b"\0",  # wrong size for its type
        response[:-1],
        b"\x03\0\0\0" + bytes(61),
        b"\x04\0\0\0" + bytes(27),  # shorter than a header and a tag
    ]
    # (a transport message for an index the plane does not know is dropped too:
    # see test_rx_drops_transport_for_unknown_indices)
    bad_mac1 = [
        initiation[:116] + bytes(16) + initiation[132:],
        response[:60] + bytes([response[60] ^ 1]) + response[61:],
        bytes([1, 0, 0, 0, initiation[4] ^ 1]) + initiation[5:],  # body changed, mac1 kept
    ]
    return good, junk, bad_mac1


@contextlib.contextmanager
def _receiving(device: Device) -> Iterator[tuple[NativePlane, Callable[[bytes], None]]]:
    """A plane mirroring `device` with its RX loop running on ::1; yields it and a send()."""
    plane, udp, fd = _plane()
    udp.bind(("::1", 0))
    sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        plane.sync(device)
        _run_rx(plane)

        def send(data: bytes) -> None:
            sender.sendto(data, udp.getsockname()[:2])

        yield plane, send
    finally:
        plane.stop()
        udp.close()
        sender.close()
        os.close(fd)


def test_rx_drops_junk_and_bad_mac1_in_c_and_hands_up_the_rest() -> None:
    device = Device(PrivateKey.generate())
    assert device.public_key is not None
    with _receiving(device) as (plane, send):
        good, junk, bad_mac1 = _datagrams(bytes(device.public_key))
        for data in junk + bad_mac1 + good:
            send(data)
        got = _drain_until(plane, len(junk) + len(bad_mac1) + len(good))
        assert sorted(got) == sorted(good)
        stats = plane.stats()
        assert (stats["rx_junk"], stats["rx_bad_mac1"]) == (len(junk), len(bad_mac1))
        # a mac1 made for another public key is as bad as a forged one
        other, _, _ = _datagrams(bytes(PrivateKey.generate().public_key))
        send(other[0])
        assert _drain_until(plane, len(junk) + len(bad_mac1) + 1) == []
        assert plane.stats()["rx_bad_mac1"] == len(bad_mac1) + 1


def test_rx_hands_up_handshakes_to_a_rotated_away_key_only_while_it_is_answered() -> None:
    """After `Device.rotate_private_key`, messages whose mac1 is the old key's go up (the
    core answers them during the grace); once the grace is over, C drops them again."""
    device = Device(PrivateKey.generate())
    old = device.public_key
    assert old is not None
    device.rotate_private_key(PrivateKey.generate(), grace_until=30.0)
    assert device.public_key is not None
    with _receiving(device) as (plane, send):
        to_old, _, _ = _datagrams(bytes(old))
        to_new, _, _ = _datagrams(bytes(device.public_key))
        for data in to_old[:2] + to_new[:2]:
            send(data)
        assert sorted(_drain_until(plane, 4)) == sorted(to_old[:2] + to_new[:2])
        assert plane.stats()["rx_bad_mac1"] == 0
        device.handle_timer(30.0)  # the grace is over
        plane.sync(device)
        send(to_old[0])
        assert _drain_until(plane, 1) == []
        assert plane.stats()["rx_bad_mac1"] == 1


def test_rx_without_a_private_key_hands_up_every_well_sized_message() -> None:
    """A keyless device (pywgd before `wg set private-key`) has no mac1 key to check."""
    with _receiving(Device()) as (plane, send):
        good, junk, bad_mac1 = _datagrams(bytes(PrivateKey.generate().public_key))
        for data in junk + bad_mac1 + good:
            send(data)
        got = _drain_until(plane, len(junk) + len(bad_mac1) + len(good))
        assert sorted(got) == sorted(good + bad_mac1)
        assert plane.stats()["rx_junk"] == len(junk)


def test_rx_drops_transport_for_unknown_indices_and_hands_up_unconfirmed_ones() -> None:
    """Transport for no keypair dies in C; for a responder's unconfirmed one it goes up."""
    device = Device(PrivateKey.generate())
    peer = device.add_peer(PrivateKey.generate().public_key, ["198.19.0.2/32"])
    _, responder = _pair()  # local index 2
    peer.next = responder  # unconfirmed: Python confirms it on its first message
    with _receiving(device) as (plane, send):
        unconfirmed = b"\x04\0\0\0" + (2).to_bytes(4, "little") + os.urandom(40)
        send(b"\x04\0\0\0" + (77).to_bytes(4, "little") + os.urandom(40))  # nobody's
        send(unconfirmed)
        deadline = time.monotonic() + 5
        got: list[bytes] = []
        while not got and time.monotonic() < deadline:
            got = [data for _, data, _, _ in plane.drain()]
            time.sleep(0.01)
        assert got == [unconfirmed]
        assert plane.stats()["rx_unknown_index"] == 1


def test_rx_answers_with_cookie_replies_under_load_and_hands_up_proven_sources() -> None:
    """§5.3/§5.4.7 in C: past 128 handshake messages a second, one without a valid
    mac2 gets a cookie reply from the plane; with the cookie's mac2 it goes up, and
    the core's own checker (same secret) accepts that mac2."""
    device = Device(PrivateKey.generate())
    assert device.public_key is not None
    responder = bytes(device.public_key)
    plane, udp, fd = _plane()
    udp.bind(("::1", 0))
    sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sender.bind(("::1", 0))
    sender.settimeout(2)
    target = udp.getsockname()[:2]
    try:
        plane.sync(device)
        plane.set_cookie_secret(device.cookie_secret(time.monotonic()))
        _run_rx(plane)
        generator = CookieGenerator(responder)
        for _ in range(129):  # the 129th within a second puts the plane under load
            sender.sendto(generator.add_macs(b"\x01\0\0\0" + os.urandom(144), 116, 0.0), target)
        time.sleep(0.2)
        plane_stats = plane.stats()
        assert plane_stats["rx_cookie_replies"] == 1, plane_stats
        first = sender.recv(100)
        assert len(first) == 64 and first[0] == 3
        assert generator.consume_reply(parse_cookie_reply(first), 0.0)  # sealed for our mac1
        list(plane.drain(1000))  # Python takes what was queued before the load began
        proven = generator.add_macs(b"\x01\0\0\0" + os.urandom(144), 116, 1.0)
        assert proven[132:] != bytes(16)
        sender.sendto(proven, target)
        time.sleep(0.2)
        assert plane.stats()["rx_cookie_replies"] == 1  # not answered again: handed up
        handed = [(data, src) for _, data, src, _ in plane.drain(1000)]
        assert [data for data, _ in handed] == [proven]
        checker = CookieChecker(responder)
        checker._secret, checker._secret_born = device.cookie_secret(time.monotonic()), 0.0
        source = handed[-1][1]
        assert source is not None
        assert checker.check_mac2(proven, 132, source_bytes(source), 1.0)
    finally:
        plane.stop()
        udp.close()
        sender.close()
        os.close(fd)


def _cookie_replies_after(initiations: int, *, under_load_threshold: int) -> int:
    """Cookie replies the plane of a `Device(under_load_threshold=...)` sends for
    `initiations` initiations with a valid mac1 and no mac2, sent within a second."""
    device = Device(PrivateKey.generate(), under_load_threshold=under_load_threshold)
    assert device.public_key is not None
    generator = CookieGenerator(bytes(device.public_key))
    with _receiving(device) as (plane, send):
        plane.set_cookie_secret(device.cookie_secret(time.monotonic()))
        for _ in range(initiations):
            send(generator.add_macs(b"\x01\0\0\0" + os.urandom(144), 116, 0.0))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            stats = plane.stats()
            seen = stats["up_datagrams"] + stats["queue_drops"]
            seen += stats["rx_cookie_replies"] + stats["rx_cookie_limited"]
            if seen >= initiations:
                break
            list(plane.drain(1000))
            time.sleep(0.01)
        return plane.stats()["rx_cookie_replies"]


def test_the_devices_under_load_threshold_decides_when_c_checks_mac2() -> None:
    """§5.3: the plane counts handshake messages against the Device's own threshold
    (mirrored by sync), not only the default of 128."""
    assert _cookie_replies_after(5, under_load_threshold=5) == 0
    assert _cookie_replies_after(6, under_load_threshold=5) == 1  # the 6th is past 5
    assert _cookie_replies_after(129, under_load_threshold=200) == 0  # past 128, not past 200
    assert _cookie_replies_after(1, under_load_threshold=0) == 1  # every message
