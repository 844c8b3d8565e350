"""The relay's TCP port: accepting, TLS, the HTTP upgrade, the hellos, the connections after.

`TcpListener` accepts and applies the limits that come before TLS: a
connection rate per source (`Limits.source_rate`) and a count of
unauthenticated connections, in all and per source (`PreauthSlots`); a
connection over any of them is closed at once. It then runs TLS
(`tlsstream.TlsStream`, its buffers bounded per connection) with the
handshake deadline running, which `ServerConnection` enforces through to the
OK (docs/relay.md, "The relay's side, as a state machine").

`ServerConnection` reads the upgrade request (anything else gets a plain
4xx and is closed), sends the 101 and a CHALLENGE in one write, and takes a
HELLO from a member (a node: it becomes a `routing.Target`, replacing that
node's older connection) or a PEER_HELLO from a known relay (a link, given
to `PeerLinks`). Every refusal is the same CLOSE(refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import socket
from dataclasses import dataclass

from nacl.signing import SigningKey

from ...ratelimiter import RateLimiter
from ..relayproto import (
    PROTOCOL_VERSION,
    Challenge,
    CloseReason,
    FrameType,
    Hello,
    HttpRefusal,
    Ok,
    RelayProtocolError,
    encode_frame,
    encode_id,
    error_response,
    parse_upgrade_request,
    upgrade_response,
)
from ..schema import Member
from .connection import Shared
from .membership import Membership
from .peers import PeerConnection, PeerLinks
from .routing import Router, Via
from .sources import PreauthSlot, PreauthSlots, source_key
from .tls import ServerTls
from .tlsstream import ReadBuffer, TlsStream

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Services:
    """What an accepted connection needs of the relay."""

    shared: Shared
    router: Router
    membership: Membership
    signing_key: SigningKey
    tls: ServerTls
    peers: PeerLinks


class ServerConnection(PeerConnection):
    """An accepted connection: a node's (a `routing.Target`) or a relay's (a link)."""

    def __init__(self, services: Services, slot: PreauthSlot, deadline: float) -> None:
        super().__init__(services.shared, services.shared.limits.node_queue)
        self._services = services
        self._slot = slot
        self._deadline_at = deadline
        self._challenge = Challenge.new(bytes(services.signing_key.verify_key))
        self._member: Member | None = None
        self._peer: bytes | None = None
        self.id_bytes = b""

    # -- as a Target (a node) and as a link (a relay) ----------------------------------------

    @property
    def member(self) -> Member:
        assert self._member is not None
        return self._member

    def send_datagram(self, message: bytes) -> bool:
        return self.send_frame(FrameType.DATAGRAM, message)

    def evict(self) -> None:
        self.close(CloseReason.REFUSED)

    @property
    def peer_key(self) -> bytes:
        assert self._peer is not None
        return self._peer

    @property
    def dialer_key(self) -> bytes:
        return self.peer_key  # it dialed us

    # -- before the OK -----------------------------------------------------------------------

    def started(self) -> None:
        self.arm(self._deadline_at)
        self.expect_head()

    def head_refused(self, refusal: HttpRefusal) -> None:
        self._counters[f"http_{refusal.status}"] += 1
        self.close(last=error_response(refusal.status))

    def head_received(self, head: bytes) -> None:
        try:
            parse_upgrade_request(head)
        except HttpRefusal as refusal:
            self.head_refused(refusal)
            return
        challenge = encode_frame(FrameType.CHALLENGE, self._challenge.encode())
        self.write_raw(upgrade_response() + challenge)

    def frame_received(self, kind: int, payload: bytes) -> None:
        if self._member is not None:
            if kind == FrameType.DATAGRAM:
                self._services.router.route(self.id_bytes, payload)
            else:
                self._counters["skipped_frames"] += 1
        elif self._peer is not None:
            self._services.peers.frame(self, kind, payload)
        elif kind in (FrameType.HELLO, FrameType.PEER_HELLO):
            self._hello(kind, payload)
        else:
            self.close(CloseReason.MALFORMED)

    def _hello(self, kind: int, payload: bytes) -> None:
        try:
            hello = Hello.parse(payload)
        except RelayProtocolError:
            self.close(CloseReason.MALFORMED)
            return
        if hello.version != PROTOCOL_VERSION:
            self.close(CloseReason.VERSION)
        elif kind == FrameType.HELLO:
            self._node_hello(hello)
        else:
            self._peer_hello(hello)

    def _node_hello(self, hello: Hello) -> None:
        services = self._services
        member = services.membership.by_key(hello.key)
        binding = services.tls.binding
        if member is None or not hello.verify_node(member.control_key, self._challenge, binding):
            self.close(CloseReason.REFUSED)
            return
        self._member, self.id_bytes = member, encode_id(member.node_id)
        self._accept(hello, member.node_id)
        previous = services.router.attach(self, Via.TCP)
        if isinstance(previous, ServerConnection):
            previous.close(CloseReason.REPLACED)
        log.debug("relay: node %d connected over TCP", member.node_id)

    def _peer_hello(self, hello: Hello) -> None:
        peers = self._services.peers
        if not peers.trusts(hello.key) or not hello.verify_peer(
            self._challenge, self._services.tls.binding
        ):
            self.close(CloseReason.REFUSED)
            return
        self._peer = hello.key
        self.use_queue(self._limits.link_queue)
        self._accept(hello, 0)
        peers.established(self)

    def _accept(self, hello: Hello, node_id: int) -> None:
        self.disarm()
        self._slot.release()
        self.authenticated = True
        self._counters["tcp_accepted"] += 1
        ok = Ok.sign(self._services.signing_key, hello, node_id)
        self.send_frame(FrameType.OK, ok.encode())

    def ended(self) -> None:
        self._slot.release()
        if self._member is not None:
            self._services.router.detach(self, Via.TCP)
        if self._peer is not None and self.authenticated:
            self._services.peers.lost(self)


class TcpListener:
    """Accepts on the relay's TCP socket; see the module docstring."""

    def __init__(self, sock: socket.socket, services: Services) -> None:
        self._sock = sock
        self._services = services
        limits = services.shared.limits
        self._slots = PreauthSlots(limits.max_preauth_total, limits.max_preauth_per_source)
        self._sources = RateLimiter(rate=limits.source_rate, burst=limits.source_burst)
        self._task: asyncio.Task[None] | None = None
        self._handshakes: set[asyncio.Task[None]] = set()
        self._unsecured: set[TlsStream] = set()  # accepted, TLS not up yet
        self._buffer = ReadBuffer()

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    @property
    def preauth(self) -> int:
        return self._slots.taken

    def start(self) -> None:
        self._task = self._services.shared.loop.create_task(self._accept_forever())

    def close(self) -> None:
        for task in [self._task, *self._handshakes]:
            if task is not None:
                task.cancel()
        for stream in list(self._unsecured):
            stream.abort()
        self._sock.close()

    async def _accept_forever(self) -> None:
        loop, counters = self._services.shared.loop, self._services.shared.counters
        while True:
            try:
                sock, address = await loop.sock_accept(self._sock)
            except OSError as exc:  # EMFILE, ENOBUFS, ...: wait a little, go on
                counters["accept_failed"] += 1
                log.warning("relay: accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            self._admit(sock, address)

    def _admit(self, sock: socket.socket, address: tuple[object, ...]) -> None:
        shared = self._services.shared
        now = shared.loop.time()
        key = source_key(address)
        slot = self._slots.acquire(key) if self._sources.allow(key, now) else None
        if slot is None:
            shared.counters["tcp_refused_at_accept"] += 1
            sock.close()
            return
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        deadline = now + shared.limits.handshake_deadline
        task = shared.loop.create_task(self._start(sock, slot, deadline))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _start(self, sock: socket.socket, slot: PreauthSlot, deadline: float) -> None:
        """The connection's TLS (`TlsStream`), which hands it to a `ServerConnection` once up;
        the connection holds the slot until its OK."""
        secured = functools.partial(self._secured, slot, deadline)
        failed = functools.partial(self._failed, slot)
        stream = TlsStream(self._services.tls.context, self._buffer, deadline, secured, failed)
        self._unsecured.add(stream)
        try:
            await self._services.shared.loop.connect_accepted_socket(lambda: stream, sock)
        except BaseException as exc:  # the socket failed before the transport took it
            with contextlib.suppress(OSError):
                sock.close()
            self._failed(slot, stream, timed_out=False)
            if not isinstance(exc, Exception):
                raise

    def _secured(self, slot: PreauthSlot, deadline: float, stream: TlsStream) -> ServerConnection:
        self._unsecured.discard(stream)
        return ServerConnection(self._services, slot, deadline)

    def _failed(self, slot: PreauthSlot, stream: TlsStream, timed_out: bool) -> None:
        self._unsecured.discard(stream)
        slot.release()
        self._services.shared.counters["closed_deadline" if timed_out else "tls_failed"] += 1


def bind_tcp(host: str, port: int) -> socket.socket:
    """The relay's listening TCP socket on `host` (an IP literal; "::" takes IPv4 too)."""
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
