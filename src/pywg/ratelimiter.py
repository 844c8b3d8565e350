"""Per-source token bucket for handshake messages under load (whitepaper §5.3).

As Linux and wireguard-go: 20 handshake packets per second per source with a
burst of 5; IPv4 sources are keyed by their full address, IPv6 by their /64.
Memory is bounded: idle entries are dropped after a second, and when the table
is full new sources are refused rather than growing it.
"""

from __future__ import annotations

PACKETS_PER_SECOND = 20
PACKETS_BURST = 5
PACKET_COST = 1.0 / PACKETS_PER_SECOND
MAX_TOKENS = PACKET_COST * PACKETS_BURST
ENTRY_IDLE_TIMEOUT = 1.0
MAX_ENTRIES = 8192


class RateLimiter:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        # key -> [tokens, last time]
        self._table: dict[bytes, list[float]] = {}
        self._max_entries = max_entries
        self._last_gc = float("-inf")

    @staticmethod
    def _key(ip: bytes) -> bytes:
        return ip if len(ip) == 4 else ip[:8]  # IPv6: the /64

    def _gc(self, now: float) -> None:
        if now - self._last_gc < ENTRY_IDLE_TIMEOUT:
            return
        self._last_gc = now
        stale = [k for k, (_, t) in self._table.items() if now - t > ENTRY_IDLE_TIMEOUT]
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
            self._table[key] = [MAX_TOKENS - PACKET_COST, now]
            return True
        tokens = min(MAX_TOKENS, entry[0] + (now - entry[1]))
        entry[1] = now
        if tokens < PACKET_COST:
            entry[0] = tokens
            return False
        entry[0] = tokens - PACKET_COST
        return True

    def __len__(self) -> int:
        return len(self._table)
