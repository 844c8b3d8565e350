"""Handshake floods from a lab host: valid-mac1 initiations from keys nobody knows.

Used by the under-load scenarios: enough handshake messages that the target
goes "under load" (whitepaper §5.3) and must answer initiations without a
valid mac2 with cookie replies. The messages are real initiations
(:func:`flood_initiations`) for random static keys the target does not
know, so it can never complete one, each with a valid mac1 for the target's
public key. :class:`Flooder` sends any datagrams round-robin from one or
more sockets on a thread; :class:`HandshakeFlood` is one in a lab host that
also counts the cookie replies coming back.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Self

from .. import crypto
from ..constants import COOKIE_REPLY_SIZE, KEY_SIZE, MESSAGE_COOKIE_REPLY
from ..keys import PublicKey
from ..lab import Host, Link
from ..lab.capture import receive_until
from ..lab.hosts import Closing
from ..messages import message_type
from ..noise import DhKeyPair
from .adversary import craft_initiation

POOL = 256  # distinct initiations, sent round-robin
# A ramped flood (`Flooder.faster`) starts here, datagrams per second; past RAMP_LIMIT it
# runs unpaced. Every implementation goes under load somewhere on the way (pywg past 128
# handshake messages a second, wireguard-go once its handshake queue holds 128), and a
# flood only just past that leaves the target's CPU to answer the legitimate handshake,
# which a flood at full speed on a small shared machine may not (whitepaper §5.3).
RAMP_START: float = 4_000.0
RAMP_LIMIT: float = 1_000_000.0


@dataclass(frozen=True, slots=True)
class FloodStats:
    sent: int
    errors: int
    seconds: float

    @property
    def rate(self) -> float:
        """Datagrams per second."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0


class Flooder(Closing):
    """Sends `datagrams` round-robin to `destination` from a thread, as fast as it can.

    With several sockets (bound to different source addresses) consecutive
    datagrams go out from consecutive sockets, as a flood from many hosts
    would arrive. Bounded: it stops by itself after `max_seconds`. `rate`
    paces it (datagrams per second; None: as fast as it can), and `faster()`
    doubles that. Use as a context manager (starts on entry; stops, joins and
    closes the sockets on exit); `stats()` at any time.
    """

    def __init__(
        self,
        socks: Sequence[socket.socket],
        destination: tuple[str, int],
        datagrams: Sequence[bytes],
        *,
        max_seconds: float,
        rate: float | None = None,
    ) -> None:
        if not datagrams or not socks:
            raise ValueError("nothing to flood with")
        self.socks = list(socks)
        self.destination = destination
        # one (sendto, datagram) pair per step of the round, so the loop does no arithmetic
        n = len(self.socks)
        rounds = max(len(datagrams), n)
        self._plan = [
            (self.socks[i % n].sendto, datagrams[i % len(datagrams)]) for i in range(rounds)
        ]
        self.max_seconds = max_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pywg-flood", daemon=True)
        self._sent = 0
        self._errors = 0
        self._started = 0.0
        self._stopped: float | None = None
        self._rate = rate
        self._pace_from = (0.0, 0)  # (time, datagrams sent then) the current rate counts from

    @property
    def pace(self) -> float | None:
        """The rate it is paced at (datagrams per second); None: as fast as it can."""
        return self._rate

    def faster(self) -> None:
        """Double the rate (past RAMP_LIMIT: as fast as it can)."""
        if self._rate is not None:
            doubled = self._rate * 2
            self._rate = doubled if doubled <= RAMP_LIMIT else None
            self._pace_from = (time.monotonic(), self._sent)

    def _run(self) -> None:
        for sock in self.socks:
            sock.settimeout(0.5)
        destination = self.destination
        plan = self._plan
        end = self._started + self.max_seconds
        self._pace_from = (self._started, 0)
        while not self._stop.is_set() and time.monotonic() < end:
            for sendto, data in plan:
                try:
                    sendto(data, destination)
                except OSError:  # ENOBUFS, a send-buffer timeout: keep going
                    self._errors += 1
            self._sent += len(plan)
            self._keep_pace()
        self._stopped = time.monotonic()

    def _keep_pace(self) -> None:
        """Wait until the datagrams sent so far are due at the current rate."""
        rate = self._rate
        if rate is not None:
            since, sent_then = self._pace_from
            delay = since + (self._sent - sent_then) / rate - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)

    def start(self) -> Self:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> FloodStats:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        return self.stats()

    def stats(self) -> FloodStats:
        end = self._stopped if self._stopped is not None else time.monotonic()
        return FloodStats(self._sent, self._errors, max(0.0, end - self._started))

    def close(self) -> None:
        """Stop, then close the sockets."""
        self.stop()
        for sock in self.socks:
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> Self:
        return self.start()


def flood_initiations(
    responder_public: bytes, count: int, rng: Callable[[int], bytes] = os.urandom
) -> list[bytes]:
    """`count` initiations from random static keys unknown to the responder, valid mac1.

    They pass the DoS check (§5.4.4) and cost the responder a DH each before
    it finds out the sender is unknown, which is what puts it under load.
    """
    out = []
    for _ in range(count):
        static = DhKeyPair.from_private(rng(KEY_SIZE))
        index = int.from_bytes(rng(4), "little")
        stamp = crypto.tai64n(time.time())
        out.append(craft_initiation(static, responder_public, index, stamp, rng=rng).message)
    return out


def add_flood_addresses(host: Host, link: Link, count: int, first: int) -> list[str]:
    """`count` extra IPv4 addresses for `host` on its (a) end of `link`, .`first` up,
    in the link's lab /24: a flood from many sources, from one host."""
    prefix = link.a_addr4.rsplit(".", 1)[0]
    addresses = [f"{prefix}.{first + i}" for i in range(count)]
    for address in addresses:
        host.addr(link.a_if, f"{address}/24")
    return addresses


def flood_sockets(
    host: Host, sources: Sequence[str], *, receive_buffer: int, family: int = socket.AF_INET
) -> list[socket.socket]:
    """UDP sockets in `host`, one bound to each of `sources` ("": the kernel's choice).

    `receive_buffer` sizes SO_RCVBUF (small: the answers are not wanted). If
    one cannot be made, those already made are closed again.
    """
    socks: list[socket.socket] = []
    try:
        for source in sources:
            sock = host.socket(family, socket.SOCK_DGRAM)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            if source:
                sock.bind((source, 0))
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


class HandshakeFlood(Flooder):
    """Flood `target` (address, port) from `host` until :meth:`close` (or the context exits).

    `sources`: addresses of `host` to send from, round-robin (default: one,
    the kernel's choice). Implementations limit handshakes per source
    address, so a flood that must put the target under load comes from many.
    A second thread counts what comes back: cookie replies, anything else.
    """

    def __init__(
        self,
        host: Host,
        target: tuple[str, int],
        target_key: PublicKey,
        sources: Sequence[str] = (),
        *,
        max_seconds: float = 120.0,
        rate: float | None = None,
    ) -> None:
        family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
        socks = flood_sockets(host, sources or [""], receive_buffer=1 << 20, family=family)
        pool = flood_initiations(bytes(target_key), POOL)
        super().__init__(socks, target, pool, max_seconds=max_seconds, rate=rate)
        self._receiver = threading.Thread(
            target=receive_until,
            args=(self._stop, self.socks, self._count),  # until stop()
            kwargs={"size": 2048},
            name="flood-recv",
            daemon=True,
        )
        self.cookie_replies = 0
        self.other_replies = 0

    @property
    def sent(self) -> int:
        return self.stats().sent

    @property
    def rate(self) -> float:
        return self.stats().rate

    def start(self) -> Self:
        super().start()
        self._receiver.start()
        return self

    def ramp_until_under_load(self, deadline: float, step: float = 0.5) -> None:
        """Double the rate every `step` seconds until cookie replies come back (the target
        went under load) or `deadline` seconds pass; then hold it there."""
        end = time.monotonic() + deadline
        while self.cookie_replies == 0 and time.monotonic() < end:
            if self._stop.wait(step):
                return
            if self.cookie_replies == 0:
                self.faster()

    def _count(self, data: bytes) -> None:
        if len(data) == COOKIE_REPLY_SIZE and message_type(data) == MESSAGE_COOKIE_REPLY:
            self.cookie_replies += 1
        else:
            self.other_replies += 1

    def stop(self) -> FloodStats:
        stats = super().stop()
        if self._receiver.is_alive():
            self._receiver.join(5)
        return stats
