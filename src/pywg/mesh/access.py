"""The access policy in the mesh: checked and kept by the coordinator, given to each node.

Theory of operation (docs/policy.md, "In the mesh"). The policy's text is
kept by the store (`Store.policy`, a meta entry), and the tags each node
carries too (`Store.tags`, `Store.set_tags`: the coordinator says which
node has which; devices carry none). `check_policy` reads a text
and checks the node and device names it uses against the mesh's (a bad
policy raises `PolicyError` with its line and reason); `set_policy` stores
only a checked one, and moves the roster version so every node gets it.

For a roster, an `AccessView` (one per policy and set of members) says what
node N is given:

- `rules(N)`: the compiled inbound rules for traffic to N, its routes and,
  for a gateway, to and from its plain devices (`pywg.policy.compile_inbound`);
  None without a policy (N's filter stays off).
- `sees(N, other)`: whether `other`, a node or a device, is in N's roster at
  all. A node and the devices it is the gateway of form its *group*; N sees
  a node when some member of N's group and some member of that node's group
  may exchange packets (`pywg.policy.peers_allowed`), and a device when it
  is N's own or may exchange packets with N's group. Without a policy
  everyone sees everyone.

`AccessCache` keeps the view of the latest roster version: the long polls
one change wakes compile once, and without a policy nothing is compiled or
even gathered.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import cached_property
from typing import Final

from ..policy import (
    InboundRule,
    Member,
    Policy,
    PolicyError,
    check_names,
    compile_inbound,
    parse_policy,
    peers_allowed,
)
from ..policy.rules import IPNetwork
from .store import Device, Node, Store

__all__ = [
    "AccessCache",
    "AccessView",
    "check_policy",
    "members",
    "mesh_names",
    "set_policy",
]

log = logging.getLogger("pywg.mesh.access")


def mesh_names(store: Store) -> list[str]:
    """The names a policy may use: every node's and every device's."""
    return [n.name for n in store.nodes()] + [d.name for d in store.devices()]


def check_policy(text: str, names: Collection[str]) -> Policy:
    """The policy in `text`, its names all among `names`; `PolicyError` (line, reason) if not."""
    policy = parse_policy(text)
    check_names(policy, names)
    return policy


def set_policy(store: Store, text: str | None) -> int:
    """Check `text` against the mesh and store it (None: no policy); the new roster version.
    A refused policy (`PolicyError`) changes nothing: the one in force stays."""
    if text is not None:
        check_policy(text, mesh_names(store))
    return store.set_policy(text)


def _hosts(*addresses: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(a) for a in addresses)


def members(
    nodes: Sequence[Node],
    devices: Sequence[Device],
    tags: Mapping[str, frozenset[str]] | None = None,
) -> tuple[Member, ...]:
    """The nodes (with their approved routes and `tags`, node name -> its tags) and the
    devices (with their gateways), as the policy compiler takes them."""
    tags = tags or {}
    return (
        *(
            Member(
                n.name,
                _hosts(n.ipv4, n.ipv6),
                tags=tags.get(n.name, frozenset()),
                routes=_hosts(*n.approved_routes),
            )
            for n in nodes
        ),
        *(Member(d.name, _hosts(d.ipv4, d.ipv6), gateway=d.gateway) for d in devices),
    )


class AccessView:
    """What each member is given under one policy (None: no policy); module docstring."""

    def __init__(self, policy: Policy | None, mesh: Sequence[Member]) -> None:
        self.policy = policy
        self.mesh = {m.name: m for m in mesh}
        self._rules: dict[str, tuple[InboundRule, ...]] = {}
        self._reach: dict[str, frozenset[str]] = {}

    @cached_property
    def _allowed(self) -> dict[str, frozenset[str]]:
        assert self.policy is not None
        return peers_allowed(self.policy, self.mesh)

    @cached_property
    def _groups(self) -> dict[str, frozenset[str]]:
        """Each node's group: itself and the devices it is the gateway of."""
        groups = {n: {n} for n, m in self.mesh.items() if m.gateway is None}
        for name, member in self.mesh.items():
            if member.gateway is not None and member.gateway in groups:
                groups[member.gateway].add(name)
        return {n: frozenset(g) for n, g in groups.items()}

    def rules(self, node: str) -> tuple[InboundRule, ...] | None:
        """The inbound rules of `node`'s filter; None: no policy, no filter."""
        if self.policy is None:
            return None
        if node not in self._rules:
            self._rules[node] = compile_inbound(self.policy, self.mesh, node)
        return self._rules[node]

    def _reach_of(self, node: str) -> frozenset[str]:
        """Whom any member of `node`'s group may exchange packets with."""
        if node not in self._reach:
            group = self._groups.get(node, frozenset({node}))
            self._reach[node] = frozenset().union(*(self._allowed.get(m, ()) for m in group))
        return self._reach[node]

    def sees(self, node: str, other: str) -> bool:
        """Whether `other` (a node or a device) is in `node`'s roster."""
        if self.policy is None:
            return True
        member = self.mesh.get(other)
        if member is not None and member.gateway is not None:  # a device
            return member.gateway == node or other in self._reach_of(node)
        return bool(self._groups.get(other, frozenset({other})) & self._reach_of(node))


NO_POLICY: Final = AccessView(None, ())


class AccessCache:
    """The view of the latest roster version and policy (see the module docstring)."""

    def __init__(self) -> None:
        self._key: tuple[int, str] | None = None
        self._view = NO_POLICY

    def view(
        self, version: int, text: str | None, mesh: Callable[[], Sequence[Member]]
    ) -> AccessView:
        """The view of policy `text` (None: no policy) at roster `version`, over the
        members `mesh()` gives (`members`; asked only when the version or policy moved:
        every change of a member moves the version, and without a policy nothing is)."""
        if text is None:
            return NO_POLICY
        if self._key != (version, text):
            self._view = AccessView(_parsed(text), mesh())
            self._key = (version, text)
        return self._view


def _parsed(text: str | None) -> Policy | None:
    """The stored policy. It was checked when set; should it not read now, nothing is
    allowed (a policy in force fails closed, never open)."""
    if text is None:
        return None
    try:
        return parse_policy(text)
    except PolicyError as exc:
        log.error("the stored access policy does not read (line %s: %s)", exc.line, exc.reason)
        return Policy({}, frozenset(), {}, ())
