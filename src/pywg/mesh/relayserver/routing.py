"""Who is where, and where a datagram goes: the relay's tables and its forwarding step.

A node is *homed* here while it has an authenticated TCP connection or a UDP
association (a `Target` each); a datagram for it goes to the TCP connection
if there is one, else to the UDP association (docs/relay.md, "Which way the
relay sends to a node"). A node homed on another relay is reached through
the `Link` that announced it last (PRESENT, ABSENT). Each step on the
datagram path is a size and type check (`relayproto.message_id`) and a
dictionary lookup or two; the message is copied once, when its tag is
rewritten from the destination's id to the source's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from ..relayproto import (
    FrameType,
    RelayProtocolError,
    forward_payload,
    message_id,
    parse_forward,
    presence_payloads,
    with_id,
)
from ..schema import Member
from .membership import Membership


class Via(Enum):
    TCP = "tcp"
    UDP = "udp"


class Target(Protocol):
    """A way to one node homed here: its TCP connection or its UDP association."""

    @property
    def member(self) -> Member: ...

    def send_datagram(self, message: bytes) -> bool:
        """Send a tagged message (source id); False if it was dropped (counted by the target)."""
        ...

    def evict(self) -> None:
        """The membership no longer has this node as it was: end the association."""
        ...


class Link(Protocol):
    """An authenticated connection to another relay."""

    @property
    def peer_key(self) -> bytes: ...

    def send_frame(self, kind: int, payload: bytes) -> bool: ...


@dataclass(slots=True)
class _Homed:
    tcp: Target | None = None
    udp: Target | None = None

    def best(self) -> Target | None:
        return self.tcp if self.tcp is not None else self.udp


class Router:
    """The tables and the forwarding step; `counters` counts every datagram's fate."""

    def __init__(self, membership: Membership, counters: Counter[str]) -> None:
        self._membership = membership
        self._counters = counters
        # told the node id whenever a node's way here changes (the native loop's table)
        self.on_change: Callable[[int], None] | None = None
        self._local: dict[int, _Homed] = {}
        self._remote: dict[int, Link] = {}
        self._links: set[Link] = set()

    # -- local nodes -------------------------------------------------------------------------

    def attach(self, target: Target, via: Via) -> Target | None:
        """Home `target`'s node here over `via`; the target it replaces, if any."""
        node_id = target.member.node_id
        homed = self._local.get(node_id)
        if homed is None:
            homed = self._local[node_id] = _Homed()
            self._announce(FrameType.PRESENT, [node_id])
        previous = homed.tcp if via is Via.TCP else homed.udp
        if via is Via.TCP:
            homed.tcp = target
        else:
            homed.udp = target
        if self.on_change is not None:
            self.on_change(node_id)
        return previous if previous is not target else None

    def detach(self, target: Target, via: Via) -> None:
        """`target` ends (nothing happens if another one replaced it)."""
        node_id = target.member.node_id
        homed = self._local.get(node_id)
        if homed is None:
            return
        if via is Via.TCP and homed.tcp is target:
            homed.tcp = None
        elif via is Via.UDP and homed.udp is target:
            homed.udp = None
        if homed.tcp is None and homed.udp is None:
            del self._local[node_id]
            self._announce(FrameType.ABSENT, [node_id])
        if self.on_change is not None:
            self.on_change(node_id)

    def target(self, node_id: int) -> Target | None:
        homed = self._local.get(node_id)
        return None if homed is None else homed.best()

    def local_ids(self) -> list[int]:
        return list(self._local)

    # -- the forwarding step -----------------------------------------------------------------

    def route(self, source_id: bytes, message: bytes | memoryview) -> None:
        """A tagged message (destination id) from the node of `source_id` (3 bytes), associated."""
        destination = message_id(message)
        if destination == 0:
            self._counters["drop_malformed"] += 1
            return
        homed = self._local.get(destination)
        if homed is not None:
            target = homed.best()
            assert target is not None
            if target.send_datagram(with_id(message, source_id)):
                self._counters["delivered"] += 1
                self._counters["delivered_bytes"] += len(message)
            return
        link = self._remote.get(destination)
        if link is not None:
            if link.send_frame(FrameType.FORWARD, forward_payload(source_id, message)):
                self._counters["forwarded_to_relay"] += 1
            else:
                self._counters["drop_link_queue_full"] += 1
        elif self._membership.by_id(destination) is None:
            self._counters["drop_unknown_destination"] += 1
        else:
            self._counters["drop_no_route"] += 1

    def route_forwarded(self, payload: bytes) -> None:
        """A FORWARD from another relay: delivered here or dropped, never forwarded again."""
        try:
            source, destination, message = parse_forward(payload)
        except RelayProtocolError:
            self._counters["drop_malformed_forward"] += 1
            return
        target = self.target(destination)
        if target is None or self._membership.by_id(source) is None:
            self._counters["drop_forward_no_route"] += 1
            return
        if target.send_datagram(with_id(message, payload[:3])):
            self._counters["delivered_from_relay"] += 1
            self._counters["delivered_bytes"] += len(message)

    # -- other relays ------------------------------------------------------------------------

    def add_link(self, link: Link) -> None:
        """A relay link is up: tell it every node homed here."""
        self._links.add(link)
        for payload in presence_payloads(self.local_ids()):
            link.send_frame(FrameType.PRESENT, payload)

    def remove_link(self, link: Link) -> None:
        self._links.discard(link)
        for node_id in [i for i, owner in self._remote.items() if owner is link]:
            del self._remote[node_id]

    def learn(self, link: Link, ids: list[int]) -> None:
        """PRESENT from `link`: members among `ids` are homed there."""
        for node_id in ids:
            if self._membership.by_id(node_id) is not None:
                self._remote[node_id] = link

    def forget(self, link: Link, ids: list[int]) -> None:
        """ABSENT from `link`."""
        for node_id in ids:
            if self._remote.get(node_id) is link:
                del self._remote[node_id]

    def remote_count(self) -> int:
        return len(self._remote)

    def _announce(self, kind: FrameType, ids: list[int]) -> None:
        for link in list(self._links):
            for payload in presence_payloads(ids):
                link.send_frame(kind, payload)

    # -- membership changes ------------------------------------------------------------------

    def sweep(self) -> None:
        """Evict the targets whose node left or changed keys; forget remote ones that left."""
        for homed in list(self._local.values()):
            for target in (homed.tcp, homed.udp):
                if target is not None:
                    member = target.member
                    if self._membership.by_key(member.public_key) != member:
                        self._counters["evicted"] += 1
                        target.evict()
        for node_id in [i for i in self._remote if self._membership.by_id(i) is None]:
            del self._remote[node_id]
