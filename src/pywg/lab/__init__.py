"""The test lab: throw-away hosts in Linux network namespaces.

Tests, ``pywg demo``, the interop suite and ``benches/tunnel.py`` build small
networks here: every host is a network namespace, every link a veth pair, and
everything a lab made is torn down when it closes, also when the code inside
``with`` raised. It needs root and iproute2 (``ip``); ``nft`` for
:meth:`Host.nft`, :meth:`Host.loss` and NATs.

A guide::

    from pywg.lab import Lab, PacedStream, tcp_transfer

    with Lab() as lab:                      # names: pwl-<pid>-<random>-<host>
        a, r, b = lab.host("a"), lab.host("r"), lab.host("b")
        left = lab.link(a, r)               # 198.18.1.1/24 <-> .2, fd18::1:1/112 <-> :2
        right = lab.link(r, b)              # 198.18.2.0/24, fd18::2:0/112
        r.forwarding()
        a.route("198.18.2.0/24", via=left.b_addr4)
        b.route("198.18.1.0/24", via=right.a_addr4)
        assert a.wait_ping(right.b_addr4)
        tun = lab.ifname("wg")              # unique, <= 15 chars, its UAPI socket cleaned up
        wg = a.popen("wireguard-go", "-f", tun)  # killed when the lab closes
        result = tcp_transfer(a, b, right.b_addr4, 20 << 20)
        assert result.ok                    # same length and SHA-256 at both ends
        # 1 MB/s for 10 s in the background, while the network changes under it
        stream = PacedStream(a, b, right.b_addr4, port=5301, rate=1_000_000, seconds=10)
        ...                                 # move an address, wait for a rekey
        result = stream.result(deadline=30)
        assert result.ok and result.max_gap < 2   # and it never stalled for 2 s

WireGuard daemons in lab hosts (pywgd, wireguard-go or any implementation
with wireguard-go's command line), configured over their UAPI sockets::

    from pywg.lab.wireguard import PYWGD, WIREGUARD_GO, connect, start_node

    left = start_node(lab, a, PYWGD, net=1, index=1)          # tunnel 198.19.1.1
    right = start_node(lab, b, WIREGUARD_GO, net=1, index=2)  # tunnel 198.19.1.2
    connect(left, right, link)              # peers of each other, endpoints on `link`
    assert a.wait_ping(right.addr4)

NATs (nftables masquerade; RFC 4787 kinds), loss (nftables) and delay (a
user-space relay: these kernels have no ``sch_netem``, and nftables can drop
a packet but never hold it back)::

    from pywg.lab import Internet, Relay, RelayEnds

    with Lab() as lab:
        net = Internet(lab)                         # core router "inet", routes everything
        a = net.behind_nat("a", "endpoint-independent")   # hosts "a" and its router "a-nat"
        b = net.behind_nat("b", "symmetric", ports=(20000, 29999))
        s = net.public("s")                         # a public host, e.g. a rendezvous server
        # a.addr4 is private; the outside sees a.public_addr4, at a.nat.mappings()
        b.nat.reboot()                              # mappings forgotten, new ports from now on
        loss = s.host.loss(s.link.b_if, 5, direction="in", port=51820)   # 5% of UDP to :51820
        matched, dropped = loss.counts()
        loss.remove()

        relay = Relay(r, RelayEnds(left=..., right=..., a=..., b=...))  # a UDP relay in host r
        relay.faults(delay=0.05, jitter=0.01, loss=0.02)   # each way; or to="a" / to="b"
        relay.faults(hold=0.03, dup=0.03)           # reorder 3%, duplicate 3%; faults(): none
        relay.stats()["delayed"]

The pieces:

- :mod:`pywg.lab.hosts`: :class:`Lab`, :class:`Host`, :class:`Link`,
  :class:`LabError`; running commands, addresses, routes, sysctls, nft, ping
  (iputils or a raw-socket fallback), teardown and :func:`cleanup_stale`.
- :mod:`pywg.lab.transfer`: :func:`tcp_transfer` (bulk, blocking),
  :class:`TcpStream` and :class:`PacedStream` (in the background, optionally
  at a fixed rate in bytes/s), all reporting a :class:`TransferResult`: the
  SHA-256 and byte count of both ends, the receiver's time and its longest
  stall.
- :mod:`pywg.lab.nat`: :func:`add_nat` (a host becomes a NAT router between
  two of its links) and its :class:`Nat` (:meth:`Nat.reboot`,
  :meth:`Nat.mappings`), the kinds ``"endpoint-independent"`` and
  ``"symmetric"`` (:data:`NAT_KINDS`), :class:`Internet` and its
  :class:`Site` for the usual topology, :func:`flush_conntrack`.
- :meth:`Host.loss`: random loss on an interface, in, out or both, with
  nftables ``numgen random``; the :class:`Loss` it returns counts and removes.
- :mod:`pywg.lab.relay`: :class:`Relay`, a UDP relay process between two
  peers that delays (with jitter), loses, reorders, duplicates, records and
  replays their datagrams, per direction (:class:`Faults`, :class:`RelayStats`).
- :mod:`pywg.lab.capture`: ``UdpCapture``, the UDP datagrams crossing an
  interface, with times (not imported here); :mod:`pywg.system.netns`:
  ``socket_in``, behind :meth:`Host.socket`.
- :mod:`pywg.lab.wireguard`: WireGuard daemons in lab hosts (not imported
  here, as it needs the UAPI client and the key types).

Rules the lab keeps: underlay addresses come from 198.18.0.0/16 and fd18::/16
and tunnel addresses (chosen by the caller) from 198.19.0.0/16 and fd19::/16;
names are unique per lab, so labs in concurrent processes never collide;
nothing is ever changed in the root namespace (no addresses, routes, sysctls or
nft rules there: every command runs with ``ip -n NS`` or ``ip netns exec NS``);
every command has a timeout and every loop a deadline. Inside each namespace
IPv6 is on and duplicate address detection off, so IPv6 addresses are usable at
once.

:func:`cleanup_stale` removes the namespaces of labs whose process died
without closing them (a ``kill -9``).
"""

from __future__ import annotations

from .hosts import (
    COMMAND_TIMEOUT,
    IFNAMSIZ,
    IPV6_READY,
    KILL_GRACE,
    UAPI_DIR,
    Host,
    Lab,
    LabError,
    Link,
    Loss,
    cleanup_stale,
    close_all_labs,
    require_root,
    unavailable_reason,
)
from .nat import NAT_KINDS, Internet, Mapping, Nat, NatKind, Site, add_nat, flush_conntrack
from .relay import Faults, Relay, RelayEnds, RelayStats
from .transfer import PacedStream, TcpStream, TransferResult, tcp_transfer

__all__ = [
    "COMMAND_TIMEOUT",
    "IFNAMSIZ",
    "IPV6_READY",
    "KILL_GRACE",
    "NAT_KINDS",
    "UAPI_DIR",
    "Faults",
    "Host",
    "Internet",
    "Lab",
    "LabError",
    "Link",
    "Loss",
    "Mapping",
    "Nat",
    "NatKind",
    "PacedStream",
    "Relay",
    "RelayEnds",
    "RelayStats",
    "Site",
    "TcpStream",
    "TransferResult",
    "add_nat",
    "cleanup_stale",
    "close_all_labs",
    "flush_conntrack",
    "require_root",
    "tcp_transfer",
    "unavailable_reason",
]
