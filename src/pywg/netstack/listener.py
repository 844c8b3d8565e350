"""LISTEN (RFC 9293 §3.10.7.2): passive opens, with bounded state under a SYN flood.

A listener keeps at most `syn_backlog` connections in SYN-RECEIVED. Past that it answers
SYNs with SYN cookies (RFC 4987 §3.6) and keeps nothing; the ACK that returns a valid
cookie opens the connection. What a flood of SYNs or of unfinished handshakes can make
the stack hold is so bounded by the backlog, whatever the rate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from pywg.netstack.isn import Sequencer
from pywg.netstack.tcb import wire
from pywg.netstack.tcp import TcpConnection
from pywg.netstack.tcpwire import ACK, RST, SYN, Segment
from pywg.netstack.transport import TcpTransport

ProtocolFactory = Callable[[], asyncio.BaseProtocol]
Key = tuple[bytes, int, bytes, int]


class ListenerHost(Protocol):
    """What a listener needs of its stack."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def sequencer(self) -> Sequencer: ...
    def has_room(self) -> bool: ...
    def new_connection(self, key: Key, iss: int) -> TcpConnection: ...
    def touched(self, conn: TcpConnection) -> None: ...
    def mss(self, local: bytes) -> int: ...
    def reset_reply(self, local: bytes, remote: bytes, seg: Segment) -> None: ...
    def send_synack_cookie(self, key: Key, cookie: int, ack: int, mss: int) -> None: ...


class Listener:
    """One listening port (on one of the stack's addresses, or on all of them)."""

    def __init__(
        self, stack: ListenerHost, port: int, factory: ProtocolFactory, syn_backlog: int
    ) -> None:
        self.stack = stack
        self.port = port
        self.factory = factory
        self.syn_backlog = syn_backlog
        self.pending: set[TcpConnection] = set()
        self.accepted: set[TcpTransport] = set()
        self.cookies_sent = 0

    def segment(self, local: bytes, remote: bytes, seg: Segment, now: float) -> None:
        """A segment for this port that belongs to no connection."""
        if seg.flags & RST:
            return
        if seg.flags & ACK:
            if not seg.flags & SYN and self._cookie_ack(local, remote, seg, now):
                return
            self.stack.reset_reply(local, remote, seg)
            return
        if not seg.flags & SYN:
            return
        key = (local, self.port, remote, seg.sport)
        if len(self.pending) < self.syn_backlog and self.stack.has_room():
            conn = self.stack.new_connection(key, self.stack.sequencer.isn(key, now))
            self.pending.add(conn)
            conn.accept_syn(seg, _Acceptor(self, conn), now)
            self.stack.touched(conn)
        elif self.stack.has_room():
            self._send_cookie(key, seg, now)

    def _send_cookie(self, key: Key, seg: Segment, now: float) -> None:
        mss = seg.mss if seg.mss else 536
        cookie = self.stack.sequencer.cookie(key, seg.seq, mss, now)
        self.cookies_sent += 1
        self.stack.send_synack_cookie(
            key, cookie, wire(seg.seq + 1), min(mss, self.stack.mss(key[0]))
        )

    def _cookie_ack(self, local: bytes, remote: bytes, seg: Segment, now: float) -> bool:
        if not self.cookies_sent or not self.stack.has_room():
            return False
        key = (local, self.port, remote, seg.sport)
        client_isn = wire(seg.seq - 1)
        mss = self.stack.sequencer.check_cookie(key, client_isn, wire(seg.ack - 1), now)
        if mss is None:
            return False
        conn = self.stack.new_connection(key, wire(seg.ack - 1))
        conn.accept_cookie(seg, client_isn, mss, _Acceptor(self, conn), now)
        conn.receive(seg, now)
        self.stack.touched(conn)
        return True

    def close(self) -> None:
        """Stop listening: handshakes under way are reset, accepted connections stay."""
        for conn in list(self.pending):
            conn.abort()
        self.pending.clear()


class _Acceptor:
    """The user of a connection in SYN-RECEIVED: turns it into a transport once established."""

    __slots__ = ("conn", "listener")

    def __init__(self, listener: Listener, conn: TcpConnection) -> None:
        self.listener = listener
        self.conn = conn

    def established(self) -> None:
        listener = self.listener
        listener.pending.discard(self.conn)
        transport = TcpTransport(listener.stack.loop, self.conn, listener.factory())
        transport.established()

    def received(self, data: bytes) -> None:
        pass

    def eof(self) -> None:
        pass

    def closed(self, exc: Exception | None) -> None:
        self.listener.pending.discard(self.conn)

    def writable(self) -> None:
        pass
