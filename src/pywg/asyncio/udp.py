"""The WireGuard UDP socket: one dual-stack socket on the listen port.

An AF_INET6 socket with IPV6_V6ONLY off receives IPv4 too (as v4-mapped
addresses, which the core maps back). Where IPv6 is disabled the socket falls
back to AF_INET. Port 0 binds a random port, which `port` then reports (as
wireguard-go does, so `wg show` prints the real port). The fwmark is SO_MARK,
used by wg-quick's policy routing to keep tunnel packets out of the tunnel.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import struct
from typing import Final

from ..endpoint import Endpoint

SO_MARK: Final = 36  # linux/asm-generic/socket.h
BUFFER_BYTES: Final = 4 << 20  # socket buffers: each overflow drop costs TCP a retransmit
MAX_DATAGRAM: Final = 65535


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

    def fileno(self) -> int:
        return self.sock.fileno()

    def set_fwmark(self, mark: int) -> None:
        # as bytes: the mark is a u32, and an int argument would be taken as a signed C int
        self.sock.setsockopt(socket.SOL_SOCKET, SO_MARK, struct.pack("=I", mark))
        self.fwmark = mark

    def recv(self) -> tuple[bytes, Endpoint] | None:
        try:
            data, addr = self.sock.recvfrom(MAX_DATAGRAM)
        except OSError:  # EAGAIN; or an ICMP error queued by an earlier send, now consumed
            return None
        return data, (addr[0], addr[1])

    def sendto(self, data: bytes, endpoint: Endpoint) -> bool:
        """Send one datagram; False if it could not go out (full buffer, no route)."""
        addr = self._sockaddr.get(endpoint)
        if addr is None:
            addr = self._resolve(endpoint)
            if addr is None:
                return False
        try:
            self.sock.sendto(data, addr)
        except OSError:  # EAGAIN, ENETUNREACH, EPERM from a firewall, ...
            return False
        return True

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
