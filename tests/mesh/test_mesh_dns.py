"""pywg.mesh.dns (query bytes -> answer bytes), the hosts-file block, the domain in the
roster and the store, and the DNS server with its forwarder on loopback."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pywg.mesh.dns import (
    DEFAULT_DOMAIN,
    MAX_UDP_SIZE,
    NEGATIVE_TTL,
    TTL,
    Forward,
    Zone,
    answer,
    check_domain,
)
from pywg.mesh.dnsserver import DnsServer
from pywg.mesh.names import zone_of
from pywg.mesh.schema import Roster, SchemaError
from pywg.mesh.store import Store, StoreError
from pywg.system.resolver import HostsBlock, is_mount_point, nameservers

ROSTER = json.dumps(
    {
        "version": 5,
        "network": {"ipv4": "198.19.5.0/24", "ipv6": "fd19:5::/64"},
        "self": {
            "name": "nas",
            "public_key": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
            "addresses": ["198.19.5.1", "fd19:5::1"],
            "routes": [],
            "pending_routes": [],
        },
        "peers": [
            {
                "name": "pi",
                "public_key": "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=",
                "control_key": "MzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzM=",
                "addresses": ["198.19.5.2", "fd19:5::2"],
                "routes": [],
                "endpoints": [],
            }
        ],
    }
)

ZONE = Zone(
    "mesh.internal",
    [
        ("nas", ["100.72.0.1", "fd00::1"]),
        ("pi", ["100.72.0.2", "fd00::2"]),
        ("v4only", ["100.72.0.3"]),
        ("a.b", ["100.72.0.4"]),  # b.mesh.internal: an empty non-terminal
        ("bad..name", ["100.72.0.5"]),
    ],
    primary="nas",
    serial=7,
)


def ask(name: str, rdtype: str = "A", zone: Zone = ZONE, **kw: object) -> dns.message.Message:
    reply = answer(zone, dns.message.make_query(name, rdtype, **kw).to_wire())
    assert isinstance(reply, bytes)
    return dns.message.from_wire(reply)


def records(reply: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in reply.answer for rd in rrset)


def test_a_and_aaaa_of_members_case_insensitive_with_the_asked_spelling() -> None:
    reply = ask("nas.mesh.internal")
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    assert records(reply) == ["100.72.0.1"]
    assert reply.answer[0].ttl == TTL
    assert records(ask("pi.mesh.internal", "AAAA")) == ["fd00::2"]
    upper = ask("PI.Mesh.INTERNAL", "AAAA")
    assert records(upper) == ["fd00::2"]
    assert upper.answer[0].name.to_text() == "PI.Mesh.INTERNAL."
    assert records(ask("nas.mesh.internal", "ANY")) == ["100.72.0.1", "fd00::1"]
    assert records(ask("a.b.mesh.internal")) == ["100.72.0.4"]


def test_nodata_and_nxdomain_carry_the_soa() -> None:
    for name, rdtype in [
        ("v4only.mesh.internal", "AAAA"),  # the name exists, not this type
        ("nas.mesh.internal", "MX"),
        ("b.mesh.internal", "A"),  # empty non-terminal: exists (RFC 8020)
    ]:
        reply = ask(name, rdtype)
        assert reply.rcode() == dns.rcode.NOERROR and not reply.answer, name
        soa = reply.authority[0]
        assert soa.rdtype == dns.rdatatype.SOA and soa.ttl == NEGATIVE_TTL
    missing = ask("nobody.mesh.internal")
    assert missing.rcode() == dns.rcode.NXDOMAIN and missing.flags & dns.flags.AA
    assert missing.authority[0][0].serial == 7
    assert missing.authority[0][0].minimum == NEGATIVE_TTL
    assert ask("bad..name.mesh.internal".replace("..", ".")).rcode() == dns.rcode.NXDOMAIN
    assert ZONE.skipped == ["bad..name"]


def test_the_apex_has_soa_and_ns() -> None:
    soa = ask("mesh.internal", "SOA")
    assert soa.answer[0][0].mname.to_text() == "nas.mesh.internal."
    assert records(ask("mesh.internal", "NS")) == ["nas.mesh.internal."]
    assert not ask("mesh.internal", "A").answer


def test_other_names_are_forwarded_and_other_kinds_refused() -> None:
    query = dns.message.make_query("example.org", "A")
    forward = answer(ZONE, query.to_wire())
    assert isinstance(forward, Forward) and forward.query.id == query.id
    assert isinstance(answer(ZONE, dns.message.make_query("internal", "A").to_wire()), Forward)
    chaos = ask("nas.mesh.internal", "TXT", rdclass="CH")
    assert chaos.rcode() == dns.rcode.REFUSED
    notify = dns.message.make_query("nas.mesh.internal", "A")
    notify.set_opcode(dns.opcode.NOTIFY)
    got = answer(ZONE, notify.to_wire())
    assert isinstance(got, bytes) and dns.message.from_wire(got).rcode() == dns.rcode.NOTIMP


def test_malformed_queries_get_formerr_and_answers_are_dropped() -> None:
    assert answer(ZONE, b"") is None
    assert answer(ZONE, b"\x12\x34\x01\x00\x00\x01") is None  # shorter than a header
    reply = dns.message.make_response(dns.message.make_query("nas.mesh.internal", "A"))
    assert answer(ZONE, reply.to_wire()) is None  # QR set: never answer an answer
    junk = b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05abc"  # a cut question
    got = answer(ZONE, junk)
    assert isinstance(got, bytes)
    formerr = dns.message.from_wire(got)
    assert formerr.id == 0xABCD and formerr.rcode() == dns.rcode.FORMERR
    assert formerr.flags & dns.flags.RD and formerr.flags & dns.flags.QR
    two = dns.message.make_query("nas.mesh.internal", "A")
    two.question.append(dns.message.make_query("pi.mesh.internal", "A").question[0])
    got = answer(ZONE, two.to_wire())
    assert isinstance(got, bytes) and dns.message.from_wire(got).rcode() == dns.rcode.FORMERR


def test_an_answer_too_big_for_udp_is_truncated_whole_over_tcp() -> None:
    many = Zone("mesh.internal", [("big", [f"fd00::{i:x}" for i in range(1, 31)])])
    query = dns.message.make_query("big.mesh.internal", "AAAA", use_edns=False)
    udp = answer(many, query.to_wire())
    assert isinstance(udp, bytes) and len(udp) <= 512
    cut = dns.message.from_wire(udp)
    assert cut.flags & dns.flags.TC and not cut.answer
    tcp = answer(many, query.to_wire(), tcp=True)
    assert isinstance(tcp, bytes) and len(records(dns.message.from_wire(tcp))) == 30
    edns = dns.message.make_query("big.mesh.internal", "AAAA", use_edns=0, payload=4096)
    got = answer(many, edns.to_wire())
    assert isinstance(got, bytes) and len(records(dns.message.from_wire(got))) == 30
    more = Zone("mesh.internal", [("big", [f"fd00::{i:x}" for i in range(1, 61)])])
    capped = answer(more, edns.to_wire())  # over MAX_UDP_SIZE, whatever the payload says
    assert isinstance(capped, bytes) and len(capped) <= MAX_UDP_SIZE
    assert dns.message.from_wire(capped).flags & dns.flags.TC


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_give_an_answer_forward_or_nothing_never_an_error(data: bytes) -> None:
    got = answer(ZONE, data)
    if isinstance(got, bytes):
        reply = dns.message.from_wire(got)
        assert reply.id == int.from_bytes(data[:2], "big")
        assert reply.flags & dns.flags.QR


@settings(max_examples=1000, deadline=None)
@given(
    st.sampled_from(["nas", "pi", "v4only", "nobody", "a.b", "b", "x.nas", ""]),
    st.sampled_from(["A", "AAAA", "ANY", "MX", "TXT", "SOA", "NS", "PTR"]),
    st.integers(0, 0xFFFF),
    st.booleans(),
    st.lists(st.tuples(st.integers(0, 200), st.integers(1, 255)), max_size=6),
    st.integers(0, 30),
)
def test_mutated_queries_in_the_zone_never_break_it(
    label: str,
    rdtype: str,
    qid: int,
    edns: bool,
    flips: list[tuple[int, int]],
    cut: int,
) -> None:
    """Real queries with bytes after the header flipped and the end cut off."""
    name = f"{label}.mesh.internal" if label else "mesh.internal"
    query = dns.message.make_query(name, rdtype, id=qid, use_edns=0 if edns else False)
    wire = bytearray(query.to_wire())
    for where, mask in flips:
        wire[12 + where % (len(wire) - 12)] ^= mask
    got = answer(ZONE, bytes(wire[: len(wire) - cut]))
    if isinstance(got, bytes):
        reply = dns.message.from_wire(got)
        assert reply.id == qid and reply.flags & dns.flags.QR
        assert reply.rcode() != dns.rcode.NOERROR or all(
            rrset.name.is_subdomain(ZONE.origin) for rrset in reply.answer
        )


def test_domains() -> None:
    assert check_domain("Home.Example.") == "home.example"
    for bad in ["internal", "", "a..b", "-a.b", "a_b.c", "é.x", "a." * 120, 7]:
        with pytest.raises(ValueError):
            check_domain(bad)


def test_the_roster_carries_the_domain_and_old_ones_mean_the_default() -> None:
    roster = Roster.from_json(json.loads(ROSTER))
    assert roster.domain is None and "domain" not in roster.to_json()
    assert zone_of(roster).domain == DEFAULT_DOMAIN
    assert zone_of(roster).hosts_lines() == [
        "198.19.5.1\tnas.mesh.internal",
        "fd19:5::1\tnas.mesh.internal",
        "198.19.5.2\tpi.mesh.internal",
        "fd19:5::2\tpi.mesh.internal",
    ]
    given_domain = Roster.from_json({**json.loads(ROSTER), "domain": "lan.example"})
    assert given_domain.to_json()["domain"] == "lan.example"
    assert Roster.from_json(given_domain.to_json()) == given_domain
    with pytest.raises(SchemaError, match="roster: domain"):
        Roster.from_json({**json.loads(ROSTER), "domain": "no domain"})


def test_plain_wireguard_devices_have_names_too() -> None:
    phone = {"name": "phone", "public_key": "A" * 43 + "=", "gateway": "pi"}
    phone["addresses"] = ["198.19.5.9", "fd19:5::9"]  # type: ignore[assignment]
    roster = Roster.from_json({**json.loads(ROSTER), "devices": [phone]})
    lines = zone_of(roster).hosts_lines()
    assert "198.19.5.9\tphone.mesh.internal" in lines and "fd19:5::9\tphone.mesh.internal" in lines
    assert len(lines) == 6, lines  # nas, pi and phone, two each


def test_the_store_keeps_the_domain_and_a_change_moves_the_version(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    store.init_networks()
    assert store.init_domain() == DEFAULT_DOMAIN
    assert store.init_domain("Home.Example") == "home.example"
    version = store.version()
    assert store.init_domain() == "home.example"  # kept without --domain
    assert store.init_domain("home.example") == "home.example" and store.version() == version
    assert store.init_domain("other.example") == "other.example"
    assert store.version() == version + 1
    with pytest.raises(StoreError, match="--domain"):
        store.init_domain("nodots")
    store.close()


def test_the_hosts_block_is_written_replaced_and_removed(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    before = "127.0.0.1\tlocalhost\n# BEGIN pywg m0\n10.0.0.9\tstale.mesh.internal\n# END pywg m0\n"
    hosts.write_text(before + "192.0.2.1\tprinter\n")
    os.chmod(hosts, 0o644)
    other = HostsBlock("m1", str(hosts))
    other.write(["10.1.1.1\tz.other"])
    block = HostsBlock("m0", str(hosts))
    block.write(["100.72.0.1\tnas.mesh.internal"])
    text = hosts.read_text()
    assert "stale" not in text and text.count("# BEGIN pywg m0") == 1  # a crashed run's block
    assert "100.72.0.1\tnas.mesh.internal" in text and "z.other" in text
    assert "192.0.2.1\tprinter" in text
    assert os.stat(hosts).st_mode & 0o777 == 0o644
    inode = os.stat(hosts).st_ino
    block.write(["100.72.0.1\tnas.mesh.internal"])  # unchanged: not rewritten
    assert os.stat(hosts).st_ino == inode
    block.remove()
    other.remove()
    assert hosts.read_text() == "127.0.0.1\tlocalhost\n192.0.2.1\tprinter\n"
    assert not [p for p in tmp_path.iterdir() if p.name != "hosts"]  # no temporary left


def test_a_file_bound_over_another_is_a_mount_point(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    hosts = tmp_path / "my hosts"
    info.write_text(
        "27 1 254:0 / / rw - ext4 /dev/vda rw\n"
        f"90 27 254:0 /etc/netns/x/hosts {str(hosts).replace(' ', chr(92) + '040')} rw - ext4 "
        "/dev/vda rw\n"
    )
    assert is_mount_point(str(hosts), str(info))
    assert not is_mount_point(str(tmp_path / "other"), str(info))
    assert not is_mount_point(str(hosts), str(tmp_path / "missing"))


def test_nameservers_of_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(
        "# comment\nnameserver 127.0.0.53\noptions edns0\nnameserver fe80::1%eth0\n"
        "nameserver nonsense\nsearch lan\nnameserver 2001:db8::53\n"
    )
    assert nameservers(str(conf)) == ["127.0.0.53", "fe80::1", "2001:db8::53"]
    assert nameservers(str(tmp_path / "missing")) == []


@pytest.mark.time_limit(20)
def test_the_server_answers_and_forwards_over_udp_and_tcp() -> None:
    """The server on 127.0.0.1, its upstream another on 127.0.0.2 with another zone."""

    async def main() -> None:
        upstream = DnsServer(Zone("upstream.test", [("www", ["192.0.2.80"])]), [], port=53053)
        await upstream.start(["127.0.0.2"])
        server = DnsServer(ZONE, ["127.0.0.3", "127.0.0.2"], port=53053, upstream_port=53053)
        await server.start(["127.0.0.1"])
        try:
            for tcp in (False, True):
                query = dns.asyncquery.tcp if tcp else dns.asyncquery.udp
                mine = await query(
                    dns.message.make_query("pi.mesh.internal", "A"), "127.0.0.1", 5, 53053
                )
                assert records(mine) == ["100.72.0.2"]
                far = await query(
                    dns.message.make_query("www.upstream.test", "A"), "127.0.0.1", 5, 53053
                )
                assert records(far) == ["192.0.2.80"]
            # no upstream answers: SERVFAIL
            server.upstreams = []
            failed = await dns.asyncquery.udp(
                dns.message.make_query("x.test", "A"), "127.0.0.1", 5, 53053
            )
            assert failed.rcode() == dns.rcode.SERVFAIL
            # new names at once
            server.zone = Zone("mesh.internal", [("new", ["100.72.0.9"])])
            fresh = await dns.asyncquery.udp(
                dns.message.make_query("new.mesh.internal", "A"), "127.0.0.1", 5, 53053
            )
            assert records(fresh) == ["100.72.0.9"]
        finally:
            server.close()
            upstream.close()

    asyncio.run(main())
