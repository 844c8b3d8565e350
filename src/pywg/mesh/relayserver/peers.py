"""Links to the other relays of the mesh: dialing them, keeping one link per pair, presence.

A relay knows its peers by their relay keys (`PeerSpec`: with an address, it
dials; without, it only accepts). `PeerLinks` keeps one authenticated link
per peer: when both sides dialed at once, the link dialed by the relay
whose key is the smaller stays (docs/relay.md, "Several relays"); a link
that goes away is dialed again after `redial_min`, doubling to
`redial_max`. Frames on a link go to the `Router`: FORWARD to deliver,
PRESENT and ABSENT to learn where nodes are homed.

`DialedLink` is the client side of the TCP transport with a PEER_HELLO: the
HTTP upgrade, the CHALLENGE, whose relay key must be the peer's, and the OK,
whose signature by that key authenticates the peer (so the dialer needs no
certificate verification: `pywg.mesh.tls.dialer_context`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from nacl.signing import SigningKey

from .. import auth
from ..relayproto import (
    PROTOCOL_VERSION,
    Challenge,
    FrameType,
    Hello,
    Ok,
    RelayProtocolError,
    parse_presence,
    parse_upgrade_response,
    peer_hello,
    upgrade_request,
)
from .connection import FramedConnection, Shared
from .routing import Router
from .tls import peer_binding

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PeerSpec:
    """Another relay: its relay key, and where to dial it (None: it dials us)."""

    key: bytes
    host: str | None = None
    port: int = 443


class PeerConnection(FramedConnection):
    """A connection that carries a relay link once authenticated (`PeerLinks.established`)."""

    @property
    def peer_key(self) -> bytes:
        raise NotImplementedError

    @property
    def dialer_key(self) -> bytes:
        """The relay key of the side that dialed this connection."""
        raise NotImplementedError


class PeerLinks:
    """One link per peer relay; the dialers of the peers with an address."""

    def __init__(
        self,
        own: SigningKey,
        peers: Sequence[PeerSpec],
        *,
        shared: Shared,
        router: Router,
        client_tls: ssl.SSLContext,
    ) -> None:
        self._own = own
        self._own_key = bytes(own.verify_key)
        self._specs = {spec.key: spec for spec in peers if spec.key != self._own_key}
        self.shared = shared
        self._router = router
        self._client_tls = client_tls
        self._links: dict[bytes, PeerConnection] = {}
        self._lost: dict[bytes, asyncio.Event] = {k: asyncio.Event() for k in self._specs}
        self._tasks: list[asyncio.Task[None]] = []

    def trusts(self, key: bytes) -> bool:
        return key in self._specs

    def start(self) -> None:
        for spec in self._specs.values():
            if spec.host is not None:
                self._tasks.append(self.shared.loop.create_task(self._dial_forever(spec)))

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for link in list(self._links.values()):
            link.abort()

    def links(self) -> list[PeerConnection]:
        return list(self._links.values())

    # -- the links ---------------------------------------------------------------------------

    def established(self, link: PeerConnection) -> None:
        """`link` authenticated its peer: keep it, unless a better link to that peer exists."""
        current = self._links.get(link.peer_key)
        if current is not None and not current.closed:
            keep = _better(current, link)
            drop = link if keep is current else current
            self.shared.counters["links_duplicate"] += 1
            drop.abort()  # its ended() -> lost(): not the kept one, nothing else happens
            if keep is current:
                return
        self._links[link.peer_key] = link
        self._router.add_link(link)
        log.info("relay: link to relay %s up", auth.b64(link.peer_key)[:8])

    def lost(self, link: PeerConnection) -> None:
        if self._links.get(link.peer_key) is not link:
            return
        del self._links[link.peer_key]
        self._router.remove_link(link)
        log.info("relay: link to relay %s down", auth.b64(link.peer_key)[:8])
        event = self._lost.get(link.peer_key)
        if event is not None:
            event.set()

    def frame(self, link: PeerConnection, kind: int, payload: bytes) -> None:
        """A frame on an authenticated link."""
        try:
            if kind == FrameType.FORWARD:
                self._router.route_forwarded(payload)
            elif kind == FrameType.PRESENT:
                self._router.learn(link, parse_presence(payload))
            elif kind == FrameType.ABSENT:
                self._router.forget(link, parse_presence(payload))
            else:
                self.shared.counters["skipped_frames"] += 1
        except RelayProtocolError:
            self.shared.counters["drop_malformed_link_frame"] += 1

    # -- dialing -----------------------------------------------------------------------------

    async def _dial_forever(self, spec: PeerSpec) -> None:
        limits = self.shared.limits
        delay = limits.redial_min
        lost = self._lost[spec.key]
        while True:
            if spec.key in self._links:
                await lost.wait()
                lost.clear()
                continue
            if await self._dial(spec):
                delay = limits.redial_min
                continue
            await asyncio.sleep(delay)
            delay = min(2 * delay, limits.redial_max)

    async def _dial(self, spec: PeerSpec) -> bool:
        """Dial `spec` once; whether a link came up."""
        assert spec.host is not None
        loop, limits = self.shared.loop, self.shared.limits
        deadline = loop.time() + limits.handshake_deadline
        link = DialedLink(self, spec, self._own, deadline)
        try:
            async with asyncio.timeout_at(deadline):
                await loop.create_connection(
                    lambda: link,
                    spec.host,
                    spec.port,
                    ssl=self._client_tls,
                    server_hostname=spec.host,
                    ssl_handshake_timeout=limits.handshake_deadline,
                )
                await link.settled
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            self.shared.counters["dial_failed"] += 1
            log.debug("relay: dialing %s:%d failed: %s", spec.host, spec.port, exc)
            link.abort()
            return False
        return link.authenticated and not link.closed


def _better(a: PeerConnection, b: PeerConnection) -> PeerConnection:
    """Of two links to one peer, the one both sides keep: dialed by the smaller key; if one side
    dialed both, the newer (the older one is likely dead)."""
    if a.dialer_key != b.dialer_key:
        return a if a.dialer_key < b.dialer_key else b
    return b


class DialedLink(PeerConnection):
    """The dialing side of a relay link (see the module docstring)."""

    def __init__(self, links: PeerLinks, spec: PeerSpec, own: SigningKey, deadline: float) -> None:
        super().__init__(links.shared, links.shared.limits.link_queue)
        self._links = links
        self._spec = spec
        self._own = own
        self._deadline_at = deadline
        self._hello: Hello | None = None
        self.settled: asyncio.Future[None] = links.shared.loop.create_future()

    @property
    def peer_key(self) -> bytes:
        return self._spec.key

    @property
    def dialer_key(self) -> bytes:
        return bytes(self._own.verify_key)

    def started(self) -> None:
        self.arm(self._deadline_at)
        self.expect_head()
        self.write_raw(upgrade_request(self._spec.host or "pywg-relay"))

    def head_received(self, head: bytes) -> None:
        try:
            parse_upgrade_response(head)
        except RelayProtocolError as exc:
            self._fail(f"no upgrade: {exc}")

    def frame_received(self, kind: int, payload: bytes) -> None:
        try:
            if self.authenticated:
                self._links.frame(self, kind, payload)
            elif kind == FrameType.CHALLENGE and self._hello is None:
                self._challenged(Challenge.parse(payload))
            elif kind == FrameType.OK and self._hello is not None:
                self._accepted(Ok.parse(payload), self._hello)
            else:
                self._fail(f"frame {kind} during the set-up")
        except (RelayProtocolError, ValueError) as exc:
            self._fail(str(exc))

    def _challenged(self, challenge: Challenge) -> None:
        if challenge.version != PROTOCOL_VERSION or challenge.relay_key != self._spec.key:
            raise RelayProtocolError("the CHALLENGE is not from the relay dialed")
        assert self.transport is not None
        binding = peer_binding(self.transport.get_extra_info("ssl_object"))
        self._hello = peer_hello(self._own, challenge, binding)
        self.send_frame(FrameType.PEER_HELLO, self._hello.encode())

    def _accepted(self, ok: Ok, hello: Hello) -> None:
        if not ok.verify(self._spec.key, hello):
            raise RelayProtocolError("the OK is not signed by the relay dialed")
        self.disarm()
        self.authenticated = True
        self._links.established(self)
        self._settle()

    def _fail(self, why: str) -> None:
        log.debug("relay: link to %s refused: %s", self._spec.host, why)
        self._shared.counters["dial_refused"] += 1
        self.abort()

    def _settle(self) -> None:
        if not self.settled.done():
            self.settled.set_result(None)

    def ended(self) -> None:
        self._settle()
        if self.authenticated:
            self._links.lost(self)
