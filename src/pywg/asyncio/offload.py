"""UDP segmentation offload for sockets Python reads and writes itself (udp(7)).

The relay's TCP transport moves datagrams between a TLS stream and a UDP
socket in Python (the node's bridge, the relay's UDP port toward a node);
a TCP stream through the tunnel makes them come in runs of one size. So:

- `GsoSender` sends each run of datagrams of one size to one destination
  (the last may be shorter) as one `sendmsg` with UDP_SEGMENT: the kernel
  cuts it into datagrams past the socket, one system call for up to
  GSO_MAX_SEGMENTS. A run goes when the next datagram cannot join it, or at
  the loop's next turn. Where the kernel refuses UDP_SEGMENT (EIO: no
  checksum offload on the route), it sends one datagram a call from then on.
- `enable_gro` and `receive` read a run as one buffer (UDP_GRO) with the
  size of its datagrams, to be cut up by the caller (`segments`).

The native plane and the relay's native loop do the same in C; these are
for the Python-side sockets around them.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
import sys
from collections.abc import Callable, Iterator
from typing import Final

from ..endpoint import AddressLike

SOL_UDP: Final = 17
UDP_SEGMENT: Final = 103  # linux/udp.h
UDP_GRO: Final = 104
GSO_MAX_SEGMENTS: Final = 64  # datagrams one send carries (the kernel's UDP_MAX_SEGMENTS)
GSO_MAX_BYTES: Final = 65000  # ... and their bytes, under the 64 KiB of one send
GRO_CONTROL: Final = socket.CMSG_SPACE(4)  # the UDP_GRO message: the segment size, an int


class GsoSender:
    """Datagrams out of `sock` (non-blocking), in GSO runs; `dropped(n)` is told of every
    datagram the socket refused (a full buffer, no route: UDP may drop)."""

    def __init__(
        self,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
        dropped: Callable[[int], None],
        *,
        gso: bool = True,
    ) -> None:
        self._sock = sock
        self._loop = loop
        self._dropped = dropped
        self.gso = gso
        self._run = bytearray()
        self._count = 0
        self._size = 0  # of the run's datagrams; a shorter one ends the run
        self._to: AddressLike | None = None
        self._handle: asyncio.Handle | None = None

    def send(self, data: bytes | bytearray | memoryview, to: AddressLike) -> None:
        """Send `data` to `to` with the run it can join, else after the current run."""
        size = len(data)
        if self._count and (
            to != self._to
            or size > self._size
            or len(self._run) % self._size  # a shorter one ended the run
            or self._count >= GSO_MAX_SEGMENTS
            or len(self._run) + size > GSO_MAX_BYTES
        ):
            self.flush()
        if not self._count:
            self._to, self._size = to, size
        self._run += data
        self._count += 1
        if self._handle is None:
            self._handle = self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Send the current run now."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self._count:
            return
        run, count, size, to = self._run, self._count, self._size, self._to
        self._run, self._count = bytearray(), 0
        assert to is not None
        try:
            if count == 1:
                self._sock.sendto(run, to)
            elif self.gso:
                segment = [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))]
                self._sock.sendmsg([run], segment, 0, to)
            else:
                self._each(run, size, to)
        except OSError as exc:
            if count > 1 and self.gso and exc.errno == errno.EIO:
                self.gso = False  # no UDP GSO on this path: one datagram a call
                self._each(run, size, to)
            else:
                self._dropped(count)

    def _each(self, run: bytearray, size: int, to: AddressLike) -> None:
        view = memoryview(run)
        for start in range(0, len(run), size):
            try:
                self._sock.sendto(view[start : start + size], to)
            except OSError:
                self._dropped(1)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._run, self._count = bytearray(), 0


def enable_gro(sock: socket.socket) -> bool:
    """Ask for runs of datagrams as one receive (UDP_GRO); whether the kernel agreed."""
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    except OSError:
        return False
    return True


def receive(sock: socket.socket, buffer: bytearray) -> tuple[int, int, AddressLike]:
    """One receive into `buffer`: (bytes, the size of the datagrams in it, the source).

    A datagram longer than `buffer` is cut (MSG_TRUNC): its size is then
    len(buffer) + 1, for the caller to refuse. Raises what `recvmsg_into` raises
    (BlockingIOError when nothing waits)."""
    size, control, flags, source = sock.recvmsg_into([buffer], GRO_CONTROL)
    if flags & socket.MSG_TRUNC:
        return len(buffer) + 1, len(buffer) + 1, source
    segment = size
    for level, kind, value in control:
        if level == SOL_UDP and kind == UDP_GRO and len(value) >= 4:
            segment = int.from_bytes(value[:4], sys.byteorder) or size
    return size, segment, source


def segments(view: memoryview, size: int, segment: int) -> Iterator[memoryview]:
    """The datagrams of a receive of `size` bytes cut into `segment`-byte pieces."""
    for start in range(0, size, segment):
        yield view[start : min(start + segment, size)]
