"""The bounds every proxy server keeps: connections, header sizes, handshake and connect times.

A proxy on localhost still meets programs that misbehave: a client that opens
thousands of connections, sends an endless header, or connects and says
nothing. Each is held to these limits; past them it gets an error reply or
a close, never more memory or a task that lives forever.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    max_connections: int = 512  # clients served at once; more are closed at accept
    max_header_bytes: int = 16 * 1024  # an HTTP request head
    handshake_timeout: float = 10.0  # from accept to a complete request
    connect_timeout: float = 15.0  # to reach the destination
    max_udp_associations: int = 64  # SOCKS5 UDP ASSOCIATE at once (each holds two sockets)


class Gate:
    """A count of clients in service against a maximum (no waiting: over it, refuse)."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.active = 0
        self.refused = 0

    def enter(self) -> bool:
        if self.active >= self.maximum:
            self.refused += 1
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        self.active -= 1
