"""pywg.netstack: a user-space IPv4/IPv6 stack (TCP, UDP, ICMP echo) over a `PacketLink`.

It lets a program reach a WireGuard network without TUN or privileges: `Stack` gives
asyncio's own stream and datagram APIs on top of the tunnel's IP packets. The protocol
modules are sans-IO (`ip`, `tcpwire`, `udp`, `icmp` parse and build; `tcp` is the
RFC 9293 machine with `rto`, `congestion`, `reassembly`, `scoreboard`); `stack`,
`listener`, `transport`, `datagram`, `server` and `api` are the asyncio shell.
"""

from pywg.netstack.api import Stack
from pywg.netstack.resolve import DnsResolver, Resolver
from pywg.netstack.server import Server
from pywg.netstack.tcb import TcpConfig
from pywg.netstack.transport import TcpTransport

__all__ = ["DnsResolver", "Resolver", "Server", "Stack", "TcpConfig", "TcpTransport"]
