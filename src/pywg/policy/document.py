"""The policy file: groups, tags, host aliases and rules, read and checked.

A policy is JSON (with ``//`` and ``/* */`` comments and trailing commas,
`pywg.policy.jsonc`)::

    {
      "groups": {"group:family": ["alice-laptop", "nas"]},
      "tags": ["tag:camera"],
      "hosts": {"lan": "192.168.1.0/24", "dns": ["10.0.0.53", "fd00::53"]},
      "rules": [
        {"from": ["group:family"], "to": ["*:*"]},
        {"from": ["guest-laptop"], "to": ["nas:8096/tcp", "lan:53/udp"]},
      ],
    }

A *selector* names addresses: ``*`` (any), ``group:NAME`` (its members),
``tag:NAME`` (the members carrying the tag), a host alias (its prefixes) or
the name of a node or a device. A rule's ``to`` entries are
``SELECTOR:PORTS[/PROTO]`` (`pywg.policy.rules.parse_ports`, proto ``tcp``,
``udp``, ``icmp`` or ``any``, the default). Anything wrong is refused with
`PolicyError`, which names the line and the reason. Member names are only
known to the coordinator: `check_names` checks them against its list.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from . import jsonc
from .rules import (
    ALL_PORTS,
    IPNetwork,
    PortRange,
    Proto,
    RulesError,
    parse_ports,
    parse_prefix,
    parse_proto,
)

__all__ = [
    "Policy",
    "PolicyError",
    "Rule",
    "Selector",
    "Target",
    "check_names",
    "is_tag",
    "parse_policy",
]

TOP_KEYS = ("groups", "tags", "hosts", "rules")
RULE_KEYS = ("from", "to")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
MAX_RULES = 10_000  # a policy is hand-written; this bounds what a check costs


class PolicyError(ValueError):
    """A policy refused: the line it is wrong on and why."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class Selector:
    """``kind`` is ``any``, ``group``, ``tag``, ``host`` or ``name`` (a node or device)."""

    kind: str
    name: str
    line: int


@dataclass(frozen=True)
class Target:
    """A rule's ``SELECTOR:PORTS[/PROTO]``."""

    selector: Selector
    ports: tuple[PortRange, ...]
    proto: Proto


@dataclass(frozen=True)
class Rule:
    sources: tuple[Selector, ...]
    targets: tuple[Target, ...]
    line: int


@dataclass(frozen=True)
class Policy:
    groups: dict[str, tuple[Selector, ...]]  # group:NAME -> its members (kind "name")
    tags: frozenset[str]
    hosts: dict[str, tuple[IPNetwork, ...]]
    rules: tuple[Rule, ...]

    def names(self) -> Iterator[Selector]:
        """Every node or device name the policy refers to, with its line."""
        for members in self.groups.values():
            yield from members
        for rule in self.rules:
            yield from (s for s in rule.sources if s.kind == "name")
            yield from (t.selector for t in rule.targets if t.selector.kind == "name")


def parse_policy(text: str) -> Policy:
    """The policy in `text`; raises `PolicyError` (line and reason) if it is not one."""
    try:
        root = jsonc.parse(text)
    except jsonc.JsonError as exc:
        raise PolicyError(exc.line, exc.reason) from None
    items = _object(root, "the policy", TOP_KEYS)
    tags = _tags(items.get("tags"))
    hosts = _hosts(items.get("hosts"))
    groups = _groups(items.get("groups"), hosts)
    reader = _SelectorReader(groups, tags, hosts)
    rules = _rules(items.get("rules"), reader)
    return Policy(groups, tags, hosts, rules)


def check_names(policy: Policy, known: Collection[str]) -> None:
    """Raise `PolicyError` at the first node or device name that is not in `known`."""
    for selector in policy.names():
        if selector.name not in known:
            raise PolicyError(selector.line, f"unknown node, device or host {selector.name!r}")


# -- the parts ------------------------------------------------------------------------------


def _object(node: jsonc.Node, what: str, keys: tuple[str, ...]) -> dict[str, jsonc.Node]:
    if not isinstance(node.value, dict):
        raise PolicyError(node.line, f"{what} must be an object")
    for key, line in node.key_lines.items():
        if key not in keys:
            raise PolicyError(line, f"unknown key {key!r} in {what} (known: {', '.join(keys)})")
    return node.value


def _list(node: jsonc.Node, what: str) -> list[jsonc.Node]:
    if not isinstance(node.value, list):
        raise PolicyError(node.line, f"{what} must be a list")
    return node.value


def _string(node: jsonc.Node, what: str) -> str:
    if not isinstance(node.value, str):
        raise PolicyError(node.line, f"{what} must be a string")
    return node.value


def _strings(node: jsonc.Node, what: str) -> list[tuple[str, int]]:
    """A string or a list of strings, each with its line."""
    if isinstance(node.value, str):
        return [(node.value, node.line)]
    return [(_string(item, f"each of {what}"), item.line) for item in _list(node, what)]


def is_tag(text: str) -> bool:
    """Whether `text` is a tag as a policy writes one (``tag:NAME``)."""
    prefix, _, name = text.partition(":")
    return prefix == "tag" and _NAME.fullmatch(name) is not None


def _tags(node: jsonc.Node | None) -> frozenset[str]:
    if node is None:
        return frozenset()
    tags = set()
    for tag, line in _strings(node, '"tags"'):
        if not is_tag(tag):
            raise PolicyError(line, f"bad tag {tag!r} (tag:NAME)")
        tags.add(tag)
    return frozenset(tags)


def _hosts(node: jsonc.Node | None) -> dict[str, tuple[IPNetwork, ...]]:
    if node is None:
        return {}
    hosts = {}
    for name, value in _object(node, '"hosts"', tuple(_keys(node))).items():
        if not _NAME.fullmatch(name) or name in ("any",):
            raise PolicyError(node.key_lines[name], f"bad host name {name!r}")
        prefixes = []
        for text, line in _strings(value, f"host {name!r}"):
            try:
                prefixes.append(parse_prefix(text))
            except RulesError as exc:
                raise PolicyError(line, str(exc)) from None
        hosts[name] = tuple(prefixes)
    return hosts


def _keys(node: jsonc.Node) -> list[str]:
    return list(node.value) if isinstance(node.value, dict) else []


def _groups(
    node: jsonc.Node | None, hosts: dict[str, tuple[IPNetwork, ...]]
) -> dict[str, tuple[Selector, ...]]:
    if node is None:
        return {}
    groups = {}
    for name, value in _object(node, '"groups"', tuple(_keys(node))).items():
        prefix, _, rest = name.partition(":")
        if prefix != "group" or not _NAME.fullmatch(rest):
            raise PolicyError(node.key_lines[name], f"bad group name {name!r} (group:NAME)")
        members = []
        for member, line in _strings(value, f"group {name!r}"):
            if not _NAME.fullmatch(member) or member in hosts:
                raise PolicyError(line, f"a group lists nodes and devices, not {member!r}")
            members.append(Selector("name", member, line))
        groups[name] = tuple(members)
    return groups


class _SelectorReader:
    def __init__(
        self,
        groups: dict[str, tuple[Selector, ...]],
        tags: frozenset[str],
        hosts: dict[str, tuple[IPNetwork, ...]],
    ) -> None:
        self.groups, self.tags, self.hosts = groups, tags, hosts

    def selector(self, text: str, line: int) -> Selector:
        if text == "*":
            return Selector("any", text, line)
        if text.startswith("group:"):
            if text not in self.groups:
                raise PolicyError(line, f"unknown group {text!r}")
            return Selector("group", text, line)
        if text.startswith("tag:"):
            if text not in self.tags:
                raise PolicyError(line, f'unknown tag {text!r} (declare it in "tags")')
            return Selector("tag", text, line)
        if not _NAME.fullmatch(text):
            raise PolicyError(line, f"bad selector {text!r}")
        return Selector("host" if text in self.hosts else "name", text, line)

    def target(self, text: str, line: int) -> Target:
        where, colon, spec = text.rpartition(":")
        if not colon or not where:
            raise PolicyError(line, f"expected SELECTOR:PORTS[/PROTO], not {text!r}")
        ports_text, slash, proto_text = spec.partition("/")
        try:
            proto = parse_proto(proto_text) if slash else Proto.ANY
            ports = parse_ports(ports_text)
        except RulesError as exc:
            raise PolicyError(line, str(exc)) from None
        if proto is Proto.ICMP and ports != ALL_PORTS:
            raise PolicyError(line, f"ICMP has no ports: write {where}:*/icmp")
        return Target(self.selector(where, line), ports, proto)


def _rules(node: jsonc.Node | None, reader: _SelectorReader) -> tuple[Rule, ...]:
    if node is None:
        return ()
    items = _list(node, '"rules"')
    if len(items) > MAX_RULES:
        raise PolicyError(node.line, f"more than {MAX_RULES} rules")
    rules = []
    for item in items:
        fields = _object(item, "a rule", RULE_KEYS)
        for key in RULE_KEYS:
            if key not in fields:
                raise PolicyError(item.line, f'a rule needs "{key}"')
        sources = tuple(reader.selector(t, ln) for t, ln in _strings(fields["from"], '"from"'))
        targets = tuple(reader.target(t, ln) for t, ln in _strings(fields["to"], '"to"'))
        if not sources or not targets:
            raise PolicyError(item.line, 'a rule needs at least one "from" and one "to"')
        rules.append(Rule(sources, targets, item.line))
    return tuple(rules)
