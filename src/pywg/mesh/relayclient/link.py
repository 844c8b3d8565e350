"""`RelayLink`: one node's connection to its home relay, over the best transport that works.

docs/relay.md: a node keeps one association with its home relay, over UDP
when UDP gets through, otherwise over TCP, and moves up again when a better
path answers. So the link

1. associates over UDP (`udp.Associator`); answered: holds the relay at its
   UDP port (`Tunnel.set_relay`) and refreshes every `Timing.refresh`, or
   at once when told to (`refresh`: the relay went quiet and came back, so
   it may have restarted and lost the association);
2. when an association goes unanswered for `Timing.udp_timeout`, connects
   over TCP/TLS (`tcp.TcpSession`, reconnecting with backoff), holds the
   relay at the bridge's local port (`bridge.Bridge`), and tries UDP again
   every `Timing.udp_retry`; when it answers, closes the TCP session (the
   relay sends over TCP while one is authenticated) and goes back to 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Literal

from ...asyncio.tunnel import Tunnel
from ..schema import HomeRelay
from .bridge import Bridge
from .config import NodeIdentity, RelayClientError, Timing
from .proxy import parse_proxy, proxy_from_environment
from .tcp import TcpSession
from .udp import Associator

log = logging.getLogger(__name__)

Transport = Literal["udp", "tcp"]
_TCP_FAILURES = (RelayClientError, OSError, ssl.SSLError, TimeoutError)


class RelayLink:
    """The node's link to relay `relay` for `tunnel`; `start`, then `close`.

    `proxy`: ``http://host:port`` for the TCP transport, "" for none, None
    for `HTTPS_PROXY` / `https_proxy`. `transport` is "udp", "tcp" or None
    (none up); `node_id` the id the relay answered; `last_error` why the
    last attempt failed; `counters()` the numbers.
    """

    def __init__(
        self, tunnel: Tunnel, node: NodeIdentity, relay: HomeRelay, *,
        timing: Timing | None = None, proxy: str | None = None,
    ) -> None:  # fmt: skip
        self.tunnel = tunnel
        self.relay = relay
        self.node = node
        self.timing = timing or Timing()
        self.proxy = (
            proxy_from_environment() if proxy is None else parse_proxy(proxy) if proxy else None
        )
        self.transport: Transport | None = None
        self.node_id: int | None = None
        self.last_error: str | None = None
        self._associator = Associator(tunnel, node, relay)
        self._bridge: Bridge | None = None
        self._session: TcpSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._refresh_now = asyncio.Event()
        self._counts = dict.fromkeys(
            ("udp_associations", "udp_failures", "tcp_connects", "tcp_failures", "switches",
             "tcp_sent", "tcp_received", "tcp_queue_dropped"), 0,
        )  # fmt: skip

    async def start(self) -> None:
        """Start keeping the link up (returns at once; see `wait_transport`)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"relay {self.relay.number}")

    def close(self) -> None:
        """Stop: the session and the bridge close, the tunnel no longer holds the relay."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._session is not None:
            self._session.close()
        if self._bridge is not None:
            self._bridge.close()
            self._bridge = None
        self._switch(None, None)

    def refresh(self) -> None:
        """On UDP, associate again now rather than at the next refresh."""
        self._refresh_now.set()

    async def wait_transport(self, want: Transport | None, timeout: float) -> bool:
        """Whether the link is on `want` within `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.transport != want:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(0.0, deadline - loop.time()))
            if loop.time() >= deadline:
                return self.transport == want
        return True

    def counters(self) -> dict[str, int]:
        counts = dict(self._counts)
        bridge, session = self._bridge, self._session
        counts["bridge_to_relay"] = bridge.to_relay if bridge else 0
        counts["bridge_from_relay"] = bridge.from_relay if bridge else 0
        counts["bridge_dropped"] = bridge.dropped if bridge else 0
        if session is not None:  # the current session's, on top of the ended ones'
            counts["tcp_sent"] += session.sent
            counts["tcp_received"] += session.received
            counts["tcp_queue_dropped"] += session.dropped
        return counts

    def __repr__(self) -> str:
        return f"RelayLink(relay {self.relay.number} {self.relay.host}, {self.transport})"

    # -- the states ----------------------------------------------------------------------

    def _switch(self, transport: Transport | None, where: tuple[str, int] | None) -> None:
        if transport != self.transport:
            self._counts["switches"] += transport is not None
            log.info("relay %d: %s -> %s", self.relay.number, self.transport, transport)
        if not self.tunnel.closed:
            self.tunnel.set_relay(self.relay.number, where)
        self.transport = transport
        self._changed.set()

    async def _run(self) -> None:
        on_udp = await self._try_udp()
        while True:
            if on_udp:
                await self._hold_udp()  # until a refresh goes unanswered
            else:
                await self._hold_tcp()  # until an association is answered
            on_udp = not on_udp

    async def _try_udp(self) -> bool:
        try:
            self.node_id = await self._associator.associate(self.timing.udp_timeout)
        except RelayClientError as exc:
            self._counts["udp_failures"] += 1
            self.last_error = str(exc)
            return False
        self._counts["udp_associations"] += 1
        return True

    async def _hold_udp(self) -> None:
        """On UDP, refreshing, until a refresh goes unanswered."""
        self._switch("udp", self._associator.endpoint)
        while True:
            self._refresh_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._refresh_now.wait(), self.timing.refresh)
            if not await self._try_udp():
                break
        self._switch(None, None)

    async def _hold_tcp(self) -> None:
        """On TCP (reconnecting), trying UDP every `udp_retry`, until UDP answers."""
        tcp = asyncio.create_task(self._keep_tcp())
        try:
            while True:
                done, _ = await asyncio.wait([tcp], timeout=self.timing.udp_retry)
                if done:  # it never returns: an error no reconnect can help
                    tcp.result()
                if await self._try_udp():
                    return
        finally:
            tcp.cancel()
            await asyncio.gather(tcp, return_exceptions=True)

    async def _keep_tcp(self) -> None:
        if self._bridge is None:
            self._bridge = await Bridge.open(lambda: self.tunnel.listen_port)
        bridge, backoff = self._bridge, self.timing.backoff_min
        while True:
            try:
                session = await TcpSession.open(
                    self.node, self.relay, proxy=self.proxy, timeout=self.timing.connect_timeout
                )
            except _TCP_FAILURES as exc:
                self._tcp_failed(exc)
                await asyncio.sleep(backoff)
                backoff = min(2 * backoff, self.timing.backoff_max)
                continue
            backoff = self.timing.backoff_min
            await self._carry(session, bridge)
            await asyncio.sleep(backoff)

    async def _carry(self, session: TcpSession, bridge: Bridge) -> None:
        """Hold the relay at the bridge while `session` lasts."""
        self._counts["tcp_connects"] += 1
        self.node_id = session.node_id
        self._session = bridge.session = session
        self._switch("tcp", bridge.endpoint)
        try:
            await session.run(bridge.deliver, self.timing.keepalive)
        except _TCP_FAILURES as exc:
            self._tcp_failed(exc)
        finally:
            session.close()
            self._session = bridge.session = None
            self._counts["tcp_sent"] += session.sent
            self._counts["tcp_received"] += session.received
            self._counts["tcp_queue_dropped"] += session.dropped
            self._switch(None, None)

    def _tcp_failed(self, exc: BaseException) -> None:
        self._counts["tcp_failures"] += 1
        self.last_error = str(exc) or type(exc).__name__
        log.info("relay %d over TCP: %s", self.relay.number, self.last_error)
