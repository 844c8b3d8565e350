"""Proxies into a network: SOCKS5, HTTP CONNECT and port forwards, over any `Network`.

Rootless operation puts a WireGuard tunnel behind a user-space stack; these
let ordinary programs use it: `Socks5Server` (RFC 1928, CONNECT and UDP
ASSOCIATE, names resolved by the network), `HttpProxy` (CONNECT and plain
http:// requests) and `PortForward` (a local service at the node's tunnel
address). Each is written against `network.Network`, so it runs on the
kernel's sockets (`KernelNetwork`) as well as on a tunnel's stack, and each
keeps `limits.Limits`.
"""

from __future__ import annotations

from .forward import ForwardSpec, PortForward, parse_forward
from .http_proxy import HttpProxy
from .limits import Limits
from .network import DatagramEndpoint, KernelNetwork, Network
from .socks5_server import Socks5Server

__all__ = [
    "DatagramEndpoint",
    "ForwardSpec",
    "HttpProxy",
    "KernelNetwork",
    "Limits",
    "Network",
    "PortForward",
    "Socks5Server",
    "parse_forward",
]
