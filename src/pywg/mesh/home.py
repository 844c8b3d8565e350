"""A mesh node's home relay: which relay of the map, kept up, and left when it dies.

Theory of operation
-------------------
The roster's relay map (`schema.HomeRelay`, docs/relay.md) lists the mesh's
home relays. A node keeps one `RelayLink` (`pywg.mesh.relayclient`: UDP
association from the tunnel's socket, else TCP/TLS) to one of them, its
*home*; its peers are held at relayed endpoints ``[100::ID]:R`` behind it,
R the home's number, and the relays forward to peers homed elsewhere.

- Choosing (`measure`, `rank`): every relay of the map is measured at once:
  the round trip of a STUN Binding request to its UDP port from the
  tunnel's own socket (the way WireGuard's datagrams will go, RFC 8489 §6),
  and the time a TCP connection to its TCP port takes to open. A relay
  that answered over UDP ranks by that round trip, before those that only
  accepted TCP (ranked by connect time), before those that did neither (in
  the map's order). The best is the home.
- Keeping: the home stays as long as it works, whatever the others
  measure later. It has failed (`Watch`) when its link has had no transport
  for `NO_TRANSPORT` seconds (the link tries UDP, then TCP, so this is
  longer than its UDP timeout and a TCP set-up), or, while on UDP, when no
  STUN Binding request to it (every `CHECK_INTERVAL`) was answered for
  `UDP_SILENCE` seconds: a relay that died does not say so over UDP, and
  its association would only be refreshed every 25 s. A check answered
  without the node's id (the relay names the node an associated address
  is, docs/relay.md "Plain STUN") makes the link associate again at once:
  a relay that restarted has lost every association.
- Moving: on failure the node moves to the next relay of the last ranking
  at once (without measuring again: the point is to be relayed again
  quickly); when the ranking is used up, every relay is measured again.
  A change of the map that removes or changes the home moves it too.

`HomeRelays.number` is the home's relay number (None: no map); `up` says
whether its link has a transport now. The agent (`pywg.mesh.agent`) reads
both on every path tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from ..asyncio import Tunnel
from ..endpoint import Endpoint
from .relayclient import NodeIdentity, RelayLink
from .schema import HomeRelay
from .wire import answered_node_id

NO_TRANSPORT: Final = 10.0  # seconds a home may go without a transport before it is left
UDP_SILENCE: Final = 5.0  # seconds a home on UDP may leave every STUN check unanswered
CHECK_INTERVAL: Final = 1.5  # seconds between STUN checks of a home on UDP
MEASURE_TIMEOUT: Final = 1.5  # seconds for one measurement (STUN and TCP, at once)
TICK: Final = 0.25  # seconds between looks at the link

log = logging.getLogger("pywg.mesh")


class LinkLike(Protocol):
    """What `HomeRelays` uses of a `RelayLink`."""

    @property
    def transport(self) -> str | None: ...

    async def start(self) -> None: ...

    def refresh(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Measure:
    """How a relay answered: round trips in seconds, None for no answer."""

    udp: float | None = None  # STUN Binding from the tunnel's socket
    tcp: float | None = None  # TCP connect


def rank(relays: Sequence[HomeRelay], measures: dict[int, Measure]) -> list[HomeRelay]:
    """`relays` best first: by STUN round trip, then by TCP connect time, then in order."""

    def key(item: tuple[int, HomeRelay]) -> tuple[int, float, int]:
        index, relay = item
        found = measures.get(relay.number, Measure())
        if found.udp is not None:
            return 0, found.udp, index
        if found.tcp is not None:
            return 1, found.tcp, index
        return 2, math.inf, index

    return [relay for _, relay in sorted(enumerate(relays), key=key)]


class Watch:
    """Whether a home has failed (sans-IO, every call takes `now`; see the module docstring)."""

    def __init__(self, now: float) -> None:
        self.had_transport = now  # the last time the link had a transport (or its start)
        self.udp_answer = now  # the last STUN answer while on UDP (or the move to UDP)
        self.transport: str | None = None

    def saw(self, transport: str | None, now: float) -> None:
        """The link's transport at `now`."""
        if transport == "udp" and self.transport != "udp":
            self.udp_answer = now  # the association just answered
        if transport is not None:
            self.had_transport = now
        self.transport = transport

    def answered(self, now: float) -> None:
        """A STUN check of the home was answered at `now`."""
        self.udp_answer = now

    def failure(self, now: float) -> str | None:
        """Why the home has failed, or None while it works."""
        if self.transport is None and now - self.had_transport >= NO_TRANSPORT:
            return f"no transport for {NO_TRANSPORT:g} s"
        if self.transport == "udp" and now - self.udp_answer >= UDP_SILENCE:
            return f"no answer over UDP for {UDP_SILENCE:g} s"
        return None


async def resolve(host: str, port: int) -> str:
    """`host` as an IP address (a name resolved; the first answer); OSError if it cannot."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    if not infos:
        raise OSError(f"cannot resolve {host}")
    return str(infos[0][4][0])


async def measure(tunnel: Tunnel, relay: HomeRelay, timeout: float = MEASURE_TIMEOUT) -> Measure:
    """Measure `relay` over UDP (from the tunnel's socket) and TCP at once."""
    udp, tcp = await asyncio.gather(
        _stun_time(tunnel, relay, timeout), _connect_time(relay, timeout)
    )
    return Measure(udp, tcp)


async def _stun_time(tunnel: Tunnel, relay: HomeRelay, timeout: float) -> float | None:
    loop = asyncio.get_running_loop()
    try:
        target = (await resolve(relay.host, relay.udp_port), relay.udp_port)
        sent = loop.time()
        await tunnel.stun_request(target, timeout=timeout, rto=timeout / 3)
    except (TimeoutError, OSError, RuntimeError):
        return None
    return loop.time() - sent


async def _connect_time(relay: HomeRelay, timeout: float) -> float | None:
    loop = asyncio.get_running_loop()
    try:
        host = await resolve(relay.host, relay.tcp_port)
        sent = loop.time()
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, relay.tcp_port)
    except (TimeoutError, OSError):
        return None
    took = loop.time() - sent
    writer.close()
    return took


LinkFactory = Callable[[HomeRelay], LinkLike]
Measurer = Callable[[HomeRelay], Awaitable[Measure]]


class HomeRelays:
    """The node's home relay for `tunnel` (see the module docstring): `run` it, feed it the
    map with `set_map`, read `number` and `up`.

    `link` and `measurer` replace the RelayLink and the measurement (tests).
    """

    def __init__(
        self,
        tunnel: Tunnel,
        node: NodeIdentity,
        *,
        link: LinkFactory | None = None,
        measurer: Measurer | None = None,
    ) -> None:
        self.tunnel = tunnel
        self.relays: tuple[HomeRelay, ...] = ()
        self.current: HomeRelay | None = None
        self.link: LinkLike | None = None
        self.moves = 0  # homes left for failing
        self._make_link = link or (lambda relay: RelayLink(tunnel, node, relay))
        self._measure = measurer or (lambda relay: measure(tunnel, relay))
        self._map_changed = asyncio.Event()

    @property
    def number(self) -> int | None:
        """The home's relay number (None: no home: no map, or before the first choice)."""
        return self.current.number if self.current is not None else None

    @property
    def up(self) -> bool:
        """Whether the home's link has a transport now."""
        return self.transport is not None

    @property
    def transport(self) -> str | None:
        """The home link's transport now ("udp", "tcp"; None: none, or no home)."""
        return self.link.transport if self.link is not None else None

    def set_identity(self, node: NodeIdentity) -> None:
        """The node's keys after a rotation (`pywg.mesh.rotation`): the links made from now
        on use them (the home drops a link whose key is no longer a member's)."""
        tunnel = self.tunnel
        self._make_link = lambda relay: RelayLink(tunnel, node, relay)

    def set_map(self, relays: Sequence[HomeRelay]) -> None:
        """The relay map of the latest roster."""
        if tuple(relays) != self.relays:
            self.relays = tuple(relays)
            self._map_changed.set()

    async def run(self) -> None:
        """Choose, keep and move the home until cancelled."""
        ranking: list[HomeRelay] = []
        try:
            while True:
                if not self.relays:
                    self.current = None
                    self._map_changed.clear()
                    await self._map_changed.wait()
                    continue
                ranking = [r for r in ranking if r in self.relays]
                if not ranking:
                    ranking = await self._rank()
                home = ranking.pop(0)
                if await self._hold(home):
                    self.moves += 1
                else:
                    ranking = []  # the map changed: measure it again
        finally:
            self._drop_link()

    async def _rank(self) -> list[HomeRelay]:
        relays = self.relays
        found = await asyncio.gather(*(self._measure(relay) for relay in relays))
        measures = {relay.number: m for relay, m in zip(relays, found, strict=True)}
        ranking = rank(relays, measures)
        log.info(
            "home relays measured: %s",
            ", ".join(_describe(r, measures[r.number]) for r in ranking),
        )
        return ranking

    async def _hold(self, home: HomeRelay) -> bool:
        """Keep `home` until it fails (True) or leaves the map (False)."""
        loop = asyncio.get_running_loop()
        link = self._make_link(home)
        self.current, self.link = home, link
        log.info("home relay %s (%d) at %s", home.name, home.number, home.host)
        await link.start()
        watch = Watch(loop.time())
        checks = asyncio.create_task(self._check_udp(home, link, watch))
        seen: str | None = None
        try:
            while home in self.relays:
                now = loop.time()
                watch.saw(link.transport, now)
                if link.transport != seen:
                    seen = link.transport
                    log.info("home relay %s: %s", home.name, seen or "no transport")
                reason = watch.failure(now)
                if reason is not None:
                    log.warning("home relay %s failed: %s; moving on", home.name, reason)
                    return True
                self._map_changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._map_changed.wait(), TICK)
            log.info("home relay %s left the map", home.name)
            return False
        finally:
            checks.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checks
            self._drop_link()

    async def _check_udp(self, home: HomeRelay, link: LinkLike, watch: Watch) -> None:
        """A STUN Binding request to the home every CHECK_INTERVAL while it is on UDP; an
        answer that does not name this node has the link associate again."""
        loop = asyncio.get_running_loop()
        target: Endpoint | None = None
        while True:
            started = loop.time()
            if link.transport == "udp":
                try:
                    target = target or (await resolve(home.host, home.udp_port), home.udp_port)
                    answer = await self.tunnel.stun_request(
                        target, timeout=CHECK_INTERVAL, rto=CHECK_INTERVAL / 2
                    )
                    watch.answered(loop.time())
                    if answered_node_id(answer) is None and link.transport == "udp":
                        link.refresh()  # the relay lost the association (it restarted)
                except (TimeoutError, OSError, RuntimeError):
                    pass
            await asyncio.sleep(max(0.0, started + CHECK_INTERVAL - loop.time()))

    def _drop_link(self) -> None:
        if self.link is not None:
            self.link.close()
            self.link = None

    def close(self) -> None:
        """Stop the link (`run`'s task is the caller's to cancel)."""
        self._drop_link()


def _describe(relay: HomeRelay, found: Measure) -> str:
    if found.udp is not None:
        return f"{relay.name} udp {found.udp * 1000:.1f} ms"
    if found.tcp is not None:
        return f"{relay.name} tcp {found.tcp * 1000:.1f} ms"
    return f"{relay.name} no answer"
