"""The WireGuard UDP socket: one dual-stack socket on the listen port.

An AF_INET6 socket with IPV6_V6ONLY off receives IPv4 too (as v4-mapped
addresses, which the core maps back). Where IPv6 is disabled the socket falls
back to AF_INET. Port 0 binds a random port, which `port` then reports (as
wireguard-go does, so `wg show` prints the real port). The fwmark is SO_MARK,
used by wg-quick's policy routing to keep tunnel packets out of the tunnel.

Replies leave from the address the peer wrote to: each received datagram's
destination (IPV6_PKTINFO, or IP_PKTINFO on an IPv4-only socket) is kept per
remote endpoint and sent back as the source in a PKTINFO control message, as
the kernel's WireGuard and wireguard-go do, so a peer's endpoint for us does
not flip between our addresses on a multi-address host. When that address is
gone the kernel refuses it (IPv6: EINVAL; IPv4: ENETUNREACH, from its route
lookup for a source that is not local): the sticky source is dropped and the
datagram goes again with the kernel's own choice. Where the route itself is
gone the second try fails too, and the next datagram received teaches the
source again.

A datagram may go with a hop limit of its own (`sendto`'s `hop_limit`: an
IP_TTL or IPV6_HOPLIMIT control message, RFC 3542 §6.3), so that it opens
this host's NAT mapping towards a peer without reaching the peer's router
(`pywg.mesh.paths`, openers).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import struct
from typing import Final

from ..endpoint import (
    IN6_PKTINFO_SIZE,
    AddressLike,
    Endpoint,
    SourceMessage,
    normalize_endpoint,
)
from ..relayed import Relays

SO_MARK: Final = 36  # linux/asm-generic/socket.h
BUFFER_BYTES: Final = 4 << 20  # socket buffers: each overflow drop costs TCP a retransmit
MAX_DATAGRAM: Final = 65535
IP_PKTINFO: Final = 8  # linux/in.h; Python's socket module lacks it
_PKTINFO_SPACE: Final = socket.CMSG_SPACE(IN6_PKTINFO_SIZE)
_SOURCE_GONE: Final = frozenset({errno.EINVAL, errno.EADDRNOTAVAIL, errno.ENETUNREACH})
_MAX_TABLE: Final = 4096


class UdpSocket:
    """A non-blocking UDP socket bound to `port` on every address."""

    def __init__(self, port: int = 0, *, fwmark: int = 0) -> None:
        self.sock = _bind(port)
        self.family = self.sock.family
        self.port: int = self.sock.getsockname()[1]
        self.fwmark = 0
        if fwmark:
            self.set_fwmark(fwmark)
        self._sockaddr: dict[Endpoint, tuple[str, int] | tuple[str, int, int, int]] = {}
        # remote endpoint -> the PKTINFO control message naming our address it wrote to
        self._source: dict[Endpoint, SourceMessage] = {}
        self.relays = Relays()  # mesh relays: relayed endpoints go through them (pywg.relayed)
        _enable_pktinfo(self.sock)

    def fileno(self) -> int:
        return self.sock.fileno()

    def set_fwmark(self, mark: int) -> None:
        # as bytes: the mark is a u32, and an int argument would be taken as a signed C int
        self.sock.setsockopt(socket.SOL_SOCKET, SO_MARK, struct.pack("=I", mark))
        self.fwmark = mark

    def recv(self) -> tuple[bytes, Endpoint, SourceMessage | None] | None:
        """One datagram: (data, its source, the PKTINFO message that would answer it from the
        address it came to, or None). The caller decides whether to `note_local` that: only
        an authenticated datagram may move where replies leave from (whitepaper §2.1)."""
        try:
            data, ancdata, _flags, addr = self.sock.recvmsg(MAX_DATAGRAM, _PKTINFO_SPACE)
        except OSError:  # EAGAIN; or an ICMP error queued by an earlier send, now consumed
            return None
        reply = None
        for level, kind, raw in ancdata:
            reply = _reply_cmsg(level, kind, raw) or reply
        if self.relays:
            data, source = self.relays.inbound(data, normalize_endpoint(addr))
            return data, source, reply
        return data, (addr[0], addr[1]), reply

    def note_local(self, source: AddressLike, reply: SourceMessage | None) -> None:
        """Remember the PKTINFO message that makes replies to `source` leave from the address
        it wrote to (None: not a PKTINFO message, nothing to remember)."""
        if reply is None:
            return
        endpoint = normalize_endpoint(source)
        if self.relays:  # a relayed peer's datagrams came from its relay: answer the relay
            endpoint = self.relays.carrier(endpoint)
        if self._source.get(endpoint) != reply:
            if len(self._source) > _MAX_TABLE:
                self._source.clear()
            self._source[endpoint] = reply

    def pktinfo_message(self, data: bytes) -> SourceMessage | None:
        """The PKTINFO control message for PKTINFO data as the native plane reports it
        (in6_pktinfo on an AF_INET6 socket, else in_pktinfo); None for no data."""
        if not data:
            return None
        if self.family == socket.AF_INET6:
            return socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, data
        return socket.IPPROTO_IP, IP_PKTINFO, data

    def source_for(self, endpoint: Endpoint) -> SourceMessage | None:
        """The PKTINFO control message replies to `endpoint` carry; None: the kernel's choice."""
        return self._source.get(self.relays.carrier(endpoint) if self.relays else endpoint)

    def local_address(self, endpoint: Endpoint) -> str | None:
        """Our address that replies to `endpoint` leave from; None for the kernel's choice."""
        reply = self._source.get(endpoint)
        return None if reply is None else _cmsg_address(reply)

    def sendto(self, data: bytes, endpoint: Endpoint, *, hop_limit: int | None = None) -> bool:
        """Send one datagram (with `hop_limit` as its TTL, if given); False if it could not
        go out (full buffer, no route, a relayed endpoint whose relay is not set)."""
        if self.relays:
            out = self.relays.outbound(data, endpoint)
            if out is None:
                return False
            data, endpoint = out
        addr = self._sockaddr.get(endpoint)
        if addr is None:
            addr = self._resolve(endpoint)
            if addr is None:
                return False
        hops = [] if hop_limit is None else [_hop_limit_cmsg(endpoint, hop_limit)]
        try:
            self._send(data, endpoint, addr, hops)
        except OSError:  # EAGAIN, ENETUNREACH, EPERM from a firewall, ...
            return False
        return True

    def _send(
        self, data: bytes, endpoint: Endpoint, addr: AddressLike, extra: list[SourceMessage]
    ) -> None:
        reply = self._source.get(endpoint)
        if reply is not None:
            try:
                self.sock.sendmsg([data], [reply, *extra], 0, addr)
                return
            except OSError as exc:
                if exc.errno not in _SOURCE_GONE:
                    raise
                # our address is gone: the kernel's choice from now on, at once
                del self._source[endpoint]
        if extra:
            self.sock.sendmsg([data], extra, 0, addr)
        else:
            self.sock.sendto(data, addr)

    def _resolve(self, endpoint: Endpoint) -> tuple[str, int] | tuple[str, int, int, int] | None:
        host, port = endpoint
        ip = ipaddress.ip_address(host)
        addr: tuple[str, int] | tuple[str, int, int, int]
        if self.family == socket.AF_INET6:
            mapped = f"::ffff:{ip}" if ip.version == 4 else str(ip)
            addr = (mapped, port, 0, 0)
        elif ip.version == 4:
            addr = (str(ip), port)
        else:
            return None  # an IPv6 endpoint on an IPv4-only host
        if len(self._sockaddr) > 4096:
            self._sockaddr.clear()
        self._sockaddr[endpoint] = addr
        return addr

    def close(self) -> None:
        self.sock.close()

    def __repr__(self) -> str:
        return f"<UdpSocket port={self.port} family={self.family.name}>"


def _hop_limit_cmsg(endpoint: Endpoint, hops: int) -> SourceMessage:
    """The control message that sends one datagram to `endpoint` with `hops` as its TTL:
    IP_TTL for IPv4 (also through a dual-stack socket), IPV6_HOPLIMIT for IPv6."""
    if ipaddress.ip_address(endpoint[0]).version == 4:
        return socket.IPPROTO_IP, socket.IP_TTL, struct.pack("=i", hops)
    return socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT, struct.pack("=i", hops)


def _bind(port: int) -> socket.socket:
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    except OSError:
        sock = None
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(("::", port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise
            sock = None  # IPv6 disabled: fall back to IPv4 only
    if sock is None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            sock.close()
            raise
    sock.setblocking(False)
    set_buffers(sock)
    return sock


def _enable_pktinfo(sock: socket.socket) -> None:
    """Ask for each datagram's destination address (where the kernel refuses: the
    kernel's choice of source for every reply)."""
    with contextlib.suppress(OSError):
        if sock.family == socket.AF_INET6:  # covers IPv4 on the dual-stack socket, v4-mapped
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)


def _reply_cmsg(level: int, kind: int, raw: bytes) -> SourceMessage | None:
    """The control message that sends from the destination a received PKTINFO names.

    The interface index stays 0 so the route decides the way out (RFC 3542 §6.1;
    ip(7) IP_PKTINFO: ipi_spec_dst is the source, ipi_addr the header's destination).
    """
    if (
        level == socket.IPPROTO_IPV6
        and kind == socket.IPV6_PKTINFO
        and len(raw) >= IN6_PKTINFO_SIZE
    ):
        return level, kind, raw[:16] + bytes(4)
    if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(raw) >= 12:
        return level, kind, bytes(4) + raw[8:12] + bytes(4)
    return None


def _cmsg_address(reply: SourceMessage) -> str:
    level, _kind, raw = reply
    if level == socket.IPPROTO_IPV6:
        ip = ipaddress.IPv6Address(raw[:16])
        return str(ip.ipv4_mapped or ip)
    return str(ipaddress.IPv4Address(raw[4:8]))


def set_buffers(sock: socket.socket, size: int = BUFFER_BYTES) -> None:
    """Receive and send buffers of `size` bytes (beyond rmem_max/wmem_max as root)."""
    for option, force in (
        (socket.SO_RCVBUF, 33),  # SO_RCVBUFFORCE: beyond rmem_max, as root
        (socket.SO_SNDBUF, 32),  # SO_SNDBUFFORCE
    ):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, option, size)
