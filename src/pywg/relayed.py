"""Relayed endpoints: a peer reached through a mesh relay, held as an address WireGuard takes.

A mesh relay (docs/relay.md) forwards sealed WireGuard messages between
nodes by their 24-bit mesh ids: on the way to the relay a message carries
the destination's id in the three reserved bytes after its type, on the way
from it the source's (`tag`, `untag`; whitepaper §5.4 keeps those bytes zero
between WireGuard peers, and MAC1 covers them, so the receiver zeroes them
before anything else looks at the message).

So that the core, the UAPI and `wg show` need nothing new, a peer behind
relay number R is held at the endpoint ``[100::ID]:R`` (`endpoint`): an
address in the discard-only prefix 100::/64 (RFC 6666) that the socket
layers (`pywg.asyncio.udp`, the native plane) turn into "send to relay R,
tagged ID" and back. Roaming (§2.1) works unchanged: a message that arrives
through relay R from node ID comes from ``[100::ID]:R``.
"""

from __future__ import annotations

import ipaddress
from typing import Final

from .constants import (
    INITIATION_SIZE,
    MAX_RELAY_INDEX,
    MAX_RELAY_NODE_ID,
    MESSAGE_INITIATION,
    MESSAGE_TRANSPORT,
    RELAY_TAG_OFFSET,
    RELAY_TAG_SIZE,
    RELAYED_PREFIX_HIGH,
)
from .endpoint import Endpoint
from .stun import is_stun

PREFIX: Final = ipaddress.IPv6Network((RELAYED_PREFIX_HIGH << 112, 64))
_TAG_END: Final = RELAY_TAG_OFFSET + RELAY_TAG_SIZE


def endpoint(relay: int, node: int) -> Endpoint:
    """The endpoint of node `node` behind relay number `relay`."""
    if not 1 <= relay <= MAX_RELAY_INDEX:
        raise ValueError(f"a relay number is 1..{MAX_RELAY_INDEX}")
    if not 1 <= node <= MAX_RELAY_NODE_ID:
        raise ValueError(f"a mesh node id is 1..{MAX_RELAY_NODE_ID}")
    return str(PREFIX[node]), relay


def parse(where: Endpoint) -> tuple[int, int] | None:
    """(relay number, node id) of a relayed endpoint; None for any other endpoint."""
    host, port = where
    if not host.startswith("100:"):  # cheap first: almost every endpoint is not one
        return None
    try:
        address = ipaddress.IPv6Address(host)
    except ValueError:
        return None
    node = int(address) - int(PREFIX.network_address)
    if address not in PREFIX or not 1 <= node <= MAX_RELAY_NODE_ID:
        return None
    if not 1 <= port <= MAX_RELAY_INDEX:
        return None
    return port, node


def tag(message: bytes, node: int) -> bytes:
    """`message` with `node` in its reserved bytes (for the relay: where it goes)."""
    return message[:RELAY_TAG_OFFSET] + node.to_bytes(RELAY_TAG_SIZE, "big") + message[_TAG_END:]


def untag(message: bytes) -> tuple[int, bytes] | None:
    """(node id, `message` with its reserved bytes zero) of a tagged WireGuard message from
    a relay; None if it is not one (no WireGuard type, or no tag)."""
    if len(message) < _TAG_END or not MESSAGE_INITIATION <= message[0] <= MESSAGE_TRANSPORT:
        return None
    node = int.from_bytes(message[RELAY_TAG_OFFSET:_TAG_END], "big")
    if node == 0:
        return None
    return node, message[:RELAY_TAG_OFFSET] + bytes(RELAY_TAG_SIZE) + message[_TAG_END:]


def relay_stun(data: bytes) -> bool:
    """Whether a datagram from a relay is its STUN (an answer to an association or a
    Binding request) rather than a tagged WireGuard message. A success response's type
    0x0101 starts like a tagged initiation; the relay never sends a STUN message of an
    initiation's size, so one of exactly that size starting 0x01 is WireGuard."""
    return is_stun(data) and not (len(data) == INITIATION_SIZE and data[0] == MESSAGE_INITIATION)


class Relays:
    """The relays a socket sends relayed endpoints through: number -> the relay's endpoint.

    `outbound` turns a datagram for a relayed endpoint into one for its relay,
    tagged; `inbound` turns a tagged one from a relay into one from the relayed
    endpoint, untagged. Everything else passes unchanged, and with no relay
    set both cost one dict lookup at most.
    """

    def __init__(self) -> None:
        self._by_number: dict[int, Endpoint] = {}
        self._by_endpoint: dict[Endpoint, int] = {}

    def set(self, number: int, where: Endpoint | None) -> None:
        """Relay `number` is at `where` (normalized; None: no longer)."""
        if not 1 <= number <= MAX_RELAY_INDEX:
            raise ValueError(f"a relay number is 1..{MAX_RELAY_INDEX}")
        old = self._by_number.pop(number, None)
        if old is not None:
            del self._by_endpoint[old]
        if where is not None:
            if where in self._by_endpoint:
                raise ValueError(f"{where} is relay {self._by_endpoint[where]} already")
            self._by_number[number] = where
            self._by_endpoint[where] = number

    def get(self, number: int) -> Endpoint | None:
        return self._by_number.get(number)

    def items(self) -> list[tuple[int, Endpoint]]:
        return sorted(self._by_number.items())

    def __bool__(self) -> bool:
        return bool(self._by_number)

    def carrier(self, where: Endpoint) -> Endpoint:
        """The endpoint datagrams for `where` go to: its relay's, if it is relayed."""
        found = parse(where)
        relay = self._by_number.get(found[0]) if found is not None else None
        return where if relay is None else relay

    def outbound(self, data: bytes, where: Endpoint) -> tuple[bytes, Endpoint] | None:
        """What to send where for `data` to `where`; None: a relayed endpoint whose relay
        is not set (nowhere to send it)."""
        found = parse(where)
        if found is None:
            return data, where
        relay = self._by_number.get(found[0])
        return None if relay is None else (tag(data, found[1]), relay)

    def inbound(self, data: bytes, source: Endpoint) -> tuple[bytes, Endpoint]:
        """The datagram and its source as WireGuard must see them (untagged, from the
        relayed endpoint when it came tagged from a relay)."""
        number = self._by_endpoint.get(source)
        if number is None or relay_stun(data):
            return data, source
        untagged = untag(data)
        if untagged is None:
            return data, source  # the relay's own messages (STUN) and anything untagged
        node, message = untagged
        return message, endpoint(number, node)
