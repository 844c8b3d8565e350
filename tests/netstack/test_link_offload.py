"""Segmentation and receive offload between the stack and the user-space tunnel.

On the native plane a `UserspaceTunnel`'s link carries virtio_net_hdr: the stack
hands it TCP super-packets that the C plane cuts into MTU-sized segments, and
the far plane coalesces what it decrypted into long segments for the far stack
(`pywg.packetlink`: `tso_max`, `authenticated`). Checked here: the header the
link puts on each kind of packet; two stacks on two tunnels over loopback
move data both ways intact, over IPv4 and IPv6, with super-packets going out
and coalesced segments coming in; with offload off, neither.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pywg import backend
from pywg.asyncio.userspace import SocketLink, UserspaceTunnel, vnet_header
from pywg.keys import PrivateKey
from pywg.netstack import Stack, ip, tcpwire

pytestmark = pytest.mark.time_limit(30)
VNET = struct.Struct("=BBHHHH")
MTU = 1420


def tcp_packet(version: int, payload: int, options: bytes = b"") -> bytes:
    src, dst = (bytes(4), bytes(4)) if version == 4 else (bytes(16), bytes(16))
    segment = tcpwire.build(src, dst, (1, 2, 3, 4, tcpwire.ACK, 5), options, bytes(payload))
    return ip.build(src, dst, ip.PROTO_TCP, segment)


def test_vnet_header_of_each_kind_of_packet() -> None:
    assert vnet_header(tcp_packet(4, 1000), MTU) == bytes(10)  # fits: as it is
    # IPv4, 20 + 20 header bytes: segments of MTU - 40 payload bytes, checksum at 20 + 16
    assert VNET.unpack(vnet_header(tcp_packet(4, 60000), MTU) or b"") == (0, 1, 40, 1380, 20, 16)
    sack = tcpwire.sack_option([(1, 2)])
    v6 = vnet_header(tcp_packet(6, 60000, sack), MTU) or b""
    assert VNET.unpack(v6) == (0, 4, 72, MTU - 72, 40, 16)  # options come out of each segment
    udp = ip.build(bytes(4), bytes(4), ip.PROTO_UDP, bytes(3000))
    assert vnet_header(udp, MTU) is None  # only TCP is cut


class Counting:
    """Wraps a link's send and receiver: how many packets longer than the MTU went out
    and came in."""

    def __init__(self, link: SocketLink) -> None:
        self.sent_long = self.got_long = 0
        self.link = link
        send = link.send
        set_receiver = link.set_receiver

        def counted_send(packets: Sequence[bytes]) -> None:
            self.sent_long += sum(len(p) > MTU for p in packets)
            send(packets)

        def counted_receiver(receiver: object) -> None:
            def receive(packets: Sequence[bytes]) -> None:
                self.got_long += sum(len(p) > MTU for p in packets)
                receiver(packets)  # type: ignore[operator]

            set_receiver(receive if receiver is not None else None)

        link.send = counted_send  # type: ignore[method-assign]
        link.set_receiver = counted_receiver  # type: ignore[method-assign]


async def exchange(offload: bool, host: str, nbytes: int) -> tuple[Counting, Counting]:
    """B echoes; A sends `nbytes` and reads them back. The two links' counts."""
    keys = PrivateKey.generate(), PrivateKey.generate()
    a = UserspaceTunnel("oa", private_key=keys[0], offload=offload)
    b = UserspaceTunnel("ob", private_key=keys[1], offload=offload)
    async with a, b:
        a.add_peer(keys[1].public_key, ["10.9.0.2/32", "fd09::2/128"], ("127.0.0.1", b.listen_port))
        b.add_peer(keys[0].public_key, ["10.9.0.1/32", "fd09::1/128"], ("127.0.0.1", a.listen_port))
        counts = Counting(a.link), Counting(b.link)
        stack_a = Stack(a.link, ["10.9.0.1/24", "fd09::1/64"])
        stack_b = Stack(b.link, ["10.9.0.2/24", "fd09::2/64"])

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while chunk := await reader.read(1 << 16):
                writer.write(chunk)
                await writer.drain()
            writer.close()

        await stack_b.start_server(echo, 7)
        reader, writer = await stack_a.open_connection(host, 7)
        data = os.urandom(nbytes)

        async def send() -> None:
            writer.write(data)
            await writer.drain()
            writer.write_eof()

        sender = asyncio.ensure_future(send())
        got = await reader.read()
        await sender
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        stack_a.close()
        stack_b.close()
        return counts


@pytest.mark.skipif(backend.BACKEND != "native", reason="the C plane segments and coalesces")
@pytest.mark.parametrize("host", ["10.9.0.2", "fd09::2"])
def test_super_packets_out_and_coalesced_segments_in(host: str) -> None:
    a, b = asyncio.run(exchange(True, host, 8 << 20))
    assert a.link.tso_max and a.sent_long and b.sent_long  # both ways, super-packets
    assert a.got_long and b.got_long  # and coalesced ones delivered
    assert a.link.send_drops == b.link.send_drops == 0


def test_without_offload_every_packet_fits_the_mtu() -> None:
    a, b = asyncio.run(exchange(False, "10.9.0.2", 2 << 20))
    assert not a.link.tso_max
    assert (a.sent_long, a.got_long, b.sent_long, b.got_long) == (0, 0, 0, 0)


class AuthenticatedLink:
    """A link that vouches for what it delivers and segments TCP: records what is sent."""

    mtu = MTU
    authenticated = True
    tso_max = 65535

    def __init__(self) -> None:
        self.receiver: object = None
        self.sent: list[bytes] = []

    def set_receiver(self, receiver: object) -> None:
        self.receiver = receiver

    def send(self, packets: Sequence[bytes]) -> None:
        self.sent.extend(packets)


PEER = bytes([10, 9, 0, 2])
OURS = bytes([10, 9, 0, 1])
segments = st.builds(
    lambda fields, options, payload, bad: ip.build(
        PEER, OURS, ip.PROTO_TCP,
        tcpwire.build(PEER, OURS, fields, options, payload, checksum=not bad),
    ),
    st.tuples(
        st.sampled_from([80, 1, 65535]), st.sampled_from([80, 81]),
        st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
        st.integers(0, 255), st.integers(0, 65535),
    ),
    st.binary(max_size=40).map(lambda b: b + bytes(-len(b) % 4)),
    st.binary(max_size=3000),
    st.booleans(),
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(segments, max_size=20))
def test_garbage_on_an_authenticated_link_never_raises(packets: list[bytes]) -> None:
    """Unchecked checksums let any header reach the TCP machine, and segments may be
    longer than the MTU: nothing may raise, and nothing the stack sends is over 64 KiB."""

    async def main() -> None:
        link = AuthenticatedLink()
        stack = Stack(link, ["10.9.0.1/24"])  # type: ignore[arg-type]
        errors: list[object] = []
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        await stack.start_server(lambda r, w: None, 80)
        link.receiver(packets)  # type: ignore[operator]
        await asyncio.sleep(0)
        assert not errors
        assert all(len(p) <= link.tso_max for p in link.sent)
        stack.close()

    asyncio.run(main())
