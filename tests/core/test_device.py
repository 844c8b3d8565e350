"""Two in-memory Devices: handshakes, data both ways, routing, roaming, replays, PSKs."""

from __future__ import annotations

import os

import pytest

from helpers.device_pair import make_pair, zero_jitter_rng
from helpers.ip_packets import ip, ip4, ip6
from helpers.virtual_network import Host, Network
from pywg import (
    Device,
    EndpointChanged,
    HandshakeCompleted,
    LocalProtocolError,
    PresharedKey,
    PrivateKey,
)
from pywg.constants import MAX_STAGED_PACKETS


@pytest.mark.parametrize("psk", [False, True])
def test_exchange_ipv4_and_ipv6(psk: bool) -> None:
    net = Network()
    a, b = make_pair(net, psk=psk)
    net.send(a, ip4("198.19.0.1", "198.19.0.2", b"hello"))
    net.run_until(1.0)
    net.send(b, ip6("fd19::2", "fd19::1", b"world"))
    net.send(a, ip6("fd19::1", "fd19::2", b"v6 too"))
    net.run_until(2.0)
    assert [p for _, p in b.received] == [
        ip4("198.19.0.1", "198.19.0.2", b"hello"),
        ip6("fd19::1", "fd19::2", b"v6 too"),
    ]
    assert [p for _, p in a.received] == [ip6("fd19::2", "fd19::1", b"world")]
    assert [type(e) for e in a.events] == [HandshakeCompleted]
    assert [type(e) for e in b.events] == [HandshakeCompleted]
    assert a.events[0].initiator and not b.events[0].initiator  # type: ignore[attr-defined]
    assert not a.device.dropped and not b.device.dropped
    pa = a.device.peer(b.device.public_key)
    assert pa.tx_bytes > 0 and pa.rx_bytes > 0 and pa.last_handshake_time is not None


def test_mismatched_psk_never_completes() -> None:
    net = Network()
    a, b = make_pair(net, psk=True)
    b.device.update_peer(a.device.public_key, preshared_key=PresharedKey.generate())
    net.send(a, ip4("198.19.0.1", "198.19.0.2"))
    net.run_until(3.0)
    assert not a.events and not b.received
    assert a.device.dropped["invalid_response"] >= 1


def test_packets_staged_until_session_and_bounded() -> None:
    net = Network()
    a, b = make_pair(net)
    packets = [ip4("198.19.0.1", "198.19.0.2", i.to_bytes(4, "big")) for i in range(200)]
    for p in packets:
        a.device.send_packet(p, 0.0)
    # one initiation only, despite 200 packets (throttled to one per REKEY_TIMEOUT)
    out = a.device.datagrams_to_send()
    assert len(out) == 1 and out[0][0][0] == 1
    for data, dst in out:
        net.inject(data, a.addr, dst)
    net.run_until(1.0)
    assert [p for _, p in b.received] == packets[-MAX_STAGED_PACKETS:]
    assert a.device.peer(b.device.public_key).staged_dropped == 200 - MAX_STAGED_PACKETS


def test_responder_holds_data_until_confirmed_then_sends() -> None:
    """The responder stages data until the initiator's first transport packet (§5.4.3)."""
    net = Network()
    a, b = make_pair(net)
    net.send(a, ip4("198.19.0.1", "198.19.0.2"))
    net.run_until(0.0015)  # initiation delivered, response in flight
    bp = b.device.peer(a.device.public_key)
    assert bp.next is not None and bp.current is None
    net.send(b, ip4("198.19.0.2", "198.19.0.1", b"early"))
    assert bp.staged  # no session yet: staged, not sent
    net.run_until(1.0)
    assert [p for _, p in a.received] == [ip4("198.19.0.2", "198.19.0.1", b"early")]
    assert bp.current is not None and bp.next is None


def test_cryptokey_routing_drops_spoofed_source_and_unrouted() -> None:
    net = Network()
    a, b = make_pair(net)
    net.send(a, ip4("198.19.0.1", "198.19.0.2"))
    net.run_until(1.0)
    # A claims a source that belongs to nobody / to B itself: B drops it
    net.send(a, ip4("198.19.0.99", "198.19.0.2"))
    net.send(a, ip4("198.19.0.2", "198.19.0.2"))
    net.run_until(2.0)
    assert len(b.received) == 1
    assert b.device.dropped["inner_source_not_allowed"] == 2
    a.device.send_packet(ip4("198.19.0.1", "198.19.7.7"), 2.0)  # no peer for it
    a.device.send_packet(b"\x45garbage", 2.0)
    assert a.device.dropped["tun_no_route"] == 1 and a.device.dropped["tun_malformed"] == 1
    assert a.device.datagrams_to_send() == []


def test_padding_and_mtu() -> None:
    net = Network()
    a, b = make_pair(net)
    net.send(a, ip4("198.19.0.1", "198.19.0.2", b"a"))  # 21 bytes -> padded to 32
    net.run_until(1.0)
    sizes = [len(d) for _, d, _ in a.sent if d[0] == 4]
    assert 16 + 32 + 16 in sizes
    big = ip4("198.19.0.1", "198.19.0.2", bytes(1419 - 20))  # 1419 bytes, MTU 1420
    net.send(a, big)
    net.run_until(2.0)
    assert len(a.sent[-1][1]) == 16 + 1420 + 16
    assert b.received[-1][1] == big


def test_roaming_follows_latest_authenticated_packet() -> None:
    net = Network()
    a, b = make_pair(net)
    net.send(a, ip4("198.19.0.1", "198.19.0.2"))
    net.run_until(1.0)
    # A moves to a new address/port; its next packet comes from there
    new_addr = ("198.18.5.5", 40000)
    host_a = net.hosts.pop(a.addr)
    host_a.addr = new_addr
    net.hosts[new_addr] = host_a
    net.send(a, ip4("198.19.0.1", "198.19.0.2", b"moved"))
    net.run_until(2.0)
    assert b.device.peer(a.device.public_key).endpoint == new_addr
    assert EndpointChanged(a.device.public_key, new_addr) in b.events
    net.send(b, ip4("198.19.0.2", "198.19.0.1", b"reply"))
    net.run_until(3.0)
    assert a.received[-1][1] == ip4("198.19.0.2", "198.19.0.1", b"reply")
    # an unauthenticated packet from elsewhere does not move the endpoint
    b.device.receive_datagram(b"\x04\x00\x00\x00" + bytes(40), ("198.18.9.9", 1), 3.5)
    assert b.device.peer(a.device.public_key).endpoint == new_addr


def first_exchange(net: Network) -> tuple[Host, Host, list[bytes]]:
    """A pair that has handshaken over one packet from a to b: (a, b, what a sent)."""
    a, b = make_pair(net)
    captured: list[bytes] = []
    net.tap = lambda t, data, src, dst: captured.append(data) if src == a.addr else None
    net.send(a, ip4("198.19.0.1", "198.19.0.2", b"once"))
    net.run_until(1.0)
    assert len(b.received) == 1
    return a, b, captured


def test_replayed_transport_and_initiation_rejected() -> None:
    net = Network()
    a, b, captured = first_exchange(net)
    initiation = next(d for d in captured if d[0] == 1)
    transports = [d for d in captured if d[0] == 4]
    for d in transports:
        b.device.receive_datagram(d, a.addr, 1.5)
    assert len(b.device.packets_to_write()) == 0
    assert b.device.dropped["transport_rejected"] == len(transports)
    bp = b.device.peer(a.device.public_key)
    current = bp.current
    b.device.receive_datagram(initiation, a.addr, 1.6)
    assert b.device.dropped["stale_timestamp"] == 1
    assert bp.current is current and b.device.datagrams_to_send() == []


def test_receive_datagram_says_whether_it_authenticated() -> None:
    """True exactly for a datagram that authenticated as a peer's (the shell learns where
    replies leave from only then); garbage, forgeries and replays give False."""
    net = Network()
    a, b, captured = first_exchange(net)
    initiation = next(d for d in captured if d[0] == 1)
    transport = next(d for d in captured if d[0] == 4)
    fresh = Device(PrivateKey.generate(), 51820)  # knows a: the initiation is new to it
    fresh_peer = fresh.add_peer(a.device.public_key, ["198.19.0.1/32"])
    b_key = b.device.private_key
    assert b_key is not None
    fresh.set_private_key(b_key)
    assert fresh.receive_datagram(initiation, a.addr, 1.0) is True
    assert fresh_peer.endpoint == a.addr
    assert fresh.receive_datagram(initiation, a.addr, 1.1) is False  # replayed
    dev = b.device
    assert dev.receive_datagram(transport, a.addr, 1.2) is False  # replayed counter
    forged = bytearray(transport)
    forged[-1] ^= 1
    assert dev.receive_datagram(bytes(forged), ("198.18.9.9", 1), 1.3) is False
    assert dev.receive_datagram(b"\x01" + bytes(147), a.addr, 1.4) is False
    assert dev.receive_datagram(b"junk", a.addr, 1.5) is False
    net.send(a, ip4("198.19.0.1", "198.19.0.2", b"twice"))
    (fresh_transport,) = [d for d in captured[len(captured) - 1 :] if d[0] == 4]
    assert dev.receive_datagram(fresh_transport, a.addr, 1.6) is True


def test_unknown_peer_and_own_key() -> None:
    net = Network()
    a, b = make_pair(net)
    b.device.remove_peer(a.device.public_key)
    net.send(a, ip4("198.19.0.1", "198.19.0.2"))
    net.run_until(1.0)
    assert b.device.dropped["unknown_peer"] == 1 and not a.events
    with pytest.raises(LocalProtocolError):
        b.device.add_peer(b.device.public_key)
    with pytest.raises(LocalProtocolError):
        a.device.add_peer(b.device.public_key)  # exists
    with pytest.raises(LocalProtocolError):
        a.device.peer(PrivateKey.generate().public_key)


def test_bad_config_changes_nothing() -> None:
    dev = Device(PrivateKey.generate())
    pub = PrivateKey.generate().public_key
    with pytest.raises(LocalProtocolError):
        dev.add_peer(pub, ["198.19.0.1/32", "not-a-network"])
    assert pub not in dev.peers and dev.route("198.19.0.1") is None
    dev.add_peer(pub, ["198.19.0.1/32"])
    with pytest.raises(LocalProtocolError):
        dev.update_peer(pub, allowed_ips=["198.19.0.2/32", "300.1.1.1/8"], endpoint=("1.2.3.4", 5))
    assert dev.allowed_ips(pub) == ["198.19.0.1/32"] and dev.peer(pub).endpoint is None
    with pytest.raises(LocalProtocolError):
        dev.update_peer(pub, persistent_keepalive=70000)
    with pytest.raises(LocalProtocolError):
        dev.update_peer(pub, endpoint=("not an ip", 1))


def test_moving_prefix_between_peers_and_removal() -> None:
    dev = Device(PrivateKey.generate())
    p1, p2 = PrivateKey.generate().public_key, PrivateKey.generate().public_key
    dev.add_peer(p1, ["198.19.0.0/24", "fd19::/64"])
    dev.add_peer(p2, ["198.19.1.0/24"])
    assert dev.route("198.19.0.7") is dev.peer(p1)
    dev.update_peer(p2, allowed_ips=["198.19.0.0/24"])  # moves from p1 to p2
    assert dev.route("198.19.0.7") is dev.peer(p2)
    assert dev.allowed_ips(p1) == ["fd19::/64"]
    dev.update_peer(p2, replace_allowed_ips=True, allowed_ips=["198.19.9.0/24"])
    assert dev.route("198.19.0.7") is None and dev.allowed_ips(p2) == ["198.19.9.0/24"]
    dev.remove_peer(p1)
    assert dev.route("fd19::1") is None


def test_endpoint_change_with_staged_packets_handshakes_at_once() -> None:
    net = Network()
    a, b = make_pair(net)
    a.device.update_peer(b.device.public_key, endpoint=None)
    net.send(a, ip4("198.19.0.1", "198.19.0.2"))
    assert a.sent == []  # no endpoint: staged
    a.device.update_peer(b.device.public_key, endpoint=b.addr, now=0.5)
    net._flush(a)
    net.run_until(1.0)
    assert len(b.received) == 1


def test_private_key_change_drops_sessions() -> None:
    net = Network()
    a, b = make_pair(net)
    net.send(a, ip4("198.19.0.1", "198.19.0.2"))
    net.run_until(1.0)
    a.device.set_private_key(PrivateKey.generate())
    assert a.device.peer(b.device.public_key).current is None
    assert a.device.index_table_size == 0


def test_repr_has_no_secrets() -> None:
    net = Network()
    a, b = make_pair(net, psk=True)
    net.send(a, ip("198.19.0.1", "198.19.0.2"))
    net.run_until(1.0)
    dev = a.device
    peer = dev.peer(b.device.public_key)
    text = " ".join(
        repr(x)
        for x in (dev, peer, peer.current, peer.preshared_key, dev.private_key, peer.cookies)
    )
    assert dev.private_key.to_base64() not in text
    assert peer.preshared_key is not None and peer.preshared_key.to_base64() not in text
    assert peer.current is not None and peer.current.send_key is not None
    assert peer.current.send_key.hex() not in text


def test_rekey_and_reject_after_messages() -> None:
    """REKEY_AFTER_MESSAGES starts a handshake; REJECT_AFTER_MESSAGES stops sending (§6.1)."""
    from pywg.constants import REJECT_AFTER_MESSAGES, REKEY_AFTER_MESSAGES

    net = Network()
    a, b = make_pair(net)
    net.send(a, ip4("198.19.0.1", "198.19.0.2"))
    net.run_until(10.0)
    pa = a.device.peer(b.device.public_key)
    assert pa.current is not None
    pa.current.send_counter = REKEY_AFTER_MESSAGES + 1
    before = len([d for _, d, _ in a.sent if d[0] == 1])
    net.send(a, ip4("198.19.0.1", "198.19.0.2"))
    assert len([d for _, d, _ in a.sent if d[0] == 1]) == before + 1  # rekey started
    net.run_until(11.0)
    assert pa.current.send_counter < 10  # a new session replaced it
    pa.current.send_counter = REJECT_AFTER_MESSAGES
    net.now = 20.0
    net.send(a, ip4("198.19.0.1", "198.19.0.2", b"held"))
    assert pa.staged  # not sent on an exhausted key: staged, new handshake
    net.run_until(21.0)
    assert b.received[-1][1] == ip4("198.19.0.1", "198.19.0.2", b"held")


def test_keyless_device_drops_handshakes_and_stages_until_keyed() -> None:
    """A fresh daemon has no private key: it must not crash or answer anything."""
    ka, kb = PrivateKey.generate(), PrivateKey.generate()
    a = Device(listen_port=1)
    b = Device(kb, listen_port=2)
    a.add_peer(kb.public_key, ["198.19.0.2/32"], endpoint=("198.18.0.2", 2))
    b.add_peer(ka.public_key, ["198.19.0.1/32"], endpoint=("198.18.0.1", 1))
    pkt = ip4("198.19.0.1", "198.19.0.2", b"x")
    a.send_packet(pkt, 0.0)
    assert a.datagrams_to_send() == []  # no identity: no initiation
    b.send_packet(ip4("198.19.0.2", "198.19.0.1", b"y"), 0.0)
    ((init, _),) = b.datagrams_to_send()
    a.receive_datagram(init, ("198.18.0.2", 2), 0.0)
    assert a.datagrams_to_send() == [] and a.dropped["no_private_key"] == 1
    a.set_private_key(ka)
    a.send_packet(pkt, 10.0)
    out = a.datagrams_to_send()
    assert len(out) == 1 and len(out[0][0]) == 148


def test_crossed_initiations_still_deliver_what_waits() -> None:
    """Both sides initiate at once: each answers the other's initiation, which replaces
    its own, so both end up with sessions waiting for a confirmation nobody may send.
    The retry timers must get them out. With jitters under 2 ms both fire less than
    5 s after the response their side sent, so the rate limit (§6.4) holds both
    retries back; they must come as soon as it allows, not never."""
    net = Network(latency=0.002)
    draws = iter([196, 13107])  # b's jitters: 1 ms, then 67 ms (of 65536 = 333 ms)

    def b_rng(n: int) -> bytes:
        return next(draws, 13107).to_bytes(2, "little") if n == 2 else os.urandom(n)

    a, b = make_pair(net, rng=zero_jitter_rng, rng_b=b_rng)  # a's jitter: 0
    net.send(a, ip4("198.19.0.1", "198.19.0.2", b"from a"))
    net.send(b, ip4("198.19.0.2", "198.19.0.1", b"from b"))
    net.run_until(30.0)
    assert [p for _, p in b.received] == [ip4("198.19.0.1", "198.19.0.2", b"from a")]
    assert [p for _, p in a.received] == [ip4("198.19.0.2", "198.19.0.1", b"from b")]
