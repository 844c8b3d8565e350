"""The local UDP socket between the tunnel's data planes and a TCP session.

The tunnel holds the relay at this socket's address (``127.0.0.1``, a port
the kernel picks: `Tunnel.set_relay`), so both planes send it the tagged
messages for relayed peers; each goes to the session as a DATAGRAM frame.
Each DATAGRAM from the relay is sent from this socket to the tunnel's port,
so the planes see it come from the relay's address and untag it.

The planes send in bursts (a TCP stream's GSO segment is dozens of
datagrams), so the socket has the large buffers of the tunnel's own
(`set_buffers`) and is read up to DRAIN_MAX datagrams a wake-up into one
buffer: the session batches them into one TLS write (`TcpSession.send`).
A datagram either way that cannot go on (no session, the session's queue
full, the tunnel's socket refusing it) is dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Final

from ...asyncio.udp import set_buffers
from ..relayproto import MAX_DATAGRAM_SIZE
from .tcp import TcpSession

LOOPBACK = "127.0.0.1"
DRAIN_MAX: Final = 64  # datagrams read per wake-up


class Bridge:
    """Datagrams between the tunnel's UDP port and the current session (None: dropped)."""

    def __init__(
        self, sock: socket.socket, tunnel_port: Callable[[], int], loop: asyncio.AbstractEventLoop
    ) -> None:
        self._sock = sock
        self._tunnel_port = tunnel_port  # read each time: the tunnel may rebind its socket
        self._loop = loop
        self._buffer = bytearray(MAX_DATAGRAM_SIZE + 1)  # one more: a longer one is refused
        self._view = memoryview(self._buffer)
        self.session: TcpSession | None = None
        self.to_relay = self.from_relay = self.dropped = 0

    @classmethod
    async def open(cls, tunnel_port: Callable[[], int]) -> Bridge:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            set_buffers(sock)
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
                size, source = sock.recvfrom_into(buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error reported on the socket, or it was closed
                if sock.fileno() < 0:
                    return
                continue
            # only the tunnel's own socket may send through the relay as this node
            if source != tunnel or session is None or not session.send(view[:size]):
                self.dropped += 1
            else:
                self.to_relay += 1

    def deliver(self, message: bytes) -> None:
        """A DATAGRAM's message from the relay, to the tunnel."""
        try:
            self._sock.sendto(message, self.tunnel)
        except OSError:  # EAGAIN (the tunnel's buffer is full), or closed: UDP may drop
            self.dropped += 1
            return
        self.from_relay += 1

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            with contextlib.suppress(Exception):  # a closed loop
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
