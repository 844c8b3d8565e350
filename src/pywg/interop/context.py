"""What a scenario gets: a lab of its own with the implementations running in it.

Every scenario runs in a fresh :class:`pywg.lab.Lab` with freshly started
daemons, so no scenario sees another's leftovers and scenarios can run side
by side. Addresses follow the lab rules: underlay 198.18.0.0/15 and
fd18::/16 (one /24 and /112 per link), tunnel 198.19.1.0/24 and
fd19::1:0/112.

- :class:`PairContext` (``pair`` scenarios): implementation A in host ``a``,
  B in host ``b``, one link between them (A on its ``a`` side); tunnel
  addresses 198.19.1.1 / fd19::1:1 (A) and .2 / ::1:2 (B). Not yet peers:
  the scenario calls :meth:`PairContext.connect` as it needs.
- :class:`HostileContext` (``hostile`` scenarios): the implementation under
  test in host ``b`` (tunnel 198.19.1.2, fd19::1:2), the adversary's host
  ``a`` on one link to it. The target already has the adversary's public
  key as a peer, with allowed IPs 198.19.1.1/32 and fd19::1:1/128 and no
  endpoint (it learns one from an authenticated initiation).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..endpoint import format_endpoint
from ..keys import PresharedKey, PrivateKey
from ..lab import Host, Lab, Link
from ..lab.wireguard import Impl, WgNode, start_node, wait_handshake

Metric = float | int | str

NET: int = 1  # tunnel addresses 198.19.1.x / fd19::1:x
A_INDEX, B_INDEX = 1, 2


@dataclass
class PairContext:
    lab: Lab
    a_host: Host
    b_host: Host
    link: Link  # a_host on its a side
    a: WgNode
    b: WgNode
    time_scale: float = 1.0  # protocol time runs this many times faster than real time
    metrics: dict[str, Metric] = field(default_factory=dict)

    def note(self, key: str, value: Metric) -> None:
        """Record a figure for the report (throughput, a timing, a count)."""
        self.metrics[key] = value

    def other(self, node: WgNode) -> WgNode:
        """The other side of the pair."""
        return self.b if node is self.a else self.a

    def underlay(self, node: WgNode, family: int = 4) -> str:
        """`node`'s underlay address on the link."""
        return self.link.address(node.host, family)

    def endpoint(self, node: WgNode, family: int = 4) -> str:
        """Where the other side reaches `node`, as a UAPI/wg endpoint string."""
        return format_endpoint((self.underlay(node, family), node.port))

    def connect(
        self,
        *,
        family: int = 4,
        a_knows_b: bool = True,
        b_knows_a: bool = True,
        preshared_key: PresharedKey | None = None,
        b_preshared_key: PresharedKey | None = None,
        a_keepalive: int = 0,
        b_keepalive: int = 0,
    ) -> None:
        """Make A and B peers of each other (replacing what they had of each other).

        `a_knows_b`: A is given B's endpoint (so A can initiate); likewise
        `b_knows_a`. `b_preshared_key` defaults to `preshared_key`.
        """
        self.a.add_peer(
            self.b,
            endpoint=self.endpoint(self.b, family) if a_knows_b else None,
            preshared_key=preshared_key,
            persistent_keepalive=a_keepalive,
        )
        self.b.add_peer(
            self.a,
            endpoint=self.endpoint(self.a, family) if b_knows_a else None,
            preshared_key=b_preshared_key if b_preshared_key is not None else preshared_key,
            persistent_keepalive=b_keepalive,
        )

    def handshake(self, initiator: WgNode, deadline: float = 10.0) -> float | None:
        """Ping across from `initiator` until it reports a handshake; seconds taken, or None."""
        start = time.monotonic()
        if not wait_handshake(initiator, self.other(initiator), deadline=deadline):
            return None
        return time.monotonic() - start


@dataclass
class HostileContext:
    lab: Lab
    attacker: Host  # the adversary's host, on the link's a side
    link: Link
    target: WgNode  # the implementation under test, in host b
    key: PrivateKey  # the adversary's static key, a peer of the target
    tunnel4: str  # the adversary's tunnel addresses (its allowed IPs on the target)
    tunnel6: str
    metrics: dict[str, Metric] = field(default_factory=dict)

    @property
    def target_endpoint(self) -> tuple[str, int]:
        """The target's UDP endpoint over the IPv4 underlay."""
        return (self.link.b_addr4, self.target.port)

    @property
    def target_endpoint6(self) -> tuple[str, int]:
        return (self.link.b_addr6, self.target.port)

    def note(self, key: str, value: Metric) -> None:
        self.metrics[key] = value


def build_pair(lab: Lab, impl_a: Impl, impl_b: Impl, *, time_scale: float = 1.0) -> PairContext:
    """Two hosts on one link, `impl_a` and `impl_b` started in them (not yet peers).

    With `time_scale` above 1 both must name their `time_scale_env`.
    """

    def env(impl: Impl) -> dict[str, str] | None:
        if time_scale == 1:
            return None
        if impl.time_scale_env is None:
            raise ValueError(f"{impl.name} cannot scale its protocol time")
        return {impl.time_scale_env: f"{time_scale:g}"}

    a_host, b_host = lab.host("a"), lab.host("b")
    link = lab.link(a_host, b_host)
    a = start_node(lab, a_host, impl_a, net=NET, index=A_INDEX, env=env(impl_a))
    b = start_node(lab, b_host, impl_b, net=NET, index=B_INDEX, env=env(impl_b))
    return PairContext(lab, a_host, b_host, link, a, b, time_scale)


def build_hostile(lab: Lab, impl: Impl) -> HostileContext:
    """The adversary's host and `impl` in its own, with the adversary as its peer."""
    attacker, b_host = lab.host("a"), lab.host("b")
    link = lab.link(attacker, b_host)
    target = start_node(lab, b_host, impl, net=NET, index=B_INDEX)
    key = PrivateKey.generate()
    tunnel4, tunnel6 = f"198.19.{NET}.{A_INDEX}", f"fd19::{NET}:{A_INDEX}"
    target.set(
        f"public_key={key.public_key.to_hex()}\nallowed_ip={tunnel4}/32\nallowed_ip={tunnel6}/128\n"
    )
    return HostileContext(lab, attacker, link, target, key, tunnel4, tunnel6)
