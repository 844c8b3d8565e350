"""The admin UI's pages (GET): what each shows, read from the coordinator's state.

- nodes: every node with its addresses, whether it is online (a signed
  request within ONLINE_WITHIN), its endpoints, routes, home relay and, as it
  last reported, how it reaches each peer (direct or relayed, and where);
  the plain WireGuard devices it carries; a button to remove it.
- routes: routes and exit nodes waiting for approval, each to approve or
  refuse; the approved and refused ones.
- tokens: the join tokens (a fingerprint of each, never the token), a form
  to make one, a button to revoke each.
- devices: the plain WireGuard devices, a form to add one, a button to
  remove each.
- policy: the access policy (`policy`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from aiohttp import web

from ...endpoint import Endpoint, format_endpoint
from ..auth import b64
from ..exits import EXIT_ROUTES, offers_exit, subnets
from ..schema import MAX_WAIT
from ..store import Node, now_ms
from .policy import policy_page
from .sessions import Session
from .ui import AdminUI

ONLINE_WITHIN: Final = int((MAX_WAIT + 30) * 1000)  # ms: a node long-polls at least this often
EXIT: Final = "exit"  # a form's prefix for both default routes (an exit node)


@dataclass(frozen=True, slots=True)
class PeerPath:
    name: str  # the peer's name (its key's start, for a peer that is gone)
    path: str  # "direct" or "relay"
    endpoint: str


@dataclass(frozen=True, slots=True)
class NodeRow:
    node: Node
    online: bool
    routes: tuple[str, ...]  # approved: subnets, and "exit" for an exit node
    paths: tuple[PeerPath, ...] = ()
    paths_ms: int | None = None  # when the node reported them
    devices: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Pending:
    node: str
    prefix: str  # a prefix, or EXIT
    label: str


def shown_routes(routes: list[str]) -> tuple[str, ...]:
    """Routes as the pages show them: an exit node's default routes as "exit node"."""
    return (("exit node",) if offers_exit(routes) else ()) + subnets(routes)


def node_rows(ui: AdminUI) -> list[NodeRow]:
    store = ui.coordinator.store
    nodes = store.nodes()
    devices = store.devices()
    names = {n.public_key: n.name for n in nodes} | {d.public_key: d.name for d in devices}
    now = now_ms()
    rows = []
    for node in nodes:
        report = ui.coordinator.paths.of(node.id)
        paths: tuple[PeerPath, ...] = ()
        if report is not None:
            paths = tuple(
                PeerPath(
                    names.get(p.peer, b64(p.peer)[:8] + "…"),
                    p.path,
                    _endpoint_text(p.endpoint),
                )
                for p in report.paths
            )
        rows.append(
            NodeRow(
                node=node,
                online=node.last_ms is not None and now - node.last_ms <= ONLINE_WITHIN,
                routes=shown_routes(node.approved_routes),
                paths=tuple(sorted(paths, key=lambda p: p.name.lower())),
                paths_ms=report.reported_ms if report is not None else None,
                devices=tuple(d.name for d in devices if d.gateway == node.name),
            )
        )
    return rows


def _endpoint_text(endpoint: Endpoint | None) -> str:
    return format_endpoint(endpoint) if endpoint is not None else "-"


def pending_routes(nodes: list[Node]) -> list[Pending]:
    found = []
    for node in nodes:
        pending = node.pending_routes
        if all(route in pending for route in EXIT_ROUTES):
            found.append(Pending(node.name, EXIT, "exit node (all internet traffic)"))
        found += [Pending(node.name, p, p) for p in subnets(pending)]
    return found


async def nodes_page(ui: AdminUI, request: web.Request, session: Session) -> web.Response:
    rows = node_rows(ui)
    return ui.html("nodes.html", session, rows=rows, now=now_ms(), page="nodes")


async def routes_page(ui: AdminUI, request: web.Request, session: Session) -> web.Response:
    nodes = ui.coordinator.store.nodes()
    settled = [
        (n.name, shown_routes(n.approved_routes), shown_routes(n.refused_routes))
        for n in nodes
        if n.approved_routes or n.refused_routes
    ]
    return ui.html(
        "routes.html", session, pending=pending_routes(nodes), settled=settled, page="routes"
    )


async def tokens_page(ui: AdminUI, request: web.Request, session: Session) -> web.Response:
    tokens = [t for t in ui.coordinator.store.tokens() if t.expires_ms > now_ms()]
    return ui.html("tokens.html", session, tokens=tokens, page="tokens")


async def devices_page(ui: AdminUI, request: web.Request, session: Session) -> web.Response:
    store = ui.coordinator.store
    return ui.html(
        "devices.html",
        session,
        devices=store.devices(),
        gateways=[n.name for n in store.nodes()],
        page="devices",
    )


PAGES: Final = {
    "nodes": nodes_page,
    "routes": routes_page,
    "tokens": tokens_page,
    "devices": devices_page,
    "policy": policy_page,
}
