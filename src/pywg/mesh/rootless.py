"""A mesh node with no TUN and no root: `pywg join --userspace`.

`RootlessNode` is a `MeshNode` whose tunnel is a `UserspaceTunnel`: its
packets go to a user-space stack (`pywg.proxy.stacknet`) holding the node's
mesh addresses, and programs reach the mesh through the proxies the command
asks for (SOCKS5, HTTP, forwards). Everything that would change the machine
is left out: no interface addresses or routes (the roster's routes are
only noted), no forwarding or NAT, no resolver entries; the UAPI socket
lives in the state directory. Names are answered from the roster itself
(NAME and NAME.DOMAIN), so a lookup never leaves the tunnel.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from ..asyncio.tunnel import Tunnel
from ..asyncio.uapi_server import UapiServer
from ..asyncio.userspace import UserspaceTunnel
from ..proxy.network import Network
from ..proxy.serving import ClientServer
from ..proxy.stacknet import StackFactory, StackLike, StackNetwork, make_stack
from .agent import JoinOptions, MeshNode
from .dns import DEFAULT_DOMAIN
from .names import roster_entries
from .schema import Roster
from .state import NodeState

log = logging.getLogger("pywg.mesh")

# Starts the command's proxies on the stack's network; they are aborted at the end.
ProxyStarter = Callable[[Network], Awaitable[Sequence[ClientServer]]]


def roster_names(roster: Roster) -> dict[str, list[str]]:
    """Every name of the roster, bare and in the mesh's domain, lower case -> addresses."""
    domain = (roster.domain or DEFAULT_DOMAIN).strip(".").lower()
    names: dict[str, list[str]] = {}
    for name, addresses in roster_entries(roster):
        bare = name.lower()
        for key in (bare, f"{bare}.{domain}"):
            names.setdefault(key, [a.partition("/")[0] for a in addresses])
    return names


class RootlessNode(MeshNode):
    """A `MeshNode` on a user-space stack; see the module docstring."""

    def __init__(
        self,
        options: JoinOptions,
        state: NodeState,
        proxies: ProxyStarter,
        stack_factory: StackFactory = make_stack,
    ) -> None:
        super().__init__(options, state)
        self._start_proxies = proxies
        self._stack_factory = stack_factory
        self.stack: StackLike | None = None
        self.servers: Sequence[ClientServer] = ()

    def _make_tunnel(self) -> Tunnel:
        return UserspaceTunnel(
            self.options.interface,
            private_key=self.state.wireguard,
            listen_port=self.options.listen_port,
        )

    def _make_uapi_server(self, tunnel: Tunnel) -> UapiServer:
        return UapiServer(tunnel, directory=self.state.directory)

    async def _interface_up(self, roster: Roster) -> None:
        """The stack on the tunnel's link, at this node's addresses, and the proxies on it."""
        tunnel = self.tunnel
        assert isinstance(tunnel, UserspaceTunnel)
        cidrs = [f"{a}/{roster.network.of(a).prefixlen}" for a in roster.me.addresses]
        self.stack = self._stack_factory(tunnel.link, cidrs)
        network = StackNetwork(self.stack, self._resolve)
        self.servers = await self._start_proxies(network)
        log.info("%s (user space): %s", tunnel.name, ", ".join(cidrs))

    async def _resolve(self, name: str) -> list[str]:
        roster = self.roster
        if roster is None:
            return []
        return roster_names(roster).get(name.rstrip(".").lower(), [])

    def _set_routes(self, wanted: set[str]) -> None:
        """The stack sends everything into the tunnel: routes are only noted."""
        self.routes = set(wanted)

    def _teardown(self) -> None:
        for server in self.servers:
            server.abort()
        if self.stack is not None:
            self.stack.close()
        super()._teardown()
