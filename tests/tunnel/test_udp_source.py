"""`UdpSocket`'s sticky source: replies leave from the address a datagram came to.

On the loopback: a datagram to 127.0.0.2 (every 127/8 address is local) is
answered from 127.0.0.2, not from 127.0.0.1, the kernel's choice; one to ::1
from ::1. A remembered source that is not (or no longer) ours is refused by the
kernel, forgotten, and the datagram goes from the kernel's choice at once.
A datagram sent with a hop limit of its own arrives with that TTL.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest

from pywg.asyncio.udp import UdpSocket

TIMEOUT = 2.0
IP_RECVTTL = 12  # linux/in.h; Python's socket module lacks it


@pytest.fixture
def udp() -> Iterator[UdpSocket]:
    sock = UdpSocket(0)
    yield sock
    sock.close()


def exchange(udp: UdpSocket, family: int, local: str) -> tuple[str, str | None]:
    """Send to `local` from a client, let `udp` reply: (the reply's source, the noted one)."""
    with socket.socket(family, socket.SOCK_DGRAM) as client:
        client.settimeout(TIMEOUT)
        client.bind((local if family == socket.AF_INET else "::1", 0))
        client.sendto(b"ping", (local, udp.port))
        udp.sock.settimeout(TIMEOUT)
        got = udp.recv()
        assert got is not None and got[0] == b"ping"
        udp.note_local(got[1], got[2])  # as the tunnel does for an authenticated datagram
        endpoint = (got[1][0].removeprefix("::ffff:"), got[1][1])
        assert udp.sendto(b"pong", endpoint)
        data, source = client.recvfrom(64)
        assert data == b"pong"
        return source[0], udp.local_address(endpoint)


def test_ipv4_reply_leaves_from_the_address_used(udp: UdpSocket) -> None:
    assert exchange(udp, socket.AF_INET, "127.0.0.2") == ("127.0.0.2", "127.0.0.2")


def test_ipv6_reply_leaves_from_the_address_used(udp: UdpSocket) -> None:
    if udp.family != socket.AF_INET6:
        pytest.skip("IPv6 is disabled on this host")
    assert exchange(udp, socket.AF_INET6, "::1") == ("::1", "::1")


def test_a_source_not_ours_falls_back_at_once(udp: UdpSocket) -> None:
    if udp.family != socket.AF_INET6:
        pytest.skip("the dual-stack socket's PKTINFO form (in6_pktinfo) is what this sets")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind(("127.0.0.1", 0))
        client.settimeout(TIMEOUT)
        peer = client.getsockname()
        gone = socket.inet_pton(socket.AF_INET6, "::ffff:192.0.2.1") + bytes(4)  # RFC 5737
        udp.note_local(peer, udp.pktinfo_message(gone))
        assert udp.local_address(peer) == "192.0.2.1"
        assert udp.sendto(b"pong", peer)
        data, source = client.recvfrom(64)
        assert (data, source[0]) == (b"pong", "127.0.0.1")
        assert udp.local_address(peer) is None


@pytest.mark.parametrize(
    ("family", "local"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
)
def test_a_datagram_with_a_hop_limit_of_its_own(udp: UdpSocket, family: int, local: str) -> None:
    """`sendto(hop_limit=)` sets that one datagram's TTL (the next goes with the default)."""
    if family == socket.AF_INET6 and udp.family != socket.AF_INET6:
        pytest.skip("IPv6 is disabled on this host")
    level, recv_option, kind = (
        (socket.IPPROTO_IP, IP_RECVTTL, socket.IP_TTL)
        if family == socket.AF_INET
        else (socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, socket.IPV6_HOPLIMIT)
    )
    with socket.socket(family, socket.SOCK_DGRAM) as receiver:
        receiver.settimeout(TIMEOUT)
        receiver.bind((local, 0))
        receiver.setsockopt(level, recv_option, 1)
        target = (local, receiver.getsockname()[1])
        hops = []
        for limit in (2, None):
            assert udp.sendto(b"opener", target, hop_limit=limit)
            _, ancdata, _, _ = receiver.recvmsg(64, socket.CMSG_SPACE(4))
            hops += [
                struct.unpack("=i", d[:4])[0] for lv, k, d in ancdata if (lv, k) == (level, kind)
            ]
        assert hops[0] == 2 and hops[1] > 2, hops
