"""Handshake floods from a lab host: valid-mac1 initiations from keys nobody knows.

Used by the under-load scenarios: enough handshake messages that the target
goes "under load" (whitepaper §5.3) and must answer initiations without a
valid mac2 with cookie replies. The messages are real initiations
(:func:`flood_initiations`) for random static keys the target does not
know, so it can never complete one, each with a valid mac1 for the target's
public key. :class:`Flooder` sends any datagrams round-robin from one or
more sockets on a thread; :class:`HandshakeFlood` builds it in a lab host
and counts the cookie replies that come back.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

from .. import crypto
from ..constants import KEY_SIZE
from ..keys import PublicKey
from ..lab import Host, Link
from ..noise import DhKeyPair
from .adversary import craft_initiation

POOL = 256  # distinct initiations, sent round-robin


@dataclass(frozen=True, slots=True)
class FloodStats:
    sent: int
    errors: int
    seconds: float

    @property
    def rate(self) -> float:
        """Datagrams per second."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0


class Flooder:
    """Sends `datagrams` round-robin to `destination` from a thread, as fast as it can.

    With several sockets (bound to different source addresses) consecutive
    datagrams go out from consecutive sockets, as a flood from many hosts
    would arrive. Bounded: it stops by itself after `max_seconds`. Use as a
    context manager (stops, joins and closes the sockets on exit);
    `stats()` at any time.
    """

    def __init__(
        self,
        socks: Sequence[socket.socket],
        destination: tuple[str, int],
        datagrams: Sequence[bytes],
        *,
        max_seconds: float,
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

    def _run(self) -> None:
        for sock in self.socks:
            sock.settimeout(0.5)
        destination = self.destination
        plan = self._plan
        end = self._started + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < end:
            for sendto, data in plan:
                try:
                    sendto(data, destination)
                except OSError:  # ENOBUFS, a send-buffer timeout: keep going
                    self._errors += 1
            self._sent += len(plan)
        self._stopped = time.monotonic()

    def start(self) -> Flooder:
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

    def __enter__(self) -> Flooder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        for sock in self.socks:
            with contextlib.suppress(OSError):
                sock.close()


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


class HandshakeFlood:
    """Flood `target` (address, port) from `host` until :meth:`stop` (or the context exits).

    `sources`: addresses of `host` to send from, round-robin (default: one,
    the kernel's choice). Implementations limit handshakes per source
    address, so a flood that must put the target under load comes from many.
    """

    def __init__(
        self,
        host: Host,
        target: tuple[str, int],
        target_key: PublicKey,
        sources: Sequence[str] = (),
        *,
        max_seconds: float = 120.0,
    ) -> None:
        family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
        self._socks = []
        for source in sources or [""]:
            sock = host.socket(family, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            if source:
                sock.bind((source, 0))
            self._socks.append(sock)
        pool = flood_initiations(bytes(target_key), POOL)
        self._flooder = Flooder(self._socks, target, pool, max_seconds=max_seconds)
        self._stop = threading.Event()
        self._receiver = threading.Thread(target=self._receive, name="flood-recv", daemon=True)
        self.cookie_replies = 0
        self.other_replies = 0

    @property
    def sent(self) -> int:
        return self._flooder.stats().sent

    @property
    def rate(self) -> float:
        return self._flooder.stats().rate

    def start(self) -> HandshakeFlood:
        self._flooder.start()
        self._receiver.start()
        return self

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select(self._socks, [], [], 0.2)
            except (OSError, ValueError):  # closed under us
                return
            for sock in ready:
                while True:
                    try:
                        data = sock.recv(2048, socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        break
                    except OSError:
                        return
                    if len(data) == 64 and data[0] == 3:
                        self.cookie_replies += 1
                    else:
                        self.other_replies += 1

    def stop(self) -> None:
        self._flooder.stop()
        self._stop.set()
        if self._receiver.is_alive():
            self._receiver.join(5)
        for sock in self._socks:
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> HandshakeFlood:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
