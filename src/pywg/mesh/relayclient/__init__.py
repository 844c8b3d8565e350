"""A node's side of its home relay (docs/relay.md, "The client's side"): `RelayLink`.

- `udp`: the association from the tunnel's own WireGuard socket (a signed
  STUN Binding request through `Tunnel.stun_request`), refreshed;
- `proxy`: a TCP connection, through an HTTP `CONNECT` proxy when one is set;
- `tcp`: TLS, the HTTP upgrade, CHALLENGE → HELLO → OK, then frames;
- `bridge`: the local UDP socket that carries the tunnel's relayed datagrams
  to and from a TCP session;
- `link`: `RelayLink`, which keeps one transport up, preferring UDP.

The agent (`pywg.mesh.agent`) keeps one link to its home relay (`pywg.mesh.home`).
"""

from __future__ import annotations

from .config import NodeIdentity, RelayClientError, Timing
from .link import RelayLink
from .proxy import ProxyError
from .tcp import RelayRefused, TcpSession

__all__ = [
    "NodeIdentity",
    "ProxyError",
    "RelayClientError",
    "RelayLink",
    "RelayRefused",
    "TcpSession",
    "Timing",
]
