"""Soak on virtual time: hours of protocol time through the sans-IO core, nothing grows.

The CI half of the soak (benches/soak.py is the real-time half). A hub
device and SPOKES spoke devices on the in-memory network of tests/helpers/virtual_network.py,
for PYWG_SOAK_HOURS hours of virtual time (default 6):

- every TICK seconds each spoke sends the hub a packet and the hub answers
  each spoke; every packet is numbered and must arrive by the next tick;
- sessions rekey every ~120 s (thousands of handshakes in all);
- every CHURN seconds the oldest spoke is removed from the hub (and its
  device thrown away) and a spoke is added: alternately a brand-new key and
  the key of a spoke removed earlier (re-added with a fresh device);
- once an hour one spoke falls silent for SILENCE seconds (the network drops
  all its packets): traffic to it keeps coming, so the hub retries its
  handshake (at most once per REKEY_TIMEOUT); once the session has expired
  the hub bursts more packets at it than a peer may stage; then the spoke
  comes back and traffic resumes.

Checked at every checkpoint: the hub's index table holds at most
INDEX_PER_PEER entries per peer (three sessions and a handshake), the spokes'
at most INDEX_PER_PEER, staged packets at most MAX_STAGED_PACKETS per peer,
the allowed-IPs trie as small as its prefixes need, and the live Session,
Peer and handshake objects (a gc census) in proportion to the peers. Memory:
tracemalloc runs throughout; between snapshots after the second hour (a full
turnover of spokes after the warm-up hour) and at the end (pywg's two
lru_caches emptied first: they are bounded by their size, and churn fills
them with new keys and endpoints), the traced total may grow by at most
MEMORY_SLACK bytes, and everything outside this test's own bookkeeping by
fewer blocks than a tenth of the handshakes in between (so nothing is kept
per handshake or per packet). At the end
traffic still flows both ways to every spoke.
"""

from __future__ import annotations

import gc
import os
import random
import socket
import time
import tracemalloc
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from helpers.ip_packets import ip4
from helpers.virtual_network import Host, Network
from pywg import Device, HandshakeCompleted, PrivateKey, _fast, endpoint
from pywg.constants import MAX_STAGED_PACKETS
from pywg.handshake import _initial_state
from pywg.keys import PublicKey
from pywg.noise import HandshakeState
from pywg.peer import Peer, PendingHandshake
from pywg.session import Session

HOURS = float(os.environ.get("PYWG_SOAK_HOURS", "6"))
SPOKES = 12
TICK = 10.0  # seconds between rounds of traffic
CHURN = 300.0  # seconds between a spoke leaving and one (re)joining
SILENCE = 200.0  # seconds a spoke is unreachable, once an hour
CHECKPOINT = 600.0
INDEX_PER_PEER = 4  # previous, current, next session + a handshake in progress
MEMORY_SLACK = 32 * 1024  # bytes of traced growth tolerated between the two snapshots
TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/
HUB_ADDR = ("198.18.0.1", 51820)
HUB_TUNNEL = "198.19.0.1"


@dataclass
class Spoke:
    slot: int  # 1..250: its underlay and tunnel address
    key: PrivateKey
    host: Host
    sent: int = 0  # packets to the hub
    pending_up: set[bytes] = field(default_factory=set)  # sent, not yet seen at the hub
    pending_down: set[bytes] = field(default_factory=set)  # sent by the hub, not yet seen here

    @property
    def tunnel(self) -> str:
        return f"198.19.1.{self.slot}"

    @property
    def public_key(self) -> PublicKey:
        return self.key.public_key


def _live_census() -> Counter[str]:
    """Live objects of the kinds that would pile up if something leaked, process-wide."""
    gc.collect()
    kinds = (Session, Peer, PendingHandshake, HandshakeState, Device)
    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        if isinstance(obj, kinds):
            counts[type(obj).__name__] += 1
    return counts


class Soak:
    def __init__(self) -> None:
        # objects other tests in this process left alive are not this soak's
        self._baseline = _live_census()
        self.net = Network(latency=0.002)
        self.hub_key = PrivateKey.generate()
        self.seeds = random.Random(5)  # every device's rng (indices, ephemerals, jitter) from here
        hub = Device(self.hub_key, 51820, rng=self._rng(), wall_clock=self.net.wall_clock())
        self.hub = self.net.attach(hub, HUB_ADDR)
        self.spokes: list[Spoke] = []
        # keys of spokes that left, to come back later (a few: the harness must not grow)
        self.removed: deque[PrivateKey] = deque(maxlen=4)
        self.next_slot = 1
        self.silent: Spoke | None = None
        self.grace: dict[int, int] = {}  # slot -> rounds its traffic may still be catching up
        self.seq = 0
        self.handshakes = 0
        self.delivered = 0
        self.lost_in_silence = 0
        self.silent_initiations = 0  # handshake initiations the hub sent a silent spoke
        self.max_index = 0
        self.max_staged = 0
        self.hub_events: Counter[str] = Counter()
        self.net.drop = self._drop

    def _drop(self, data: bytes, src: tuple[str, int], dst: tuple[str, int]) -> bool:
        s = self.silent
        return s is not None and s.host.addr in (src, dst)

    def _rng(self) -> Callable[[int], bytes]:
        """A seeded stand-in for os.urandom: real timer jitter, reproducible runs."""
        return random.Random(self.seeds.getrandbits(64)).randbytes

    # -- membership -------------------------------------------------------------------------
    def add_spoke(self, key: PrivateKey | None = None) -> Spoke:
        key = key or PrivateKey.generate()
        slot = self.next_slot
        self.next_slot = self.next_slot % 250 + 1
        addr = (f"198.18.1.{slot}", 51820)
        device = Device(key, 51820, rng=self._rng(), wall_clock=self.net.wall_clock())
        host = self.net.attach(device, addr)
        spoke = Spoke(slot, key, host)
        device.add_peer(self.hub_key.public_key, [f"{HUB_TUNNEL}/32"], endpoint=HUB_ADDR)
        self.hub.device.add_peer(key.public_key, [f"{spoke.tunnel}/32"], endpoint=addr)
        self.spokes.append(spoke)
        # both ends start a handshake with the first round; when the initiations cross,
        # each answers the other's and drops its own, and a retry 5-5.33 s later settles it
        self.grace[slot] = 3
        return spoke

    def remove_spoke(self, spoke: Spoke) -> None:
        self.hub.device.remove_peer(spoke.public_key)
        del self.net.hosts[spoke.host.addr]
        self.spokes.remove(spoke)
        self.removed.append(spoke.key)

    # -- traffic ------------------------------------------------------------------------------
    def _payload(self, spoke: Spoke, direction: bytes) -> bytes:
        self.seq += 1
        return direction + spoke.slot.to_bytes(1, "big") + self.seq.to_bytes(8, "big") + bytes(40)

    def round(self) -> None:
        """Check the previous round arrived, then send the next one both ways."""
        self.collect()
        for spoke in self.spokes:
            if spoke is self.silent:
                continue
            if self.grace.get(spoke.slot, 0) > 0:  # new, or back from silence: its first
                self.grace[spoke.slot] -= 1  # packets may wait for a handshake retry (5 s)
                continue
            assert not spoke.pending_up, f"lost on the way to the hub: {self.describe(spoke)}"
            assert not spoke.pending_down, f"lost on the way from the hub: {self.describe(spoke)}"
        for spoke in list(self.spokes):
            up = ip4(spoke.tunnel, HUB_TUNNEL, self._payload(spoke, b"U"))
            spoke.pending_up.add(up)
            self.net.send(spoke.host, up)
            down = ip4(HUB_TUNNEL, spoke.tunnel, self._payload(spoke, b"D"))
            spoke.pending_down.add(down)
            self.net.send(self.hub, down)

    def collect(self) -> None:
        """Take what arrived off the hosts (the simulator would keep it forever)."""
        by_slot = {s.slot: s for s in self.spokes}
        for _, packet in self.hub.received:
            spoke = by_slot.get(packet[21])  # payload: direction, slot, seq
            if spoke is not None and packet in spoke.pending_up:
                spoke.pending_up.discard(packet)
                self.delivered += 1
        for spoke in self.spokes:
            for _, packet in spoke.host.received:
                if packet in spoke.pending_down:
                    spoke.pending_down.discard(packet)
                    self.delivered += 1
            for event in spoke.host.events:
                if isinstance(event, HandshakeCompleted):
                    self.handshakes += 1
            spoke.host.received.clear()
            spoke.host.sent.clear()
            spoke.host.events.clear()
        for event in self.hub.events:
            self.hub_events[type(event).__name__] += 1
        if self.silent is not None:
            to_silent = self.silent.host.addr
            self.silent_initiations += sum(
                1 for _, data, dst in self.hub.sent if dst == to_silent and data[0] == 1
            )
        self.hub.received.clear()
        self.hub.sent.clear()
        self.hub.events.clear()

    def silence(self, spoke: Spoke) -> None:
        """The spoke drops off the network (both ways)."""
        self.silent = spoke

    def flood_silent(self) -> None:
        """The hub bursts packets at the silent spoke, whose session has expired: staged."""
        spoke = self.silent
        assert spoke is not None
        peer = self.hub.device.peer(spoke.public_key)
        assert peer.current is None or peer.current.expired(self.net.now)
        for _ in range(2 * MAX_STAGED_PACKETS):
            self.net.send(self.hub, ip4(HUB_TUNNEL, spoke.tunnel, self._payload(spoke, b"X")))
        self.max_staged = max(self.max_staged, len(peer.staged))

    def end_silence(self) -> None:
        spoke = self.silent
        assert spoke is not None
        self.lost_in_silence += len(spoke.pending_up) + len(spoke.pending_down)
        spoke.pending_up.clear()
        spoke.pending_down.clear()
        self.silent = None
        self.grace[spoke.slot] = 3

    def describe(self, spoke: Spoke) -> str:
        """Both ends' view of one spoke, for a failure message."""

        def peer_state(device: Device, key: PublicKey) -> str:
            p = device.peer(key)
            return (
                f"current={p.current} next={p.next} previous={p.previous} "
                f"handshake={p.handshake} staged={len(p.staged)} timers={p.timers} "
                f"last_sent_handshake={p.last_sent_handshake:.3f} dropped={dict(device.dropped)}"
            )

        return (
            f"t={self.net.now:.3f} spoke {spoke.slot} "
            f"up={[p[22:30].hex() for p in spoke.pending_up]} "
            f"down={[p[22:30].hex() for p in spoke.pending_down]}\n"
            f"  spoke side: {peer_state(spoke.host.device, self.hub_key.public_key)}\n"
            f"  hub side: {peer_state(self.hub.device, spoke.public_key)}"
        )

    # -- invariants ----------------------------------------------------------------------------
    def check_bounds(self) -> None:
        hub = self.hub.device
        peers = hub.peers
        assert len(peers) == SPOKES
        self.max_index = max(self.max_index, hub.index_table_size)
        assert hub.index_table_size <= INDEX_PER_PEER * len(peers), hub.index_table_size
        for spoke in self.spokes:
            assert spoke.host.device.index_table_size <= INDEX_PER_PEER
            spoke_staged = sum(len(p.staged) for p in spoke.host.device.peers.values())
            assert spoke_staged <= (MAX_STAGED_PACKETS if spoke is self.silent else 1)
        staged = [len(p.staged) for p in peers.values()]
        self.max_staged = max(self.max_staged, *staged)
        assert max(staged) <= MAX_STAGED_PACKETS
        assert len(hub._allowed) == len(peers) == hub._allowed.owner_count()
        assert hub._allowed.node_count() <= 2 * len(peers)
        assert len(self.net._queue) < 10 * MAX_STAGED_PACKETS

    def census(self) -> Counter[str]:
        """This soak's live objects of the kinds that would pile up if something leaked."""
        counts = _live_census()
        counts.subtract(self._baseline)
        return +counts


def clear_caches() -> None:
    """Empty pywg's lru_caches (bounded by their maxsize; an entry per new key or endpoint)."""
    endpoint.clear_cache()
    _initial_state.cache_clear()


@dataclass
class Run:
    soak: Soak
    rejoined: int = 0
    censuses: list[Counter[str]] = field(default_factory=list)
    snapshots: dict[float, tracemalloc.Snapshot] = field(default_factory=dict)
    handshakes_at: dict[float, int] = field(default_factory=dict)
    peak: int = 0


def drive(hours: float, *, on_step: Callable[[Soak], None] | None = None) -> Run:
    """The soak itself: `hours` of virtual time; `on_step` runs after every step."""
    tracemalloc.start()  # from the start: a snapshot then counts what is alive, whenever made
    try:
        run = Run(Soak())
        _drive(run, hours, on_step or (lambda soak: None))
        run.peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return run


def _drive(run: Run, hours: float, on_step: Callable[[Soak], None]) -> None:
    soak = run.soak
    for _ in range(SPOKES):
        soak.add_spoke()
    end = hours * 3600.0
    rounds = int(end / TICK)
    churn_every = int(CHURN / TICK)
    check_every = int(CHECKPOINT / TICK)
    silence_at, silence_rounds = int(1800 / TICK), int(SILENCE / TICK)
    for n in range(1, rounds + 1):
        t = n * TICK
        soak.net.run_until(t)
        on_step(soak)
        if n % churn_every == 0:  # the oldest spoke leaves, one joins (a new or an old key)
            leaving = next(s for s in soak.spokes if s is not soak.silent)
            soak.collect()
            soak.remove_spoke(leaving)
            del leaving  # (a census counts what is alive)
            comeback = n // churn_every % 2 == 0 and len(soak.removed) > 1
            if comeback:
                run.rejoined += 1
            soak.add_spoke(soak.removed.popleft() if comeback else None)
        hour_round = n % int(3600 / TICK)
        if hour_round == silence_at and soak.silent is None:
            soak.silence(soak.spokes[len(soak.spokes) // 2])
        elif hour_round == silence_at + silence_rounds - 1 and soak.silent is not None:
            soak.flood_silent()  # 195 s in: every session with it has expired
        elif hour_round == silence_at + silence_rounds and soak.silent is not None:
            soak.end_silence()
        soak.round()
        on_step(soak)
        if n % check_every == 0:
            soak.check_bounds()
        if t == 3600.0:  # warmed up: every kind of event has happened at least once
            run.censuses.append(soak.census())
        elif t == 7200.0 or n == rounds:
            soak.collect()
            clear_caches()
            gc.collect()
            run.snapshots[t] = tracemalloc.take_snapshot()
            run.handshakes_at[t] = soak.handshakes
            run.censuses.append(soak.census())
    if soak.silent is not None:
        soak.end_silence()
    soak.net.run_until(end + 1.0)
    soak.collect()
    # traffic still flows both ways to every spoke
    for extra in range(1, 5):  # (a spoke that joined at the end may need its 5 s retry)
        soak.round()
        soak.net.run_until(end + 1.0 + extra * TICK)
        on_step(soak)
    soak.collect()
    assert all(not s.pending_up and not s.pending_down for s in soak.spokes)


def test_hours_of_virtual_time_rekeys_and_churn_without_growth() -> None:
    started = time.monotonic()
    run = drive(HOURS)
    soak, hours = run.soak, HOURS
    # a rekey every 120-130 s per spoke (the first send after REKEY_AFTER_TIME): ~2000 in 6 h
    assert soak.handshakes >= 0.8 * SPOKES * hours * 3600 / (120 + TICK), soak.handshakes
    assert run.rejoined >= hours * 3600 / CHURN / 2 - 2
    # the hub kept trying the silent spokes (data kept coming), at most once per REKEY_TIMEOUT
    silences = max(1, int(hours))
    assert 10 <= soak.silent_initiations <= silences * (SILENCE / 5.0 + 2), soak.silent_initiations
    assert soak.max_staged == MAX_STAGED_PACKETS  # the flood was staged, and capped
    assert soak.hub.device.dropped["inner_source_not_allowed"] == 0
    # no growth: the census is the same size at each checkpoint, memory flat
    for census in run.censuses:
        assert census["Device"] == SPOKES + 1, census
        assert census["Peer"] == 2 * SPOKES, census
        assert census["Session"] <= 2 * 3 * SPOKES, census
        assert census["PendingHandshake"] <= 2 * SPOKES, census
    growth = "n/a (under 3 h)"
    if len(run.snapshots) == 2:
        (t0, first), (t1, last) = run.snapshots.items()
        grown = sum(s.size_diff for s in last.compare_to(first, "filename"))
        growth = f"{grown:+d} B from {t0:.0f} s to {t1:.0f} s"
        assert grown < MEMORY_SLACK, f"traced memory grew by {grown} B"
        # a leak per handshake or per packet would show as that many new blocks
        outside_harness = [
            s
            for s in last.compare_to(first, "lineno")
            if not s.traceback[0].filename.startswith(TESTS_DIR)
        ]
        new_blocks = sum(s.count_diff for s in outside_harness)
        window = run.handshakes_at[t1] - run.handshakes_at[t0]
        assert new_blocks < window / 10, (new_blocks, window, [str(s) for s in outside_harness])
        growth += f", {new_blocks:+d} blocks over {window} handshakes"
    elapsed = time.monotonic() - started
    print(
        f"\nsoak: {hours:g} h virtual in {elapsed:.1f} s; {soak.delivered} packets, "
        f"{soak.handshakes} handshakes, {run.rejoined} rejoins, "
        f"max index table {soak.max_index}, max staged {soak.max_staged}, "
        f"traced memory {growth} (peak {run.peak} B), "
        f"censuses {[dict(c) for c in run.censuses]}"
    )


@pytest.mark.skipif(not _fast.AVAILABLE, reason="native extension not built")
def test_native_twins_follow_the_sessions_through_an_hour_of_churn() -> None:
    """The hub mirrored into a NativePlane (loops not started) after every step: its
    sessions are sealed and opened in C, and retired sessions' C twins are freed."""
    from pywg._fast.plane import NativePlane

    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    r, w = os.pipe()  # stands in for the TUN fd
    os.close(w)
    plane = NativePlane(r, udp, 1420, lambda reason: None)
    seen: dict[int, Any] = {}  # every twin ever linked, kept alive so ids stay unique

    def mirror(soak: Soak) -> None:
        plane.sync(soak.hub.device)
        sessions = [kp for p in soak.hub.device.peers.values() for kp in p.sessions()]
        live = {id(kp.native): kp.native for kp in sessions if kp.native is not None}
        assert len(live) == len(sessions), "a session the plane does not know"
        assert set(plane._sessions) == set(live), "C twins that outlived their sessions"
        assert len(plane._peers) == SPOKES
        seen.update(live)

    try:
        run = drive(1.0, on_step=mirror)
        live = set(plane._sessions)
        retired = [t for key, t in seen.items() if key not in live]
        assert all(t.handle is None for t in retired)
        assert len(retired) >= run.soak.hub_events["HandshakeCompleted"] - 3 * SPOKES > 150
    finally:
        plane.stop()
        udp.close()
        os.close(r)
    assert plane.handle is None and all(t.handle is None for t in seen.values())
