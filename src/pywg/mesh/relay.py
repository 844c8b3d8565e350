"""The relay: forwards sealed WireGuard datagrams between two nodes that cannot meet directly.

Theory of operation
-------------------

Two nodes behind symmetric NATs (RFC 4787 §4.1: "address and port-dependent
mapping") cannot reach each other directly: each NAT gives every new
destination a new outside port, so the endpoint a node learns from a STUN
server is not the one its peer would have to use. Both can still reach a
server on the public internet, and that server can pass datagrams along.
That is the idea of TURN (RFC 8656); this relay keeps TURN's idea and drops
its machinery.

*Pair ports.* For every ordered pair of nodes (A, B) the relay opens one UDP
port P_AB, meaning "A sends its packets for B here", always together with
its twin P_BA. A datagram that arrives at P_AB from A is sent out of the
socket of P_BA to B. B therefore sees it come from relay:P_BA, which is
exactly where B sends its own packets for A, so B's NAT lets it in (it has
seen B send to relay:P_BA) and B's WireGuard peer A simply has the endpoint
relay:P_BA. Because a whole port belongs to one direction of one pair,
nothing is added to the datagrams: WireGuard messages pass byte for byte,
where TURN needs a Send indication or a ChannelData header around each one
to name the peer (RFC 8656 "Send and Data Methods", "Channels").

*Binds.* Which address is "A" for P_AB? Only A can say: a node's NAT mapping
toward each relay port is learned from a datagram the node itself sent to
that very port, never from a STUN server or from another node (behind a
symmetric NAT they would all differ). A node sends a *bind*
(`pywg.mesh.wire`: a STUN Binding request, RFC 8489, with its WireGuard key,
the time and an Ed25519 signature by its control key over the port, the
transaction ID, the key and the time) from its WireGuard socket to the port.
The relay takes it only from the port's owner, signed, fresh (within
`auth.MAX_SKEW_MS` of its clock) and newer than the last bind it took for
that port; then the bind's source address becomes the port's *bound
address*, and the relay answers with a Binding success response carrying
that source in XOR-MAPPED-ADDRESS (RFC 8489 §14.2), which tells the node its
mapping toward this port. Like a TURN allocation's five-tuple (RFC 8656,
"Allocations"), the binding is set by the client's own authenticated
request; like a TURN permission it decides who may send: a datagram from
anywhere but the bound address is dropped, so the relay is no open
reflector. A refused bind gets no answer at all, and binds are rate-limited
per port (token buckets) before the Ed25519 check, so a flood of forged
binds costs little CPU; binds from the port's bound address have a bucket
of their own, so such a flood cannot keep the owner from refreshing.

*What is forwarded.* Only datagrams shaped like WireGuard messages
(whitepaper §5.4: type 1-4 and three zero bytes; 148, 92 and 64 bytes for
initiation, response and cookie reply, at least 32 for transport data),
from the bound address of the port, when the twin port is bound too. The
relay never holds a key that opens them: it sees sealed datagrams, and
never logs their contents.

*The main port* is a plain STUN server (RFC 8489 §6): it answers every
well-formed Binding request with the source it saw, so a node can learn its
public endpoint (for direct paths) from the relay it already knows.

*Persistence.* Pairs, their port numbers, bound addresses and the time of
the last bind taken live in SQLite (``relay_*`` tables; the coordinator keeps
its own tables in the same file), so after a restart the relay opens the
same ports and forwards at once, without waiting for the nodes to bind again,
and an old bind cannot be replayed to it.

All I/O runs on one asyncio loop: one reader per socket that drains up to
`DRAIN_MAX` datagrams per wake-up, non-blocking sends that drop (and count)
when the socket buffer is full. Call every method from the loop's thread.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import ipaddress
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from .. import stun
from ..asyncio.udp import set_buffers
from ..constants import (
    COOKIE_REPLY_SIZE,
    INITIATION_SIZE,
    KEY_SIZE,
    MESSAGE_COOKIE_REPLY,
    MESSAGE_INITIATION,
    MESSAGE_RESPONSE,
    MESSAGE_TRANSPORT,
    RESPONSE_SIZE,
    TRANSPORT_MIN_SIZE,
)
from ..endpoint import AddressLike, Endpoint, format_endpoint, normalize_endpoint
from ..exceptions import LocalProtocolError
from ..messages import message_type
from ..ratelimiter import TokenBucket as _TokenBucket  # one token per bind checked
from . import auth, wire

logger = logging.getLogger(__name__)

DRAIN_MAX: Final = 64  # datagrams read per wake-up of one socket
MAX_DATAGRAM: Final = 65535
BIND_RATE: Final = 10.0  # binds per second and port taken to the signature check
BIND_BURST: Final = 20.0
BUSY_TIMEOUT_MS: Final = 5000
COUNTERS: Final = (
    "forwarded_packets",
    "forwarded_bytes",
    "binds_accepted",
    "binds_refused",
    "binds_limited",
    "drop_unbound_source",
    "drop_partner_unbound",
    "drop_not_wireguard",
    "drop_main_port",
    "drop_send_failed",
    "stun_answered",
    "errors",
)

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS relay_pairs (
    sender BLOB NOT NULL,
    receiver BLOB NOT NULL,
    port INTEGER NOT NULL,
    bound_host TEXT,
    bound_port INTEGER,
    bound_time_ms INTEGER,
    PRIMARY KEY (sender, receiver)
)
"""


def is_wireguard(data: bytes | bytearray | memoryview) -> bool:
    """Whether a datagram has the type and size of a WireGuard message (whitepaper §5.4)."""
    kind = message_type(data)
    size = len(data)
    if kind == MESSAGE_TRANSPORT:
        return TRANSPORT_MIN_SIZE <= size <= MAX_DATAGRAM
    if kind == MESSAGE_INITIATION:
        return size == INITIATION_SIZE
    if kind == MESSAGE_RESPONSE:
        return size == RESPONSE_SIZE
    if kind == MESSAGE_COOKIE_REPLY:
        return size == COOKIE_REPLY_SIZE
    return False


def short_key(key: bytes) -> str:
    """A public key for logs: the first 8 characters of its base64."""
    return base64.b64encode(key).decode("ascii")[:8] + "…"


def _bucket() -> _TokenBucket:
    return _TokenBucket(BIND_RATE, BIND_BURST, BIND_BURST, time.monotonic())


@dataclass(slots=True, eq=False)
class _Port:
    """P_{sender,receiver}: where `sender` sends its packets for `receiver`."""

    sender: bytes
    receiver: bytes
    number: int
    sock: socket.socket
    bound: Endpoint | None = None  # the sender's address, from its last accepted bind
    send_to: AddressLike | None = None  # `bound` as this socket's family wants it
    bound_time_ms: int = -1  # time of the last accepted bind (-1: none yet)
    twin: _Port | None = None
    bucket: _TokenBucket = field(default_factory=_bucket)  # binds from anywhere else
    refresh: _TokenBucket = field(default_factory=_bucket)  # binds from the bound address
    packets: int = 0  # forwarded from sender to receiver since start
    octets: int = 0


class RelayServer:
    """A relay for one mesh; see the module docstring.

    `members(wg_public_key)` returns that node's Ed25519 control public key
    (32 bytes), or None if it is no member. `host` is an IPv4 or IPv6 literal
    for the main port and every pair port ("::" listens on both families).
    Pair ports come from `port_range` (inclusive; None: ephemeral ports the
    kernel picks). `socket_factory(family, type)` makes the sockets (tests
    make them inside a lab namespace); `clock_ms` is the wall clock, in ms
    since the epoch, that bind times are checked against.
    """

    def __init__(
        self,
        db_path: str,
        host: str,
        port: int,
        *,
        members: Callable[[bytes], bytes | None],
        port_range: tuple[int, int] | None = None,
        socket_factory: Callable[[int, int], socket.socket] = socket.socket,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        ip = ipaddress.ip_address(host)  # ValueError unless a literal
        if not 0 <= port <= 0xFFFF:
            raise ValueError(f"port {port} out of range")
        if port_range is not None:
            low, high = port_range
            if not 1 <= low <= high <= 0xFFFF:
                raise ValueError(f"bad port range {port_range}")
        self._db_path = db_path
        self._host = str(ip)
        self._family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
        self._requested_port = port
        self._members = members
        self._port_range = port_range
        self._socket_factory = socket_factory
        self._clock_ms = clock_ms
        self._loop: asyncio.AbstractEventLoop | None = None
        self._db: sqlite3.Connection | None = None
        self._main: socket.socket | None = None
        self._main_port = 0
        self._pairs: dict[tuple[bytes, bytes], _Port] = {}
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._buffer = bytearray(MAX_DATAGRAM + 1)
        self._view = memoryview(self._buffer)
        self._cursor = 0  # where the search for a free port in port_range goes on
        self._started = False
        self._closed = False

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the main port, reopen every persisted pair port and resume forwarding.

        A persisted port that can no longer be bound (or is outside
        `port_range`) is replaced by a new one, persisted; its node must bind
        the new port. RuntimeError if started before or closed.
        """
        if self._started or self._closed:
            raise RuntimeError("a RelayServer starts once")
        self._started = True
        self._loop = asyncio.get_running_loop()
        try:
            self._db = _open_db(self._db_path)
            self._main = self._bind(self._requested_port)
            self._main_port = self._main.getsockname()[1]
            self._loop.add_reader(self._main.fileno(), self._on_main_readable)
            self._restore()
        except BaseException:
            self.close()
            raise
        logger.info(
            "relay: STUN on %s, %d pair ports restored",
            format_endpoint((self._host, self._main_port)),
            len(self._pairs),
        )

    def close(self) -> None:
        """Close every socket and the database; idempotent. Call it from the loop's thread."""
        if self._closed:
            return
        self._closed = True
        if self._main is not None:
            self._drop_socket(self._main)
            self._main = None
        for port in self._pairs.values():
            self._drop_socket(port.sock)
        self._pairs.clear()
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    @property
    def port(self) -> int:
        """The main (STUN) port actually bound (0 before start)."""
        return self._main_port

    # -- pairs ------------------------------------------------------------------------

    def ensure_pair(self, a: bytes, b: bytes) -> tuple[int, int]:
        """(P_ab, P_ba), opened and persisted on the first call for the pair.

        ValueError unless `a` and `b` are different 32-byte keys; RuntimeError
        unless started (and not closed); OSError if no port can be bound.
        """
        _check_key(a)
        _check_key(b)
        if a == b:
            raise ValueError("a pair needs two different nodes")
        self._require_running()
        forward, backward = self._pairs.get((a, b)), self._pairs.get((b, a))
        if forward is not None and backward is not None:
            return forward.number, backward.number
        # start() never leaves half a pair, so neither exists
        first = self._allocate()
        try:
            second = self._allocate()
        except BaseException:
            first.close()
            raise
        forward = _Port(a, b, first.getsockname()[1], first)
        backward = _Port(b, a, second.getsockname()[1], second)
        try:
            with self._transaction() as db:
                for port in (forward, backward):
                    db.execute(
                        "INSERT OR REPLACE INTO relay_pairs (sender, receiver, port) "
                        "VALUES (?, ?, ?)",
                        (port.sender, port.receiver, port.number),
                    )
        except BaseException:
            first.close()
            second.close()
            raise
        forward.twin, backward.twin = backward, forward
        self._add(forward)
        self._add(backward)
        logger.info(
            "relay: pair %s <-> %s on ports %d/%d",
            short_key(a),
            short_key(b),
            forward.number,
            backward.number,
        )
        return forward.number, backward.number

    def pair_port(self, sender: bytes, receiver: bytes) -> int | None:
        """P_{sender,receiver}, or None if there is no such pair."""
        port = self._pairs.get((sender, receiver))
        return None if port is None else port.number

    def remove_node(self, key: bytes) -> None:
        """Close and forget (in the database too) every pair involving `key`."""
        self._require_running()
        gone = [p for p in self._pairs.values() if key in (p.sender, p.receiver)]
        for port in gone:
            self._drop_socket(port.sock)
            del self._pairs[(port.sender, port.receiver)]
        with self._transaction() as db:
            db.execute("DELETE FROM relay_pairs WHERE sender = ? OR receiver = ?", (key, key))
        if gone:
            logger.info("relay: %s removed, %d ports closed", short_key(key), len(gone))

    def stats(self) -> dict[str, int]:
        """The counters (`COUNTERS`), plus ``pairs`` (node pairs) and ``ports`` (pair ports)."""
        out = dict(self._counters)
        out["ports"] = len(self._pairs)
        out["pairs"] = len(self._pairs) // 2
        return out

    def pair_stats(self, sender: bytes, receiver: bytes) -> tuple[int, int]:
        """(packets, bytes) forwarded from `sender` to `receiver` since start."""
        port = self._pairs.get((sender, receiver))
        return (0, 0) if port is None else (port.packets, port.octets)

    # -- sockets ----------------------------------------------------------------------

    def _bind(self, number: int) -> socket.socket:
        sock = self._socket_factory(self._family, socket.SOCK_DGRAM)
        try:
            if self._family == socket.AF_INET6:
                # "::" takes IPv4 too; sources then show up as ::ffff:a.b.c.d
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.setblocking(False)
            set_buffers(sock)  # bursts of a TCP flow overflowed the default (benches/mesh.py)
            sock.bind((self._host, number))
        except BaseException:
            sock.close()
            raise
        return sock

    def _in_range(self, number: int) -> bool:
        if self._port_range is None:
            return True
        low, high = self._port_range
        return low <= number <= high

    def _allocate(self) -> socket.socket:
        """A bound socket on a new pair port: from port_range, or one the kernel picks."""
        if self._port_range is None:
            return self._bind(0)
        low, high = self._port_range
        size = high - low + 1
        taken = {p.number for p in self._pairs.values()} | {self._main_port}
        for step in range(size):
            number = low + (self._cursor + step) % size
            if number in taken:
                continue
            try:
                sock = self._bind(number)
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise
            self._cursor = (number - low + 1) % size
            return sock
        raise OSError(errno.EADDRINUSE, f"no free UDP port in {low}-{high}")

    def _add(self, port: _Port) -> None:
        assert self._loop is not None
        self._pairs[(port.sender, port.receiver)] = port
        self._loop.add_reader(port.sock.fileno(), self._on_pair_readable, port)

    def _drop_socket(self, sock: socket.socket) -> None:
        if self._loop is not None:
            with contextlib.suppress(Exception):  # a closed loop, a socket never added
                self._loop.remove_reader(sock.fileno())
        sock.close()

    def _sockaddr(self, endpoint: Endpoint) -> AddressLike:
        """Where to send to reach `endpoint` from one of our sockets."""
        host, port = endpoint
        if self._family == socket.AF_INET6 and ":" not in host:
            return (f"::ffff:{host}", port, 0, 0)
        return (host, port)

    def _send(self, sock: socket.socket, data: bytes | memoryview, to: AddressLike) -> bool:
        try:
            sock.sendto(data, to)
        except OSError:  # EAGAIN (full buffer), unreachable, ...: UDP may drop
            self._counters["drop_send_failed"] += 1
            return False
        return True

    # -- readers ----------------------------------------------------------------------

    def _drain(self, sock: socket.socket, handle: Callable[[int, AddressLike], None]) -> None:
        for _ in range(DRAIN_MAX):
            try:
                size, source = sock.recvfrom_into(self._buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error reported on the socket, or it was closed
                if sock.fileno() < 0:
                    return
                continue
            try:
                handle(size, source)
            except Exception:  # a bug, never the datagram's fault: count it and go on
                self._counters["errors"] += 1
                logger.exception("relay: error handling a datagram (dropped)")

    def _on_main_readable(self) -> None:
        if self._main is not None:
            self._drain(self._main, self._main_datagram)

    def _on_pair_readable(self, port: _Port) -> None:
        self._drain(port.sock, lambda size, source: self._pair_datagram(port, size, source))

    def _main_datagram(self, size: int, source: AddressLike) -> None:
        data = self._view[:size]
        if stun.is_stun(data):
            try:
                message = stun.parse_message(bytes(data))
            except stun.StunError:
                message = None
            if message is not None and message.kind == stun.BINDING_REQUEST:
                answer = stun.binding_success(message.transaction_id, normalize_endpoint(source))
                assert self._main is not None
                if self._send(self._main, answer, source):
                    self._counters["stun_answered"] += 1
                return
        self._counters["drop_main_port"] += 1

    def _pair_datagram(self, port: _Port, size: int, source: AddressLike) -> None:
        data = self._view[:size]
        if is_wireguard(data):
            if normalize_endpoint(source) != port.bound:
                self._counters["drop_unbound_source"] += 1
                return
            twin = port.twin
            if twin is None or twin.send_to is None:
                self._counters["drop_partner_unbound"] += 1
                return
            if self._send(twin.sock, data, twin.send_to):
                port.packets += 1
                port.octets += size
                self._counters["forwarded_packets"] += 1
                self._counters["forwarded_bytes"] += size
            return
        if stun.is_stun(data):
            self._bind_request(port, bytes(data), source)
            return
        self._counters["drop_not_wireguard"] += 1

    def _bind_request(self, port: _Port, data: bytes, source: AddressLike) -> None:
        try:
            bind = wire.parse_bind(stun.parse_message(data))
        except stun.StunError:
            bind = None
        if bind is None:  # plain STUN, or malformed: not for a pair port
            self._counters["drop_not_wireguard"] += 1
            return
        now_ms = self._clock_ms()
        # the cheap checks first; the bucket guards what costs (members(), Ed25519)
        if (
            bind.node_key != port.sender
            or abs(bind.time_ms - now_ms) > auth.MAX_SKEW_MS
            or bind.time_ms <= port.bound_time_ms
        ):
            self._counters["binds_refused"] += 1
            return
        where = normalize_endpoint(source)
        # the owner refreshing from where it is bound has a bucket of its own, so a flood
        # of forged binds from elsewhere cannot starve it (only a roaming owner competes)
        bucket = port.refresh if where == port.bound else port.bucket
        if not bucket.take(time.monotonic()):
            self._counters["binds_limited"] += 1
            return
        try:
            control = self._members(port.sender)
        except Exception:
            logger.exception("relay: members() failed; bind refused")
            control = None
        if control is None or not bind.verify(port.number, control):
            self._counters["binds_refused"] += 1
            return
        moved = where != port.bound
        port.bound, port.send_to, port.bound_time_ms = where, self._sockaddr(where), bind.time_ms
        self._counters["binds_accepted"] += 1
        self._persist_bound(port)
        self._send(port.sock, stun.binding_success(bind.transaction_id, where), source)
        if moved:
            logger.info(
                "relay: %s bound port %d (for %s) to %s",
                short_key(port.sender),
                port.number,
                short_key(port.receiver),
                format_endpoint(where),
            )

    # -- the database -----------------------------------------------------------------

    def _require_running(self) -> None:
        if not self._started or self._closed:
            raise RuntimeError("the relay is not running (start() it first)")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        if db is None:
            raise RuntimeError("the relay is not running")
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _persist_bound(self, port: _Port) -> None:
        assert port.bound is not None
        try:
            with self._transaction() as db:
                db.execute(
                    "UPDATE relay_pairs SET bound_host = ?, bound_port = ?, bound_time_ms = ? "
                    "WHERE sender = ? AND receiver = ?",
                    (*port.bound, port.bound_time_ms, port.sender, port.receiver),
                )
        except sqlite3.Error as exc:  # forwarding goes on; only a restart would forget
            logger.warning("relay: cannot persist a bind on port %d: %s", port.number, exc)

    def _restore(self) -> None:
        """Reopen the persisted pair ports (start)."""
        assert self._db is not None
        rows = self._db.execute(
            "SELECT sender, receiver, port, bound_host, bound_port, bound_time_ms FROM relay_pairs"
        ).fetchall()
        for sender, receiver, number, bound_host, bound_port, bound_time in rows:
            if not (_is_key(sender) and _is_key(receiver)) or sender == receiver:
                logger.warning("relay: skipping a malformed row in relay_pairs")
                continue
            sock = self._reopen(number if isinstance(number, int) else 0)
            port = _Port(bytes(sender), bytes(receiver), sock.getsockname()[1], sock)
            if port.number != number:
                logger.warning(
                    "relay: port %s of %s (for %s) is gone; moved to %d, the node must bind again",
                    number,
                    short_key(port.sender),
                    short_key(port.receiver),
                    port.number,
                )
                bound_host = bound_port = bound_time = None
                with self._transaction() as db:
                    db.execute(
                        "UPDATE relay_pairs SET port = ?, bound_host = NULL, bound_port = NULL, "
                        "bound_time_ms = NULL WHERE sender = ? AND receiver = ?",
                        (port.number, sender, receiver),
                    )
            with contextlib.suppress(LocalProtocolError):  # none stored, or not an address
                endpoint = normalize_endpoint((bound_host, bound_port))
                port.bound, port.send_to = endpoint, self._sockaddr(endpoint)
            if isinstance(bound_time, int):
                port.bound_time_ms = bound_time
            self._add(port)
        # a twin lost from the table (by hand, say): open it again
        for (sender, receiver), port in list(self._pairs.items()):
            twin = self._pairs.get((receiver, sender))
            if twin is None:
                sock = self._allocate()
                twin = _Port(receiver, sender, sock.getsockname()[1], sock)
                with self._transaction() as db:
                    db.execute(
                        "INSERT OR REPLACE INTO relay_pairs (sender, receiver, port) "
                        "VALUES (?, ?, ?)",
                        (receiver, sender, twin.number),
                    )
                self._add(twin)
            port.twin, twin.twin = twin, port

    def _reopen(self, number: int) -> socket.socket:
        """A socket on the persisted port `number` if it can still be had, else on a new one."""
        usable = 0 < number <= 0xFFFF and self._in_range(number)
        if usable and all(p.number != number for p in self._pairs.values()):
            with contextlib.suppress(OSError):
                return self._bind(number)
        return self._allocate()


def _is_key(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == KEY_SIZE


def _check_key(value: object) -> None:
    if not _is_key(value):
        raise ValueError("a node is named by its 32-byte WireGuard public key")


def _open_db(path: str) -> sqlite3.Connection:
    # created 0600 (the coordinator keeps its own secrets in this file too). Never open
    # and close an existing file here: closing any descriptor of a database drops every
    # POSIX lock this process holds on it, the coordinator's connection's included
    # (sqlite.org/howtocorrupt.html §2.2), and the database is then corrupted.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    db = sqlite3.connect(
        path,
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,  # autocommit; _transaction() says BEGIN/COMMIT itself
        check_same_thread=False,
    )
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # bound addresses are soft state
        db.execute(_SCHEMA)
    except BaseException:
        db.close()
        raise
    return db
