"""NAT routers in the lab: nftables masquerade between an inside and an outside link.

A lab host becomes a NAT router with :func:`add_nat`: what leaves it through
the outside link's interface gets its source rewritten to the router's own
address there (``masquerade``, IPv4 and IPv6 in one ``inet`` table), and
what arrives from outside reaches the inside only as an answer to something
the inside sent. :class:`Internet` builds the usual topology in one go: a
core router with public hosts and NATed sites hanging off it.

The two kinds, in RFC 4787 terms (its §4.1 mapping, §5 filtering):

- ``"endpoint-independent"``: one mapping per inside address and port, used
  for every destination (RFC 4787 §4.1, "Endpoint-Independent Mapping",
  REQ-1), the port preserved when it is free (§4.2.1, port preservation).
  This is Linux ``masquerade`` as it is: a new flow from the same inside
  address and port finds the existing mapping (``find_appropriate_src`` in
  the kernel's nf_nat_core.c) or, when there is none, keeps the inside port
  if no other flow to that destination uses it. Two inside hosts sending
  from the same port to the same destination collide, and the second one
  gets another port for that destination only; a site has one inside host,
  so this does not arise in :class:`Internet`.
- ``"symmetric"``: a new mapping for every destination address and port
  (§4.1, "Address and Port-Dependent Mapping"): ``masquerade fully-random``
  picks a random port for every new flow, so two destinations see the same
  inside socket at two different ports, and a peer cannot learn another
  peer's mapping from its own.

Filtering is "Address and Port-Dependent" for both (RFC 4787 §5; REQ-8
recommends endpoint-independent or address-dependent filtering, but this is
what Linux conntrack does, the "port-restricted cone" common in the field):
only packets of a flow the inside started come in, and only from the very
address and port it sent to. Any other TCP or UDP from outside is dropped
silently (no ICMP), whether it is addressed to a mapping or routed at an
inside address (the router still answers pings). Mappings live as long as
conntrack's UDP timeouts: 30 s for a flow that got no answer (shorter than
the two minutes of REQ-5), 120 s once answered; ``udp_timeout=`` sets both.

``firewall=False`` leaves that drop out: a plain Linux masquerade router with
no filter rules at all. Mapping and the translation of answers are the same
(what comes back to a mapping reaches the inside only from the address and
port the flow went to), but what else comes from outside is no longer
dropped: a packet routed at an inside address is forwarded to it, and one
addressed to the router itself reaches its own stack, which answers ICMP
port unreachable. That packet leaves a conntrack entry behind, from the
sender to the router's address and port, for as long as it keeps coming
(and 30 s after). If it names a port an inside host is mapped to, the
router can no longer use that mapping towards that sender: the inside
host's first packet to it would make the same tuple, so masquerade gives
that flow another port (RFC 4787 §4.1: the mapping stops being endpoint
independent for that one destination). Two peers punching holes through
such routers collide this way when one's probe arrives before the other
has sent its own.

``ports=(low, high)`` confines the mapped TCP/UDP ports to a window: an
inside port outside it is mapped to a random free port in it (endpoint
independent mappings still reuse that port for further destinations).

:meth:`Nat.reboot` is a power cycle: the router forgets every mapping (its
conntrack table is flushed over ctnetlink, NETLINK_NETFILTER, the way
``conntrack -F`` does it; the conntrack tool is not needed), so the next
packet of every flow gets a new mapping and answers from outside are dropped
until the inside sends again. With a port window the window also moves on
to a disjoint one, so every new mapping differs from every mapping before
the reboot (a router that comes back with a fresh port allocator); a
port-preserving NAT maps flows to their inside ports again, as a real one
would, so its mappings look the same after a reboot while their filtering
state is gone.

An example (``pywg.lab`` exports all of this)::

    with Lab() as lab:
        net = Internet(lab)                                 # host "inet" routes
        a = net.behind_nat("a", "endpoint-independent")     # hosts "a", "a-nat"
        b = net.behind_nat("b", "symmetric", ports=(20000, 29999))
        s = net.public("s")                                 # a rendezvous server
        # a sends from a.addr4 (private) to s.addr4; s sees it at a.public_addr4
        a.nat.mappings()                    # [Mapping(inside=..., outside=..., remote=...)]
        b.nat.reboot()                      # b's mappings change
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import socket
import struct
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from .hosts import Host, Lab, LabError, Link

NatKind = Literal["endpoint-independent", "symmetric"]
NAT_KINDS: Final[tuple[NatKind, ...]] = get_args(NatKind)

# ctnetlink (linux/netfilter/nfnetlink.h, nfnetlink_conntrack.h)
NETLINK_NETFILTER: Final = 12
_NFNL_SUBSYS_CTNETLINK: Final = 1
_IPCTNL_MSG_CT_NEW: Final = 0
_IPCTNL_MSG_CT_GET: Final = 1
_IPCTNL_MSG_CT_DELETE: Final = 2
_NLM_F_REQUEST: Final = 0x1
_NLM_F_ACK: Final = 0x4
_NLM_F_DUMP: Final = 0x300
_NLMSG_ERROR: Final = 2
_NLMSG_DONE: Final = 3
_NLA_TYPE_MASK: Final = 0x3FFF  # without NLA_F_NESTED, NLA_F_NET_BYTEORDER
_CTA_TUPLE_ORIG: Final = 1
_CTA_TUPLE_REPLY: Final = 2
_CTA_TUPLE_IP: Final = 1
_CTA_TUPLE_PROTO: Final = 2
_CTA_IP_ADDRS: Final = {1: "src", 2: "dst", 3: "src", 4: "dst"}  # CTA_IP_V4_SRC ... V6_DST
_CTA_PROTO_NUM: Final = 1
_CTA_PROTO_SRC_PORT: Final = 2
_CTA_PROTO_DST_PORT: Final = 3
NETLINK_TIMEOUT: Final = 5.0  # seconds for one ctnetlink answer
_NETLINK_MESSAGES_MAX: Final = 100_000  # a dump longer than this is an error

_tables = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Mapping:
    """One flow the NAT translated: `inside` appears to `remote` as `outside`."""

    protocol: int  # IPPROTO_UDP (17), IPPROTO_TCP (6), ...
    inside: tuple[str, int]
    outside: tuple[str, int]
    remote: tuple[str, int]


class Nat:
    """nftables masquerade on `router` from `inside` to `outside`; make one with :func:`add_nat`."""

    def __init__(
        self,
        router: Host,
        inside: Link,
        outside: Link,
        kind: NatKind,
        ports: tuple[int, int] | None,
        firewall: bool = True,
    ) -> None:
        self.router = router
        self.inside, self.outside = inside, outside
        self.inside_if = inside.ifname(router)
        self.outside_if = outside.ifname(router)
        self.kind = kind
        self.ports = ports
        self.firewall = firewall
        self.table = f"pywg_nat{next(_tables)}"
        self.reboots = 0

    def __repr__(self) -> str:
        return f"Nat({self.router.name}, {self.kind!r}, {self.inside_if} -> {self.outside_if})"

    @property
    def public_addr4(self) -> str:
        """The router's IPv4 address on the outside link: the one the outside sees."""
        return self.outside.address(self.router, 4)

    @property
    def public_addr6(self) -> str:
        return self.outside.address(self.router, 6)

    def _ruleset(self) -> str:
        random = " fully-random" if self.kind == "symmetric" else ""
        masquerade = f"masquerade{random}"
        if self.ports is not None:  # ICMP has no ports: the second rule maps it
            low, high = self.ports
            masquerade = (
                f"meta l4proto {{ tcp, udp }} masquerade to :{low}-{high}{random}\n"
                f'        oifname "{self.outside_if}" masquerade{random}'
            )
        out, inside = f'"{self.outside_if}"', f'"{self.inside_if}"'
        nat = f"""
table inet {self.table} {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname {out} {masquerade}
    }}
"""
        if not self.firewall:
            return nat + "}\n"
        return f"""{nat}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname {out} oifname {inside} ct state established,related accept
        iifname {out} oifname {inside} drop
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname {out} ct state established,related accept
        iifname {out} meta l4proto {{ tcp, udp }} drop
    }}
}}
"""

    def reboot(self) -> None:
        """Forget every mapping; with a port window, move on to the next disjoint window.

        See the module docstring: the next packet of every flow gets a new
        mapping (with a window: a different one), and outside answers are
        dropped until the inside sends again.
        """
        if self.ports is not None:
            low, high = self.ports
            size = high - low + 1
            self.ports = (low + size, high + size) if high + size <= 65535 else (1024, 1023 + size)
            # one nft transaction: no packet sees the router without its NAT
            self.router.nft(f"delete table inet {self.table}\n{self._ruleset()}")
        flush_conntrack(self.router)
        self.reboots += 1

    def mappings(self) -> list[Mapping]:
        """The flows this router translates now (from its conntrack table)."""
        return [m for m in conntrack_mappings(self.router) if m.inside != m.outside]

    def block_udp(self) -> None:
        """Drop every UDP datagram the router forwards, either way: a network that lets out
        only TCP (a hotel Wi-Fi, a corporate proxy's). :meth:`unblock_udp` lets it through."""
        self.router.nft(
            f"table inet {self.table}_noudp {{\n"
            "    chain forward {\n"
            "        type filter hook forward priority -10; policy accept;\n"
            "        meta l4proto udp drop\n"
            "    }\n"
            "}\n"
        )

    def unblock_udp(self) -> None:
        self.router.nft(f"delete table inet {self.table}_noudp\n")

    def remove(self) -> None:
        """Stop translating (the rules go; forwarding and conntrack state stay)."""
        self.router.nft(f"delete table inet {self.table}\n")


def add_nat(
    router: Host,
    inside: Link,
    outside: Link,
    kind: NatKind = "endpoint-independent",
    *,
    ports: tuple[int, int] | None = None,
    udp_timeout: float | None = None,
    firewall: bool = True,
) -> Nat:
    """Make `router` (an end of both links) a NAT of `kind` from `inside` to `outside`.

    Turns on forwarding and loads an nftables table (``pywg_natN``); routes
    are the caller's (the inside hosts' default route via the router's
    inside address, the router's own towards the outside). `ports` confines
    the mapped ports to a window; `udp_timeout` (whole seconds) sets how long
    an idle UDP mapping lives; `firewall=False` accepts unsolicited packets
    from outside. See the module docstring for the kinds and the firewall.
    """
    if kind not in NAT_KINDS:
        raise LabError(f"NAT kind must be one of {NAT_KINDS}, not {kind!r}")
    if ports is not None:
        low, high = ports
        # at most half the range, so that the next window (reboot) never overlaps it
        if not 1024 <= low <= high <= 65535 or high - low + 1 > (65536 - 1024) // 2:
            raise LabError(f"NAT port window {ports} is not within 1024-65535, half at most")
    nat = Nat(router, inside, outside, kind, ports, firewall)
    if nat.inside_if == nat.outside_if:
        raise LabError("a NAT needs two different links")
    router.forwarding()
    if udp_timeout is not None:
        seconds = max(1, round(udp_timeout))
        router.sysctl(
            f"net.netfilter.nf_conntrack_udp_timeout={seconds}",
            f"net.netfilter.nf_conntrack_udp_timeout_stream={seconds}",
        )
    router.nft(nat._ruleset())
    return nat


# -- ctnetlink: flush and dump a host's conntrack table -------------------------------------


def _ctnetlink(host: Host, msg_type: int, flags: int) -> list[bytes]:
    """Send one ctnetlink request in `host`'s namespace; the payloads of the answers."""
    sock = host.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        sock.settimeout(NETLINK_TIMEOUT)
        sock.bind((0, 0))
        # nfgenmsg: family AF_UNSPEC (IPv4 and IPv6), NFNETLINK_V0, res_id 0
        body = struct.pack("=BBH", socket.AF_UNSPEC, 0, 0)
        kind = (_NFNL_SUBSYS_CTNETLINK << 8) | msg_type
        sock.send(struct.pack("=IHHII", 16 + len(body), kind, flags, 1, 0) + body)
        payloads: list[bytes] = []
        while len(payloads) < _NETLINK_MESSAGES_MAX:
            try:
                data = sock.recv(1 << 16)
            except TimeoutError as exc:
                raise LabError(f"{host.name}: no answer from ctnetlink") from exc
            offset = 0
            while offset + 16 <= len(data):
                length, rtype, _, _, _ = struct.unpack_from("=IHHII", data, offset)
                if length < 16:
                    raise LabError(f"{host.name}: malformed ctnetlink answer")
                payload = data[offset + 16 : offset + length]
                offset += (length + 3) & ~3
                if rtype == _NLMSG_DONE:
                    return payloads
                if rtype == _NLMSG_ERROR:
                    (error,) = struct.unpack_from("=i", payload)
                    if error:
                        raise LabError(f"{host.name}: ctnetlink: {os.strerror(-error)}")
                    return payloads  # the ACK
                payloads.append(payload)
        raise LabError(f"{host.name}: ctnetlink answered more than {_NETLINK_MESSAGES_MAX} times")
    finally:
        sock.close()


def flush_conntrack(host: Host) -> None:
    """Delete every conntrack entry in `host`'s namespace (``conntrack -F``), IPv4 and IPv6."""
    _ctnetlink(host, _IPCTNL_MSG_CT_DELETE, _NLM_F_REQUEST | _NLM_F_ACK)


def _attrs(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        out[kind & _NLA_TYPE_MASK] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return out


@dataclass(slots=True)
class _Tuple:
    src: str = ""
    dst: str = ""
    proto: int = 0
    ports: dict[str, int] = field(default_factory=dict)


def _tuple(data: bytes) -> _Tuple:
    t = _Tuple()
    attrs = _attrs(data)
    for kind, value in _attrs(attrs.get(_CTA_TUPLE_IP, b"")).items():
        if kind in _CTA_IP_ADDRS:
            setattr(t, _CTA_IP_ADDRS[kind], str(ipaddress.ip_address(value)))
    proto = _attrs(attrs.get(_CTA_TUPLE_PROTO, b""))
    t.proto = proto.get(_CTA_PROTO_NUM, b"\0")[0]
    for kind, name in ((_CTA_PROTO_SRC_PORT, "src"), (_CTA_PROTO_DST_PORT, "dst")):
        if len(proto.get(kind, b"")) == 2:
            t.ports[name] = int.from_bytes(proto[kind], "big")
    return t


def conntrack_mappings(host: Host) -> list[Mapping]:
    """Every conntrack entry in `host`'s namespace, as a :class:`Mapping`.

    `inside` is the original source, `remote` the original destination and
    `outside` where answers go (the reply direction's destination): the same
    as `inside` for a flow nothing translated.
    """
    mappings = []
    for payload in _ctnetlink(host, _IPCTNL_MSG_CT_GET, _NLM_F_REQUEST | _NLM_F_DUMP):
        attrs = _attrs(payload[4:])  # after the nfgenmsg
        if _CTA_TUPLE_ORIG not in attrs or _CTA_TUPLE_REPLY not in attrs:
            continue
        orig, reply = _tuple(attrs[_CTA_TUPLE_ORIG]), _tuple(attrs[_CTA_TUPLE_REPLY])
        mappings.append(
            Mapping(
                protocol=orig.proto,
                inside=(orig.src, orig.ports.get("src", 0)),
                outside=(reply.dst, reply.ports.get("dst", 0)),
                remote=(orig.dst, orig.ports.get("dst", 0)),
            )
        )
    return mappings


# -- the usual topology -------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """A host on the :class:`Internet`: public (``nat`` None) or behind its own NAT router.

    `link` is the host's own link (to its NAT router, or to the internet
    router); the host is its b end (.2), the router its a end (.1).
    """

    host: Host
    link: Link
    nat: Nat | None = None

    @property
    def addr4(self) -> str:
        """The host's own IPv4 address (private behind a NAT)."""
        return self.link.b_addr4

    @property
    def addr6(self) -> str:
        return self.link.b_addr6

    @property
    def public_addr4(self) -> str:
        """Where the outside sees it: its NAT's outside address, or its own."""
        return self.nat.public_addr4 if self.nat is not None else self.addr4

    @property
    def public_addr6(self) -> str:
        return self.nat.public_addr6 if self.nat is not None else self.addr6


class Internet:
    """A core router (lab host `name`) with public hosts and NATed sites linked to it.

    It routes between all of its links, and knows nothing of the inside
    networks: an inside address is reachable from nowhere but its own NAT
    router. Every host gets a default route (IPv4 and IPv6) towards the core.
    """

    def __init__(self, lab: Lab, name: str = "inet", *, v6: bool = True) -> None:
        self.lab = lab
        self.v6 = v6
        self.host = lab.host(name)
        self.host.forwarding()
        self.sites: dict[str, Site] = {}

    def _default_route(self, host: Host, link: Link) -> None:
        host.route("default", via=link.a_addr4)
        if self.v6:
            host.route("::/0", via=link.a_addr6)

    def public(self, name: str) -> Site:
        """A host `name` with a public address, linked to the core."""
        host = self.lab.host(name)
        link = self.lab.link(self.host, host, v6=self.v6)
        self._default_route(host, link)
        self.sites[name] = site = Site(host, link)
        return site

    def behind_nat(
        self,
        name: str,
        kind: NatKind = "endpoint-independent",
        *,
        ports: tuple[int, int] | None = None,
        udp_timeout: float | None = None,
        firewall: bool = True,
    ) -> Site:
        """A host `name` behind its own NAT router ``{name}-nat`` (see :func:`add_nat`)."""
        router = self.lab.host(f"{name}-nat")
        host = self.lab.host(name)
        outside = self.lab.link(self.host, router, v6=self.v6)
        inside = self.lab.link(router, host, v6=self.v6)
        self._default_route(router, outside)
        self._default_route(host, inside)
        nat = add_nat(
            router, inside, outside, kind, ports=ports, udp_timeout=udp_timeout, firewall=firewall
        )
        self.sites[name] = site = Site(host, inside, nat)
        return site
