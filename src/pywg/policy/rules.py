"""Compiled inbound rules: what one node lets in, and their compact JSON form.

An `InboundRule` says "packets from any of `sources` to any of `destinations`,
of protocol `proto`, to a port in `ports`, may enter". It is what the policy
compiler (`pywg.policy.compiler`) makes for one node, what a node receives in
its roster (``encode``/``decode``: a compact JSON list; ``to_rows``/``from_rows``:
the same list as a JSON value) and what the packet filters enforce
(`pywg.policy.model` in Python, ``filter.c`` in the native plane, both
through `flatten`).

Ports concern TCP and UDP: a TCP or UDP rule matches the destination port, an
ICMP rule matches every ICMP (IPv4) or ICMPv6 message, and an ``any`` rule
matches TCP and UDP by port and every other protocol only when its ports are
all ports (``*``).
"""

from __future__ import annotations

import enum
import ipaddress
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "ALL_PORTS",
    "IPNetwork",
    "InboundRule",
    "Proto",
    "RuleRow",
    "RulesError",
    "decode",
    "encode",
    "flatten",
    "format_ports",
    "from_rows",
    "parse_ports",
    "to_rows",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
PortRange = tuple[int, int]
ALL_PORTS: tuple[PortRange, ...] = ((0, 65535),)
MAX_PORT = 65535


class RulesError(ValueError):
    """Compiled rules (or a port list, a prefix) that cannot be read."""


class Proto(enum.IntEnum):
    """A rule's protocol; the value is the IP protocol number (ICMP: 1, or 58 in IPv6)."""

    ANY = 0
    ICMP = 1
    TCP = 6
    UDP = 17


_PROTO_NAMES = {p.name.lower(): p for p in Proto}


def parse_proto(text: str) -> Proto:
    """``tcp``, ``udp``, ``icmp`` or ``any``."""
    try:
        return _PROTO_NAMES[text]
    except KeyError:
        raise RulesError(f"unknown protocol {text!r} (tcp, udp, icmp or any)") from None


def parse_ports(text: str) -> tuple[PortRange, ...]:
    """``*``, a port, a range ``lo-hi`` or a comma-separated list of them, sorted and merged."""
    if text == "*":
        return ALL_PORTS
    ranges: list[PortRange] = []
    for part in text.split(","):
        lo_text, dash, hi_text = part.partition("-")
        lo = _port(lo_text)
        hi = _port(hi_text) if dash else lo
        if lo > hi:
            raise RulesError(f"bad port range {part!r}: {lo} > {hi}")
        ranges.append((lo, hi))
    return _merge(ranges)


def _port(text: str) -> int:
    if not text.isdigit() or len(text) > 5 or int(text) > MAX_PORT:
        raise RulesError(f"bad port {text!r} (0 to {MAX_PORT})")
    return int(text)


def _merge(ranges: Iterable[PortRange]) -> tuple[PortRange, ...]:
    merged: list[PortRange] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return tuple(merged)


def format_ports(ports: Sequence[PortRange]) -> str:
    """The text `parse_ports` reads back as `ports`."""
    if tuple(ports) == ALL_PORTS:
        return "*"
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ports)


def parse_prefix(text: str) -> IPNetwork:
    """An address or a prefix (``10.0.0.0/8``, ``fd00::1``); host bits must be zero."""
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise RulesError(f"bad prefix {text!r}: {exc}") from None


@dataclass(frozen=True)
class InboundRule:
    """Packets from `sources` to `destinations` of `proto` to a port in `ports` may enter."""

    sources: tuple[IPNetwork, ...]
    destinations: tuple[IPNetwork, ...]
    proto: Proto = Proto.ANY
    ports: tuple[PortRange, ...] = ALL_PORTS

    def __post_init__(self) -> None:
        if not self.ports or self.ports != _merge(self.ports):
            raise RulesError(f"ports {self.ports!r} are not sorted, merged ranges")
        if self.proto is Proto.ICMP and self.ports != ALL_PORTS:
            raise RulesError("an ICMP rule has no ports")


@dataclass(frozen=True)
class RuleRow:
    """One row of a filter's table: one source and one destination prefix of one
    family, a protocol (0: any; ICMP as 1 for both families) and one port range."""

    family: int  # 4 or 6
    source: IPNetwork
    destination: IPNetwork
    proto: int
    port_lo: int
    port_hi: int


def flatten(rules: Iterable[InboundRule]) -> list[RuleRow]:
    """The rows a filter scans: each rule's sources × destinations (same family) × ports."""
    rows = []
    for rule in rules:
        for src in rule.sources:
            for dst in rule.destinations:
                if src.version != dst.version:
                    continue
                rows += [
                    RuleRow(src.version, src, dst, int(rule.proto), lo, hi) for lo, hi in rule.ports
                ]
    return rows


# -- the compact JSON form, for the roster --------------------------------------------------
# [[sources, destinations, proto, ports], ...]: prefixes space-separated, proto by name,
# ports as format_ports writes them; e.g. [["100.64.0.2/32", "100.64.0.1/32", "tcp", "22"]].


def encode(rules: Iterable[InboundRule]) -> str:
    """The compact JSON text of `rules`."""
    return json.dumps(to_rows(rules), separators=(",", ":"))


def to_rows(rules: Iterable[InboundRule]) -> list[list[str]]:
    """`rules` as the JSON value `encode` writes (a roster carries it inside its own JSON)."""
    return [
        [
            " ".join(map(str, rule.sources)),
            " ".join(map(str, rule.destinations)),
            rule.proto.name.lower(),
            format_ports(rule.ports),
        ]
        for rule in rules
    ]


def decode(text: str | bytes) -> tuple[InboundRule, ...]:
    """The rules `encode` wrote; raises `RulesError` for anything else."""
    try:
        rows = json.loads(text)
    except ValueError as exc:
        raise RulesError(f"not JSON: {exc}") from None
    return from_rows(rows)


def from_rows(rows: object) -> tuple[InboundRule, ...]:
    """The rules of a decoded JSON value `to_rows` made; raises `RulesError` for anything else."""
    if not isinstance(rows, list):
        raise RulesError("expected a list of rules")
    return tuple(_decode_rule(i, row) for i, row in enumerate(rows))


def _decode_rule(i: int, row: object) -> InboundRule:
    if not (isinstance(row, list) and len(row) == 4 and all(isinstance(f, str) for f in row)):
        raise RulesError(f"rule {i}: expected [sources, destinations, proto, ports] strings")
    sources, destinations, proto, ports = row
    try:
        return InboundRule(
            tuple(parse_prefix(p) for p in sources.split()),
            tuple(parse_prefix(p) for p in destinations.split()),
            parse_proto(proto),
            parse_ports(ports),
        )
    except RulesError as exc:
        raise RulesError(f"rule {i}: {exc}") from None
