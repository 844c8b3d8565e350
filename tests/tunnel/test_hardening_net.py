"""Hardening in the namespace lab: floods, loss, reordering, duplicates, replays.

Three parts, each with its own lab (prefix "pwh"); nothing touches the root
namespace, every wait has a deadline and every test a time limit (SIGALRM):

- Handshake floods against pywgd (the machinery and the full-size figures
  are in ``benches/flood.py``): valid-mac1 initiations from unknown keys,
  garbage, bad-mac1 initiations, each as fast as one Python process sends
  them, while Debian's wireguard-go peer handshakes and moves data through the
  flood; and a paced flood in small bursts, after which pywgd must still take
  handshakes.
- Faults on the underlay, for pywgd<->pywgd and pywgd<->wireguard-go: 5%
  random loss (nftables in a router between the two ends, ``Host.loss``) and a
  relay that reorders and duplicates (``pywg.lab.relay``); TCP transfers each way
  arrive intact (SHA-256 compared). PYWG_FAULT_MB sets their size (100 MB by
  default, the figure the issue asks for).
- Replays: the relay records transport packets on their way to pywgd and
  sends them again; pywgd rejects every one (its SIGUSR1 counters grow by
  exactly that many) and the application behind the tunnel sees none.

Figures are printed (run with -s to see them). Needs root, iproute2, nft and
wireguard-go; skipped otherwise.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.time_bounds import wait_for
from helpers.udp_apps import UdpCounter, udp_send
from pywg import _fast
from pywg.lab import Host, Lab, Link, Relay, RelayEnds, tcp_transfer
from pywg.lab.wireguard import PYWGD, WIREGUARD_GO, WgNode, endpoint, start_node

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benches"))
import flood  # benches/flood.py: the flood machinery and ForegroundPywgd

PREFIX = "pwh"
MB = 1_000_000
PORT = flood.PORT

# -- the floods: what CI runs, and the bounds it holds pywgd to --------------------------------
FLOOD_SECONDS = 5.0  # at least this much flood per kind
FLOOD_POOL = 2048  # distinct messages per flood
FLOOD_MBYTES = 40  # legitimate transfer each way, unflooded and flooded
HANDSHAKE_DEADLINE = 20.0  # the legitimate peer's handshake during a flood (4 retries)
# flooded legitimate throughput >= 15% of unflooded, each way: the flooder, both daemons and
# both TCP ends share two CPUs here (typically 30-90% is kept; 18% seen once under load)
MIN_FRACTION = 0.15
RSS_GROWTH_MAX_KIB = 32 * 1024  # pywgd's VmRSS may grow by at most 32 MiB over a flood
RSS_MAX_KIB = 160 * 1024  # and stay below 160 MiB
CPU_MAX_PERCENT = 190.0  # of one core: the daemon's threads, never more than the machine
INDEX_TABLE_MAX = 4  # the legitimate peer's: keypairs current/previous/next, one handshake
PACED_RATE = 12000.0  # datagrams/s of the paced flood, from one address, in bursts of 8

# -- the faults --------------------------------------------------------------------------
FAULT_MB = int(os.environ.get("PYWG_FAULT_MB", "100"))
LOSS_PERCENT = 5
HOLD = 0.03  # the relay holds back 3% of the datagrams (1-8 later ones overtake them)
DUP = 0.03  # and sends 3% twice
REPLAYS = 200  # transport data packets recorded and replayed

TEST_TIME_LIMIT = 150.0  # seconds for any one test here, teardown included

pytestmark = [
    pytest.mark.needs_lab("wireguard-go", "nft", "ping", "pywgd"),
    pytest.mark.time_limit(TEST_TIME_LIMIT),
]


# -- 1. handshake floods ----------------------------------------------------------------


@pytest.fixture(scope="module")
def flood_lab() -> Iterator[flood.FloodLab]:
    """pywgd, a wireguard-go peer and a flooder; each test restarts pywgd."""
    with Lab(PREFIX) as lab, tempfile.TemporaryDirectory(prefix="pywg-flood-") as workdir:
        fl = flood.FloodLab(lab, workdir)
        try:
            yield fl
        finally:
            fl.close()


def check_bounded(r: flood.FloodResult) -> None:
    """What every flood must leave true: memory, CPU, no state for unauthenticated senders."""
    assert r.sent_pps > 5000, f"the flood did not happen: {r.sent_pps} datagrams/s"
    # the kernel took it all to pywgd's socket (read, or dropped for a full buffer)
    assert r.victim_udp_in + r.rcvbuf_errors >= 0.95 * r.sent, r
    assert r.rss_peak_kib - r.rss_before_kib <= RSS_GROWTH_MAX_KIB, r
    assert r.rss_peak_kib <= RSS_MAX_KIB, r
    assert r.victim_cpu_percent <= CPU_MAX_PERCENT, r
    assert r.index_table_unauth == 0, "pywgd allocated an index for an unauthenticated sender"
    assert r.index_table_max <= INDEX_TABLE_MAX, r
    # pywgd still processes what arrives: every single probe after the flood is judged
    assert r.probes_judged == r.probes_sent, (
        f"pywgd stopped listening: {r.probes_judged} of {r.probes_sent} probes judged after "
        f"the flood; {r.unjudged} datagrams handed up to Python but not dropped: {r}"
    )
    assert r.recovery_handshake_s is not None, "no handshake with pywgd after the flood"


@pytest.mark.parametrize("kind", flood.FLOOD_KINDS)
def test_handshake_flood(flood_lab: flood.FloodLab, kind: str) -> None:
    """Flood at full speed; the legitimate wireguard-go peer handshakes and moves data through."""
    measure = functools.partial(
        flood_lab.measure,
        kind,
        seconds=FLOOD_SECONDS,
        nbytes=FLOOD_MBYTES * MB,
        pool_size=FLOOD_POOL,
        handshake_deadline=HANDSHAKE_DEADLINE,
        transfer_timeout=40,
    )
    r = measure()
    print("\n" + flood.format_flood(r))
    check_bounded(r)
    judged = sum(r.judged().values())
    assert judged > 1000, f"pywgd judged only {judged} flood datagrams (in C or the core)"
    if kind != "mac1":  # garbage and forged mac1 never reach Python on the native plane
        assert sum(r.c_dropped.values()) > 1000, r.c_dropped
    if kind == "mac1":
        cookie_replies = r.replies_received.get("3", 0)
        assert set(r.replies_received) == {"3"}, r.replies_received  # cookie replies, only
        # at least a burst for each of the flood's source addresses (C limits
        # cookie replies per source address and port)
        assert cookie_replies > 100, "pywgd did not answer the flood with cookie replies"
        assert r.judged().get("cookie_reply_sent", 0) >= cookie_replies
        verified, sampled = map(int, r.cookie_replies_verified.split("/"))
        assert sampled > 0 and verified == sampled, r.cookie_replies_verified
    else:
        assert r.replies_received == {}, f"pywgd answered {kind}: {r.replies_received}"
        assert r.judged().get("cookie_reply_sent", 0) == 0
    assert r.handshake_s is not None, (
        f"the legitimate peer got no handshake in {HANDSHAKE_DEADLINE:g} s of {kind} flood"
    )
    assert r.legit_ok, "a legitimate transfer did not arrive intact"
    # The legitimate share is the one noisy figure (13-112 % across runs on this shared
    # 2-vCPU machine, the flooder included): below the floor, one more measurement
    # decides, and every other check above held on the first.
    if any(r.fraction(d) < MIN_FRACTION for d in flood_lab.directions):
        print(f"legitimate share below {MIN_FRACTION:.0%}: measuring once more")
        r = measure()
        print(flood.format_flood(r))
        assert r.legit_ok, "a legitimate transfer did not arrive intact"
    for direction in flood_lab.directions:
        assert r.fraction(direction) >= MIN_FRACTION, (
            f"{direction}: {r.legit_mbit[direction]:.0f} Mbit/s flooded, "
            f"{r.baseline_mbit[direction]:.0f} unflooded"
        )


def test_paced_flood_pywgd_keeps_listening(flood_lab: flood.FloodLab) -> None:
    """Bad-mac1 initiations in small bursts from one address: pywgd's backlog keeps
    emptying and refilling, and every datagram handed up must still be judged."""
    r = flood_lab.measure(
        "badmac1",
        seconds=flood.PACED_SECONDS,
        nbytes=0,
        pool_size=FLOOD_POOL,
        rate=PACED_RATE,
        sources=flood.FLOOD_SOURCES[:1],
        batch=flood.PACED_BATCH,
        legit=False,
    )
    print("\n" + flood.format_flood(r))
    assert r.judged().get("bad_mac1", 0) > 0
    assert r.replies_received == {}
    check_bounded(r)


# -- 2. faults: loss, reordering, duplicates ------------------------------------------------


@dataclass
class FaultLab:
    """pywgd A (foreground, counters) -- middle host R -- B (pywgd or wireguard-go)."""

    lab: Lab
    a: flood.ForegroundPywgd
    b: WgNode
    r: Host
    left: Link  # A <-> R, 198.18.1.0/24
    right: Link  # R <-> B, 198.18.2.0/24

    @property
    def a_node(self) -> WgNode:
        return self.a.node


def fault_lab(lab: Lab, b_impl: str, *, route: bool, backend: str | None = None) -> FaultLab:
    """Three hosts in a row; with `route`, R forwards between the two links.

    `backend` is A's data plane (PYWG_BACKEND: native, pure), by default pywgd's choice.
    """
    a_host, r, b_host = lab.host("a"), lab.host("r"), lab.host("b")
    left = lab.link(a_host, r, v6=False)
    right = lab.link(r, b_host, v6=False)
    # UDP GSO batches (pywgd sends up to 64 datagrams as one) are split where they leave
    # A and B, so that R sees, drops and relays single datagrams
    a_host.ip("link", "set", "dev", left.a_if, "gso_max_segs", "1")
    b_host.ip("link", "set", "dev", right.b_if, "gso_max_segs", "1")
    if route:
        r.forwarding()
        a_host.route("198.18.2.0/24", via=left.b_addr4)
        b_host.route("198.18.1.0/24", via=right.a_addr4)
    env = {"PYWG_BACKEND": backend} if backend is not None else None
    a = flood.ForegroundPywgd(lab, a_host, net=1, index=1, env=env)
    b = start_node(lab, b_host, PYWGD if b_impl == "pywgd" else WIREGUARD_GO, net=1, index=2)
    return FaultLab(lab, a, b, r, left, right)


def transfer_both_ways(fl: FaultLab, nbytes: int, label: str) -> None:
    a, b = fl.a_node, fl.b
    for tx, rx, address, what in (
        (a.host, b.host, b.addr4, f"pywgd -> {b.impl.name}"),
        (b.host, a.host, a.addr4, f"{b.impl.name} -> pywgd"),
    ):
        result = tcp_transfer(tx, rx, address, nbytes, timeout=TEST_TIME_LIMIT / 2)
        print(
            f"\n{label} {what}: {result.received_bytes / MB:.0f} MB in {result.seconds:.1f} s "
            f"= {result.mbit_per_s:.0f} Mbit/s, longest stall {result.max_gap:.2f} s"
        )
        assert result.received_bytes == nbytes, result
        assert result.ok, f"{what}: the data arrived changed: {result}"


@pytest.mark.parametrize("b_impl", ["pywgd", "wireguard-go"])
def test_transfer_through_random_loss(b_impl: str) -> None:
    """nftables in the router drops 5% of the tunnel's UDP packets, at random, both ways."""
    nbytes = FAULT_MB * MB
    with Lab(PREFIX) as lab:
        fl = fault_lab(lab, b_impl, route=True)
        try:
            a, b = fl.a_node, fl.b
            a.add_peer(b, endpoint=endpoint(fl.right.b_addr4, b.port))
            b.add_peer(a, endpoint=endpoint(fl.left.a_addr4, a.port))
            assert a.host.wait_ping(b.addr4, deadline=10), "no tunnel before the loss"
            # every tunnel packet crosses R's interface towards A once: in (A -> B) or out
            loss = fl.r.loss(fl.left.b_if, LOSS_PERCENT, direction="both", port=PORT)
            before = fl.a.counters()
            transfer_both_ways(fl, nbytes, f"{LOSS_PERCENT}% loss")
            seen, lost = loss.counts()
            after = fl.a.counters()
            print(
                f"nftables dropped {lost} of {seen} tunnel packets ({100 * lost / seen:.2f}%); "
                f"pywgd rejected {flood.rejected_total(after) - flood.rejected_total(before)}"
            )
            assert seen > nbytes * 2 // 1500, "the transfers did not pass the router"
            assert 0.03 < lost / seen < 0.07, "the loss was not what was asked for"
            assert flood.rejected_total(after) == flood.rejected_total(before), (
                "pywgd rejected packets that were only lost around, never replayed"
            )
            assert int(after["index_table"]) <= INDEX_TABLE_MAX
        finally:
            fl.a.close()


def relay_lab(lab: Lab, b_impl: str, backend: str | None = None) -> tuple[FaultLab, Relay]:
    """A and B know each other only at the relay's addresses in R."""
    fl = fault_lab(lab, b_impl, route=False, backend=backend)
    a, b = fl.a_node, fl.b
    ends = RelayEnds(
        left=(fl.left.b_addr4, PORT),
        right=(fl.right.a_addr4, PORT),
        a=(fl.left.a_addr4, a.port),
        b=(fl.right.b_addr4, b.port),
    )
    relay = Relay(fl.r, ends)
    a.add_peer(b, endpoint=endpoint(*ends.left))
    b.add_peer(a, endpoint=endpoint(*ends.right))
    assert a.host.wait_ping(b.addr4, deadline=10), "no tunnel through the relay"
    return fl, relay


@pytest.mark.parametrize("b_impl", ["pywgd", "wireguard-go"])
def test_transfer_through_reordering_duplicating_relay(b_impl: str) -> None:
    """A relay holds back 3% of the datagrams (1-8 later ones overtake them) and duplicates 3%."""
    nbytes = FAULT_MB * MB
    with Lab(PREFIX) as lab:
        fl, relay = relay_lab(lab, b_impl)
        try:
            before = fl.a.counters()
            relay.faults(hold=HOLD, dup=DUP)
            transfer_both_ways(fl, nbytes, "reordered and duplicated")
            relay.faults()
            stats = relay.stats()
            after = fl.a.counters()
            rejected = flood.rejected_total(after) - flood.rejected_total(before)
            relayed = stats["to_a"] + stats["to_b"]
            dup_to_a = stats["duplicated_to_a"]
            print(
                f"relay: {relayed} datagrams, {stats['held']} held back, "
                f"{stats['duplicated']} duplicated ({dup_to_a} towards pywgd A); "
                f"pywgd A rejected {rejected}"
            )
            assert stats["held"] > relayed * HOLD / 2 and stats["duplicated"] > relayed * DUP / 2
            # the duplicates towards A are rejected (one copy of each, the later), and nothing
            # else: reordering within the replay window is accepted. (A duplicate whose
            # original was lost on the way would be accepted; nothing drops here, so 0.9.)
            assert 0.9 * dup_to_a <= rejected <= dup_to_a, (rejected, stats)
            assert int(after["index_table"]) <= INDEX_TABLE_MAX
        finally:
            fl.a.close()


# -- 3. replayed transport packets ----------------------------------------------------------


@pytest.mark.parametrize("backend", ["native", "pure"])
@pytest.mark.parametrize("b_impl", ["pywgd", "wireguard-go"])
def test_replayed_transport_packets_rejected(b_impl: str, backend: str) -> None:
    """Packets recorded on their way to pywgd and sent again are all rejected and counted.

    Both of pywgd's data planes: the C plane counts rx_rejected, the pure-Python
    core dropped["transport_rejected"].
    """
    if backend == "native" and not _fast.AVAILABLE:
        pytest.skip("native extension not built")
    app_port = 6000
    with Lab(PREFIX) as lab:
        fl, relay = relay_lab(lab, b_impl, backend)
        try:
            a, b = fl.a_node, fl.b
            app = UdpCounter(a.host, a.addr4, app_port)
            relay.record("a", REPLAYS)
            udp_send(b.host, a.addr4, app_port, REPLAYS, rate=1000)
            assert wait_for(lambda: relay.stats()["recorded_now"]["a"] == REPLAYS, 5, step=0.1), (
                relay.stats()
            )
            time.sleep(0.5)  # every original delivered
            before = fl.a.counters()
            replayed = relay.replay("a")  # from where B's packets come from (the relay)
            time.sleep(0.5)
            replayed += relay.replay("a", source="other")  # and from a stranger's address
            assert replayed == 2 * REPLAYS
            # the counters catch up within the plane's 0.1 s reporting tick
            assert wait_for(
                lambda: (
                    flood.rejected_total(fl.a.counters()) - flood.rejected_total(before) >= replayed
                ),
                5,
                step=0.3,
            )
            time.sleep(1.0)  # anything a replay let through would have reached the app by now
            after = fl.a.counters()
            counted = app.result()
            rejected = flood.rejected_total(after) - flood.rejected_total(before)
            print(
                f"\nreplayed {replayed} transport packets ({b_impl} -> pywgd, {backend}): "
                f"pywgd rejected "
                f"{rejected} (plane rx_rejected "
                f"{after['plane'].get('rx_rejected', 0) - before['plane'].get('rx_rejected', 0)}, "
                f"core transport_rejected "
                f"{flood.counter_delta(before, after, 'dropped').get('transport_rejected', 0)}); "
                f"the application received {counted['count']} datagrams of {REPLAYS} sent"
            )
            assert rejected == replayed, "every replay rejected, and nothing else"
            assert counted == {"count": REPLAYS, "distinct": REPLAYS}, counted
            # a rejected packet moves nothing: A still reaches B at the relay's address
            assert a.peer_status(b).endpoint == endpoint(fl.left.b_addr4, PORT)
            # and the tunnel still works after it
            assert b.host.ping(a.addr4, count=2)
        finally:
            fl.a.close()
