"""Handshake floods on virtual time: cookies under load, the legitimate peer still gets in."""

from __future__ import annotations

import os

from helpers.device_pair import make_pair
from helpers.ip_packets import ip4
from helpers.virtual_network import Network
from pywg import HandshakeCompleted, PrivateKey
from pywg.cookie import CookieGenerator
from pywg.crypto import tai64n
from pywg.handshake import create_initiation
from pywg.noise import DhKeyPair


def _forged_initiations(responder_public: bytes, count: int) -> list[bytes]:
    """Initiations with a valid mac1 from an attacker who knows only the public key."""
    attacker = DhKeyPair.from_private(bytes(PrivateKey.generate()))
    gen = CookieGenerator(responder_public)
    out = []
    template = create_initiation(attacker, responder_public, 1, tai64n(1.7e9)).message
    for i in range(count):
        body = bytearray(template)
        body[4:8] = i.to_bytes(4, "little")
        body[8:40] = os.urandom(32)  # a new "ephemeral" each time: costs the responder a DH
        out.append(gen.add_macs(bytes(body), 116, 0.0))
    return out


def test_flood_puts_responder_under_load_and_legit_peer_completes() -> None:
    net = Network(latency=0.001)
    legit, victim = make_pair(net)
    vdev = victim.device
    forged = _forged_initiations(bytes(vdev.public_key), 2000)
    indices_before = vdev.index_table_size
    # 1000 forged initiations per second from 50 addresses, for 2 virtual seconds
    for i, msg in enumerate(forged):
        net.inject(msg, (f"198.18.66.{i % 50 + 1}", 40000 + i % 7), victim.addr, i / 1000)
    net.run_until(0.3)
    assert vdev.under_load(net.now)
    # now the legitimate peer connects in the middle of the flood
    net.send(legit, ip4("198.19.0.1", "198.19.0.2", b"let me in"))
    net.run_until(12.0)
    # it was answered with a cookie, retried with mac2 after REKEY_TIMEOUT, and got in
    cookie_replies_to_legit = [d for t, d, dst in victim.sent if d[0] == 3 and dst == legit.addr]
    assert cookie_replies_to_legit
    assert legit.device.peer(vdev.public_key).cookies.has_fresh_cookie
    assert any(isinstance(e, HandshakeCompleted) for e in legit.events)
    assert [p for _, p in victim.received] == [ip4("198.19.0.1", "198.19.0.2", b"let me in")]
    # the attackers got cookie replies, never state
    replies_to_attackers = [d for t, d, dst in victim.sent if d[0] == 3 and dst != legit.addr]
    assert len(replies_to_attackers) > 1000
    assert vdev.dropped["cookie_reply_sent"] >= len(replies_to_attackers)
    assert vdev.index_table_size <= indices_before + 2  # only the legitimate session
    assert len(vdev._ratelimiter) <= 51


def test_garbage_and_bad_mac1_are_dropped_without_replies() -> None:
    net = Network(latency=0.001)
    _, victim = make_pair(net)
    vdev = victim.device
    for i in range(3000):
        junk = bytearray(os.urandom(148))
        junk[0:4] = b"\x01\x00\x00\x00"
        net.inject(bytes(junk), ("198.18.77.1", 1000 + i), victim.addr, i / 1000)
        net.inject(os.urandom(100), ("198.18.77.2", 1000 + i), victim.addr, i / 1000)
    net.run_until(5.0)
    assert vdev.dropped["bad_mac1"] == 3000
    assert not vdev.under_load(net.now)  # mac1 failures don't count as handshake load
    assert victim.sent == []
    assert vdev.index_table_size == 0


def test_mac2_with_cookie_passes_rate_limit_per_source() -> None:
    """Under load, one source with valid cookies is held to ~20 handshakes/s."""
    net = Network(latency=0.001)
    _legit, victim = make_pair(net, under_load_threshold=0)
    vdev = victim.device
    vdev._note_handshake_message(0.0)  # already under load
    # forged initiations with mac2 from a real cookie: valid mac1+mac2, then rate-limited
    forged = _forged_initiations(bytes(vdev.public_key), 1)[0]
    src = ("198.18.88.1", 5000)
    vdev.receive_datagram(forged, src, 0.0)
    reply = [d for d, _ in vdev.datagrams_to_send() if d[0] == 3]
    assert len(reply) == 1
    gen = CookieGenerator(bytes(vdev.public_key))
    gen.add_macs(forged, 116, 0.0)
    from pywg.messages import parse_cookie_reply

    assert gen.consume_reply(parse_cookie_reply(reply[0]), 0.0)
    for i in range(200):
        msg = gen.add_macs(forged, 116, 0.01)
        vdev.receive_datagram(msg, src, 0.01 + i * 0.005)  # 200/s for 1 s
    limited = vdev.dropped["rate_limited"]
    assert 150 <= limited <= 195  # burst 5 + 20/s pass, the rest are limited
    # the rest reach the Noise decryption, which fails (the "ephemeral" is random)
    assert vdev.dropped["invalid_initiation"] == 200 - limited
