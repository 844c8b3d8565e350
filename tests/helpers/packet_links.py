"""Two netstacks back to back over an in-memory link (`pywg.lab.memlink`), for the tests."""

from __future__ import annotations

from pywg.lab.memlink import MemoryLink, link_pair
from pywg.netstack import Stack, TcpConfig

__all__ = ["MemoryLink", "link_pair", "stack_pair"]

A_ADDRS = ("10.0.0.1", "fd00::1")
B_ADDRS = ("10.0.0.2", "fd00::2")
# timers scaled to an in-memory link whose round trip is microseconds
FAST_TCP = {"rto_min": 0.03, "delayed_ack": 0.005}


def stack_pair(
    mtu: int = 1420, seed: int = 1, **tcp: object
) -> tuple[Stack, Stack, MemoryLink, MemoryLink]:
    """Two stacks (A: 10.0.0.1/fd00::1, B: 10.0.0.2/fd00::2) back to back: (A, B, A's link, B's)."""
    a, b = link_pair(mtu, seed)
    config = TcpConfig(**{**FAST_TCP, **tcp})  # type: ignore[arg-type]
    return Stack(a, A_ADDRS, tcp=config), Stack(b, B_ADDRS, tcp=config), a, b
