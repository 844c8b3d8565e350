"""The local UDP socket between the tunnel's data planes and a TCP session.

The tunnel holds the relay at this socket's address (``127.0.0.1``, a port
the kernel picks: `Tunnel.set_relay`), so both planes send it the tagged
messages for relayed peers; each goes to the session as a DATAGRAM frame.
Each DATAGRAM from the relay is sent from this socket to the tunnel's port,
so the planes see it come from the relay's address and untag it.

The planes send in bursts (a TCP stream's GSO segment is dozens of
datagrams, sent as one UDP GSO run), so the socket has the large buffers of
the tunnel's own (`set_buffers`), takes a run as one receive (UDP GRO,
`pywg.asyncio.offload`), and is read up to DRAIN_MAX receives a wake-up
into one buffer: the session batches the datagrams into one TLS write
(`TcpSession.send`). Toward the tunnel, a read's DATAGRAMs go out as GSO
runs too (`GsoSender`). A datagram either way that cannot go on (no
session, the session's queue full, the tunnel's socket refusing it) is
dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Final

from ...asyncio.offload import GsoSender, enable_gro, receive, segments
from ...asyncio.udp import set_buffers
from ..relayproto import MAX_DATAGRAM_SIZE
from .tcp import TcpSession

LOOPBACK = "127.0.0.1"
DRAIN_MAX: Final = 64  # receives per wake-up
RECEIVE_BYTES: Final = 1 << 16  # one receive: a datagram, or a GRO run of them


def _datagrams(size: int, segment: int) -> int:
    """How many datagrams a receive of `size` bytes in `segment`-byte pieces held."""
    return (size + segment - 1) // segment if 0 < segment <= size else 1


class Bridge:
    """Datagrams between the tunnel's UDP port and the current session (None: dropped)."""

    def __init__(
        self, sock: socket.socket, tunnel_port: Callable[[], int], loop: asyncio.AbstractEventLoop
    ) -> None:
        self._sock = sock
        self._tunnel_port = tunnel_port  # read each time: the tunnel may rebind its socket
        self._loop = loop
        self._buffer = bytearray(RECEIVE_BYTES)
        self._view = memoryview(self._buffer)
        self._sender = GsoSender(sock, loop, self._dropped)
        self.session: TcpSession | None = None
        self.to_relay = self.from_relay = self.dropped = 0

    @classmethod
    async def open(cls, tunnel_port: Callable[[], int]) -> Bridge:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            set_buffers(sock)
            enable_gro(sock)
            sock.bind((LOOPBACK, 0))
        except BaseException:
            sock.close()
            raise
        bridge = cls(sock, tunnel_port, loop)
        loop.add_reader(sock.fileno(), bridge._readable)
        return bridge

    @property
    def endpoint(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    @property
    def tunnel(self) -> tuple[str, int]:
        """Where the tunnel's socket is, as this socket sees it."""
        return (LOOPBACK, self._tunnel_port())

    def _readable(self) -> None:
        sock, buffer, view = self._sock, self._buffer, self._view
        tunnel, session = self.tunnel, self.session
        for _ in range(DRAIN_MAX):
            try:
                size, segment, source = receive(sock, buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error reported on the socket, or it was closed
                if sock.fileno() < 0:
                    return
                continue
            # only the tunnel's own socket may send through the relay as this node
            if source != tunnel or session is None or not 0 < segment <= MAX_DATAGRAM_SIZE:
                self.dropped += _datagrams(size, segment)
                continue
            for message in segments(view, size, segment):
                if session.send(message):
                    self.to_relay += 1
                else:
                    self.dropped += 1

    def deliver(self, message: bytes) -> None:
        """A DATAGRAM's message from the relay, to the tunnel (in a GSO run)."""
        self._sender.send(message, self.tunnel)
        self.from_relay += 1

    def _dropped(self, count: int) -> None:  # the tunnel's socket refused a run
        self.dropped += count
        self.from_relay -= count

    def close(self) -> None:
        self._sender.close()
        if self._sock.fileno() >= 0:
            with contextlib.suppress(Exception):  # a closed loop
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
