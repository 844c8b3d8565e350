"""A handshake flood from a lab host: valid-mac1 initiations from keys nobody knows.

Used by the under-load scenarios: enough handshake messages that the target
goes "under load" (whitepaper §5.3) and must answer initiations without a
valid mac2 with cookie replies. The messages are real initiations, built by
the core for random static keys the target does not know (so it can never
complete one), each with a valid mac1 for the target's public key. They are
precomputed and sent round-robin from one socket on a background thread as
fast as Python goes; the replies (cookie replies, type 3) are counted.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Sequence
from types import TracebackType

from ..cookie import CookieGenerator
from ..crypto import tai64n
from ..handshake import create_initiation
from ..keys import PrivateKey, PublicKey
from ..lab import Host
from ..noise import KeyPair

POOL = 256  # distinct initiations, sent round-robin


def valid_mac1_initiations(target: PublicKey, count: int = POOL) -> list[bytes]:
    """`count` initiations from random unknown keys, with a valid mac1 for `target`."""
    out = []
    generator = CookieGenerator(bytes(target))
    for i in range(count):
        static = PrivateKey.generate()
        created = create_initiation(
            KeyPair.from_private(bytes(static)), bytes(target), i + 1, tai64n(time.time())
        )
        out.append(generator.add_macs(created.message, 116, 0.0))
    return out


class HandshakeFlood:
    """Flood `target` (address, port) from `host` until :meth:`stop` (or the context exits)."""

    def __init__(
        self,
        host: Host,
        target: tuple[str, int],
        target_key: PublicKey,
        sources: Sequence[str] = (),
    ) -> None:
        """`sources`: addresses of `host` to send from, round-robin (default: one, the
        kernel's choice). Implementations limit handshakes per source address, so
        a flood that must put the target under load comes from many."""
        family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
        self._socks = []
        for source in sources or [""]:
            sock = host.socket(family, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            if source:
                sock.bind((source, 0))
            sock.setblocking(False)
            self._socks.append(sock)
        self._target = target
        self._pool = valid_mac1_initiations(target_key)
        self._stop = threading.Event()
        self.sent = 0
        self.cookie_replies = 0
        self.other_replies = 0
        self.seconds = 0.0
        self._threads = [
            threading.Thread(target=self._send, name="flood-send", daemon=True),
            threading.Thread(target=self._receive, name="flood-recv", daemon=True),
        ]

    def start(self) -> HandshakeFlood:
        for thread in self._threads:
            thread.start()
        return self

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def _send(self) -> None:
        started = time.monotonic()
        pool, target = self._pool, self._target
        sends = [sock.sendto for sock in self._socks]
        n, m = len(pool), len(sends)
        i = 0
        while not self._stop.is_set():
            for _ in range(512):
                try:  # noqa: SIM105 (contextlib.suppress costs too much per datagram)
                    sends[i % m](pool[i % n], target)
                except OSError:  # a full socket buffer (EAGAIN, ENOBUFS): go on
                    pass
                i += 1
            self.sent = i
            self.seconds = time.monotonic() - started
        self.sent = i
        self.seconds = time.monotonic() - started

    def _receive(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select(self._socks, [], [], 0.2)
            for sock in ready:
                while True:
                    try:
                        data = sock.recv(2048)
                    except BlockingIOError:
                        break
                    except OSError:
                        return
                    if len(data) == 64 and data[0] == 3:
                        self.cookie_replies += 1
                    else:
                        self.other_replies += 1

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(5)
        for sock in self._socks:
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
