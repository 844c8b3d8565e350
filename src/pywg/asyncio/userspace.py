"""A `Tunnel` with no TUN device: its packets go to a `PacketLink` in this process.

Rootless operation (no CAP_NET_ADMIN, no /dev/net/tun) needs the tunnel's
plaintext side somewhere other than a kernel interface. Here it is one end of
an AF_UNIX SOCK_DGRAM socket pair: the data plane (the C loops or the
pure-Python one) reads and writes that end exactly as it would a TUN opened
with IFF_NO_PI and without IFF_VNET_HDR (one IP packet per read or write, no
prefix, no offload header), and the other end is a `PacketLink` served on the
event loop, which a user-space network stack (`pywg.netstack`) speaks IP over.

Why a datagram socket pair: it keeps packet boundaries as a TUN does, needs no
privilege, and never reports a hang-up to the plane's poll (a SEQPACKET end
would, after close, and spin a reader). Between the two ends of one pair the
kernel does not apply `net.unix.max_dgram_qlen`, only the send buffer (af_unix:
a datagram to a socket whose peer is the sender), so the buffers are made
large and bursts queue instead of dropping.

On the native plane (with offload, as for a TUN) the pair carries a struct
virtio_net_hdr before every packet, as a TUN opened with IFF_VNET_HDR and
TUN_F_TSO4/TSO6 does: the stack may write TCP super-packets of up to 64 KiB
that the plane cuts into segments in C (TSO), and the plane writes the
segments it decrypted in one batch coalesced (GRO). One Python call per 64
KiB instead of per 1.4 KB is what makes the user-space stack's throughput.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
from collections.abc import Sequence
from typing import Final

from ..constants import DEFAULT_MTU, MAX_IP_PACKET_SIZE, VNET_HDR_LEN
from ..device import Device
from ..keys import PrivateKey
from ..packetlink import Receiver
from .tun import Tun
from .tunnel import BATCH, Tunnel
from .udp import set_buffers

log = logging.getLogger("pywg.userspace")

# Per end: about 2,000 full-size packets in flight (the kernel charges a
# datagram's truesize, not its length, against the sender's buffer).
LINK_BUFFER: Final = 4 * 1024 * 1024

# struct virtio_net_hdr (linux/virtio_net.h), in host byte order as a TUN has it:
# flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
_VNET = struct.Struct("=BBHHHH")
_VNET_NONE: Final = bytes(VNET_HDR_LEN)  # no segmentation, checksum complete
_GSO_TCPV4, _GSO_TCPV6 = 1, 4
_TCP_CHECKSUM_OFFSET: Final = 16  # RFC 9293 §3.1
_PROTO_TCP: Final = 6


def vnet_header(packet: bytes, mtu: int) -> bytes | None:
    """The virtio_net_hdr of `packet`: none for one that fits `mtu`, TCP segmentation into
    MTU-sized segments for a longer TCP packet (None: longer and not TCP)."""
    if len(packet) <= mtu:
        return _VNET_NONE
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 40 and packet[9] == _PROTO_TCP:
        gso, ip_header = _GSO_TCPV4, (packet[0] & 15) * 4
    elif version == 6 and len(packet) >= 60 and packet[6] == _PROTO_TCP:
        gso, ip_header = _GSO_TCPV6, 40
    else:
        return None
    headers = ip_header + (packet[ip_header + 12] >> 4) * 4
    if mtu <= headers or len(packet) <= headers:
        return None
    return _VNET.pack(0, gso, headers, mtu - headers, ip_header, _TCP_CHECKSUM_OFFSET)


class SocketTun(Tun):
    """A `Tun` stand-in on one end of a socket pair: the same reads and writes, no ioctls.

    No interface exists, so there is nothing to name, move, delete or re-MTU:
    `alive()` is True until closed and the MTU is the one it was made with.
    """

    @classmethod
    def over(cls, sock: socket.socket, *, name: str, mtu: int, vnet: bool = False) -> SocketTun:
        """Adopt `sock` (one end of an AF_UNIX datagram pair); the object owns its fd.
        `vnet`: a virtio_net_hdr before each packet, with TSO (read by the native plane)."""
        sock.setblocking(False)
        tun = cls.__new__(cls)
        tun._attach(sock.detach(), name, vnet)
        tun.tso = vnet
        tun.mtu = mtu
        return tun

    def alive(self) -> bool:
        return self.fd >= 0

    def current_mtu(self) -> int:
        return self.mtu

    def up(self) -> None:
        """Nothing to bring up: a socket carries packets from the start."""

    def __repr__(self) -> str:
        return f"<SocketTun {self.name} fd={self.fd} mtu={self.mtu}>"


class SocketLink:
    """The stack's end of the pair: a `PacketLink` served by the event loop.

    Packets that arrived are read in batches of up to BATCH per wake-up and
    handed to the receiver in one call; `send` writes each packet once and
    drops it when the pair's buffer is full (as a full TUN queue does).
    Everything it delivers was decrypted by the tunnel (`authenticated`);
    with `vnet` (see the module docstring) it takes TCP super-packets up to
    `tso_max` bytes and delivers coalesced ones, the headers its own business.
    """

    authenticated = True

    def __init__(self, sock: socket.socket, mtu: int, *, vnet: bool = False) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._mtu = mtu
        self._vnet = vnet
        self.tso_max = MAX_IP_PACKET_SIZE if vnet else 0
        self._receiver: Receiver | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.send_drops = 0
        self.closed = False

    @property
    def mtu(self) -> int:
        return self._mtu

    def send(self, packets: Sequence[bytes]) -> None:
        if self.closed:
            self.send_drops += len(packets)
            return
        if self._vnet:
            self._send_vnet(packets)
            return
        send = self._sock.send
        for packet in packets:
            try:
                send(packet)
            except OSError:  # EAGAIN: the plane is behind; ECONNREFUSED: it is gone
                self.send_drops += 1

    def _send_vnet(self, packets: Sequence[bytes]) -> None:
        sendmsg, mtu = self._sock.sendmsg, self._mtu
        for packet in packets:
            header = vnet_header(packet, mtu)
            if header is None or len(packet) > self.tso_max:  # not one the link takes
                self.send_drops += 1
                continue
            try:
                sendmsg((header, packet))
            except OSError:
                self.send_drops += 1

    def set_receiver(self, receiver: Receiver | None) -> None:
        self._receiver = receiver

    def start(self) -> None:
        """Begin delivering arrivals (on the running loop)."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        batch: list[bytes] = []
        recv, skip = self._sock.recv, VNET_HDR_LEN if self._vnet else 0
        for _ in range(BATCH):
            try:
                # behind a virtio_net_hdr: what matters of it (a coalesced segment's
                # partial checksum) is covered by `authenticated`
                batch.append(recv(skip + MAX_IP_PACKET_SIZE)[skip:])
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.debug("packet link read failed: %s", errno.errorcode.get(exc.errno or 0))
                break
        receiver = self._receiver
        if batch and receiver is not None:
            receiver(batch)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()


class UserspaceTunnel(Tunnel):
    """A `Tunnel` whose plaintext side is `link` (a `PacketLink`), not a TUN device.

    Everything else is a Tunnel's: the UDP socket, the handshakes, the native
    or pure-Python plane, the UAPI. Nothing here needs a privilege beyond the
    UDP port (a port from 1024 up, or 0). `name` only labels logs and the UAPI.
    """

    def __init__(
        self,
        name: str = "userspace",
        *,
        private_key: PrivateKey | str | bytes | None = None,
        listen_port: int = 0,
        mtu: int = DEFAULT_MTU,
        device: Device | None = None,
        native: bool | None = None,
        time_scale: float | None = None,
        offload: bool | None = None,
    ) -> None:
        """As `Tunnel`'s; no fwmark (setting one needs CAP_NET_ADMIN) and no TUN fd.
        `offload` (as `Tunnel`'s): on the native plane, segmentation and coalescing on
        the link too (the module docstring)."""
        super().__init__(
            name,
            private_key=private_key,
            listen_port=listen_port,
            mtu=mtu,
            device=device,
            native=native,
            time_scale=time_scale,
            offload=offload,
        )
        plane_end, stack_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for end in (plane_end, stack_end):
            set_buffers(end, LINK_BUFFER)
        self._plane_end: socket.socket | None = plane_end
        self._vnet = self.native and self.offload  # only the C plane segments and coalesces
        self.link = SocketLink(stack_end, mtu, vnet=self._vnet)

    def _open_tun(self) -> Tun:
        if self._plane_end is None:
            raise OSError(errno.EBADF, "a user-space tunnel starts once")
        tun = SocketTun.over(self._plane_end, name=self.name, mtu=self._mtu, vnet=self._vnet)
        self._plane_end = None
        return tun

    async def start(self) -> None:
        try:
            await super().start()
        except BaseException:
            self.link.close()
            raise
        self.link.start()

    def close(self, reason: str = "closed") -> None:
        super().close(reason)  # stops the plane's threads before the pair closes
        self.link.close()
        if self._plane_end is not None:
            self._plane_end.close()
            self._plane_end = None


__all__ = ["SocketLink", "SocketTun", "UserspaceTunnel"]
