"""The packet filter in Python: inbound rules and connection tracking (sans-IO).

The same filter as the native plane's ``filter.c`` (its header describes
both), for the pure-Python data path and as the model the C filter is tested
against. The caller gives the time (monotonic seconds) with each packet.

    f = PacketFilter()
    f.set_rules(rules)                 # InboundRule list; None: off (all passes)
    f.outbound(packet, now)            # every packet this node sends
    if f.inbound(packet, now) == FILTER_PASS: ...   # every packet it receives

A flow's table entry is keyed by (family, protocol, local address, remote
address, local port, remote port); ICMP echo uses its identifier as the local
port. Unlike the C table, this one does not evict live flows when it is full:
it drops the entry that expires first.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..constants import (
    FILTER_DROP_FRAGMENT,
    FILTER_DROP_MALFORMED,
    FILTER_DROP_NO_RULE,
    FILTER_PASS,
    FLOW_TABLE_SIZE,
    FLOW_TIMEOUT_FRAGMENT,
    FLOW_TIMEOUT_OTHER,
    FLOW_TIMEOUT_TCP_CLOSING,
    FLOW_TIMEOUT_TCP_ESTABLISHED,
    FLOW_TIMEOUT_TCP_OPENING,
    FLOW_TIMEOUT_UDP,
)
from . import packet
from .packet import TCP, UDP, Headers
from .rules import InboundRule, RuleRow, flatten

__all__ = ["FilterStats", "PacketFilter", "Verdict"]

Verdict = int  # FILTER_PASS or FILTER_DROP_*
FlowKey = tuple[int, int, bytes, bytes, int, int, int]  # family proto local remote lport rport kind
_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10
_SEEN_OUT, _SEEN_IN, _CLOSING = 1, 2, 4
_FLOW, _FRAGMENT = 0, 1


@dataclass
class _Flow:
    expires: float
    gen: int
    origin_in: bool
    seen: int = 0
    denied: bool = False  # let in by older rules the current ones do not renew


@dataclass
class FilterStats:
    """The counters of `pywg_filter_stats`, by the same names."""

    passed_tracked: int = 0
    passed_rule: int = 0
    passed_fragment: int = 0
    passed_related: int = 0
    dropped_no_rule: int = 0
    dropped_malformed: int = 0
    dropped_fragment: int = 0
    flows: int = 0
    flows_evicted: int = 0
    rules: int = 0
    generation: int = 0


def _as_int(address: bytes) -> int:
    return int.from_bytes(address, "big")


@dataclass
class _Row:
    family: int
    src: ipaddress.IPv4Network | ipaddress.IPv6Network
    dst: ipaddress.IPv4Network | ipaddress.IPv6Network
    proto: int
    lo: int
    hi: int

    def covers(self, h: Headers, portless: bool) -> bool:
        if h.family != self.family or not self._proto(h):
            return False
        src, dst = self.src, self.dst
        if _as_int(h.src) & int(src.netmask) != int(src.network_address):
            return False
        if _as_int(h.dst) & int(dst.netmask) != int(dst.network_address):
            return False
        if not portless and h.proto in (TCP, UDP):
            return self.lo <= h.dport <= self.hi
        return self.lo == 0 and self.hi == 65535

    def _proto(self, h: Headers) -> bool:
        if self.proto == 0:
            return True
        if self.proto == packet.ICMP:
            return h.is_icmp()
        return self.proto == h.proto


@dataclass
class PacketFilter:
    """Rules plus a flow table; see the module's docstring."""

    capacity: int = FLOW_TABLE_SIZE
    stats: FilterStats = field(default_factory=FilterStats)
    _rows: list[_Row] | None = None
    _flows: dict[FlowKey, _Flow] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self._rows is not None

    def set_rules(self, rules: Iterable[InboundRule] | Iterable[RuleRow] | None) -> None:
        """Replace the rules; ``None``: none, everything passes. Flows stay (see filter.h)."""
        if rules is None:
            self._rows = None
            self.stats.rules = 0
        else:
            items = list(rules)
            rows = [r for r in items if isinstance(r, RuleRow)]
            rows += flatten(r for r in items if isinstance(r, InboundRule))
            self._rows = [_Row(r.family, r.source, r.destination, r.proto, r.port_lo, r.port_hi)
                          for r in rows]  # fmt: skip
            self.stats.rules = len(rows)
        self.stats.generation += 1

    def flush(self) -> None:
        self._flows.clear()

    def inbound(self, data: bytes, now: float) -> Verdict:
        """Whether packet `data`, arriving through the tunnel, may be written to the TUN."""
        if self._rows is None:
            return FILTER_PASS
        h = packet.parse(data)
        if h is None:
            self.stats.dropped_malformed += 1
            return FILTER_DROP_MALFORMED
        if h.later_fragment:
            return self._fragment(h, now)
        if _trackable(h):
            verdict = self._tracked(h, now)
        elif self._related(h, now):
            verdict = self._count(True, FILTER_DROP_NO_RULE, "passed_related")
        else:
            verdict = self._count(self._allowed(h), FILTER_DROP_NO_RULE, "passed_rule")
        if verdict == FILTER_PASS and h.first_fragment:
            self._flows[_fragment_key(h)] = _Flow(now + FLOW_TIMEOUT_FRAGMENT, 0, True)
        return verdict

    def outbound(self, data: bytes, now: float) -> None:
        """Track packet `data`, which this node sends into the tunnel."""
        h = packet.parse(data)
        if h is None or h.later_fragment or not _trackable(h):
            return
        key = _flow_key(h, inbound=False)
        flow = self._find(key, now)
        if flow is None or _new_connection(h):
            flow = self._insert(key, _Flow(0.0, self.stats.generation, False), now)
        _touch(key, flow, h, False, now)

    # -- the steps, as in filter.c ------------------------------------------------------

    def _allowed(self, h: Headers, portless: bool = False) -> bool:
        return any(row.covers(h, portless) for row in self._rows or ())

    def _count(self, ok: bool, reason: Verdict, passed: str) -> Verdict:
        if ok:
            setattr(self.stats, passed, getattr(self.stats, passed) + 1)
            return FILTER_PASS
        name = {FILTER_DROP_NO_RULE: "dropped_no_rule", FILTER_DROP_FRAGMENT: "dropped_fragment"}
        setattr(self.stats, name[reason], getattr(self.stats, name[reason]) + 1)
        return reason

    def _related(self, h: Headers, now: float) -> bool:
        """An ICMP error about a flow tracked here, not denied."""
        q = packet.quoted(h) if h.is_icmp_error() else None
        if q is None or not _trackable(q):
            return False
        flow = self._find(_flow_key(q, inbound=False), now)
        return flow is not None and not flow.denied

    def _fragment(self, h: Headers, now: float) -> Verdict:
        ok = self._find(_fragment_key(h), now) is not None or self._allowed(h, portless=True)
        return self._count(ok, FILTER_DROP_FRAGMENT, "passed_fragment")

    def _tracked(self, h: Headers, now: float) -> Verdict:
        key = _flow_key(h, inbound=True)
        flow = self._find(key, now)
        if flow is not None and _new_connection(h):
            del self._flows[key]
            flow = None
        gen = self.stats.generation
        if flow is not None and flow.origin_in and flow.gen != gen:
            flow.gen = gen  # let in by older rules: matched again against these
            flow.denied = not self._allowed(h)
        if flow is not None and flow.denied:  # kept, not refreshed (filter.h)
            return self._count(False, FILTER_DROP_NO_RULE, "")
        if flow is not None:
            _touch(key, flow, h, True, now)
            return self._count(True, FILTER_DROP_NO_RULE, "passed_tracked")
        if not self._allowed(h):
            return self._count(False, FILTER_DROP_NO_RULE, "")
        flow = self._insert(key, _Flow(0.0, gen, True), now)
        _touch(key, flow, h, True, now)
        return self._count(True, FILTER_DROP_NO_RULE, "passed_rule")

    def _find(self, key: FlowKey, now: float) -> _Flow | None:
        flow = self._flows.get(key)
        if flow is not None and flow.expires <= now:
            del self._flows[key]
            return None
        return flow

    def _insert(self, key: FlowKey, flow: _Flow, now: float) -> _Flow:
        self._flows.pop(key, None)
        if len(self._flows) >= self.capacity:
            oldest = min(self._flows, key=lambda k: self._flows[k].expires)
            if self._flows.pop(oldest).expires > now:
                self.stats.flows_evicted += 1
        self._flows[key] = flow
        self.stats.flows = len(self._flows)
        return flow


def _trackable(h: Headers) -> bool:
    if h.icmp_type < 0:
        return True
    return h.icmp_type in ((8, 0) if h.family == 4 else (128, 129))


def _new_connection(h: Headers) -> bool:
    return h.proto == TCP and h.tcp_flags & (_SYN | _ACK) == _SYN


def _flow_key(h: Headers, inbound: bool) -> FlowKey:
    local, remote = (h.dst, h.src) if inbound else (h.src, h.dst)
    if h.icmp_type >= 0:
        lport, rport = h.icmp_id, 0
    elif h.proto in (TCP, UDP):
        lport, rport = (h.dport, h.sport) if inbound else (h.sport, h.dport)
    else:
        lport = rport = 0
    return (h.family, h.proto, local, remote, lport, rport, _FLOW)


def _fragment_key(h: Headers) -> FlowKey:
    return (h.family, 0, h.dst, h.src, h.frag_id >> 16, h.frag_id & 0xFFFF, _FRAGMENT)


def _touch(key: FlowKey, flow: _Flow, h: Headers, inbound: bool, now: float) -> None:
    flow.seen |= _SEEN_IN if inbound else _SEEN_OUT
    if h.proto == TCP and h.tcp_flags & (_FIN | _RST):
        flow.seen |= _CLOSING
    flow.expires = now + _timeout(key, flow)


def _timeout(key: FlowKey, flow: _Flow) -> float:
    if key[6] == _FRAGMENT:
        return FLOW_TIMEOUT_FRAGMENT
    if key[1] == TCP:
        if flow.seen & _CLOSING:
            return FLOW_TIMEOUT_TCP_CLOSING
        both = flow.seen & (_SEEN_IN | _SEEN_OUT) == _SEEN_IN | _SEEN_OUT
        return FLOW_TIMEOUT_TCP_ESTABLISHED if both else FLOW_TIMEOUT_TCP_OPENING
    return FLOW_TIMEOUT_UDP if key[1] == UDP else FLOW_TIMEOUT_OTHER
