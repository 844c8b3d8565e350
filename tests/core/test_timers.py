"""Whitepaper §6 timers on virtual time, with exact deadlines (jitter drawn as zero)."""

from __future__ import annotations

import itertools

import pytest

from helpers.device_pair import make_pair, zero_jitter_rng
from helpers.ip_packets import ip4
from helpers.virtual_network import Network
from pywg import HandshakeCompleted, HandshakeTimedOut, SessionsExpired
from pywg.session import Session

A_TO_B = ip4("198.19.0.1", "198.19.0.2", b"ping")
B_TO_A = ip4("198.19.0.2", "198.19.0.1", b"pong")
LAT = 0.001


def _initiations(host: object) -> list[float]:
    return [t for t, d, _ in host.sent if d[0] == 1]  # type: ignore[attr-defined]


def _keepalives(host: object) -> list[float]:
    return [t for t, d, _ in host.sent if d[0] == 4 and len(d) == 32]  # type: ignore[attr-defined]


def test_keepalive_after_10s_of_receive_only() -> None:
    net = Network(latency=LAT)
    a, b = make_pair(net, rng=zero_jitter_rng)
    net.send(a, A_TO_B)
    net.run_until(1.0)
    net.now = 2.0
    net.send(a, A_TO_B)  # B receives data at 2.001 and has nothing to send back
    net.run_until(40.0)
    # first data arrived at 0.003: keepalive at 10.003; the data at 2.001 came while
    # that timer was pending, so one more keepalive follows 10 s later (§6.5)
    assert _keepalives(b) == [pytest.approx(0.003 + 10.0), pytest.approx(20.003)]
    net.now = 50.0
    net.send(a, A_TO_B)
    net.run_until(70.0)
    assert _keepalives(b)[2:] == [pytest.approx(50.0 + LAT + 10.0)]


def test_new_handshake_when_data_gets_no_reply() -> None:
    """Data sent, nothing received: new handshake after KEEPALIVE + REKEY_TIMEOUT (15 s)."""
    net = Network(latency=LAT)
    a, b = make_pair(net, rng=zero_jitter_rng)
    net.send(a, A_TO_B)
    net.run_until(1.0)
    net.send(b, B_TO_A)  # answered: no new-handshake timer pending
    net.run_until(2.0)
    net.drop = lambda data, src, dst: src == b.addr  # B goes silent
    net.now = 3.0
    net.send(a, A_TO_B)
    net.run_until(18.5)
    assert _initiations(a) == [0.0, pytest.approx(18.0)]


def test_retransmits_every_5s_then_gives_up() -> None:
    net = Network(latency=LAT)
    a, b = make_pair(net, rng=zero_jitter_rng)
    net.drop = lambda data, src, dst: True  # nothing arrives
    net.send(a, A_TO_B)
    net.run_until(200.0)
    sent = _initiations(a)
    # the first initiation, then one per REKEY_TIMEOUT while attempts ≤ MAX_TIMER_HANDSHAKES
    assert sent == [pytest.approx(5.0 * i) for i in range(20)]
    assert any(isinstance(e, HandshakeTimedOut) for e in a.events)
    assert not a.device.peer(b.device.public_key).staged  # staged packets dropped


def test_retry_jitter_is_bounded() -> None:
    net = Network(latency=LAT)
    a, _ = make_pair(net)
    net.drop = lambda data, src, dst: True
    net.send(a, A_TO_B)
    net.run_until(60.0)
    sent = _initiations(a)
    gaps = [y - x for x, y in itertools.pairwise(sent)]
    assert len(gaps) >= 10 and all(5.0 <= g <= 5.334 for g in gaps)
    assert len(set(gaps)) > 1  # really jittered


def test_persistent_keepalive_interval() -> None:
    net = Network(latency=LAT)
    a, _b = make_pair(net, rng=zero_jitter_rng, keepalive_a=25)
    net.send(a, A_TO_B)
    net.run_until(100.0)
    ka = _keepalives(a)
    # the staged packet confirmed the session at 0.002; B's receive-only keepalive
    # reached A at 10.004; from then on A sends one every 25 s of silence
    assert ka == [pytest.approx(10.004 + 25 * i) for i in (1, 2, 3)]


def test_turning_persistent_keepalive_on_sends_one_now() -> None:
    net = Network(latency=LAT)
    a, b = make_pair(net, rng=zero_jitter_rng)
    net.send(a, A_TO_B)
    net.run_until(5.0)
    before = len(_keepalives(a))
    a.device.update_peer(b.device.public_key, persistent_keepalive=10, now=5.0)
    net._flush(a)
    assert len(_keepalives(a)) == before + 1


def test_ten_minutes_of_traffic_rekeys_on_time_and_loses_nothing() -> None:
    """Ping-pong every second for 600 s of virtual time (whitepaper §6.1-6.3)."""
    net = Network(latency=LAT)
    a, b = make_pair(net, rng=zero_jitter_rng)
    sessions_a: list[Session] = []
    sent_ab = sent_ba = 0
    old_key_checks: list[tuple[float, bool]] = []
    first: Session | None = None
    for second in range(600):
        net.run_until(float(second))
        net.send(a, ip4("198.19.0.1", "198.19.0.2", second.to_bytes(4, "big")))
        sent_ab += 1
        net.run_until(second + 0.5)
        net.send(b, ip4("198.19.0.2", "198.19.0.1", second.to_bytes(4, "big")))
        sent_ba += 1
        cur = a.device.peer(b.device.public_key).current
        if cur is not None and (not sessions_a or sessions_a[-1] is not cur):
            sessions_a.append(cur)
            if first is None:
                first = Session(
                    cur.send_key or b"",
                    cur.receive_key or b"",
                    cur.local_index,
                    cur.remote_index,
                    is_initiator=True,
                    created=cur.created,
                )
                first.send_counter = 1 << 20  # fresh counters, far from the real ones
        if first is not None and second in (170, 185):
            # a packet on the first session's keys: valid before 180 s, rejected after
            net._flush(b)
            dgram = first.seal(ip4("198.19.0.1", "198.19.0.2", b"old").ljust(32, b"\0"))
            b.device.receive_datagram(dgram, a.addr, net.now)
            old_key_checks.append((second, b.device.packets_to_write() != []))
    net.run_until(600.5)
    # nothing lost, nothing late, in order
    got_b = [p for _, p in b.received]
    got_a = [p for _, p in a.received]
    assert len(got_b) == sent_ab and len(got_a) == sent_ba
    assert got_b == [ip4("198.19.0.1", "198.19.0.2", i.to_bytes(4, "big")) for i in range(600)]
    assert old_key_checks == [(170, True), (185, False)]
    # rekeys: A (the initiator) starts a handshake on its first send at ≥ 120 s of key age
    init_times = _initiations(a)
    assert _initiations(b) == []
    assert init_times[0] == 0.0
    assert len(init_times) == 5  # t = 0, ~120, ~240, ~360, ~480
    for prev, nxt in itertools.pairwise(init_times):
        assert 120.0 <= nxt - prev <= 121.0
    assert len(sessions_a) == 5
    for s, t in zip(sessions_a, init_times, strict=False):
        assert s.created == pytest.approx(t + 2 * LAT)
    completed = [e for e in a.events if isinstance(e, HandshakeCompleted)]
    assert len(completed) == 5
    # dropped keypairs are zeroed; the index table holds only live sessions
    assert all(s.send_key is None for s in sessions_a[:-2])
    assert a.device.index_table_size <= 3 and b.device.index_table_size <= 3
    assert b.device.dropped["expired_keypair"] == 1


def test_key_material_zeroed_540s_after_last_session() -> None:
    net = Network(latency=LAT)
    a, b = make_pair(net, rng=zero_jitter_rng)
    net.send(a, A_TO_B)
    net.run_until(1.0)
    net.send(b, B_TO_A)
    net.run_until(2.0)
    pa = a.device.peer(b.device.public_key)
    pb = b.device.peer(a.device.public_key)
    derived_a = pa.current.created  # type: ignore[union-attr]
    derived_b = pb.current.created  # type: ignore[union-attr]
    net.run_until(derived_a + 539.9)
    assert pa.current is not None and pb.current is not None
    net.run_until(derived_a + 540.0)
    assert pa.sessions() == [] and pa.handshake is None
    assert a.device.index_table_size == 0
    assert any(isinstance(e, SessionsExpired) for e in a.events)
    net.run_until(derived_b + 540.0)
    assert pb.sessions() == [] and b.device.index_table_size == 0
    # and a new packet simply starts a new handshake
    net.send(a, A_TO_B)
    net.run_until(net.now + 1.0)
    assert b.received[-1][1] == A_TO_B
