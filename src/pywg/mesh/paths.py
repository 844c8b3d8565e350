"""Which way to send to a peer: a direct path found by probing, or the relay.

Theory of operation
-------------------
Each peer of a mesh node has *candidates* (the endpoints the peer reported
to the coordinator: its public mapping as STUN saw it, and its local
addresses) and maybe a *relay* endpoint (the peer's relayed endpoint behind
this node's home relay, `pywg.relayed`). WireGuard itself has one endpoint per
peer; `PathSelector` decides which one, sans-IO (every call takes `now`):

- Openers first (`openers_due`): a new candidate, and every candidate when
  probing starts again, is sent an *opener* at once: a probe with a hop
  limit of OPEN_HOPS, which passes this node's own NAT router (opening its
  mapping and filter towards the candidate) and dies at the next router,
  before the peer's. Probes proper follow OPEN_PERIOD later. A NAT router
  that accepts unsolicited packets (no WAN firewall: `pywg.lab.nat`,
  ``firewall=False``) keeps a conntrack entry for a probe that reaches it
  before its inside host has sent to the prober, and then maps that host's
  own flow to the prober to another port, which the prober never probes;
  the clash lasts as long as the probes keep coming. The openers make each
  side's mapping exist before the other side's first probe arrives, as
  long as both learn each other's candidates within OPEN_PERIOD (they do:
  from the same roster push, the `pywg.mesh.agent`). Routers that drop such
  packets (most home routers) need no opener; it costs one datagram.
- Probing (`probes_due`): a probe (`pywg.mesh.wire`, a STUN Binding request
  from the WireGuard socket) goes to every candidate every PROBE_FAST
  seconds for FAST_PERIOD after the candidates change, then every
  PROBE_SLOW seconds for as long as no direct path is confirmed. Both peers
  probe each other at once, so the first probes open each side's NAT
  mapping and filter for the other's, and a later one gets through: this
  is hole punching (RFC 5128 §3.3, "UDP hole punching"; the checks are ICE's
  connectivity checks in miniature, RFC 8445 §7). Once a path answers, only
  it is probed often, every KEEPALIVE seconds, which also keeps the NAT
  mapping open; the others every PROBE_SLOW seconds, in case a better one
  (a shared LAN) opens.
- Choice (`choice`): among the candidates that answered within
  DIRECT_TIMEOUT, IPv6 first: when both an IPv6 and an IPv4 candidate
  answer, the IPv6 ones are chosen from unless the fastest of them takes
  longer than IPV6_FACTOR times the fastest IPv4 round trip plus
  IPV6_SLACK (twice that limit once an IPv6 path is in use, so a round
  trip near it does not flip the family on every probe); within the
  family, the lowest round trip wins. Without an answering candidate: the
  relay; else the first candidate (no relay: WireGuard may still get
  through on its own). IPv6 first because its paths cross no NAT where
  both ends have global addresses (no mapping to expire, no hole to
  punch), as the Happy Eyeballs rule prefers it for the same reason
  (RFC 8305 §4); a candidate is IPv6 by its address (the roster carries
  only global-scope addresses: never link-local ones).
- Peer-reflexive candidates (`add_reflexive`): an address the peer's packets
  came from that the roster did not name (WireGuard roamed there, say
  through a NAT that maps each destination anew) is probed like the others
  (RFC 8445 §7.2.5.3.1 learns such candidates the same way), at once and
  without an opener: the peer's packets already came through from there.
- Falling back and back again: a direct path that stops answering for
  DIRECT_TIMEOUT is dropped (the relay takes over) and fast probing of all
  candidates starts again, so the node moves back to direct as soon as a
  path answers, e.g. after the peer reported its new mapping when its
  router rebooted.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from typing import Final

from ..endpoint import Endpoint

PROBE_FAST: Final = 1.0
OPEN_PERIOD: Final = 1.0  # openers only, before the first probe to a candidate
OPEN_HOPS: Final = 2  # an opener's hop limit: past this node's own router, not the next
FAST_PERIOD: Final = 15.0
PROBE_SLOW: Final = 10.0
KEEPALIVE: Final = 2.5
DIRECT_TIMEOUT: Final = 8.0
SWITCH_FACTOR: Final = 2.0
IPV6_FACTOR: Final = 2.0  # IPv6 first unless its round trip is over this times IPv4's ...
IPV6_SLACK: Final = 0.010  # ... plus this (s): LAN-scale differences are noise
MAX_REFLEXIVE: Final = 2


@dataclass(slots=True)
class _Candidate:
    endpoint: Endpoint
    last_answer: float = -math.inf
    rtt: float = math.inf
    next_probe: float = 0.0
    reflexive: bool = False  # learnt from where the peer's packets came, not from the roster
    next_open: float = math.inf  # when an opener is due (inf: none)


@dataclass(slots=True)
class PathSelector:
    """The path to one peer; see the module docstring."""

    candidates: list[_Candidate] = field(default_factory=list)
    relay: Endpoint | None = None
    fast_until: float = 0.0
    had_direct: bool = False
    current: Endpoint | None = None

    def set_paths(self, candidates: list[Endpoint], relay: Endpoint | None, now: float) -> None:
        """New candidates and relay from the roster; what is known about kept ones stays."""
        old = {c.endpoint: c for c in self.candidates}
        fresh = [old.get(e) or _Candidate(e, next_probe=now + OPEN_PERIOD) for e in candidates]
        for c in fresh:
            c.reflexive = False
        kept = [c for c in self.candidates if c.reflexive and c.endpoint not in candidates]
        self.candidates = fresh + kept
        if {c.endpoint for c in self.candidates} != set(old):
            self.restart_probing(now)
        self.relay = relay

    def add_reflexive(self, endpoint: Endpoint, now: float) -> bool:
        """Probe `endpoint` too (the peer's packets came from there); False if known.

        At most MAX_REFLEXIVE such candidates are kept, the newest."""
        if any(c.endpoint == endpoint for c in self.candidates):
            return False
        reflexive = [c for c in self.candidates if c.reflexive]
        if len(reflexive) >= MAX_REFLEXIVE:
            self.candidates.remove(reflexive[0])
        self.candidates.append(_Candidate(endpoint, next_probe=now, reflexive=True))
        self.restart_probing(now)
        return True

    def answers(self, endpoint: Endpoint, now: float) -> bool:
        """Whether `endpoint` answered a probe within DIRECT_TIMEOUT."""
        return any(
            c.endpoint == endpoint and now - c.last_answer <= DIRECT_TIMEOUT
            for c in self.candidates
        )

    def restart_probing(self, now: float) -> None:
        """Fast probing again, for FAST_PERIOD: openers now and probes after OPEN_PERIOD
        (a peer-reflexive candidate: probes now)."""
        self.fast_until = now + FAST_PERIOD
        for c in self.candidates:
            if c.reflexive:
                c.next_probe = min(c.next_probe, now)
            else:
                c.next_open = now
                c.next_probe = min(c.next_probe, now + OPEN_PERIOD)

    def openers_due(self, now: float) -> list[Endpoint]:
        """Candidates to send an opener now (a probe with hop limit OPEN_HOPS), once each
        time probing starts."""
        due = [c for c in self.candidates if c.next_open <= now]
        for c in due:
            c.next_open = math.inf
        return [c.endpoint for c in due]

    def direct(self, now: float) -> Endpoint | None:
        """The confirmed direct path (an answer within DIRECT_TIMEOUT): IPv6 first, then
        the fastest (see the module docstring).

        The one chosen last stays while it answers and is of the family chosen,
        unless another of that family is more than SWITCH_FACTOR times faster (two
        paths of about the same speed would otherwise take turns on every probe).
        """
        live = [c for c in self.candidates if now - c.last_answer <= DIRECT_TIMEOUT]
        if not live:
            return None
        pool = self._family_first(live)
        best = min(pool, key=lambda c: c.rtt)
        for c in pool:
            if c.endpoint == self.current and best.rtt * SWITCH_FACTOR >= c.rtt:
                return c.endpoint
        if best.endpoint != self.current:  # the new path is kept alive from now on
            best.next_probe = min(best.next_probe, now + KEEPALIVE)
        self.current = best.endpoint
        return best.endpoint

    def _family_first(self, live: list[_Candidate]) -> list[_Candidate]:
        """The answering candidates to choose from: the IPv6 ones unless they are much
        slower than the IPv4 ones (IPV6_FACTOR, IPV6_SLACK), else the IPv4 ones."""
        ipv6 = [c for c in live if is_ipv6(c.endpoint)]
        ipv4 = [c for c in live if not is_ipv6(c.endpoint)]
        if not ipv6 or not ipv4:
            return live
        limit = min(c.rtt for c in ipv4) * IPV6_FACTOR + IPV6_SLACK
        if self.current is not None and is_ipv6(self.current):
            limit *= SWITCH_FACTOR  # leaving IPv6 takes a clearer case than taking it
        return ipv6 if min(c.rtt for c in ipv6) <= limit else ipv4

    def may_stay(self, endpoint: Endpoint, now: float) -> bool:
        """Whether WireGuard may stay at `endpoint` rather than move to the choice: it
        answered within DIRECT_TIMEOUT and is of the family of the direct choice (a
        path WireGuard roamed to is as good as the choice, but not IPv4 over IPv6)."""
        direct = self.direct(now)
        return (
            direct is not None
            and self.answers(endpoint, now)
            and is_ipv6(endpoint) == is_ipv6(direct)
        )

    def choice(self, now: float) -> Endpoint | None:
        direct = self.direct(now)
        if direct is not None:
            return direct
        if self.relay is not None:
            return self.relay
        return self.candidates[0].endpoint if self.candidates else None

    def probes_due(self, now: float) -> list[Endpoint]:
        """Candidates to probe now (each is then not due again until its next time)."""
        direct = self.direct(now)
        if self.had_direct and direct is None:  # the direct path stopped answering
            self.restart_probing(now)
        self.had_direct = direct is not None
        due = []
        for c in self.candidates:
            if c.next_probe > now:
                continue
            if direct is not None:  # keep it open; now and then look for a better one
                interval = KEEPALIVE if c.endpoint == direct else PROBE_SLOW
            else:
                interval = PROBE_FAST if now < self.fast_until else PROBE_SLOW
            c.next_probe = now + interval
            due.append(c.endpoint)
        return due

    def answered(self, endpoint: Endpoint, sent: float, now: float) -> bool:
        """A probe sent at `sent` to `endpoint` was answered at `now`; False if not a candidate."""
        lost = self.direct(now) is None
        for c in self.candidates:
            if c.endpoint == endpoint:
                c.last_answer = now
                sample = max(now - sent, 0.0)
                c.rtt = sample if math.isinf(c.rtt) else 0.75 * c.rtt + 0.25 * sample
                if lost:  # the first answer: from now on it is kept alive
                    c.next_probe = now + KEEPALIVE
                    self.had_direct = True
                return True
        return False

    def next_due(self) -> float:
        """When `probes_due` or `openers_due` may next return something."""
        return min((min(c.next_probe, c.next_open) for c in self.candidates), default=math.inf)


def is_ipv6(endpoint: Endpoint) -> bool:
    """Whether `endpoint` is an IPv6 path (an IPv4-mapped address is IPv4)."""
    try:
        address = ipaddress.ip_address(endpoint[0])
    except ValueError:
        return False
    return address.version == 6 and address.ipv4_mapped is None
