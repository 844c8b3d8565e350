"""An in-memory network on virtual time for sans-IO Devices (test helper).

Devices are attached at (host, port) addresses. Datagrams take `latency`
seconds; a `drop` predicate can lose them. `run_until(t)` advances virtual
time event by event, calling `handle_timer` exactly at each device's
deadline, so timer tests can assert exact deadlines.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from pywg import Device, Event

Addr = tuple[str, int]


@dataclass
class Host:
    device: Device
    addr: Addr
    received: list[tuple[float, bytes]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    sent: list[tuple[float, bytes, Addr]] = field(default_factory=list)


class Network:
    def __init__(self, latency: float = 0.001) -> None:
        self.now = 0.0
        self.latency = latency
        self.hosts: dict[Addr, Host] = {}
        self._queue: list[tuple[float, int, Addr, bytes, Addr]] = []
        self._seq = itertools.count()
        self.drop: Callable[[bytes, Addr, Addr], bool] = lambda data, src, dst: False
        self.tap: Callable[[float, bytes, Addr, Addr], None] | None = None
        self.delivered = 0

    def attach(self, device: Device, addr: Addr) -> Host:
        host = Host(device, addr)
        self.hosts[addr] = host
        return host

    def wall_clock(self, base: float = 1_700_000_000.0) -> Callable[[], float]:
        """A wall clock that follows virtual time (for TAI64N timestamps)."""
        return lambda: base + self.now

    def inject(self, data: bytes, src: Addr, dst: Addr, delay: float | None = None) -> None:
        t = self.now + (self.latency if delay is None else delay)
        heapq.heappush(self._queue, (t, next(self._seq), src, data, dst))

    def send(self, host: Host, packet: bytes) -> None:
        host.device.send_packet(packet, self.now)
        self._flush(host)

    def _flush(self, host: Host) -> None:
        dev = host.device
        for data, dst in dev.datagrams_to_send():
            host.sent.append((self.now, data, dst))
            if self.tap is not None:
                self.tap(self.now, data, host.addr, dst)
            if not self.drop(data, host.addr, dst):
                self.inject(data, host.addr, dst)
        for pkt in dev.packets_to_write():
            host.received.append((self.now, pkt))
        while (ev := dev.next_event()) is not None:
            host.events.append(ev)

    def _next_timer(self) -> tuple[float, Host] | None:
        best: tuple[float, Host] | None = None
        for host in self.hosts.values():
            t = host.device.get_timer()
            if t is not None and (best is None or t < best[0]):
                best = (t, host)
        return best

    def run_until(self, t_end: float, max_steps: int = 10_000_000) -> None:
        for _ in range(max_steps):
            t_q = self._queue[0][0] if self._queue else None
            timer = self._next_timer()
            t_t = timer[0] if timer else None
            candidates = [t for t in (t_q, t_t) if t is not None]
            if not candidates or min(candidates) > t_end:
                self.now = max(self.now, t_end)
                return
            self.now = max(self.now, min(candidates))
            if t_q is not None and t_q <= self.now:
                _, _, src, data, dst = heapq.heappop(self._queue)
                host = self.hosts.get(dst)
                if host is not None:
                    self.delivered += 1
                    host.device.receive_datagram(data, src, self.now)
                    self._flush(host)
            else:
                assert timer is not None
                timer[1].device.handle_timer(self.now)
                self._flush(timer[1])
        raise AssertionError("simulation did not settle")
