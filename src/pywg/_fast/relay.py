"""Python side of the relay's native forwarding loop (``relay.c``): its thread and tables.

`NativeRelay` runs the C loop on a relay's UDP socket: it forwards tagged
WireGuard messages between nodes associated over UDP by itself, and hands
everything else (STUN, associations, messages for nodes it does not hold) to
Python through a datagram socketpair, a run of datagrams a message (one
receive batch's: relay.h, struct pywg_relay_run), read with `received()`
when `hand_fd` is readable. Python says which node is where (`set_node`)
and sends what it forwards itself on the same socket.
"""

from __future__ import annotations

import functools
import socket
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, Final

from pywg.endpoint import AddressLike

from . import require
from .plane import sockaddr

HAND_BUFFER: Final = 4 << 20  # bytes the hand-off socket holds for Python; beyond, dropped
RUN_HEADER: Final = struct.Struct("=I")  # struct pywg_relay_run: count
UP_HEADER: Final = struct.Struct("=HH")  # struct pywg_relay_up: len, addrlen
ADDRESS_CACHE: Final = 4096  # sources whose parsed address is kept


@functools.lru_cache(maxsize=ADDRESS_CACHE)
def socket_address(raw: bytes) -> AddressLike | None:
    """A struct sockaddr_in / sockaddr_in6 as Python's socket module gives it: (host, port)
    or (host, port, flowinfo, scope_id), a v4-mapped host as ::ffff:a.b.c.d. Remembered:
    a stream of datagrams handed up comes from a few addresses."""
    if len(raw) >= 8 and int.from_bytes(raw[:2], sys.byteorder) == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), int.from_bytes(raw[2:4], "big")
    if len(raw) >= 28 and int.from_bytes(raw[:2], sys.byteorder) == socket.AF_INET6:
        host = socket.inet_ntop(socket.AF_INET6, raw[8:24])
        flow, scope = int.from_bytes(raw[4:8], "big"), int.from_bytes(raw[24:28], sys.byteorder)
        return host, int.from_bytes(raw[2:4], "big"), flow, scope
    return None


def parse_run(run: bytes, same: int) -> Iterator[tuple[memoryview, AddressLike]]:
    """The datagrams of a run (relay.h) with their sources, in order: views into `run`,
    no copies. `same`: PYWG_RELAY_UP_SAME. A datagram from an address that is no IP
    socket's is left out."""
    (count,) = RUN_HEADER.unpack_from(run)
    view, unpack, offset, source = memoryview(run), UP_HEADER.unpack_from, RUN_HEADER.size, None
    for _ in range(count):
        size, addrlen = unpack(run, offset)
        offset += UP_HEADER.size
        if addrlen != same:
            source = socket_address(run[offset : offset + addrlen])
            offset += addrlen
        if source is not None:
            yield view[offset : offset + size], source
        offset += size


class NativeRelay:
    """The C forwarding loop on `udp` (bound); `start()`, then `stop()`."""

    def __init__(
        self, udp: socket.socket, on_exit: Callable[[str], None], *, gro: bool = True
    ) -> None:
        self.ffi, self.lib = require()
        self.family = udp.family
        self._mine, self._theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for end, option in ((self._theirs, socket.SO_SNDBUF), (self._mine, socket.SO_RCVBUF)):
            end.setsockopt(socket.SOL_SOCKET, option, HAND_BUFFER)
        self._mine.setblocking(False)
        self.handle: Any = self.lib.pywg_relay_new(udp.fileno(), self._theirs.fileno(), int(gro))
        if self.handle == self.ffi.NULL:
            self._close_pair()
            raise MemoryError("cannot create the native relay")
        self._on_exit = on_exit
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._stats = self.ffi.new("struct pywg_relay_stats *")

    @property
    def hand_fd(self) -> int:
        """Readable when datagrams wait for Python (`received`)."""
        return self._mine.fileno()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pywg-relay", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        status = self.lib.pywg_relay_run(self.handle)  # cffi releases the GIL for the loop
        if not self._stopping:
            self._on_exit(f"native relay loop ended (status {status})")

    def stop(self) -> None:
        """Stop the loop, wait for it, free the C relay. Idempotent."""
        if self.handle is None:
            return
        self._stopping = True
        self.lib.pywg_relay_stop(self.handle)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.lib.pywg_relay_free(self.handle)
        self.handle = None
        self._close_pair()

    def _close_pair(self) -> None:
        self._mine.close()
        self._theirs.close()

    def set_node(self, node: int, where: AddressLike | None, *, deliver: bool = True) -> None:
        """Node `node` is associated with `where` over UDP (None: no longer). An address
        belongs to one node: associating it again takes it from the other. `deliver`
        False: what it sends is forwarded, but what is for it goes up to Python."""
        raw = sockaddr((str(where[0]), int(where[1])), self.family) if where is not None else b""
        if where is not None and not raw:
            raise ValueError(f"{where} cannot be reached from this socket")
        if self.lib.pywg_relay_set_node(self.handle, node, raw, len(raw), int(deliver)) != 0:
            raise ValueError(f"cannot associate node {node}")

    def received(self, limit: int = 256) -> Iterator[tuple[memoryview, AddressLike]]:
        """The datagrams handed up so far, whole runs until `limit` have come: (data, where
        it came from, as the socket's recvfrom would give it). `data` is a view into its
        run's bytes (each run its own)."""
        run_bytes, same = self.lib.PYWG_RELAY_RUN_BYTES, self.lib.PYWG_RELAY_UP_SAME
        taken = 0
        while taken < limit:
            try:
                run = self._mine.recv(run_bytes)
            except BlockingIOError:
                return
            taken += RUN_HEADER.unpack_from(run)[0]
            yield from parse_run(run, same)

    def stats(self) -> dict[str, int]:
        self.lib.pywg_relay_stats(self.handle, self._stats)
        names = (
            "forwarded forwarded_bytes handed_up up_drops unassociated malformed not_relay "
            "send_errors nodes"
        )
        return {name: int(getattr(self._stats, name)) for name in names.split()}

    def __repr__(self) -> str:
        return f"<NativeRelay {'running' if self.handle is not None else 'stopped'}>"
