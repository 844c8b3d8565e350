"""The policy file (pywg.policy.document), its compiler and the compact rule form.

Hypothesis writes random policies as text (with comments, trailing commas and
blank lines placed at random), parses them back and compares; it plants one
fault at a known line and checks the error names that line.
"""

from __future__ import annotations

import ipaddress
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pywg.policy import (
    InboundRule,
    Member,
    PolicyError,
    Proto,
    RulesError,
    check_names,
    compile_inbound,
    decode,
    encode,
    parse_policy,
    peers_allowed,
)
from pywg.policy.jsonc import JsonError, parse, plain
from pywg.policy.rules import ALL_PORTS, format_ports, parse_ports

EXAMPLE = """{
  // who is who
  "groups": {"group:family": ["alice", "nas"],},
  "tags": ["tag:camera"],
  "hosts": {"lan": "192.168.1.0/24", "dns": ["10.0.0.53", "fd00::53"]},
  /* what may reach what */
  "rules": [
    {"from": ["group:family"], "to": ["*:*"]},
    {"from": "guest", "to": ["nas:8096/tcp", "lan:53/udp", "nas:*/icmp"]},
    {"from": ["tag:camera"], "to": ["nas:554,8000-8010/tcp"]},
  ],
}
"""


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


MEMBERS = [
    Member("alice", (net("100.64.0.1/32"), net("fd7a::1/128"))),
    Member("nas", (net("100.64.0.2/32"), net("fd7a::2/128")), routes=(net("192.168.1.0/24"),)),
    Member("guest", (net("100.64.0.3/32"),)),
    Member("cam", (net("100.64.0.4/32"),), frozenset({"tag:camera"})),
    Member("printer", (net("100.64.0.9/32"),), gateway="alice"),
]


# -- the file --------------------------------------------------------------------------------


def test_the_example_parses() -> None:
    policy = parse_policy(EXAMPLE)
    assert [s.name for s in policy.groups["group:family"]] == ["alice", "nas"]
    assert policy.tags == {"tag:camera"}
    assert policy.hosts["dns"] == (net("10.0.0.53/32"), net("fd00::53/128"))
    guest = policy.rules[1]
    assert guest.line == 9
    assert [(t.selector.name, t.proto, t.ports) for t in guest.targets] == [
        ("nas", Proto.TCP, ((8096, 8096),)),
        ("lan", Proto.UDP, ((53, 53),)),
        ("nas", Proto.ICMP, ALL_PORTS),
    ]
    assert policy.rules[2].targets[0].ports == ((554, 554), (8000, 8010))
    check_names(policy, {m.name for m in MEMBERS})


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ('{\n"rules": [\n{"from": ["group:nope"], "to": ["*:*"]}]}', 3, "unknown group"),
        ('{\n"rules": [{"from": ["*"],\n "to": ["x:70000"]}]}', 3, "bad port"),
        ('{\n"rules": [{"from": ["*"],\n "to": ["x:9-3/tcp"]}]}', 3, "bad port range"),
        ('{\n"hosts": {\n"h": "10.0.0.1/8"}}', 3, "bad prefix"),
        ('{\n"rules": [],\n"acls": []}', 3, "unknown key 'acls'"),
        ('{"rules": [\n{"from": ["*"], "to": ["x:*"], "action": "accept"}]}', 2, "unknown key"),
        ('{"rules": [\n{"from": ["tag:x"], "to": ["x:*"]}]}', 2, "unknown tag"),
        ('{"rules": [\n{"from": ["*"],\n"to": ["x:22/sctp"]}]}', 3, "unknown protocol"),
        ('{"rules": [\n{"from": ["*"],\n"to": ["x:22/icmp"]}]}', 3, "ICMP has no ports"),
        ('{"rules": [\n{"from": ["*"],\n"to": ["nas"]}]}', 3, "SELECTOR:PORTS"),
        ('{"rules": [\n{"to": ["nas:*"]}]}', 2, 'needs "from"'),
        ('{\n"groups": {"family": []}}', 2, "bad group name"),
        ('{\n"rules": [\n{"from": ["*"] "to": []}]}', 3, "expected ','"),
        ('{\n"rules": 1,\n"rules": 2}', 3, "duplicate key"),
        ("{\n\n/* open", 3, "unterminated"),
        ("[\n1,\n2,,]", 3, "expected a value"),
    ],
)
def test_a_bad_policy_is_refused_with_its_line(text: str, line: int, reason: str) -> None:
    with pytest.raises(PolicyError) as refused:
        parse_policy(text)
    assert refused.value.line == line, refused.value
    assert reason in refused.value.reason


def test_unknown_member_names_are_found_with_their_line() -> None:
    policy = parse_policy('{"rules": [\n{"from": ["alice"],\n"to": ["bob:22"]}]}')
    with pytest.raises(PolicyError) as refused:
        check_names(policy, {"alice"})
    assert refused.value.line == 3 and "'bob'" in refused.value.reason


NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)
PORTS = st.lists(
    st.tuples(st.integers(0, 65535), st.integers(0, 200)).map(
        lambda t: (t[0], min(65535, t[0] + t[1]))
    ),
    min_size=1,
    max_size=4,
)
GAP = st.sampled_from(["", " ", "\n", "\n\n", " // note\n", " /* c */ ", "\n/* a\n b */\n"])


@st.composite
def policies(draw: st.DrawFn) -> dict[str, object]:
    members = draw(st.lists(NAMES, min_size=1, max_size=5, unique=True))
    groups = {f"group:{g}": draw(st.lists(st.sampled_from(members), max_size=3)) for g in
              draw(st.lists(NAMES, max_size=3, unique=True))}  # fmt: skip
    hosts = {
        f"h-{h}": str(ipaddress.ip_network(f"10.{draw(st.integers(0, 255))}.0.0/16"))
        for h in draw(st.lists(NAMES, max_size=2, unique=True))
    }
    selectors = ["*", *members, *groups, *hosts]
    rules = []
    for _ in range(draw(st.integers(0, 4))):
        targets = []
        for _ in range(draw(st.integers(1, 3))):
            proto = draw(st.sampled_from(["", "/tcp", "/udp", "/any", "/icmp"]))
            ports = "*" if proto == "/icmp" else format_ports(parse_ports(
                ",".join(f"{lo}-{hi}" for lo, hi in draw(PORTS))))  # fmt: skip
            targets.append(f"{draw(st.sampled_from(selectors))}:{ports}{proto}")
        sources = draw(st.lists(st.sampled_from(selectors), min_size=1, max_size=3))
        rules.append({"from": sources, "to": targets})
    return {"groups": groups, "hosts": hosts, "rules": rules}


def render(value: object, gap: st.DrawFn, comma: bool) -> str:
    """JSON text of `value` with random gaps and trailing commas."""
    if isinstance(value, dict):
        items = [
            f"{gap(GAP)}{json.dumps(k)}:{gap(GAP)}{render(v, gap, comma)}" for k, v in value.items()
        ]
        tail = "," if comma and items and gap(st.booleans()) else ""
        return "{" + ",".join(items) + tail + gap(GAP) + "}"
    if isinstance(value, list):
        items = [gap(GAP) + render(v, gap, comma) for v in value]
        tail = "," if comma and items and gap(st.booleans()) else ""
        return "[" + ",".join(items) + tail + gap(GAP) + "]"
    return json.dumps(value)


@settings(max_examples=150, deadline=None)
@given(st.data(), policies())
def test_random_policies_read_back_as_written(data: st.DataObject, doc: dict[str, object]) -> None:
    text = render(doc, data.draw, comma=True)
    assert plain(parse(text)) == doc
    policy = parse_policy(text)
    rules = doc["rules"]
    assert isinstance(rules, list)
    assert len(policy.rules) == len(rules)
    for parsed, written in zip(policy.rules, rules, strict=True):
        assert [s.name for s in parsed.sources] == written["from"]
        assert [f"{t.selector.name}:{format_ports(t.ports)}" for t in parsed.targets] == [
            t.rsplit("/", 1)[0] if "/" in t else t for t in written["to"]
        ]  # ports normalised
        assert text.count("\n", 0, _offset_of_line(text, parsed.line)) + 1 == parsed.line


def _offset_of_line(text: str, line: int) -> int:
    offset = 0
    for _ in range(line - 1):
        offset = text.index("\n", offset) + 1
    return offset


FAULTS = [
    ('"to": ["nas:99999"]', "bad port"),
    ('"to": ["group:missing:*"]', "unknown group"),
    ('"to": ["*:*"], "deny": true', "unknown key"),
    ('"to": ["*:1-2-3"]', "bad port"),
]


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 30), st.integers(0, 30), st.sampled_from(FAULTS))
def test_a_fault_is_reported_at_its_line(before: int, after: int, fault: tuple[str, str]) -> None:
    good = '{"from": ["*"], "to": ["*:*"]}'
    lines = [
        '{"rules": [',
        *[good + "," for _ in range(before)],
        '{"from": ["*"], ' + fault[0] + "},",
    ]
    lines += [good + "," for _ in range(after)] + ["]}"]
    with pytest.raises(PolicyError) as refused:
        parse_policy("\n".join(lines))
    assert refused.value.line == before + 2
    assert fault[1] in refused.value.reason


@given(st.text(max_size=200))
@settings(max_examples=200, deadline=None)
def test_any_text_is_a_policy_or_a_policy_error(text: str) -> None:
    try:
        parse_policy(text)
    except PolicyError as exc:
        assert 1 <= exc.line <= text.count("\n") + 1


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES, st.booleans(), st.sampled_from([None, 0, 2]))
def test_plain_json_reads_as_the_standard_library_reads_it(
    value: object, ascii_only: bool, indent: int | None
) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only, indent=indent, allow_nan=False)
    assert plain(parse(text)) == json.loads(text)


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    with pytest.raises(JsonError):
        parse("[" * 5000)


# -- ports, compact form ----------------------------------------------------------------------


@given(PORTS)
def test_ports_round_trip(ranges: list[tuple[int, int]]) -> None:
    merged = parse_ports(",".join(f"{lo}-{hi}" for lo, hi in ranges))
    assert parse_ports(format_ports(merged)) == merged
    covered = {p for lo, hi in ranges for p in range(lo, hi + 1)}
    assert {p for lo, hi in merged for p in range(lo, hi + 1)} == covered


PREFIXES = st.one_of(
    st.builds(
        lambda a, n: ipaddress.ip_network((a, n), strict=False),
        st.ip_addresses(v=4),
        st.integers(0, 32),
    ),
    st.builds(
        lambda a, n: ipaddress.ip_network((a, n), strict=False),
        st.ip_addresses(v=6),
        st.integers(0, 128),
    ),
)
RULES = st.builds(
    lambda s, d, proto, ports: InboundRule(
        tuple(s), tuple(d), proto, ALL_PORTS if proto is Proto.ICMP else ports
    ),
    st.lists(PREFIXES, min_size=1, max_size=3),
    st.lists(PREFIXES, min_size=1, max_size=3),
    st.sampled_from(Proto),
    PORTS.map(lambda r: parse_ports(",".join(f"{lo}-{hi}" for lo, hi in r))),
)


@given(st.lists(RULES, max_size=6))
def test_the_compact_form_round_trips(rules: list[InboundRule]) -> None:
    assert decode(encode(rules)) == tuple(rules)


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1}',
        '[["10.0.0.1/32", "10.0.0.2/32", "tcp"]]',
        '[["10.0.0.1/8", "10.0.0.2/32", "tcp", "*"]]',
        '[["10.0.0.1/32", "10.0.0.2/32", "gre", "*"]]',
        '[["10.0.0.1/32", "10.0.0.2/32", "icmp", "22"]]',
        '[["10.0.0.1/32", "10.0.0.2/32", "tcp", "0x16"]]',
        "nope",
    ],
)
def test_the_compact_form_refuses_anything_else(text: str) -> None:
    with pytest.raises(RulesError):
        decode(text)


# -- the compiler --------------------------------------------------------------------------------


def test_a_node_gets_the_rules_of_traffic_to_it() -> None:
    policy = parse_policy(EXAMPLE)
    rules = compile_inbound(policy, MEMBERS, "nas")
    family = {net("100.64.0.1/32"), net("fd7a::1/128"), net("100.64.0.2/32"), net("fd7a::2/128")}
    assert set(rules[0].sources) == family
    assert set(rules[0].destinations) == {
        net("100.64.0.2/32"),
        net("fd7a::2/128"),
        net("192.168.1.0/24"),
    }
    guest_tcp = InboundRule((net("100.64.0.3/32"),), (net("100.64.0.2/32"), net("fd7a::2/128")),
                            Proto.TCP, ((8096, 8096),))  # fmt: skip
    lan_dns = InboundRule((net("100.64.0.3/32"),), (net("192.168.1.0/24"),), Proto.UDP, ((53, 53),))
    camera = InboundRule((net("100.64.0.4/32"),), (net("100.64.0.2/32"), net("fd7a::2/128")),
                         Proto.TCP, ((554, 554), (8000, 8010)))  # fmt: skip
    assert guest_tcp in rules and lan_dns in rules and camera in rules
    # the guest reaches nothing of alice's; the camera nothing at all but the NAS
    only_family = InboundRule(rules[0].sources, (net("100.64.0.3/32"),))
    assert compile_inbound(policy, MEMBERS, "guest") == (only_family,)


def test_a_gateway_enforces_for_its_devices_both_ways() -> None:
    policy = parse_policy('{"rules": [{"from": ["guest"], "to": ["printer:631/tcp"]},'
                          ' {"from": ["printer"], "to": ["nas:445/tcp"]}]}')  # fmt: skip
    rules = compile_inbound(policy, MEMBERS, "alice")
    printer, guest = net("100.64.0.9/32"), net("100.64.0.3/32")
    assert InboundRule((guest,), (printer,), Proto.TCP, ((631, 631),)) in rules
    nas = (net("100.64.0.2/32"), net("fd7a::2/128"))
    assert InboundRule((printer,), nas, Proto.TCP, ((445, 445),)) in rules
    assert len(rules) == 2


def test_who_may_talk() -> None:
    allowed = peers_allowed(parse_policy(EXAMPLE), MEMBERS)
    assert allowed["cam"] == {"nas", "alice"}  # the family reaches everyone
    assert allowed["guest"] == {"nas", "alice"}
    assert "guest" not in allowed["printer"] and "cam" not in allowed["printer"]
    assert peers_allowed(parse_policy('{"rules": []}'), MEMBERS)["alice"] == frozenset()
