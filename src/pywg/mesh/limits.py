"""What the coordinator grants one source address: connections, refused requests, time.

The coordinator faces the internet (docs/mesh.md, "Facing the internet").
Per source address (IPv4: the address; IPv6: its /64, as
`pywg.ratelimiter`):

- at most `Limits.connections_per_source` connections at once; one more is
  reset as it is accepted (`pywg.mesh.guardedsite`);
- refused requests (401: a wrong join token, a bad signature, not a
  member) cost a token from a bucket of `refusal_burst`, refilled at
  `refusals_per_second`; while it is empty every request from that source is
  answered 429 before any work is done for it (`SourceGuard`);
- a connection must complete the headers of its next request within
  `idle_timeout` of connecting or of its last answer (aiohttp's keep-alive
  timer, which covers a request whose headers have not all come), and a
  request's body must arrive within `body_timeout` (the coordinator's
  reading of it; an unread body is drained for at most as long). A TLS
  handshake must end within `idle_timeout`. A long poll of a member is an
  answer being prepared, not an idle connection: it waits as long as it asked.

This module has no I/O (the commands read its defaults without loading
aiohttp); `pywg.mesh.guardedsite` puts the connection count in front of
aiohttp.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ..ratelimiter import RateLimiter

CONNECTIONS_PER_SOURCE: Final = 256  # a home behind one NAT: a few per node
REFUSALS_PER_SECOND: Final = 1.0
REFUSAL_BURST: Final = 20
IDLE_TIMEOUT: Final = 30.0  # above aiohttp's client keep-alive (15 s): the client closes first
BODY_TIMEOUT: Final = 10.0
MAX_SOURCES: Final = 65536  # sources with refusals remembered (then new ones go unlimited)


@dataclass(frozen=True, slots=True)
class Limits:
    connections_per_source: int = CONNECTIONS_PER_SOURCE
    refusals_per_second: float = REFUSALS_PER_SECOND
    refusal_burst: int = REFUSAL_BURST
    idle_timeout: float = IDLE_TIMEOUT
    body_timeout: float = BODY_TIMEOUT

    def __post_init__(self) -> None:
        if self.connections_per_source < 1 or self.refusal_burst < 1:
            raise ValueError("the connections and refusals allowed a source are at least 1")
        for value in (self.refusals_per_second, self.idle_timeout, self.body_timeout):
            if not 0 < value < 86400:
                raise ValueError("rates and timeouts are positive (and below a day)")

    def runner_options(self) -> dict[str, Any]:
        """The options of aiohttp's request handler that enforce these limits."""
        return {"keepalive_timeout": self.idle_timeout, "lingering_time": self.body_timeout}


def source_key(host: object) -> bytes | None:
    """The packed address a peer is counted under (an IPv4-mapped IPv6 address as the
    IPv4 address); None if `host` is not an IP address (a Unix socket)."""
    if not isinstance(host, str):
        return None
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    packed = address.packed
    return packed if len(packed) == 4 else packed[:8]  # IPv6: the /64


class SourceGuard:
    """The per-source counts: open connections and the refusals bucket."""

    def __init__(self, limits: Limits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self._clock = clock
        self._refusals = RateLimiter(
            MAX_SOURCES, rate=limits.refusals_per_second, burst=limits.refusal_burst
        )
        self._connections: Counter[bytes] = Counter()
        self.reset_connections = 0  # refused for being one too many
        self.limited_requests = 0  # answered 429

    def blocked(self, source: bytes | None) -> bool:
        """Whether `source` has spent its refusals (its requests get 429 until it waits)."""
        if source is None or self._refusals.would_allow(source, self._clock()):
            return False
        self.limited_requests += 1
        return True

    def refused(self, source: bytes | None) -> None:
        """A request from `source` was refused (401): one token less."""
        if source is not None:
            self._refusals.allow(source, self._clock())

    def connection_opened(self, source: bytes | None) -> bool:
        """Count a new connection; False (not counted) if `source` has its most already."""
        if source is None:
            return True
        if self._connections[source] >= self.limits.connections_per_source:
            self.reset_connections += 1
            return False
        self._connections[source] += 1
        return True

    def connection_closed(self, source: bytes | None) -> None:
        if source is None:
            return
        self._connections[source] -= 1
        if self._connections[source] <= 0:
            del self._connections[source]

    def connections(self, source: bytes) -> int:
        return self._connections.get(source, 0)
