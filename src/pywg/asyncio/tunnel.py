"""`Tunnel`: the sans-IO `Device` on a real TUN device and UDP socket.

Theory of operation
-------------------
Everything runs on one asyncio event loop (uvloop when installed); the loop's
monotonic clock is the only clock the core sees. Two readers drain the TUN fd
and the UDP socket in batches (up to BATCH packets per wake-up), feed the core,
then flush what it produced: datagrams to the socket, packets to the TUN,
events to the event queue and the log. After every batch the single timer
handle is moved to `Device.get_timer()`. A housekeeping tick (every
TICK seconds) follows MTU changes made with `ip link` (padding uses the MTU)
and notices when the TUN interface was deleted, which ends the tunnel as it
does for wireguard-go (`wg-quick down` deletes the link). Both ask the TUN
fd, not the name: the interface may be moved to another network namespace
(wireguard.com/netns) while the tunnel and its UDP socket stay in this one,
and it goes on forwarding there until it is deleted.

With the native backend (`pywg.backend`, the default when the C extension is
built) the per-packet work moves to `pywg._fast.plane`: two C threads own
the TUN and UDP fds and handle established sessions in batches; the loop
only sees what they hand up (handshakes, packets waiting for a session),
mirrors the core's state into C after every change, and feeds the core's
timers from the plane's per-peer counters every TRAFFIC_TICK seconds.

Configuration changes go through the Device API (`add_peer`, ...) or through
the UAPI (`uapi_session()`, `configure()`), both followed by a flush, so a new
endpoint handshakes at once. A new listen port or fwmark is bound before the
change is applied; if binding fails the whole change is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Final

from .. import backend, stun
from ..constants import DEFAULT_MTU, PLANE_ITEM_DATAGRAM
from ..device import Device
from ..endpoint import AddressLike, Endpoint, SourceMessage, normalize_endpoint
from ..events import EndpointChanged, Event, HandshakeCompleted, HandshakeTimedOut
from ..keys import PresharedKey, PrivateKey, PublicKey
from ..peer import Peer
from ..policy.rules import InboundRule
from ..relayed import Relays
from ..uapi import EIO, SetPlan, UapiError, UapiSession, parse_set
from .packetfilter import TunnelFilter
from .tun import Tun, TunError
from .udp import UdpSocket

if TYPE_CHECKING:
    from .._fast.plane import NativePlane


BATCH: Final = 64
TICK: Final = 0.5
TRAFFIC_TICK: Final = 0.1
EVENT_QUEUE: Final = 1024

log = logging.getLogger("pywg.tunnel")


@dataclass(frozen=True, slots=True)
class PeerStats:
    """A snapshot of one peer, as `wg show` reports it."""

    public_key: PublicKey
    endpoint: Endpoint | None
    allowed_ips: tuple[str, ...]
    last_handshake_time: float | None  # wall clock (Unix time), None before the first
    rx_bytes: int
    tx_bytes: int
    persistent_keepalive: int


class Tunnel:
    """A running WireGuard interface. Use as `async with Tunnel("wg0", ...) as t:`.

    The interface is created on entry (root or CAP_NET_ADMIN is needed) and
    removed on exit. Addresses and routes are not this class's business: see
    `pywg.system.netconf` (or let wg-quick do it when running as `pywgd`).
    """

    _filter: TunnelFilter | None = None  # the access policy's rules (set_inbound_rules)

    def __init__(
        self,
        name: str,
        *,
        private_key: PrivateKey | str | bytes | None = None,
        listen_port: int = 0,
        fwmark: int = 0,
        mtu: int = DEFAULT_MTU,
        device: Device | None = None,
        native: bool | None = None,
        offload: bool | None = None,
        time_scale: float | None = None,
        tun_fd: int | None = None,
    ) -> None:
        """`native`: use the C data plane (default: when `pywg.backend` selects native).
        `offload`: let it use TUN TSO/GRO and UDP GSO/GRO (default: yes, unless the
        environment says PYWG_OFFLOAD=0); each falls back by itself where the
        kernel lacks it. `time_scale` (default: PYWG_TIME_SCALE, else 1): protocol
        time runs this many times faster than real time, so that a test can see a
        120 s rekey in 12 s (both peers must agree; for tests only, never for a
        real tunnel). A scaled tunnel runs on the pure-Python plane, whose
        clock is the only one. `tun_fd`: an open TUN fd to adopt (wireguard-go's
        WG_TUN_FD) instead of creating interface `name`; the tunnel owns it."""
        self.name = name
        if time_scale is None:
            time_scale = float(os.environ.get("PYWG_TIME_SCALE", "1") or 1)
        if not 0 < time_scale <= 1000:
            raise ValueError(f"time_scale must be in (0, 1000], not {time_scale}")
        self.time_scale = time_scale
        # The C plane takes over keypairs' replay windows as C structs, which the
        # pure backend's windows are not: with PYWG_BACKEND=pure it stays off. It
        # keeps its own (real-time) clock, so a scaled tunnel does without it.
        self.native = backend.BACKEND == "native" and native is not False and time_scale == 1
        if offload is None:
            offload = os.environ.get("PYWG_OFFLOAD", "1").strip() != "0"
        self.offload = offload
        self._plane: NativePlane | None = None
        self.device = device if device is not None else Device(private_key, listen_port, mtu=mtu)
        self._listen_port = listen_port if device is None else device.listen_port
        self._fwmark = fwmark
        self._mtu = mtu
        self._tun: Tun | None = None
        self._tun_fd = tun_fd
        self._udp: UdpSocket | None = None
        self._relays = Relays()  # mesh relays for relayed endpoints (`set_relay`)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self._epoch = 0.0  # loop time when started: protocol time is scaled from here
        self._tick_task: asyncio.Task[None] | None = None
        self._events: asyncio.Queue[Event] = asyncio.Queue(EVENT_QUEUE)
        self._closed = asyncio.Event()
        self.close_reason: str | None = None
        self.tun_write_drops = 0
        self.udp_send_drops = 0
        self.tick_hooks: list[Callable[[], None]] = []
        # STUN transactions in flight: transaction ID -> (server, its answer)
        self._stun_waiters: dict[bytes, tuple[Endpoint, asyncio.Future[stun.BindingResponse]]] = {}
        # answers STUN Binding requests that reach the tunnel's socket (None: ignore them)
        self.stun_handler: Callable[[stun.StunMessage, Endpoint], bytes | None] | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Create the TUN and bind the socket; raises TunError / OSError with a clear message."""
        self._loop = asyncio.get_running_loop()
        self._epoch = self._loop.time()
        if self.time_scale != 1:
            log.warning("%s: protocol time runs %g times fast (for tests only)", self.name,
                        self.time_scale)  # fmt: skip
        self._tun = self._open_tun()
        try:
            self._udp = UdpSocket(self._listen_port, fwmark=self._fwmark)
        except OSError as exc:
            self._tun.close()
            self._tun = None
            raise OSError(
                exc.errno, f"cannot bind UDP port {self._listen_port}: {exc.strerror}"
            ) from None
        self._udp.relays = self._relays
        self.device.listen_port = self._udp.port
        self.device.fwmark = self._fwmark
        self.device.mtu = self._tun.mtu
        if self.native:
            from .._fast.plane import NativePlane

            loop = self._loop

            def plane_ended(reason: str) -> None:  # from a plane thread
                loop.call_soon_threadsafe(self.close, reason)

            self._plane = NativePlane(
                self._tun.fd,
                self._udp.sock,
                self._tun.mtu,
                plane_ended,
                vnet_hdr=self._tun.vnet_hdr,
                udp_offload=self.offload,
            )
            self._plane.set_source_lookup(self._udp.source_for)
            if self._filter is not None:
                self._filter.attach(self._plane)
            for number, where in self._relays.items():
                self._plane.set_relay(number, where)
            self._plane.sync(self.device)
            self._plane.start()
            self._loop.add_reader(self._plane.event_fd, self._on_plane_event)
            self._loop.call_later(TRAFFIC_TICK, self._traffic_tick)
        else:
            self._loop.add_reader(self._tun.fd, self._on_tun_readable)
            self._loop.add_reader(self._udp.fileno(), self._on_udp_readable)
        self._tick_task = self._loop.create_task(self._housekeeping())
        log.info("interface %s up, listening on UDP port %d", self.name, self._udp.port)
        self._after_change()

    def set_relay(self, number: int, where: AddressLike | None) -> None:
        """Mesh relay `number` (1..15) is at `where` (None: no longer): peers at relayed
        endpoints ``[100::ID]:number`` (`pywg.relayed`) are reached through it, and what
        it delivers tagged comes from those endpoints. Both data planes."""
        endpoint = normalize_endpoint(where) if where is not None else None
        self._relays.set(number, endpoint)
        if self._plane is not None:
            self._plane.set_relay(number, endpoint)

    def set_inbound_rules(self, rules: Iterable[InboundRule] | None) -> None:
        """Enforce an access policy on what arrives through the tunnel (docs/policy.md).

        `rules` (`pywg.policy.compile_inbound`, or `pywg.policy.decode` of a roster's
        copy) say what may enter; the rest is dropped before the TUN write, except
        replies to flows this side opened. ``[]``: nothing may enter but replies.
        ``None`` (the default): no policy, everything passes. The new rules replace
        the old at once; tracked flows stay, and one a rule let in ends at its next
        packet if no rule allows it any more. Callable before or after `start`."""
        if self._filter is None:
            if rules is None:
                return
            self._filter = TunnelFilter(self.native)
            if self._plane is not None:
                self._filter.attach(self._plane)
        self._filter.set_rules(rules)

    def filter_drops(self) -> dict[str, int]:
        """Packets the access policy dropped, by reason (empty without a policy ever set)."""
        return self._filter.drops() if self._filter is not None else {}

    def _open_tun(self) -> Tun:
        if self._tun_fd is None:
            tun = Tun(self.name, mtu=self._mtu, offload=self.native and self.offload)
        else:
            tun = Tun.from_fd(
                self._tun_fd, mtu=self._mtu, vnet_reader=self.native, offload=self.offload
            )
        # the kernel's name: a template such as "wg%d" becomes "wg0" (netdevice(7))
        self.name = tun.name
        if tun.pi and self.native:
            log.info("%s: TUN without IFF_NO_PI: served by the pure-Python plane", self.name)
            self.native = False  # the C plane reads bare packets (or virtio headers) only
        return tun

    async def __aenter__(self) -> Tunnel:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self, reason: str = "closed") -> None:
        """Stop: remove the TUN interface and close the socket. Idempotent."""
        if self._closed.is_set():
            return
        self.close_reason = reason
        log.info("interface %s shutting down: %s", self.name, reason)
        if self._timer is not None:
            self._timer.cancel()
        if self._tick_task is not None and self._tick_task is not asyncio.current_task():
            self._tick_task.cancel()
        if self._plane is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._plane.event_fd)
            self._plane.stop()  # joins the C threads before their fds close
            self._plane = None
        elif self._loop is not None:
            if self._tun is not None and self._tun.fd >= 0:
                self._loop.remove_reader(self._tun.fd)
            if self._udp is not None:
                self._loop.remove_reader(self._udp.fileno())
        if self._tun is not None:
            self._tun.close()
        if self._udp is not None:
            self._udp.close()
        self._closed.set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    @property
    def listen_port(self) -> int:
        return self._udp.port if self._udp is not None else self._listen_port

    # ------------------------------------------------------------------ configuration
    def add_peer(
        self,
        public_key: PublicKey | str | bytes,
        allowed_ips: Iterable[str] = (),
        endpoint: AddressLike | None = None,
        preshared_key: PresharedKey | str | bytes | None = None,
        persistent_keepalive: int | None = None,
    ) -> Peer:
        peer = self.device.add_peer(public_key, allowed_ips, endpoint, preshared_key)
        if persistent_keepalive:  # 0 -> n sends a keepalive at once, as over the UAPI
            self.device.update_peer(
                peer.public_key, persistent_keepalive=persistent_keepalive, now=self._now()
            )
        self._after_change()
        return peer

    def update_peer(self, public_key: PublicKey | str | bytes, **changes: object) -> Peer:
        """Change a peer at run time; keyword arguments as `Device.update_peer`."""
        peer = self.device.update_peer(public_key, now=self._now(), **changes)  # type: ignore[arg-type]
        self._after_change()
        return peer

    def remove_peer(self, public_key: PublicKey | str | bytes) -> None:
        self.device.remove_peer(public_key)
        self._after_change()

    def set_private_key(self, private_key: PrivateKey | str | bytes | None) -> None:
        self.device.set_private_key(private_key)
        self._after_change()

    def rotate_private_key(self, private_key: PrivateKey | str | bytes, grace: float) -> None:
        """A new identity with every session kept; handshakes addressed to the old one are
        still answered for `grace` seconds (`Device.rotate_private_key`)."""
        self.device.rotate_private_key(private_key, self._now() + grace)
        self._after_change()

    def change_peer_key(
        self, public_key: PublicKey | str | bytes, new_key: PublicKey | str | bytes
    ) -> Peer:
        """A peer's new public key, its sessions and settings kept (`Device.change_peer_key`)."""
        peer = self.device.change_peer_key(public_key, new_key)
        self._after_change()
        return peer

    def configure(self, request: str) -> None:
        """Apply a UAPI set request (text starting `set=1`) atomically; raises UapiError."""
        lines = [line for line in request.splitlines() if line]
        if not lines or lines[0] != "set=1":
            raise UapiError(-errno.EINVAL, "not a set request")
        plan = parse_set(self.device, lines[1:])
        self._before_apply(plan)
        plan.apply(self.device, self._now())
        self._after_change()

    def uapi_session(self) -> UapiSession:
        """A UAPI session on this tunnel; call `changed()` after feeding it."""
        return UapiSession(self.device, clock=self._now, before_apply=self._before_apply)

    def changed(self) -> None:
        """Tell the tunnel its Device was changed directly: send what is due, re-arm timers."""
        self._after_change()

    def _before_apply(self, plan: SetPlan) -> None:
        """Bind a new port or set a new fwmark first; the refusal carries the kernel's
        errno (`wg` prints it: EADDRINUSE, EACCES for a low port, EPERM for a mark
        without CAP_NET_ADMIN), where wireguard-go answers EADDRINUSE for any of them."""
        if self._udp is None:
            return
        if plan.listen_port is not None and plan.listen_port != self._udp.port:
            fwmark = plan.fwmark if plan.fwmark is not None else self._udp.fwmark
            try:
                new = UdpSocket(plan.listen_port, fwmark=fwmark)
            except OSError as exc:
                raise UapiError(
                    _errno_of(exc), f"cannot bind UDP port {plan.listen_port}"
                ) from None
            self._swap_socket(new)
            plan.listen_port = new.port  # port 0 bound a random port: report that one
        elif plan.fwmark is not None and plan.fwmark != self._udp.fwmark:
            try:
                self._udp.set_fwmark(plan.fwmark)
            except OSError as exc:
                raise UapiError(_errno_of(exc), "cannot set fwmark") from None

    def _swap_socket(self, new: UdpSocket) -> None:
        assert self._loop is not None and self._udp is not None
        new.relays = self._relays
        if self._plane is not None:
            self._plane.set_udp(new.sock)  # before the old one closes
            self._plane.set_source_lookup(new.source_for)
        else:
            self._loop.remove_reader(self._udp.fileno())
            self._loop.add_reader(new.fileno(), self._on_udp_readable)
        self._udp.close()
        self._udp = new
        self._listen_port = new.port

    # ------------------------------------------------------------------ observation
    def refresh(self) -> None:
        """Bring the core's counters up to this moment (the native plane reports every 0.1 s)."""
        if self._plane is not None and not self.closed:
            self._plane.traffic(self.device, self._now())
            self._after_change()

    def stats(self) -> list[PeerStats]:
        self.refresh()
        out = []
        for public_key, peer in self.device.peers.items():
            out.append(
                PeerStats(
                    public_key,
                    peer.endpoint,
                    tuple(self.device.allowed_ips(public_key)),
                    peer.last_handshake_time,
                    peer.rx_bytes,
                    peer.tx_bytes,
                    peer.persistent_keepalive,
                )
            )
        return out

    async def next_event(self) -> Event:
        return await self._events.get()

    async def events(self) -> AsyncIterator[Event]:
        """Events as they happen, until the tunnel closes."""
        while not self.closed:
            getter = asyncio.ensure_future(self._events.get())
            closer = asyncio.ensure_future(self._closed.wait())
            done, _ = await asyncio.wait({getter, closer}, return_when=asyncio.FIRST_COMPLETED)
            closer.cancel()
            if getter in done:
                yield getter.result()
            else:
                getter.cancel()
                return

    # ------------------------------------------------------------------ the data path
    def _now(self) -> float:
        """Protocol time: the loop's clock, scaled by `time_scale` (1 but in tests)."""
        if self._loop is None:
            return 0.0
        if self.time_scale == 1:
            return self._loop.time()
        return self._epoch + (self._loop.time() - self._epoch) * self.time_scale

    def _loop_time(self, protocol_time: float) -> float:
        """The loop's time at which `_now()` reaches `protocol_time`."""
        if self.time_scale == 1:
            return protocol_time
        return self._epoch + (protocol_time - self._epoch) / self.time_scale

    def _on_tun_readable(self) -> None:
        tun, device = self._tun, self.device
        assert tun is not None
        now = self._now()
        for _ in range(BATCH):
            try:
                packet = tun.read()
            except OSError as exc:  # EBADFD: the interface was deleted under us
                self.close(f"TUN device {self.name} is gone ({exc.strerror})")
                return
            if packet is None:
                break
            if self._filter is not None:
                self._filter.sent(packet)
            device.send_packet(packet, now)
        self._after_change()

    def _on_udp_readable(self) -> None:
        udp = self._udp
        assert udp is not None
        now = self._now()
        for _ in range(BATCH):
            got = udp.recv()
            if got is None:
                break
            self._datagram(*got, now)
        self._after_change()

    def _datagram(
        self, data: bytes, source: Endpoint, local: SourceMessage | None, now: float
    ) -> None:
        """One datagram from the socket: STUN (endpoint discovery) or WireGuard. `local`
        names our address it came to; replies to `source` leave from there once a datagram
        from it authenticates, as the endpoint itself moves only then (whitepaper §2.1)."""
        if stun.is_stun(data):
            self._on_stun(data, source)
        elif self.device.receive_datagram(data, source, now) and local is not None:
            assert self._udp is not None
            self._udp.note_local(source, local)

    def _on_stun(self, data: bytes, source: Endpoint) -> None:
        try:
            message = stun.parse_message(data)
        except stun.StunError as exc:
            log.debug("STUN message from %s dropped: %s", source, exc)
            return
        if message.kind == stun.BINDING_REQUEST:
            answer = self.stun_handler(message, source) if self.stun_handler else None
            if answer is not None and self._udp is not None:
                self._udp.sendto(answer, source)
            return
        waiter = self._stun_waiters.get(message.transaction_id)
        # the waiter holds the server normalized; a dual-stack socket reports it v4-mapped
        if waiter is None or waiter[0] != normalize_endpoint(source) or waiter[1].done():
            log.debug("unexpected STUN message from %s dropped", source)
            return
        try:
            waiter[1].set_result(stun.parse_binding_response(data))
        except stun.StunError as exc:
            log.debug("STUN answer from %s dropped: %s", source, exc)

    async def discover_endpoint(
        self, server: tuple[str, int], *, timeout: float = 5.0
    ) -> tuple[str, int]:
        """This tunnel's public endpoint as `server` (a STUN server) sees it.

        A Binding request goes out of the tunnel's own UDP socket (RFC 8489
        §6), so the answer is the NAT mapping WireGuard traffic uses.
        Retransmitted after 0.5, 1, 2, ... s (§6.2.1) until `timeout`;
        TimeoutError if no answer came, OSError if the server cannot be
        reached at all. The server is an IP literal or a host name.
        """
        if self._loop is None:
            raise RuntimeError("the tunnel is not started")
        infos = await self._loop.getaddrinfo(server[0], server[1], type=socket.SOCK_DGRAM)
        if not infos:
            raise OSError(f"cannot resolve STUN server {server[0]}")
        target = (str(infos[0][4][0]), int(infos[0][4][1]))
        response = await self.stun_request(target, timeout=timeout)
        return response.mapped

    async def stun_request(
        self,
        target: AddressLike,
        attributes: Sequence[tuple[int, bytes]] = (),
        *,
        timeout: float = 5.0,
        rto: float = 0.5,
        make: Callable[[bytes], bytes] | None = None,
    ) -> stun.BindingResponse:
        """Send a Binding request (with `attributes`) from the tunnel's socket to `target`.

        Retransmitted after `rto`, then twice as long each time (RFC 8489
        §6.2.1), until `timeout`; the success response from `target` that
        matches the transaction ID, or TimeoutError. `make(transaction_id)`,
        when given, builds the request itself (for attributes that sign it).
        """
        if self._loop is None or self._udp is None:
            raise RuntimeError("the tunnel is not started")
        loop, udp = self._loop, self._udp
        peer = normalize_endpoint(target)
        transaction_id = stun.new_transaction_id()
        if make is not None:
            request = make(transaction_id)
        else:
            request = stun.binding_request(transaction_id, attributes)
        result: asyncio.Future[stun.BindingResponse] = loop.create_future()
        self._stun_waiters[transaction_id] = (peer, result)
        deadline = loop.time() + timeout
        try:
            while True:
                udp.sendto(request, peer)
                wait = min(rto, deadline - loop.time())
                if wait <= 0:
                    raise TimeoutError(f"no STUN answer from {peer[0]} port {peer[1]}")
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(result), wait)
                rto *= 2
        finally:
            del self._stun_waiters[transaction_id]

    def send_datagram(
        self, data: bytes, target: AddressLike, *, hop_limit: int | None = None
    ) -> bool:
        """Send one datagram from the tunnel's socket (not WireGuard: STUN and the like),
        with `hop_limit` as its TTL if given."""
        if self._udp is None or self.closed:
            return False
        return self._udp.sendto(data, normalize_endpoint(target), hop_limit=hop_limit)

    def _on_plane_event(self) -> None:
        plane, device = self._plane, self.device
        if plane is None:
            return
        now = self._now()
        for kind, data, source, local in plane.drain():
            if kind == PLANE_ITEM_DATAGRAM:
                if source is not None and self._udp is not None:
                    self._datagram(data, source, self._udp.pktinfo_message(local), now)
            else:
                device.send_packet(data, now)
        self._after_change()

    def _traffic_tick(self) -> None:
        if self.closed or self._plane is None or self._loop is None:
            return
        self._plane.traffic(self.device, self._now())
        self._after_change()
        self._loop.call_later(TRAFFIC_TICK, self._traffic_tick)

    def counters(self) -> dict[str, object]:
        """Health counters, no secrets: drops by reason, table sizes, plane and I/O counters."""
        self.refresh()
        device = self.device
        return {
            "peers": len(device.peers),
            "index_table": device.index_table_size,
            "staged": sum(len(p.staged) for p in device.peers.values()),
            "dropped": dict(device.dropped),
            "tun_write_drops": self.tun_write_drops,
            "udp_send_drops": self.udp_send_drops,
            "plane": self.plane_stats,
        }

    @property
    def plane_stats(self) -> dict[str, int]:
        """Counters of the native plane (empty on the pure-Python path)."""
        return self._plane.stats() if self._plane is not None else {}

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_deadline = None
        self.device.handle_timer(self._now())
        self._after_change()

    def _after_change(self) -> None:
        if self.closed or self._loop is None:
            return
        device = self.device
        udp, tun = self._udp, self._tun
        assert udp is not None and tun is not None
        if self._plane is not None:
            self._plane.sync(device)  # new sessions and endpoints reach C before traffic
        for data, endpoint in device.datagrams_to_send():
            if not udp.sendto(data, endpoint):
                self.udp_send_drops += 1
        for packet in device.packets_to_write():
            if self._filter is not None and not self._filter.allows(packet):
                continue  # counted by the filter (filter_drops)
            if not tun.write(packet):
                self.tun_write_drops += 1
        while (event := device.next_event()) is not None:
            self._publish(event)
        deadline = device.get_timer()
        if deadline != self._timer_deadline:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._timer_deadline = deadline
            if deadline is not None:
                self._timer = self._loop.call_at(self._loop_time(deadline), self._on_timer)

    def _publish(self, event: Event) -> None:
        if isinstance(event, HandshakeCompleted):
            role = "initiator" if event.initiator else "responder"
            log.debug("peer %s: handshake completed (%s)", event.public_key, role)
        elif isinstance(event, EndpointChanged):
            host, port = event.endpoint
            log.debug("peer %s: endpoint now %s port %d", event.public_key, host, port)
        elif isinstance(event, HandshakeTimedOut):
            log.info("peer %s: handshake did not complete after 90 s", event.public_key)
        if self._events.full():
            self._events.get_nowait()  # nobody is listening: keep the newest
        self._events.put_nowait(event)

    async def _housekeeping(self) -> None:
        while not self.closed:
            await asyncio.sleep(TICK)
            if self.closed:
                return
            assert self._tun is not None
            if not self._tun.alive():
                self.close(f"interface {self.name} was deleted")
                return
            with contextlib.suppress(OSError):  # not readable from here: keep the last MTU
                self.device.mtu = self._tun.current_mtu()
                if self._plane is not None:
                    self._plane.set_mtu(self.device.mtu)
            for hook in list(self.tick_hooks):
                hook()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "running"
        return f"<Tunnel {self.name} port={self.listen_port} {state}>"


def _errno_of(exc: OSError) -> int:
    """The UAPI errno (negative) for a failed socket call."""
    return -exc.errno if exc.errno else EIO


__all__ = ["PeerStats", "TunError", "Tunnel"]
