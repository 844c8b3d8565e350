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

import socket
import threading
import time
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

    def __init__(self, host: Host, target: tuple[str, int], target_key: PublicKey) -> None:
        family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
        self._sock = host.socket(family, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
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
        pool, sendto, target = self._pool, self._sock.sendto, self._target
        n = len(pool)
        i = 0
        while not self._stop.is_set():
            for _ in range(512):
                try:  # noqa: SIM105 (contextlib.suppress costs too much per datagram)
                    sendto(pool[i % n], target)
                except OSError:  # a full socket buffer (ENOBUFS): go on
                    pass
                i += 1
            self.sent = i
            self.seconds = time.monotonic() - started
        self.sent = i
        self.seconds = time.monotonic() - started

    def _receive(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data = self._sock.recv(2048)
            except TimeoutError:
                continue
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
        self._sock.close()

    def __enter__(self) -> HandshakeFlood:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
