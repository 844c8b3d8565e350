"""From a policy and the mesh's members to what each node enforces.

`compile_inbound` gives the rules that concern traffic arriving at one node
through its tunnel: traffic *to* it (its tunnel addresses and the subnets it
routes for) and, for a gateway of plain WireGuard devices, traffic to and
*from* those devices (a device cannot enforce anything itself; its packets
enter the mesh through its gateway's tunnel). `peers_allowed` says which
members may exchange packets at all, so that a roster can leave the others
out. No policy (``None``) means everyone reaches everyone: there is then
nothing to compile, and a node's filter is off.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .document import Policy, Selector
from .rules import InboundRule, IPNetwork

__all__ = ["Member", "compile_inbound", "peers_allowed", "resolve"]

ANYWHERE: tuple[IPNetwork, ...] = (
    ipaddress.IPv4Network("0.0.0.0/0"),
    ipaddress.IPv6Network("::/0"),
)


@dataclass(frozen=True)
class Member:
    """A node or a plain device of the mesh, as the compiler needs it."""

    name: str
    addresses: tuple[IPNetwork, ...]  # tunnel addresses (/32, /128)
    tags: frozenset[str] = field(default_factory=frozenset)
    routes: tuple[IPNetwork, ...] = ()  # subnets it routes for (approved)
    gateway: str | None = None  # a plain device: the node whose tunnel it uses

    def owned(self) -> tuple[IPNetwork, ...]:
        return self.addresses + self.routes


def resolve(policy: Policy, members: Mapping[str, Member], selector: Selector) -> list[IPNetwork]:
    """The prefixes `selector` names (a name no member has names none)."""
    if selector.kind == "any":
        return list(ANYWHERE)
    if selector.kind == "host":
        return list(policy.hosts[selector.name])
    return [prefix for m in _members_of(policy, members, selector) for prefix in m.addresses]


def _members_of(policy: Policy, members: Mapping[str, Member], selector: Selector) -> list[Member]:
    if selector.kind == "any":
        return list(members.values())
    if selector.kind == "group":
        names = [s.name for s in policy.groups[selector.name]]
        return [members[n] for n in names if n in members]
    if selector.kind == "tag":
        return [m for m in members.values() if selector.name in m.tags]
    if selector.kind == "name":
        return [members[selector.name]] if selector.name in members else []
    hosts = policy.hosts[selector.name]  # a host alias: the members it covers
    return [m for m in members.values() if _overlap(m.owned(), hosts)]


def _overlap(a: Iterable[IPNetwork], b: Iterable[IPNetwork]) -> list[IPNetwork]:
    """Where the prefixes of `a` and `b` meet: the narrower of each overlapping pair."""
    found: list[IPNetwork] = []
    b = list(b)
    for x in a:
        for y in b:
            if x.version != y.version:
                continue
            meet = x if x.subnet_of(y) else y if y.subnet_of(x) else None  # type: ignore[arg-type]
            if meet is not None and meet not in found:
                found.append(meet)
    return found


def _by_name(members: Iterable[Member] | Mapping[str, Member]) -> dict[str, Member]:
    if isinstance(members, Mapping):
        return dict(members)
    return {m.name: m for m in members}


def compile_inbound(
    policy: Policy, members: Iterable[Member] | Mapping[str, Member], node: str
) -> tuple[InboundRule, ...]:
    """The rules node `node`'s filter enforces on what arrives through its tunnel."""
    table = _by_name(members)
    me = table[node]
    devices = [m for m in table.values() if m.gateway == node]
    served = [*me.owned(), *(p for d in devices for p in d.owned())]
    from_devices = [p for d in devices for p in d.addresses]
    rules: list[InboundRule] = []
    for rule in policy.rules:
        sources = [p for s in rule.sources for p in resolve(policy, table, s)]
        for target in rule.targets:
            destinations = resolve(policy, table, target.selector)
            for src, dst in (
                (sources, _overlap(destinations, served)),  # to this node, its routes, devices
                (_overlap(sources, from_devices), destinations),  # from its devices
            ):
                made = InboundRule(tuple(src), tuple(dst), target.proto, target.ports)
                if src and dst and made not in rules:
                    rules.append(made)
    return tuple(rules)


def peers_allowed(
    policy: Policy, members: Iterable[Member] | Mapping[str, Member]
) -> dict[str, frozenset[str]]:
    """For each member, the members it may exchange packets with (in either direction):
    a rule lets one reach the other. The rest need not be in each other's rosters."""
    table = _by_name(members)
    pairs: dict[str, set[str]] = {name: set() for name in table}
    for rule in policy.rules:
        sources = [p for s in rule.sources for p in resolve(policy, table, s)]
        senders = [m.name for m in table.values() if _overlap(m.addresses, sources)]
        for target in rule.targets:
            prefixes = resolve(policy, table, target.selector)
            receivers = [m.name for m in table.values() if _overlap(m.owned(), prefixes)]
            for a in senders:
                for b in receivers:
                    if a != b:
                        pairs[a].add(b)
                        pairs[b].add(a)
    return {name: frozenset(peers) for name, peers in pairs.items()}
