"""The relay's UDP port: STUN answers, signed associations, and tagged datagrams.

One socket (dual-stack when bound to "::"). Byte 0 tells a datagram's kind
(docs/relay.md): 0x00 is a STUN request, an association (signed Binding
request, `pywg.mesh.wire`) or a plain Binding request; 1..4 is a tagged
WireGuard message, taken only from an associated source address; anything
else is dropped. Control messages take a token from their source's bucket
before anything is parsed beyond the STUN framing, and associations a token
from the relay's signature budget before their Ed25519 check.

Where the native extension is built, its forwarding loop (`pywg._fast.relay`)
reads the socket: it forwards tagged messages between nodes associated over
UDP by itself, in batches, from a copy of the association table this class
keeps (`_mirror`), and hands everything else up here. Otherwise datagrams
are read up to DRAIN_MAX a wake-up into one buffer. What Python forwards
to a node over UDP (from a TCP connection, another relay, or everything
without the native loop) goes out in UDP GSO runs (`GsoSender`: a run of
one size to one node is one send) at the loop's next turn. A send the
socket refuses (its buffer is full) is dropped and counted
(``drop_udp_send_failed``; such a datagram was counted delivered when it
was handed to the socket's run): the socket's buffer is the only queue
toward UDP nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ... import _fast, stun
from ...asyncio.offload import GsoSender
from ...asyncio.udp import set_buffers
from ...endpoint import AddressLike, normalize_endpoint
from ...ratelimiter import RateLimiter, TokenBucket
from .. import auth, wire
from ..relayproto import MAX_DATAGRAM_SIZE, encode_id
from ..schema import Member
from .limits import Limits
from .membership import Membership
from .routing import Router, Via
from .sources import source_key

if TYPE_CHECKING:
    from ..._fast.relay import NativeRelay

log = logging.getLogger(__name__)

DRAIN_MAX = 64  # datagrams read per wake-up


@dataclass(eq=False, slots=True)
class Association:
    """A node's UDP address: a `routing.Target`."""

    member: Member
    id_bytes: bytes
    source: AddressLike  # as the socket reported it: where to send
    expires: float  # loop time
    owner: UdpRelay

    def send_datagram(self, message: bytes) -> bool:
        return self.owner.forward(message, self.source)

    def evict(self) -> None:
        self.owner.end(self)


class UdpRelay:
    """The UDP port of a relay; see the module docstring. Call it from the loop's thread."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        relay_key: bytes,
        router: Router,
        membership: Membership,
        limits: Limits,
        counters: Counter[str],
        clock_ms: Callable[[], int],
        native: bool = True,
    ) -> None:
        """`native`: forward with the native loop where it is built."""
        self._sock = sock
        self._native: NativeRelay | None = None
        self._use_native = native and _fast.AVAILABLE
        self._relay_key = relay_key
        self._router = router
        self._membership = membership
        self._limits = limits
        self._counters = counters
        self._clock_ms = clock_ms
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sender: GsoSender | None = None
        self._buffer = bytearray(MAX_DATAGRAM_SIZE + 1)
        self._view = memoryview(self._buffer)
        self._by_source: dict[AddressLike, Association] = {}
        self._by_node: dict[int, Association] = {}
        self._last_ms: dict[bytes, int] = {}  # WireGuard key -> newest association time taken
        self._sources = RateLimiter(rate=limits.source_rate, burst=limits.source_burst)
        self._signatures = TokenBucket(limits.signature_rate, limits.signature_rate, 0.0, 0.0)
        self._start_ms = clock_ms()  # nothing signed before the start is taken

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._sender = GsoSender(self._sock, loop, self._send_failed)
        self._signatures.last = loop.time()
        self._signatures.tokens = self._signatures.burst
        self._router.on_change = self._mirror
        if self._use_native:
            from ..._fast.relay import NativeRelay

            self._native = NativeRelay(self._sock, self._native_ended)
            self._native.start()
            loop.add_reader(self._native.hand_fd, self._handed_up)
        else:
            loop.add_reader(self._sock.fileno(), self._readable)

    def _native_ended(self, reason: str) -> None:  # from the loop's thread: a bug
        log.error("relay: %s", reason)

    def close(self) -> None:
        native, self._native = self._native, None
        if self._loop is not None:
            fd = native.hand_fd if native is not None else self._sock.fileno()
            with contextlib.suppress(Exception):  # a closed loop
                self._loop.remove_reader(fd)
        if native is not None:
            native.stop()
        if self._sender is not None:
            self._sender.close()
        self._sock.close()
        for association in list(self._by_node.values()):
            self.end(association)

    def native_stats(self) -> dict[str, int]:
        """The native loop's counters (none without it)."""
        return {} if self._native is None else self._native.stats()

    def _mirror(self, node_id: int) -> None:
        """Give the native loop node `node_id`'s UDP address, if it has one, and whether to
        deliver to it there (not when it is reached over TCP: docs/relay.md)."""
        if self._native is None:
            return
        association = self._by_node.get(node_id)
        if association is None:
            self._native.set_node(node_id, None)
        else:
            deliver = self._router.target(node_id) is association
            self._native.set_node(node_id, association.source, deliver=deliver)

    def associations(self) -> int:
        return len(self._by_node)

    # -- sending -----------------------------------------------------------------------------

    def send(self, data: bytes, to: AddressLike) -> bool:
        """A control message (a STUN answer), now."""
        try:
            self._sock.sendto(data, to)
        except OSError:  # EAGAIN (a full buffer), unreachable: UDP may drop
            self._counters["drop_udp_send_failed"] += 1
            return False
        return True

    def forward(self, message: bytes, to: AddressLike) -> bool:
        """A tagged message for a node, in a GSO run (see the module docstring)."""
        assert self._sender is not None
        self._sender.send(message, to)
        return True

    def _send_failed(self, count: int) -> None:
        self._counters["drop_udp_send_failed"] += count

    # -- receiving ---------------------------------------------------------------------------

    def _handed_up(self) -> None:
        assert self._native is not None
        for data, source in self._native.received():
            try:
                self._datagram(data, len(data), source)
            except Exception:  # a bug, never the datagram's fault: count it and go on
                self._counters["errors"] += 1
                log.exception("relay: error handling a UDP datagram (dropped)")

    def _readable(self) -> None:
        sock, buffer, view = self._sock, self._buffer, self._view
        for _ in range(DRAIN_MAX):
            try:
                size, source = sock.recvfrom_into(buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error reported on the socket, or it was closed
                if sock.fileno() < 0:
                    return
                continue
            try:
                self._datagram(view[:size], size, source)
            except Exception:  # a bug, never the datagram's fault: count it and go on
                self._counters["errors"] += 1
                log.exception("relay: error handling a UDP datagram (dropped)")

    def _datagram(self, data: memoryview, size: int, source: AddressLike) -> None:
        first = data[0] if size else 0xFF
        if 1 <= first <= 4:
            association = self._by_source.get(source)
            if association is None:
                self._counters["drop_unassociated"] += 1
            else:
                self._router.route(association.id_bytes, data)
        elif first == 0 and size <= 512:  # no STUN request of ours is longer
            self._control(bytes(data), source)
        else:
            self._counters["drop_not_relay"] += 1

    def _control(self, data: bytes, source: AddressLike) -> None:
        try:
            message = stun.parse_message(data)
        except stun.StunError:
            message = None
        if message is None or message.kind != stun.BINDING_REQUEST:
            self._counters["drop_not_relay"] += 1
            return
        assert self._loop is not None
        now = self._loop.time()
        if not self._sources.allow(source_key(source), now):
            self._counters["control_limited"] += 1
            return
        association = wire.parse_association(message)
        if association is None:
            self._answer_stun(message.transaction_id, source)
            return
        self._associate(association, source, now)

    def _answer_stun(self, transaction_id: bytes, source: AddressLike) -> None:
        """A plain Binding request's answer; from an associated address it names the node
        it is associated as (docs/relay.md, "Plain STUN"): a node checks its association so."""
        held = self._by_source.get(source)
        mapped = normalize_endpoint(source)
        if held is None:
            answer = stun.binding_success(transaction_id, mapped)
        else:
            answer = wire.association_answer(transaction_id, mapped, held.member.node_id)
        if self.send(answer, source):
            self._counters["stun_answered"] += 1

    def _associate(self, request: wire.Association, source: AddressLike, now: float) -> None:
        member = self._membership.by_key(request.node_key)
        now_ms = self._clock_ms()
        floor = max(self._last_ms.get(request.node_key, -1), self._start_ms - 1)
        if (
            member is None
            or abs(request.time_ms - now_ms) > auth.MAX_SKEW_MS
            or request.time_ms <= floor
        ):
            self._counters["associations_refused"] += 1
            return
        if not self._signatures.take(now):
            self._counters["associations_limited"] += 1
            return
        if not request.verify(self._relay_key, member.control_key):
            self._counters["associations_refused"] += 1
            return
        self._last_ms[request.node_key] = request.time_ms
        self._take(member, source, now)
        answer = wire.association_answer(
            request.transaction_id, normalize_endpoint(source), member.node_id
        )
        self.send(answer, source)

    # -- the tables --------------------------------------------------------------------------

    def _take(self, member: Member, source: AddressLike, now: float) -> None:
        """`member` is at `source` from now on (a refresh, a new address, a new node there)."""
        self._counters["associations_accepted"] += 1
        expires = now + self._limits.association_ttl
        current = self._by_node.get(member.node_id)
        if current is not None and current.source == source and current.member == member:
            current.expires = expires
            return
        other = self._by_source.get(source)  # another node behind this address and port before
        if other is not None and other is not current:
            self.end(other)
        if current is not None and self._by_source.get(current.source) is current:
            del self._by_source[current.source]  # it roamed; the router replaces it below
        association = Association(member, encode_id(member.node_id), source, expires, self)
        self._by_source[source] = association
        self._by_node[member.node_id] = association
        self._router.attach(association, Via.UDP)
        log.debug("relay: node %d associated over UDP", member.node_id)

    def end(self, association: Association) -> None:
        """Forget an association (expired, replaced, evicted); idempotent."""
        if self._by_node.get(association.member.node_id) is association:
            del self._by_node[association.member.node_id]
        if self._by_source.get(association.source) is association:
            del self._by_source[association.source]
        self._router.detach(association, Via.UDP)

    def sweep(self, now: float) -> None:
        """Expire associations; forget association times too old to be replayed anyway."""
        for association in [a for a in self._by_node.values() if a.expires <= now]:
            self._counters["associations_expired"] += 1
            self.end(association)
        oldest = self._clock_ms() - auth.MAX_SKEW_MS
        for key in [k for k, t in self._last_ms.items() if t < oldest]:
            del self._last_ms[key]


def bind_udp(host: str, port: int) -> socket.socket:
    """The relay's UDP socket on `host` (an IP literal; "::" takes IPv4 too) and `port`."""
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setblocking(False)
        set_buffers(sock)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock
