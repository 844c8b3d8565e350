"""Python side of the native data plane (``plane.c``): handles, threads, mirroring.

`NativePlane` owns the C plane and its two loop threads. The asyncio shell
(`pywg.asyncio.Tunnel`) calls `sync(device)` after anything Python did, which
mirrors the core's peers, endpoints, sessions and allowed IPs into C (and
links each new `Session` to its C twin), `drain()` when the event fd is
readable to get what the loops handed up, and `traffic()` on a tick to feed
the core's timers (`Device.record_traffic`).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from pywg import _fast
from pywg.allowedips import PrefixList
from pywg.constants import PLANE_ITEM_DATAGRAM, UNDER_LOAD_THRESHOLD
from pywg.cookie import cookie_key, mac1_key
from pywg.device import Device
from pywg.endpoint import IN6_PKTINFO_SIZE, Endpoint, SourceMessage
from pywg.keys import PublicKey
from pywg.peer import Peer
from pywg.session import Session

from .filter import NativeFilter
from .lpm import UNMAPPED, NativeLpm
from .routes import NativeAllowedIPs

_BUF: Final = 65536
SourceLookup = Callable[[Endpoint], SourceMessage | None]
_UINT32_MAX: Final = (1 << 32) - 1


def sockaddr(endpoint: Endpoint, family: int) -> bytes:
    """The struct sockaddr for an endpoint on a socket of `family` (v4 maps into v6)."""
    host, port = endpoint
    ip = ipaddress.ip_address(host)
    if family == socket.AF_INET6:
        packed = ip.packed if ip.version == 6 else b"\0" * 10 + b"\xff\xff" + ip.packed
        return struct.pack("=H", socket.AF_INET6) + struct.pack(">HI", port, 0) + packed + b"\0" * 4
    if ip.version != 4:
        return b""  # an IPv6 endpoint cannot be reached from an IPv4-only socket
    return struct.pack("=H", socket.AF_INET) + struct.pack(">H", port) + ip.packed + b"\0" * 8


def endpoint_of(raw: bytes) -> Endpoint | None:
    """The (host, port) of a struct sockaddr_in / sockaddr_in6 (v4-mapped becomes v4)."""
    if len(raw) < 8:
        return None
    (family,) = struct.unpack_from("=H", raw)
    (port,) = struct.unpack_from(">H", raw, 2)
    if family == socket.AF_INET and len(raw) >= 8:
        return str(ipaddress.IPv4Address(raw[4:8])), port
    if family == socket.AF_INET6 and len(raw) >= 24:
        ip = ipaddress.IPv6Address(raw[8:24])
        mapped = ip.ipv4_mapped
        return (str(mapped) if mapped is not None else str(ip)), port
    return None


class NativeSession:
    """The C twin of a `Session`: its send counter and replay window, and Python's AEAD path."""

    __slots__ = ("_buf", "_lib", "_plane", "handle", "rx_native")

    def __init__(self, plane: NativePlane, handle: Any) -> None:
        self._plane = plane
        self._lib = plane.lib
        self.handle = handle
        self.rx_native: bool | None = None
        self._buf = plane.ffi.new("uint8_t[]", _BUF + 64)

    @property
    def send_counter(self) -> int:
        if self.handle is None:
            return 0
        return int(self._lib.pywg_kp_send_counter(self.handle))

    def seal(self, padded: bytes) -> bytes | None:
        if self.handle is None or len(padded) > _BUF:
            return None
        n = self._lib.pywg_kp_seal(self.handle, padded, len(padded), self._buf)
        return None if n < 0 else bytes(self._plane.ffi.buffer(self._buf, n))

    def open(self, counter: int, ciphertext: bytes) -> bytes | None:
        if self.handle is None or len(ciphertext) > _BUF or not 0 <= counter < 1 << 64:
            return None
        n = self._lib.pywg_kp_open(self.handle, counter, ciphertext, len(ciphertext), self._buf)
        return None if n < 0 else bytes(self._plane.ffi.buffer(self._buf, n))

    def free(self) -> None:
        if self.handle is not None:
            self._plane.forget_session(self)
            self._lib.pywg_kp_free(self._plane.handle, self.handle)
            self.handle = None

    def __repr__(self) -> str:
        return f"<NativeSession {'live' if self.handle is not None else 'freed'}>"


@dataclass
class _PeerMirror:
    id: int
    handle: Any
    endpoint: Endpoint | None = None
    source: SourceMessage | None = None
    current: NativeSession | None = None
    rx_bytes: int = 0
    tx_bytes: int = 0
    last_sent: float = 0.0
    last_received: float = 0.0
    last_data_received: float = 0.0
    endpoint_version: int = 0


class NativePlane:
    """The C data plane on a TUN fd and a UDP socket. Call `start()`, then `stop()`."""

    def __init__(
        self,
        tun_fd: int,
        udp: socket.socket,
        mtu: int,
        on_exit: Callable[[str], None],
        *,
        vnet_hdr: bool = False,
        udp_offload: bool = True,
    ) -> None:
        """`vnet_hdr`: the TUN fd was opened with IFF_VNET_HDR (and TSO) offloads;
        `udp_offload`: use UDP GSO/GRO where the kernel offers them."""
        self.ffi, self.lib = _fast.require()
        flags = (self.lib.PYWG_PLANE_VNET_HDR if vnet_hdr else 0) | (
            self.lib.PYWG_PLANE_UDP_OFFLOAD if udp_offload else 0
        )
        self.handle: Any = self.lib.pywg_plane_new(tun_fd, udp.fileno(), mtu, flags)
        if self.handle == self.ffi.NULL:
            raise MemoryError("cannot create the native plane")
        self.family = udp.family
        self._on_exit = on_exit
        self._peers: dict[Peer, _PeerMirror] = {}
        self._sessions: dict[int, NativeSession] = {}  # id(Session) -> twin
        self._free_ids: list[int] = []
        self._next_id = 0
        self._routing_version = -1
        self._identity: PublicKey | None = None  # the public key whose mac1/cookie keys C holds
        self._retired: PublicKey | None = None  # the rotated-away key whose mac1 key C holds
        self._secret: bytes | None = None  # the cookie secret C holds
        self._load_threshold = UNDER_LOAD_THRESHOLD  # C's, as pywg_plane_new sets it
        self._threads: list[threading.Thread] = []
        self._filters: list[NativeFilter] = []  # alive while the loops may use them
        self._stopping = False
        self._buf = self.ffi.new("uint8_t[]", _BUF)
        self._addr = self.ffi.new("uint8_t[]", 128)
        self._kind = self.ffi.new("int *")
        self._addrlen = self.ffi.new("uint32_t *")
        self._local = self.ffi.new("uint8_t[]", IN6_PKTINFO_SIZE)
        self._local_len = self.ffi.new("uint32_t *")
        self._sources: SourceLookup = lambda endpoint: None
        self._stats = self.ffi.new("struct pywg_peer_stats *")

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        for name, loop in (("tx", self.lib.pywg_plane_run_tx), ("rx", self.lib.pywg_plane_run_rx)):
            thread = threading.Thread(
                target=self._run, args=(name, loop), name=f"pywg-plane-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _run(self, name: str, loop: Any) -> None:
        status = loop(self.handle)  # cffi releases the GIL for the whole loop
        if not self._stopping:
            self._on_exit(f"native {name} loop ended (status {status})")

    def stop(self) -> None:
        """Stop the loops, wait for them, free every C object. Idempotent."""
        if self.handle is None:
            return
        self._stopping = True
        self.lib.pywg_plane_stop(self.handle)
        for thread in self._threads:
            thread.join(timeout=5)
        for twin in list(self._sessions.values()):
            twin.free()
        for mirror in self._peers.values():
            self.lib.pywg_peer_free(self.handle, mirror.handle)
        self._peers.clear()
        self.lib.pywg_plane_free(self.handle)
        self.handle = None
        self._filters.clear()

    @property
    def event_fd(self) -> int:
        return int(self.lib.pywg_plane_event_fd(self.handle))

    def set_udp(self, udp: socket.socket) -> None:
        self.family = udp.family
        self.lib.pywg_plane_set_udp(self.handle, udp.fileno())
        for peer, mirror in self._peers.items():  # re-encode endpoints for the new family
            mirror.endpoint = None
            self._sync_endpoint(peer, mirror)

    def set_mtu(self, mtu: int) -> None:
        self.lib.pywg_plane_set_mtu(self.handle, mtu)

    def set_filter(self, packet_filter: NativeFilter) -> None:
        """Check decrypted packets with `packet_filter` and track what the TUN sends
        (filter.h). Kept until `stop`: the loops may be using it until they end."""
        self._filters.append(packet_filter)
        self.lib.pywg_plane_set_filter(self.handle, packet_filter.handle)

    def stats(self) -> dict[str, int]:
        out = self.ffi.new("struct pywg_plane_stats *")
        self.lib.pywg_plane_stats(self.handle, out)
        names = (
            "tx_packets rx_packets up_datagrams up_packets queue_drops "
            "rx_rejected rx_bad_source tx_no_route send_retries tx_malformed "
            "rx_junk rx_bad_mac1 rx_unknown_index rx_cookie_replies rx_cookie_limited "
            "tx_no_relay rx_filtered"
        )
        return {name: int(getattr(out, name)) for name in names.split()}

    # ------------------------------------------------------------------ handed up
    def drain(self, limit: int = 256) -> Iterator[tuple[int, bytes, Endpoint | None, bytes]]:
        """What the loops handed up: (PLANE_ITEM_*, data, source endpoint for datagrams,
        the PKTINFO data that sends from the address a datagram came to, or b"")."""
        for _ in range(limit):
            n = self.lib.pywg_plane_pop(
                self.handle,
                self._buf,
                _BUF,
                self._kind,
                self._addr,
                self._addrlen,
                self._local,
                self._local_len,
            )
            if n <= 0:
                return
            data = bytes(self.ffi.buffer(self._buf, n))
            source, local = None, b""
            if self._kind[0] == PLANE_ITEM_DATAGRAM:
                source = endpoint_of(bytes(self.ffi.buffer(self._addr, self._addrlen[0])))
                local = bytes(self.ffi.buffer(self._local, self._local_len[0]))
            yield self._kind[0], data, source, local

    def set_relay(self, number: int, where: Endpoint | None) -> None:
        """Mesh relay `number` is at `where` (None: no longer); see `pywg.relayed`."""
        raw = sockaddr(where, self.family) if where is not None else b""
        self.lib.pywg_plane_set_relay(self.handle, number, raw, len(raw))

    def set_source_lookup(self, lookup: SourceLookup) -> None:
        """Where `sync` finds the source a peer's endpoint is answered from (the socket's
        PKTINFO table), mirrored into C with each endpoint."""
        self._sources = lookup

    def set_cookie_secret(self, secret: bytes | None) -> None:
        """The core's Rm for C's cookie replies under load (None: none, e.g. no key)."""
        if secret != self._secret:
            self.lib.pywg_plane_set_cookie_secret(
                self.handle, self.ffi.NULL if secret is None else secret
            )
            self._secret = secret

    # ------------------------------------------------------------------ mirroring
    def sync(self, device: Device) -> None:
        """Mirror identity, load threshold, peers, endpoints, sessions and allowed IPs of
        `device` into C."""
        self._sync_identity(device)
        if device.under_load_threshold != self._load_threshold:
            # C counts in a uint32; below 0 or above it, the verdicts are the same
            threshold = min(max(device.under_load_threshold, 0), _UINT32_MAX)
            self.lib.pywg_plane_set_load_threshold(self.handle, threshold)
            self._load_threshold = device.under_load_threshold
        peers = device.peers
        live = set(peers.values())
        for peer in [p for p in self._peers if p not in live]:
            self._drop_peer(peer)
        for peer in peers.values():
            mirror = self._peers.get(peer)
            if mirror is None:
                mirror = self._add_peer(peer)
            self._sync_endpoint(peer, mirror)
            self._sync_sessions(peer, mirror)
        if device.routing_version != self._routing_version:
            self._sync_routes(device)

    def _sync_identity(self, device: Device) -> None:
        """Our mac1 and cookie keys (whitepaper §5.4.4, §5.4.7), for C's checks and replies."""
        retired = device.retired_public_key
        if retired != self._retired:
            raw_key = mac1_key(bytes(retired)) if retired is not None else self.ffi.NULL
            self.lib.pywg_plane_set_retired_identity(self.handle, raw_key)
            self._retired = retired
        public_key = device.public_key
        if public_key == self._identity:
            return
        null = self.ffi.NULL
        if public_key is None:
            self.lib.pywg_plane_set_identity(self.handle, null, null)
        else:
            raw = bytes(public_key)
            self.lib.pywg_plane_set_identity(self.handle, mac1_key(raw), cookie_key(raw))
        self._identity = public_key

    def _add_peer(self, peer: Peer) -> _PeerMirror:
        ident = self._free_ids.pop() if self._free_ids else self._next_id
        if ident == self._next_id:
            self._next_id += 1
        handle = self.lib.pywg_peer_new(self.handle, ident)
        if handle == self.ffi.NULL:
            raise MemoryError("cannot add a peer to the native plane")
        mirror = _PeerMirror(ident, handle)
        self._peers[peer] = mirror
        self._routing_version = -1
        return mirror

    def _drop_peer(self, peer: Peer) -> None:
        mirror = self._peers.pop(peer)
        for kp in peer.sessions():  # normally zeroed (and so freed) by the core already
            twin = kp.native
            if isinstance(twin, NativeSession):
                twin.free()
        self.lib.pywg_peer_free(self.handle, mirror.handle)
        self._free_ids.append(mirror.id)

    def _sync_endpoint(self, peer: Peer, mirror: _PeerMirror) -> None:
        endpoint = peer.endpoint
        if endpoint != mirror.endpoint:
            raw = sockaddr(endpoint, self.family) if endpoint is not None else b""
            self.lib.pywg_peer_set_endpoint(self.handle, mirror.handle, raw, len(raw))
            mirror.endpoint = endpoint
        source = self._sources(endpoint) if endpoint is not None else None
        if source != mirror.source:
            level, kind, data = source if source is not None else (0, 0, b"")
            self.lib.pywg_peer_set_source(self.handle, mirror.handle, level, kind, data, len(data))
            mirror.source = source

    def _sync_sessions(self, peer: Peer, mirror: _PeerMirror) -> None:
        for kp in (peer.previous, peer.current, peer.next):
            if kp is None or kp.send_key is None:
                continue
            twin = kp.native
            if twin is None:
                twin = self._link(peer, mirror, kp)
            assert isinstance(twin, NativeSession)
            rx_native = kp is not peer.next  # an unconfirmed session: Python rotates it
            if twin.rx_native != rx_native:
                self.lib.pywg_kp_set_rx_native(self.handle, twin.handle, int(rx_native))
                twin.rx_native = rx_native
        current = peer.current.native if peer.current is not None else None
        if not isinstance(current, NativeSession):
            current = None
        if current is not mirror.current:
            self.lib.pywg_peer_set_current(
                self.handle, mirror.handle, current.handle if current else self.ffi.NULL
            )
            mirror.current = current

    def _link(self, peer: Peer, mirror: _PeerMirror, session: Session) -> NativeSession:
        assert session.send_key is not None and session.receive_key is not None
        state = getattr(session.replay, "_state", None)  # a NativeReplayWindow's C struct
        replay = self.ffi.buffer(state)[:] if state is not None else self.ffi.NULL
        size = len(replay) if state is not None else 0
        handle = self.lib.pywg_kp_new(
            self.handle,
            mirror.handle,
            session.send_key,
            session.receive_key,
            session.local_index,
            session.remote_index,
            session.created,
            session.send_counter,
            replay,
            size,
        )
        if handle == self.ffi.NULL:
            raise MemoryError("cannot install a session in the native plane")
        twin = NativeSession(self, handle)
        self._sessions[id(twin)] = twin
        session.link(twin)
        return twin

    def forget_session(self, twin: NativeSession) -> None:
        self._sessions.pop(id(twin), None)
        for mirror in self._peers.values():
            if mirror.current is twin:
                mirror.current = None

    def _sync_routes(self, device: Device) -> None:
        """The plane's table becomes a copy of the device's, each peer as its C twin's id:
        one C call that copies the table outside the routes lock and swaps it in."""
        table = device.routing_table
        if isinstance(table, NativeAllowedIPs):
            source = table.native
            mapping = [
                mirror.id if (mirror := self._peers.get(peer)) is not None else UNMAPPED
                for peer in table.values_by_id()
            ]
        else:  # a pure-Python table (PYWG_BACKEND=pure with the plane): packed per peer
            source = NativeLpm()
            mapping = None
            for peer, mirror in self._peers.items():
                source.insert_records(PrefixList(table.prefixes_of(peer)).records, mirror.id)
        ids = self.ffi.new("uint32_t[]", mapping) if mapping else self.ffi.NULL
        if self.lib.pywg_plane_routes_load(self.handle, source.handle, ids, len(mapping or ())):
            raise MemoryError("cannot mirror the allowed IPs into the native plane")
        self._routing_version = device.routing_version

    def route(self, address: bytes) -> Peer | None:
        """The peer the loops send a packet for ``address`` (4 or 16 bytes) to, from the
        plane's own copy of the allowed IPs (to check the mirror)."""
        found = self.lib.pywg_plane_route_lookup(
            self.handle, 4 if len(address) == 4 else 6, address
        )
        by_id = {mirror.id: peer for peer, mirror in self._peers.items()}
        return by_id.get(found) if found >= 0 else None

    # ------------------------------------------------------------------ timers
    def traffic(self, device: Device, now: float) -> None:
        """Tell the core what the loops did per peer since the last call, and hand C
        the core's cookie secret (rotated every 120 s) for its cookie replies."""
        self.set_cookie_secret(device.cookie_secret(now))
        stats = self._stats
        for peer, m in self._peers.items():
            self.lib.pywg_peer_stats(self.handle, m.handle, stats)
            rx, tx = int(stats.rx_bytes), int(stats.tx_bytes)
            sent, received = float(stats.last_sent), float(stats.last_received)
            data_received = float(stats.last_data_received)
            version = int(stats.endpoint_version)
            if (rx, tx, sent, received, version) == (
                m.rx_bytes,
                m.tx_bytes,
                m.last_sent,
                m.last_received,
                m.endpoint_version,
            ):
                continue
            endpoint = None
            if version != m.endpoint_version:
                n = self.lib.pywg_peer_endpoint(self.handle, m.handle, self._addr)
                endpoint = endpoint_of(bytes(self.ffi.buffer(self._addr, n)))
                m.endpoint = endpoint
            device.record_traffic(
                peer.public_key,
                now,
                sent_at=sent if sent != m.last_sent else None,
                received_at=received if received != m.last_received else None,
                data_received_at=data_received if data_received != m.last_data_received else None,
                rx_bytes=rx - m.rx_bytes,
                tx_bytes=tx - m.tx_bytes,
                endpoint=endpoint,
            )
            m.rx_bytes, m.tx_bytes, m.last_sent, m.last_received = rx, tx, sent, received
            m.last_data_received, m.endpoint_version = data_received, version
