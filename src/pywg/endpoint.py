"""UDP endpoints: the (host, port) a peer is reached at, in one canonical form.

An `Endpoint` is `(host, port)` with `host` a numeric IP address as
`ipaddress` writes it, IPv4-mapped IPv6 turned into IPv4 and no scope id:
the form the core compares, keys tables on and reports. Sockets hand out
other shapes (4-tuples for IPv6, mapped addresses on a dual-stack socket);
`normalize_endpoint` folds them. The text form is the one `wg(8)` and the
UAPI use: `a.b.c.d:port` or `[v6]:port`.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Final

from .exceptions import LocalProtocolError
from .redact import quote

__all__ = [
    "IN6_PKTINFO_SIZE",
    "AddressLike",
    "Endpoint",
    "SourceMessage",
    "format_endpoint",
    "normalize_endpoint",
    "parse_endpoint",
]

Endpoint = tuple[str, int]
# what a socket gives or takes: (host, port), or (host, port, flowinfo, scope_id) for IPv6
AddressLike = tuple[str, int] | tuple[str, int, int, int]
# our side of an endpoint: the PKTINFO control message (level, type, data) that sends
# from the address the peer wrote to (ip(7) IP_PKTINFO, RFC 3542 §6.1 IPV6_PKTINFO)
SourceMessage = tuple[int, int, bytes]
IN6_PKTINFO_SIZE: Final = 20  # struct in6_pktinfo, the larger PKTINFO form (in_pktinfo: 12)

_PORT: Final = re.compile(r"0*[0-9]{1,5}")  # leading zeros are fine, as for Go's ParseUint


def normalize_endpoint(addr: AddressLike | tuple[object, ...]) -> Endpoint:
    """(host, port) with a canonical host; LocalProtocolError unless an IP address and port."""
    try:
        return _normalize_cached(addr)
    except TypeError:  # unhashable: not a tuple of str/int
        raise LocalProtocolError(f"bad address {quote(addr)}") from None


@functools.lru_cache(maxsize=4096)
def _normalize_cached(addr: tuple[object, ...]) -> Endpoint:
    if len(addr) < 2:
        raise LocalProtocolError(f"bad address {quote(addr)}")
    host, port = addr[0], addr[1]
    try:
        ip = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        raise LocalProtocolError(f"bad address {quote(addr)}") from None
    if not isinstance(port, int) or not 0 <= port <= 0xFFFF:
        raise LocalProtocolError(f"bad port in {quote(addr)}")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (str(ip), port)


def clear_cache() -> None:
    """Forget the memoized normalizations (a memory test wants a clean baseline)."""
    _normalize_cached.cache_clear()


def format_endpoint(endpoint: Endpoint) -> str:
    """`a.b.c.d:port` or `[v6]:port`, as wg(8) and the UAPI write endpoints."""
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_endpoint(text: str) -> Endpoint:
    """`a.b.c.d:port` or `[v6]:port`, numeric only, canonical; ValueError otherwise.

    Host names are the caller's business (wg(8) resolves them before it
    speaks the UAPI; `pywg.config` resolves them for `pywg up`).
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or not _PORT.fullmatch(port_text) or int(port_text) > 0xFFFF:
        raise ValueError(f"bad endpoint {quote(text)} (want a.b.c.d:port or [v6]:port)")
    try:
        if host.startswith("[") and host.endswith("]"):
            ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv6Address(host[1:-1])
        else:
            ip = ipaddress.IPv4Address(host)
    except ValueError:
        raise ValueError(f"bad endpoint {quote(text)} (want a.b.c.d:port or [v6]:port)") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (str(ip).split("%", 1)[0], int(port_text))
