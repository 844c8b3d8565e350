"""Initial sequence numbers (RFC 6528) and SYN cookies (RFC 4987 §3.6).

An ISN is a 4-microsecond clock plus a keyed hash of the connection's addresses and
ports, so that an off-path attacker cannot guess it. A SYN cookie is the ISN of a SYN-ACK
that carries, instead of state kept here, what the answering ACK must give back: a 5-bit
time counter (64 s steps), a 3-bit index into a table of MSS values, and 24 bits of keyed
hash over both, the addresses, the ports and the client's ISN.
"""

from __future__ import annotations

import hashlib
import os

MSS_TABLE = (536, 1024, 1220, 1280, 1360, 1380, 1400, 1440)
_COOKIE_PERIOD = 64.0


class Sequencer:
    """The stack's secret for ISNs and cookies."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret if secret is not None else os.urandom(32)

    def _hash(self, *parts: bytes | int) -> int:
        h = hashlib.blake2s(key=self._secret, digest_size=4)
        for part in parts:
            h.update(part if isinstance(part, bytes) else part.to_bytes(8, "big"))
        return int.from_bytes(h.digest(), "big")

    def isn(self, key: tuple[bytes, int, bytes, int], now: float) -> int:
        """ISN = M + F(localip, localport, remoteip, remoteport, secretkey) (RFC 6528 §3)."""
        local, lport, remote, rport = key
        return (int(now * 250_000) + self._hash(local, lport, remote, rport)) & 0xFFFFFFFF

    def cookie(
        self, key: tuple[bytes, int, bytes, int], client_isn: int, mss: int, now: float
    ) -> int:
        """The ISN of a SYN-ACK sent without keeping state."""
        index = max(i for i, value in enumerate(MSS_TABLE) if value <= max(mss, MSS_TABLE[0]))
        counter = int(now / _COOKIE_PERIOD) & 0x1F
        return counter << 27 | index << 24 | self._cookie_hash(key, client_isn, counter, index)

    def check_cookie(
        self, key: tuple[bytes, int, bytes, int], client_isn: int, cookie: int, now: float
    ) -> int | None:
        """The MSS a valid cookie (this period or the last) encodes; None if it is not one."""
        counter, index = cookie >> 27, (cookie >> 24) & 0x7
        current = int(now / _COOKIE_PERIOD) & 0x1F
        if counter not in (current, (current - 1) & 0x1F):
            return None
        if cookie & 0xFFFFFF != self._cookie_hash(key, client_isn, counter, index):
            return None
        return MSS_TABLE[index]

    def _cookie_hash(
        self, key: tuple[bytes, int, bytes, int], client_isn: int, counter: int, index: int
    ) -> int:
        local, lport, remote, rport = key
        return (
            self._hash(b"cookie", local, lport, remote, rport, client_isn, counter, index)
            & 0xFFFFFF
        )
