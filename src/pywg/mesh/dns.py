"""The mesh's names, sans-IO: a zone of NAME.DOMAIN -> tunnel addresses, and its answers.

Every member of a mesh (and every plain WireGuard device the roster lists)
is ``NAME.DOMAIN``, DOMAIN the coordinator's (`DEFAULT_DOMAIN` unless
``pywg coordinator serve --domain`` says otherwise). `Zone` holds the names
of one roster; `answer` turns one DNS query's bytes into the answer's bytes,
as the authority for DOMAIN (RFC 1034 §4.3.2):

- A / AAAA of a name in the zone: its IPv4 / IPv6 tunnel addresses; ANY:
  both. Another type of an existing name: NOERROR with no answer and the
  zone's SOA in the authority section ("NODATA", RFC 2308 §2.2); so does a
  name that exists only as a parent of others (an empty non-terminal,
  RFC 8020 §2).
- The apex (DOMAIN itself): its SOA and NS (this node), NODATA for the rest.
- Any other name under DOMAIN: NXDOMAIN with the SOA (RFC 2308 §2.1). The
  SOA's minimum and TTL are NEGATIVE_TTL, the records' TTL is TTL: names
  follow the roster within seconds, so nothing caches them for long.
- A name outside DOMAIN: `Forward`, for the I/O shell to pass upstream.
- A message that is not a query (the QR bit set), or shorter than a
  header: dropped (None), so two servers never answer each other. One that
  does not parse, or has no single question: FORMERR (RFC 1035 §4.1.1);
  another opcode than QUERY: NOTIMP; another class than IN (or ANY) under
  DOMAIN: REFUSED.

An answer that does not fit `max_size` (512 bytes for UDP without EDNS,
the query's EDNS payload size otherwise, RFC 6891 §6.2.5) goes out with
the TC bit and no records, so the client asks again over TCP (RFC 7766 §5).

dnspython renders and parses the wire format: it is typed (py.typed, so
mypy --strict checks its use), maintained, and its parser is the one many
resolvers are tested with; nothing here parses DNS by hand.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

DEFAULT_DOMAIN: Final = "mesh.internal"  # .internal: for private use (ICANN, 2024)
TTL: Final = 2  # seconds a name's addresses may be cached
NEGATIVE_TTL: Final = 1  # seconds an NXDOMAIN / NODATA may be cached (RFC 2308 §5)
UDP_SIZE: Final = 512  # a UDP answer without EDNS (RFC 1035 §4.2.1)
MAX_UDP_SIZE: Final = 1232  # the most this server sends over UDP (DNS flag day 2020)
TCP_SIZE: Final = 65535  # a TCP answer (RFC 1035 §4.2.2: a 16-bit length)
HEADER_SIZE: Final = 12
MAX_DOMAIN: Final = 200  # characters: room left for a node name under it (253 in all)
_QR: Final = 0x8000


def check_domain(text: object) -> str:
    """`text` as a mesh domain (lower case, no final dot); ValueError if it is not one:
    two or more labels of letters, digits and hyphens, none starting or ending with one."""
    if not isinstance(text, str) or not 0 < len(text) <= MAX_DOMAIN:
        raise ValueError(f"a domain is 1..{MAX_DOMAIN} characters")
    labels = text.lower().removesuffix(".").split(".")
    for label in labels:
        ok = 0 < len(label) <= 63 and label[0] != "-" and label[-1] != "-"
        if not ok or not all(ch.isascii() and (ch.isalnum() or ch == "-") for ch in label):
            raise ValueError(f"not a domain name: {text!r} (labels of a-z 0-9 -)")
    if len(labels) < 2:
        raise ValueError(f"a mesh domain has two labels or more (mesh.internal): {text!r}")
    return ".".join(labels)


@dataclass(frozen=True, slots=True)
class Forward:
    """A query for a name outside the zone: for the upstream resolver."""

    query: dns.message.Message


@dataclass(frozen=True, slots=True)
class _Host:
    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]


class Zone:
    """The names of one roster under `domain`.

    `entries` are (name, addresses) pairs: the node itself, its peers, the
    roster's devices. A name that cannot be a DNS name (an empty label, a
    label over 63 characters) is left out (`skipped` lists them); a name given
    twice gets the addresses of both. `primary` is this node's own name (the
    SOA's and NS's server), `serial` the SOA serial (the roster version).
    """

    def __init__(
        self,
        domain: str,
        entries: Iterable[tuple[str, Sequence[str]]],
        *,
        primary: str = "ns",
        serial: int = 0,
    ) -> None:
        self.domain = check_domain(domain)
        self.origin = dns.name.from_text(self.domain)
        self.serial = serial & 0xFFFFFFFF
        self.skipped: list[str] = []
        self.hosts: dict[dns.name.Name, _Host] = {}
        for name, addresses in entries:
            owner = self._owner(name)
            if owner is None:
                self.skipped.append(name)
                continue
            old = self.hosts.get(owner, _Host((), ()))
            v4 = [str(a) for a in map(ipaddress.ip_address, addresses) if a.version == 4]
            v6 = [str(a) for a in map(ipaddress.ip_address, addresses) if a.version == 6]
            self.hosts[owner] = _Host(old.ipv4 + tuple(v4), old.ipv6 + tuple(v6))
        self.parents = {p for owner in self.hosts for p in _parents(owner, self.origin)}
        self.primary = self._owner(primary) or self.origin

    def _owner(self, name: str) -> dns.name.Name | None:
        labels = name.split(".")
        if not all(0 < len(label) <= 63 for label in labels):
            return None
        try:
            return dns.name.Name([label.encode("ascii") for label in labels]).concatenate(
                self.origin
            )
        except (UnicodeEncodeError, dns.exception.DNSException):
            return None

    def hosts_lines(self) -> list[str]:
        """The zone as /etc/hosts lines: ``ADDRESS<TAB>NAME.DOMAIN``, IPv4 first."""
        lines = []
        for owner, host in sorted(self.hosts.items()):
            fqdn = owner.to_text(omit_final_dot=True)
            lines += [f"{address}\t{fqdn}" for address in host.ipv4 + host.ipv6]
        return lines

    def covers(self, name: dns.name.Name) -> bool:
        return name.is_subdomain(self.origin)

    def soa(self) -> dns.rrset.RRset:
        primary = self.primary.to_text()
        text = f"{primary} hostmaster.{self.origin} {self.serial} 60 60 60 {NEGATIVE_TTL}"
        return dns.rrset.from_text(self.origin, NEGATIVE_TTL, "IN", "SOA", text)

    def records(self, name: dns.name.Name, rdtype: int) -> list[dns.rrset.RRset] | None:
        """The records of `name` of type `rdtype` (maybe none: NODATA); None: no such name."""
        if name == self.origin:
            return self._apex(rdtype)
        host = self.hosts.get(name)
        if host is None:
            return [] if name in self.parents else None
        found = []
        if rdtype in (dns.rdatatype.A, dns.rdatatype.ANY) and host.ipv4:
            found.append(dns.rrset.from_text_list(name, TTL, "IN", "A", list(host.ipv4)))
        if rdtype in (dns.rdatatype.AAAA, dns.rdatatype.ANY) and host.ipv6:
            found.append(dns.rrset.from_text_list(name, TTL, "IN", "AAAA", list(host.ipv6)))
        return found

    def _apex(self, rdtype: int) -> list[dns.rrset.RRset]:
        found = []
        if rdtype in (dns.rdatatype.SOA, dns.rdatatype.ANY):
            found.append(self.soa())
        if rdtype in (dns.rdatatype.NS, dns.rdatatype.ANY):
            ns = self.primary.to_text()
            found.append(dns.rrset.from_text(self.origin, TTL, "IN", "NS", ns))
        return found


def _parents(owner: dns.name.Name, origin: dns.name.Name) -> Iterable[dns.name.Name]:
    name = owner.parent()
    while name != origin and name.is_subdomain(origin):
        yield name
        name = name.parent()


def answer(zone: Zone, data: bytes, *, tcp: bool = False) -> bytes | Forward | None:
    """The answer to the DNS message `data` (see the module docstring): its bytes,
    `Forward` for a name outside the zone, None to drop it."""
    if len(data) < HEADER_SIZE or int.from_bytes(data[2:4], "big") & _QR:
        return None
    try:
        query = dns.message.from_wire(data)
    except Exception:  # dnspython raises several types on malformed input: all are FORMERR
        return _formerr(data)
    if query.opcode() != dns.opcode.QUERY:
        return render(_response(query, dns.rcode.NOTIMP), query, tcp=tcp)
    if len(query.question) != 1:
        return render(_response(query, dns.rcode.FORMERR), query, tcp=tcp)
    question = query.question[0]
    if not zone.covers(question.name):
        return Forward(query)
    if question.rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY):
        return render(_response(query, dns.rcode.REFUSED), query, tcp=tcp)
    response = _response(query, dns.rcode.NOERROR)
    response.flags |= dns.flags.AA
    records = zone.records(question.name, question.rdtype)
    if records is None:
        response.set_rcode(dns.rcode.NXDOMAIN)
    for rrset in records or ():
        response.answer.append(_named(rrset, question.name))
    if not response.answer:
        response.authority.append(zone.soa())
    return render(response, query, tcp=tcp)


def _named(rrset: dns.rrset.RRset, name: dns.name.Name) -> dns.rrset.RRset:
    """`rrset` under `name` as the question spelled it (the case it asked in)."""
    return dns.rrset.from_rdata_list(name, rrset.ttl, list(rrset))


def _response(query: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
    response = dns.message.make_response(query, recursion_available=True)
    response.set_rcode(rcode)
    return response


def response_to(query: dns.message.Message, rcode: dns.rcode.Rcode, *, tcp: bool) -> bytes:
    """An answer with no records and `rcode` (SERVFAIL when no upstream answered)."""
    return render(_response(query, rcode), query, tcp=tcp)


def max_size(query: dns.message.Message, *, tcp: bool) -> int:
    """The largest answer `query` may get (RFC 6891 §6.2.5; RFC 1035 §4.2)."""
    if tcp:
        return TCP_SIZE
    if query.edns < 0:
        return UDP_SIZE
    return max(UDP_SIZE, min(query.payload, MAX_UDP_SIZE))


def render(response: dns.message.Message, query: dns.message.Message, *, tcp: bool) -> bytes:
    """`response` as bytes within the size `query` allows, else truncated (the TC bit)."""
    limit = max_size(query, tcp=tcp)
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        response.answer.clear()
        response.authority.clear()
        response.additional.clear()
        response.flags |= dns.flags.TC
        return response.to_wire(max_size=limit)


def _formerr(data: bytes) -> bytes:
    """FORMERR for a query that did not parse: its id and RD bit, nothing else."""
    flags = int.from_bytes(data[2:4], "big")
    response = dns.message.Message(id=int.from_bytes(data[:2], "big"))
    response.flags = dns.flags.QR | dns.flags.RA | (flags & dns.flags.RD)
    response.set_rcode(dns.rcode.FORMERR)
    return response.to_wire()
