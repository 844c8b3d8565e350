"""Port forwards: a local service exposed at a port of the node's tunnel address.

`--forward PORT=HOST:PORT` listens on PORT of one network (the node's stack,
so at its mesh address) and connects each client to HOST:PORT through
another (the kernel's: a service on this machine), splicing the two.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from .http_request import HttpError, parse_authority
from .limits import Limits
from .network import Listener, Network
from .serving import ClientServer
from .splice import splice


@dataclass(frozen=True, slots=True)
class ForwardSpec:
    """PORT=HOST:PORT: listen on `port`, connect to `host`:`target_port`."""

    port: int
    host: str
    target_port: int

    def __str__(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.port}={shown}:{self.target_port}"


def parse_forward(spec: str) -> ForwardSpec:
    """`PORT=HOST:PORT` (an IPv6 HOST in brackets); ValueError saying what is wrong."""
    port_text, equals, target = spec.partition("=")
    if not equals or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{spec!r}: expected PORT=HOST:PORT, PORT in 1..65535")
    try:
        host, target_port = parse_authority(target)
    except HttpError:
        raise ValueError(f"{spec!r}: expected PORT=HOST:PORT after the '='") from None
    return ForwardSpec(int(port_text), host, target_port)


class PortForward(ClientServer):
    """Clients of `listen` on `spec.port` are connected to `spec.host`:`spec.target_port`
    through `target`."""

    name = "forward"

    def __init__(self, spec: ForwardSpec, target: Network, limits: Limits | None = None) -> None:
        super().__init__(limits)
        self.spec = spec
        self.target = target

    async def start_forward(self, listen: Network) -> Listener:
        return await self.start_on(listen, self.spec.port)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(self.limits.connect_timeout):
            upstream = await self.target.open_connection(self.spec.host, self.spec.target_port)
        await splice((reader, writer), upstream)
