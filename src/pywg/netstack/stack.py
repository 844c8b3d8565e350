"""`Stack`: IPv4/IPv6 with TCP, UDP and ICMP echo over a `PacketLink`, for asyncio.

The stack owns the demultiplexing (connections, listeners, UDP ports, pings), the clock
and the timers of its TCP connections, and batching: packets a burst of input or of
writes produces leave in one `link.send` at the end of the loop iteration. Everything that
arrives goes through parsers that refuse malformed input by returning None; an exception
raised by user code while a packet is processed goes to the loop's exception handler, so
nothing raises out of the link's receiver.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Iterable, Sequence
from typing import Any

from pywg.netstack import icmp, ip, tcpwire, udp
from pywg.netstack.datagram import UdpTransport
from pywg.netstack.isn import Sequencer
from pywg.netstack.listener import Listener
from pywg.netstack.resolve import Resolver
from pywg.netstack.tcb import State, TcpConfig, wire
from pywg.netstack.tcp import TcpConnection
from pywg.netstack.tcpwire import ACK, RST, SYN, Segment
from pywg.packetlink import PacketLink

Key = tuple[bytes, int, bytes, int]  # local address, local port, remote address, remote port
EPHEMERAL = range(49152, 65536)  # RFC 6335 §6
_TCP_IP_OVERHEAD = {4: 40, 6: 60}
_TSO_HEADROOM = 100  # an IPv6 header and the largest TCP header, within a super-packet


class StackCore:
    """Packets in, packets out, and the connections' bookkeeping (`Stack` adds the API)."""

    def __init__(
        self,
        link: PacketLink,
        addresses: Iterable[str | ipaddress.IPv4Address | ipaddress.IPv6Address],
        *,
        resolver: Resolver | None = None,
        tcp: TcpConfig | None = None,
        max_connections: int = 65536,
        max_time_wait: int = 4096,
    ) -> None:
        self.link = link
        # bare or with a prefix length ("100.64.0.2/32", as a WireGuard Address= line has it)
        self.addresses = [ipaddress.ip_interface(a).ip for a in addresses]
        self._local = {a.packed for a in self.addresses}
        self.resolver = resolver
        self.tcp_config = tcp or TcpConfig()
        self.max_connections = max_connections
        self.max_time_wait = max_time_wait
        self.sequencer = Sequencer()
        self.connections: dict[Key, TcpConnection] = {}
        self.listeners: dict[int, Listener] = {}
        self.udp_ports: dict[int, UdpTransport] = {}
        self.pings: dict[tuple[int, int], asyncio.Future[None]] = {}
        self.time_wait: dict[Key, TcpConnection] = {}
        self._timers: dict[TcpConnection, asyncio.TimerHandle] = {}
        self._dirty: dict[TcpConnection, None] = {}
        self._out: list[bytes] = []
        self._flush_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.dropped = 0
        # what the link does beyond carrying packets (pywg.packetlink): checksums covered by
        # its authentication; TCP segmentation of super-packets up to tso_max bytes
        self._authenticated = bool(getattr(link, "authenticated", False))
        self._tso_payload = max(0, int(getattr(link, "tso_max", 0)) - _TSO_HEADROOM)
        link.set_receiver(self._receive)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the stack runs on (the running one, when first needed)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def source_for(self, dst: bytes) -> bytes:
        """Our address of the destination's family (the first one configured)."""
        for addr in self.addresses:
            if len(addr.packed) == len(dst):
                return addr.packed
        raise OSError(f"no IPv{4 if len(dst) == 4 else 6} address on this stack")

    def mss(self, local: bytes) -> int:
        """The MSS the link's MTU allows (RFC 9293 §3.7.1: MTU minus IP and TCP headers)."""
        return self.link.mtu - _TCP_IP_OVERHEAD[4 if len(local) == 4 else 6]

    # -- input ---------------------------------------------------------------------------

    def _receive(self, packets: Sequence[bytes]) -> None:
        now = self.loop.time()
        for raw in packets:
            try:
                self._dispatch(bytes(raw), now)
            except Exception as exc:  # user code in a callback: report, keep the stack going
                self.loop.call_exception_handler(
                    {"message": "netstack: error while processing a packet", "exception": exc}
                )
        self._flush()

    def _dispatch(self, raw: bytes, now: float) -> None:
        packet = ip.parse(raw)
        if packet is None or packet.dst not in self._local:
            self.dropped += 1
            return
        if packet.proto == ip.PROTO_TCP:
            self._tcp_input(packet, now)
        elif packet.proto == ip.PROTO_UDP:
            self._udp_input(packet)
        elif packet.proto == (ip.PROTO_ICMP if packet.version == 4 else ip.PROTO_ICMPV6):
            self._icmp_input(packet)
        else:
            self.dropped += 1

    def _tcp_input(self, packet: ip.IPPacket, now: float) -> None:
        seg = tcpwire.parse(packet.src, packet.dst, packet.payload, not self._authenticated)
        if seg is None:
            self.dropped += 1
            return
        conn = self.connections.get((packet.dst, seg.dport, packet.src, seg.sport))
        if conn is not None:
            conn.receive(seg, now)
            self.touched(conn)
            return
        listener = self.listeners.get(seg.dport)
        if listener is not None:
            listener.segment(packet.dst, packet.src, seg, now)
        elif not seg.flags & RST:
            self.reset_reply(packet.dst, packet.src, seg)

    def _udp_input(self, packet: ip.IPPacket) -> None:
        parsed = udp.parse(packet.src, packet.dst, packet.payload)
        if parsed is None:
            self.dropped += 1
            return
        sport, dport, data = parsed
        endpoint = self.udp_ports.get(dport)
        if endpoint is not None:
            endpoint.deliver(packet.src, sport, data)

    def _icmp_input(self, packet: ip.IPPacket) -> None:
        echo = icmp.parse_echo(packet.src, packet.dst, packet.payload)
        if echo is None:
            return
        kind, ident, seq, data = echo
        reply = icmp.reply_kind(kind)
        if reply is not None:  # RFC 792 / RFC 4443 §4.2: answer with the same data
            body = icmp.build_echo(packet.dst, packet.src, reply, ident, seq, data)
            self._send_ip(packet.dst, packet.src, packet.proto, body)
            return
        waiter = self.pings.pop((ident, seq), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- output ----------------------------------------------------------------------------

    def _send_ip(self, src: bytes, dst: bytes, proto: int, payload: bytes) -> None:
        self._out.append(ip.build(src, dst, proto, payload))
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Let every woken connection send, arm its timer, and hand the batch to the link."""
        self._flush_pending = False
        now = self.loop.time()
        while self._dirty:
            dirty, self._dirty = self._dirty, {}
            for conn in dirty:
                if conn.state != State.CLOSED:
                    conn.output(now)
                    self._arm_timer(conn)
                    if conn.state == State.TIME_WAIT:
                        self._note_time_wait(conn)
        if self._out:
            batch = self._out[:]  # the connections' transmit closures hold this very list
            self._out.clear()
            self.link.send(batch)

    def reset_reply(self, local: bytes, remote: bytes, seg: Segment) -> None:
        """An RST for a segment that belongs to no connection (RFC 9293 §3.10.7.1)."""
        if seg.flags & ACK:
            fields = (seg.dport, seg.sport, seg.ack, 0, RST, 0)
        else:
            length = len(seg.payload) + (1 if seg.flags & SYN else 0) + (seg.flags & 1)
            fields = (seg.dport, seg.sport, 0, wire(seg.seq + length), RST | ACK, 0)
        self._send_ip(local, remote, ip.PROTO_TCP, tcpwire.build(local, remote, fields, b"", b""))

    def send_synack_cookie(self, key: Key, cookie: int, ack: int, mss: int) -> None:
        """A SYN-ACK whose ISN is a cookie: MSS only, no state (RFC 4987 §3.6)."""
        local, lport, remote, rport = key
        fields = (lport, rport, cookie, ack, SYN | ACK, 0xFFFF)
        segment = tcpwire.build(local, remote, fields, tcpwire.syn_options(mss, None, False), b"")
        self._send_ip(local, remote, ip.PROTO_TCP, segment)

    # -- connections -------------------------------------------------------------------

    def has_room(self) -> bool:
        """Whether one more connection fits under `max_connections`."""
        return len(self.connections) < self.max_connections

    def new_connection(self, key: Key, iss: int) -> TcpConnection:
        """A connection registered under `key`, its output going through this stack."""
        local, _lport, remote, _rport = key
        conn = TcpConnection(
            self.tcp_config, (local, key[1]), (remote, key[3]), iss, self.mss(local)
        )
        out = self._out

        def transmit(segment: bytes) -> None:
            out.append(ip.build(local, remote, ip.PROTO_TCP, segment))

        conn.transmit = transmit
        conn.tso_payload = self._tso_payload
        conn.wake = self._wake  # type: ignore[assignment]
        conn.on_closed = self._closed  # type: ignore[assignment]
        self.connections[key] = conn
        return conn

    def touched(self, conn: TcpConnection) -> None:
        """A connection processed input: give it a chance to send and re-arm its timer."""
        self._dirty[conn] = None

    def _wake(self, conn: TcpConnection) -> None:
        self._dirty[conn] = None
        self._schedule_flush()

    def _arm_timer(self, conn: TcpConnection) -> None:
        deadline = conn.next_deadline()
        handle = self._timers.get(conn)
        if handle is not None:
            if deadline is not None and handle.when() <= deadline:
                return  # fires early at worst, and re-arms then
            handle.cancel()
            del self._timers[conn]
        if deadline is not None:
            self._timers[conn] = self.loop.call_at(deadline, self._fire, conn)

    def _fire(self, conn: TcpConnection) -> None:
        self._timers.pop(conn, None)
        if conn.state != State.CLOSED:
            conn.on_timer(self.loop.time())
            self._dirty[conn] = None
            self._flush()

    def _closed(self, conn: TcpConnection) -> None:
        key = conn.key
        if self.connections.get(key) is conn:
            del self.connections[key]
        self.time_wait.pop(key, None)
        self._dirty.pop(conn, None)
        handle = self._timers.pop(conn, None)
        if handle is not None:
            handle.cancel()
        self._schedule_flush()  # the RST of an abort, if any

    def _note_time_wait(self, conn: TcpConnection) -> None:
        """Keep TIME-WAIT bounded: past `max_time_wait`, the oldest ones end early."""
        self.time_wait[conn.key] = conn
        while len(self.time_wait) > self.max_time_wait:
            oldest = self.time_wait.pop(next(iter(self.time_wait)))
            oldest.on_timer(float("inf"))  # past its TIME-WAIT deadline: it closes

    def free_port(self, local: bytes, remote: bytes, rport: int) -> int:
        """An ephemeral port with which (local, port, remote, rport) is unused."""
        start = random.randrange(len(EPHEMERAL))
        for i in range(len(EPHEMERAL)):
            port = EPHEMERAL[(start + i) % len(EPHEMERAL)]
            if (local, port, remote, rport) not in self.connections and port not in self.listeners:
                return port
        raise OSError("no free ephemeral port")

    def stats(self) -> dict[str, Any]:
        """Counts of what the stack holds (connections by state, listeners' pending ones)."""
        states: dict[str, int] = {}
        for conn in self.connections.values():
            states[conn.state.name] = states.get(conn.state.name, 0) + 1
        pending = sum(len(listener.pending) for listener in self.listeners.values())
        return {"connections": states, "syn_received": pending, "dropped": self.dropped}
