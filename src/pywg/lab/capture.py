"""Watching the wire from a lab host: UDP datagrams seen on an interface, with times.

:class:`UdpCapture` opens an AF_PACKET socket inside a host's namespace (via
:meth:`pywg.lab.Host.socket`) on one interface and records, on a background
thread, every IPv4/IPv6 UDP datagram that crosses it in either direction:
when (``time.monotonic()``), from and to which address and port, and the
UDP payload. The interop suite uses it to time keepalives and to check the
sizes of WireGuard messages on the wire. Bounded: at most `limit` datagrams
are kept (the count goes on).
"""

from __future__ import annotations

import ipaddress
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from .hosts import Closing, Host

ETH_P_ALL: Final = 0x0003
ETH_HEADER: Final = 14
PROTO_UDP: Final = 17


@dataclass(frozen=True, slots=True)
class Datagram:
    time: float  # time.monotonic() when it was read
    source: tuple[str, int]
    destination: tuple[str, int]
    payload: bytes


def parse_udp(frame: bytes) -> tuple[tuple[str, int], tuple[str, int], bytes] | None:
    """(source, destination, payload) of an Ethernet frame carrying IPv4/IPv6 UDP, else None."""
    if len(frame) < ETH_HEADER + 20:
        return None
    ethertype = int.from_bytes(frame[12:14], "big")
    ip = frame[ETH_HEADER:]
    if ethertype == 0x0800 and ip[0] >> 4 == 4:
        header = (ip[0] & 0x0F) * 4
        if ip[9] != PROTO_UDP or len(ip) < header + 8:
            return None
        if int.from_bytes(ip[6:8], "big") & 0x3FFF:  # a fragment
            return None
        src, dst = str(ipaddress.IPv4Address(ip[12:16])), str(ipaddress.IPv4Address(ip[16:20]))
    elif ethertype == 0x86DD and len(ip) >= 48 and ip[0] >> 4 == 6:
        header = 40
        if ip[6] != PROTO_UDP:  # extension headers are not followed
            return None
        src, dst = str(ipaddress.IPv6Address(ip[8:24])), str(ipaddress.IPv6Address(ip[24:40]))
    else:
        return None
    sport, dport, length = struct.unpack("!HHH", ip[header : header + 6])
    payload = ip[header + 8 : header + max(length, 8)]
    return (src, sport), (dst, dport), payload


def receive_until(
    stop: threading.Event,
    socks: Sequence[socket.socket],
    handle: Callable[[bytes], None],
    *,
    size: int = 65536,
) -> None:
    """Hand everything that arrives on `socks` to `handle` until `stop` is set.

    For a reader thread: it looks at `stop` at least every 0.1 s, drains each
    ready socket without blocking, and returns early once a socket is closed
    under it.
    """
    while not stop.is_set():
        try:
            ready, _, _ = select.select(socks, [], [], 0.1)
        except (OSError, ValueError):  # closed under us
            return
        for sock in ready:
            while True:
                try:
                    data = sock.recv(size, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                except OSError:
                    return
                handle(data)


class UdpCapture(Closing):
    """UDP datagrams crossing `ifname` in `host`, recorded in the background.

    Use as a context manager (or call :meth:`close`)::

        with UdpCapture(host, link.b_if) as cap:
            ...
            keepalives = [d for d in cap.datagrams() if len(d.payload) == 32]
    """

    def __init__(self, host: Host, ifname: str, *, limit: int = 100_000) -> None:
        self._sock = host.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self._sock.bind((ifname, 0))
        self._sock.setblocking(False)
        self._limit = limit
        self._lock = threading.Lock()
        self._seen: list[Datagram] = []
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=receive_until,
            args=(self._stop, [self._sock], self._record),
            name=f"capture-{ifname}",
            daemon=True,
        )
        self._thread.start()

    def _record(self, frame: bytes) -> None:
        now = time.monotonic()
        parsed = parse_udp(frame)
        if parsed is None:
            return
        with self._lock:
            self.count += 1
            if len(self._seen) < self._limit:
                self._seen.append(Datagram(now, *parsed))

    def datagrams(
        self, *, source: tuple[str, int] | None = None, since: float = 0.0
    ) -> list[Datagram]:
        """What was seen so far (optionally only from `source`, only after `since`)."""
        with self._lock:
            seen = list(self._seen)
        return [d for d in seen if d.time >= since and (source is None or d.source == source)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()
