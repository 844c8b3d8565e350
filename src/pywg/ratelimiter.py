"""Token buckets: per source for handshake messages under load (whitepaper §5.3), and one alone.

`RateLimiter`, as Linux and wireguard-go: 20 handshake packets per second per
source with a burst of 5 (other rates on request: the home relay limits its
control messages with it); IPv4 sources are keyed by their full address,
IPv6 by their /64. Memory is bounded: idle entries are dropped after a
second, or once their bucket would be full again if that takes longer (a
slow rate), and when the table is full new sources are refused rather than
growing it. `TokenBucket` is one bucket, for a limit that is not per source.
"""

from __future__ import annotations

from dataclasses import dataclass

PACKETS_PER_SECOND = 20
PACKETS_BURST = 5
ENTRY_IDLE_TIMEOUT = 1.0
MAX_ENTRIES = 8192


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens per second up to `burst`; `take` spends one."""

    rate: float
    burst: float
    tokens: float
    last: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class RateLimiter:
    """`rate` per second and source, burst `burst` (idle after ENTRY_IDLE_TIMEOUT: full again)."""

    def __init__(
        self,
        max_entries: int = MAX_ENTRIES,
        *,
        rate: float = PACKETS_PER_SECOND,
        burst: float = PACKETS_BURST,
    ) -> None:
        # key -> [tokens, last time]; a token is `cost` seconds of credit
        self._table: dict[bytes, list[float]] = {}
        self._max_entries = max_entries
        self._last_gc = float("-inf")
        self._cost = 1.0 / rate
        self._max_tokens = self._cost * burst
        # dropping an entry fills its bucket: only once it would be full anyway
        self._idle = max(ENTRY_IDLE_TIMEOUT, self._max_tokens)

    @staticmethod
    def _key(ip: bytes) -> bytes:
        return ip if len(ip) == 4 else ip[:8]  # IPv6: the /64

    def _gc(self, now: float) -> None:
        if now - self._last_gc < ENTRY_IDLE_TIMEOUT:
            return
        self._last_gc = now
        stale = [k for k, (_, t) in self._table.items() if now - t > self._idle]
        for k in stale:
            del self._table[k]

    def allow(self, ip: bytes, now: float) -> bool:
        """Take one token for this source address (4 or 16 packed bytes)."""
        self._gc(now)
        key = self._key(ip)
        entry = self._table.get(key)
        if entry is None:
            if len(self._table) >= self._max_entries:
                return False
            self._table[key] = [self._max_tokens - self._cost, now]
            return True
        tokens = min(self._max_tokens, entry[0] + (now - entry[1]))
        entry[1] = now
        if tokens < self._cost:
            entry[0] = tokens
            return False
        entry[0] = tokens - self._cost
        return True

    def would_allow(self, ip: bytes, now: float) -> bool:
        """Whether `allow` would take a token for this source now (nothing spent)."""
        entry = self._table.get(self._key(ip))
        if entry is None:
            return True
        return min(self._max_tokens, entry[0] + (now - entry[1])) >= self._cost

    def __len__(self) -> int:
        return len(self._table)
