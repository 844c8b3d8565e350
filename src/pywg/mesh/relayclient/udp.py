"""The UDP association (docs/relay.md, "Association") from the tunnel's WireGuard socket.

The request is a signed STUN Binding request sent with `Tunnel.stun_request`
(its transaction-id matching), so the relay sees, and records, the NAT
mapping the tunnel's WireGuard traffic uses. The relay takes an association
only if its time is newer than the last one it took from the node, so every
attempt is a new request with a new time (a retransmission of an answered
request would be refused, and its lost answer never repeated).
"""

from __future__ import annotations

import asyncio
import socket
import time

from ... import stun
from ...asyncio.tunnel import Tunnel
from .. import wire
from ..schema import HomeRelay
from .config import NodeIdentity, RelayClientError

ATTEMPTS = 3  # requests per association, spread over its timeout (RFC 8489 §6.2.1 retransmits)


class Associator:
    """Associations with one relay, each newer than the last (strictly increasing time)."""

    def __init__(self, tunnel: Tunnel, node: NodeIdentity, relay: HomeRelay) -> None:
        self.tunnel = tunnel
        self.node = node
        self.relay = relay
        self._last_ms = 0
        self.endpoint: tuple[str, int] = (relay.host, relay.udp_port)  # resolved when answered

    async def _resolve(self) -> tuple[str, int]:
        """The relay's UDP port at an IP address (its host may be a name)."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                self.relay.host, self.relay.udp_port, type=socket.SOCK_DGRAM
            )
        except OSError as exc:
            raise RelayClientError(f"cannot resolve {self.relay.host}: {exc}") from None
        if not infos:
            raise RelayClientError(f"cannot resolve {self.relay.host}")
        return str(infos[0][4][0]), int(infos[0][4][1])

    def _request(self, transaction_id: bytes) -> bytes:
        self._last_ms = max(self._last_ms + 1, int(time.time() * 1000))
        return wire.association_request(
            transaction_id,
            self.node.wireguard_key,
            self.node.control,
            self.relay.key,
            self._last_ms,
        )

    async def associate(self, timeout: float) -> int:
        """Associate; the node id the relay answered. RelayClientError if no answer came
        within `timeout` seconds, or the answer is not an association's."""
        each = timeout / ATTEMPTS
        target = await self._resolve()
        for _ in range(ATTEMPTS):
            try:
                response = await self.tunnel.stun_request(
                    target, timeout=each, rto=each, make=self._request
                )
            except TimeoutError:
                continue
            except OSError as exc:  # the socket refused the send (no route, ...)
                raise RelayClientError(f"cannot send the association: {exc}") from None
            self.endpoint = target
            return _node_id(response)
        raise RelayClientError(f"no answer to the association within {timeout:g} s")


def _node_id(response: stun.BindingResponse) -> int:
    node_id = wire.answered_node_id(response)
    if node_id is None or node_id == 0:
        raise RelayClientError("the relay's answer carries no node id (not an association)")
    return node_id
