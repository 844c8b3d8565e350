"""The relay as one object: its UDP port, its TCP port, its links, its sweep, its counters.

`Relay(config)` runs on the caller's event loop (`pywg relay serve` gives it a
process of its own, on uvloop, so relayed traffic never competes with the
coordinator). Every second (`Limits.sweep_interval`) it expires UDP
associations, closes stalled and idle TCP connections, pings quiet ones,
and evicts nodes the membership no longer has as they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from nacl.signing import SigningKey

from ..tls import dialer_context
from .connection import Shared
from .limits import Limits
from .membership import Membership
from .peers import PeerLinks, PeerSpec
from .routing import Router
from .tcp import Services, TcpListener, bind_tcp
from .tls import ServerTls
from .udp import UdpRelay, bind_udp

log = logging.getLogger(__name__)


# The relay's counters and the native forwarding loop's names for the same fates.
_NATIVE_COUNTERS = {
    "delivered": "forwarded",
    "delivered_bytes": "forwarded_bytes",
    "drop_unassociated": "unassociated",
    "drop_malformed": "malformed",
    "drop_not_relay": "not_relay",
    "drop_udp_send_failed": "send_errors",
    "native_handed_up": "handed_up",
    "native_up_drops": "up_drops",
}


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class RelayConfig:
    signing_key: SigningKey  # the relay key
    membership: Membership
    tls: ServerTls
    host: str = "::"  # an IP literal; "::" listens on IPv6 and IPv4
    udp_port: int = 3478
    tcp_port: int = 443
    peers: Sequence[PeerSpec] = ()
    limits: Limits = field(default_factory=Limits)
    clock_ms: Callable[[], int] = wall_clock_ms  # what UDP association times are checked against
    native: bool = True  # forward UDP with the native loop where it is built


class Relay:
    """A running relay; `start` on an event loop, `close` from the same loop."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.counters: Counter[str] = Counter()
        self._shared: Shared | None = None
        self._router = Router(config.membership, self.counters)
        self._udp: UdpRelay | None = None
        self._tcp: TcpListener | None = None
        self._peers: PeerLinks | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def key(self) -> bytes:
        """The relay key (Ed25519 public)."""
        return bytes(self.config.signing_key.verify_key)

    @property
    def udp_port(self) -> int:
        return 0 if self._udp is None else self._udp.port

    @property
    def tcp_port(self) -> int:
        return 0 if self._tcp is None else self._tcp.port

    async def start(self) -> None:
        """Bind both ports and start serving; OSError if a port cannot be bound."""
        config = self.config
        loop = asyncio.get_running_loop()
        shared = self._shared = Shared(loop, config.limits, self.counters)
        try:
            udp_sock = bind_udp(config.host, config.udp_port)
            self._udp = UdpRelay(
                udp_sock,
                relay_key=self.key,
                router=self._router,
                membership=config.membership,
                limits=config.limits,
                counters=self.counters,
                clock_ms=config.clock_ms,
                native=config.native,
            )
            self._udp.start(loop)
            self._peers = PeerLinks(
                config.signing_key,
                config.peers,
                shared=shared,
                router=self._router,
                client_tls=dialer_context(),
            )
            services = Services(
                shared, self._router, config.membership, config.signing_key, config.tls, self._peers
            )
            self._tcp = TcpListener(bind_tcp(config.host, config.tcp_port), services)
        except BaseException:
            self.close()
            raise
        self._tcp.start()
        self._peers.start()
        self._sweeper = loop.create_task(self._sweep_forever())

    def close(self) -> None:
        """Stop serving: close the ports, every connection and link; idempotent."""
        for part in (self._sweeper, self._tcp, self._peers, self._udp):
            if isinstance(part, asyncio.Task):
                part.cancel()
            elif part is not None:
                part.close()
        self._sweeper = None
        if self._shared is not None:
            for connection in list(self._shared.connections):
                connection.abort()

    def stats(self) -> dict[str, int]:
        """The counters, and the sizes of the tables and queues now."""
        out = dict(self.counters)
        native = {} if self._udp is None else self._udp.native_stats()
        for mine, its in _NATIVE_COUNTERS.items():  # what the native loop did, as ours
            if native.get(its):
                out[mine] = out.get(mine, 0) + native[its]
        connections = [] if self._shared is None else list(self._shared.connections)
        out["connections"] = len(connections)
        out["queued_bytes"] = sum(c.queued() for c in connections)
        out["udp_associations"] = 0 if self._udp is None else self._udp.associations()
        out["preauth"] = 0 if self._tcp is None else self._tcp.preauth
        out["links"] = 0 if self._peers is None else len(self._peers.links())
        out["homed"] = len(self._router.local_ids())
        out["remote_nodes"] = self._router.remote_count()
        return out

    async def _sweep_forever(self) -> None:
        assert self._shared is not None and self._udp is not None
        loop, interval = self._shared.loop, self.config.limits.sweep_interval
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            try:
                self._udp.sweep(now)
                for connection in list(self._shared.connections):
                    connection.sweep(now)
                self._router.sweep()
            except Exception:  # a bug: the relay goes on
                self.counters["errors"] += 1
                log.exception("relay: sweep failed")

    async def __aenter__(self) -> Relay:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.close()
