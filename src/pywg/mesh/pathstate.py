"""How each node reaches each of its peers: what a node reports, what the coordinator keeps.

A `pywg join` node knows, per peer, where its WireGuard sends now: the
peer's relayed endpoint behind the home relay ("relay") or another one, a
path found by probing or one WireGuard roamed to ("direct")
(`pywg.mesh.paths`). `peer_paths` reads that off a running node; the node
sends it in its signed update requests (`schema.UpdateRequest.paths`) when
a path changes and every REFRESH seconds. The coordinator keeps the latest
report of each node in a `PathBook`, in memory with the time it came (a
restarted coordinator knows the paths again within REFRESH seconds), for
its admin (the web UI, docs/webui.md): it is never part of a roster.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from ..asyncio import Tunnel
from ..endpoint import Endpoint
from ..keys import PublicKey
from .client import CoordinatorClient, CoordinatorError
from .schema import MAX_PATHS, PathState

log = logging.getLogger("pywg.mesh.pathstate")

REFRESH: Final = 60.0  # seconds between a node's reports while no path changes
MIN_GAP: Final = 1.0  # seconds between two reports at least (paths may flap)
RETRY: Final = 5.0  # seconds after a report that did not go through


class _Peer(Protocol):
    """A mesh node's peer as `pywg.mesh.agent` holds it."""

    @property
    def key(self) -> PublicKey: ...
    @property
    def raw(self) -> bytes: ...
    @property
    def relay(self) -> Endpoint | None: ...


class MeshNode(Protocol):
    """What `peer_paths` reads of a running `pywg.mesh.agent.MeshNode`."""

    @property
    def tunnel(self) -> Tunnel | None: ...
    @property
    def peers(self) -> Mapping[bytes, _Peer]: ...


def peer_paths(node: MeshNode) -> tuple[PathState, ...]:
    """Each peer's path now: "relay" while WireGuard sends to its relayed endpoint,
    "direct" while it sends to another (peers with no endpoint yet are left out), by key."""
    tunnel = node.tunnel
    if tunnel is None:
        return ()
    found = []
    for peer in node.peers.values():
        wg_peer = tunnel.device.peers.get(peer.key)
        if wg_peer is None or wg_peer.endpoint is None:
            continue
        relayed = peer.relay is not None and wg_peer.endpoint == peer.relay
        found.append(PathState(peer.raw, "relay" if relayed else "direct", wg_peer.endpoint))
    found.sort(key=lambda state: state.peer)
    return tuple(found)


async def report_loop(node: MeshNode, client: CoordinatorClient) -> None:
    """Report the node's paths to the coordinator: within MIN_GAP of a change, and every
    REFRESH seconds (the coordinator shows when it heard last); runs until cancelled."""
    loop = asyncio.get_running_loop()
    sent: tuple[PathState, ...] | None = None
    sent_at = -math.inf
    while True:
        paths = peer_paths(node)[:MAX_PATHS]
        wait = MIN_GAP
        if paths != sent or loop.time() - sent_at >= REFRESH:
            try:
                await client.report_paths(paths)
                sent, sent_at = paths, loop.time()
            except CoordinatorError as exc:
                log.info("cannot report the paths: %s; again in %.0f s", exc, RETRY)
                wait = RETRY
        await asyncio.sleep(wait)


@dataclass(frozen=True, slots=True)
class PathReport:
    """One node's latest report: when it came (ms since the epoch) and its paths."""

    reported_ms: int
    paths: tuple[PathState, ...]


class PathBook:
    """The latest path report of each node, by node id (the coordinator's memory)."""

    def __init__(self) -> None:
        self._reports: dict[int, PathReport] = {}

    def report(self, node_id: int, paths: tuple[PathState, ...], now_ms: int) -> None:
        self._reports[node_id] = PathReport(now_ms, paths)

    def forget(self, node_id: int) -> None:
        """Drop a removed node's report (its id may be given to another)."""
        self._reports.pop(node_id, None)

    def of(self, node_id: int) -> PathReport | None:
        return self._reports.get(node_id)
