"""mac1, mac2, cookie replies (whitepaper §5.4.7), cookie secret rotation, rate limiter."""

from __future__ import annotations

from helpers.known_answers import load
from pywg.cookie import CookieChecker, CookieGenerator, source_bytes
from pywg.messages import parse_cookie_reply
from pywg.ratelimiter import MAX_ENTRIES, RateLimiter

V = load("cookie_mac2_selfcomputed.json")
h = bytes.fromhex


def _checker(secrets: list[bytes]) -> CookieChecker:
    nonce = h(V["xchacha_nonce"])
    return CookieChecker(
        h(V["responder_static_public"]), rng=lambda n: secrets.pop(0) if n == 32 else nonce
    )


def test_regression_vector_mac1_cookie_reply_mac2() -> None:
    msg = h(V["initiation_message"])
    src = source_bytes((V["source"]["ip"], V["source"]["port"]))
    assert src.hex() == V["source"]["bytes"]
    checker = _checker([h(V["cookie_secret_Rm"])])
    assert checker.check_mac1(msg, 116)
    assert msg[116:132].hex() == V["initiation_mac1"]
    reply = checker.create_reply(msg, 116, int.from_bytes(msg[4:8], "little"), src, 0.0)
    assert reply.hex() == V["cookie_reply_message"]
    gen = CookieGenerator(h(V["responder_static_public"]))
    assert gen.add_macs(msg, 116, 0.0) == msg  # no cookie yet: mac2 zero
    assert gen.consume_reply(parse_cookie_reply(reply), 1.0)
    with_mac2 = gen.add_macs(msg, 116, 1.0)
    assert with_mac2.hex() == V["initiation_with_mac2"]
    assert with_mac2[132:].hex() == V["mac2"]
    assert checker.check_mac2(with_mac2, 132, src, 2.0)


def test_mac1_rejects_any_change() -> None:
    msg = bytearray(h(V["initiation_message"]))
    checker = _checker([])
    for i in (0, 4, 50, 115, 116, 131):
        msg[i] ^= 1
        assert not checker.check_mac1(bytes(msg), 116)
        msg[i] ^= 1
    assert checker.check_mac1(bytes(msg), 116)


def test_mac2_bound_to_source_and_secret_rotates_every_120s() -> None:
    msg = h(V["initiation_message"])
    src = source_bytes(("198.18.0.1", 1000))
    other = source_bytes(("198.18.0.1", 1001))
    checker = _checker([b"\x01" * 32, b"\x02" * 32])
    reply = checker.create_reply(msg, 116, 7, src, 10.0)
    gen = CookieGenerator(h(V["responder_static_public"]))
    gen.add_macs(msg, 116, 10.0)
    assert gen.consume_reply(parse_cookie_reply(reply), 10.0)
    m = gen.add_macs(msg, 116, 11.0)
    assert checker.check_mac2(m, 132, src, 11.0)
    assert not checker.check_mac2(m, 132, other, 11.0)  # cookie is per ip:port
    assert checker.check_mac2(m, 132, src, 129.9)
    assert not checker.check_mac2(m, 132, src, 130.0)  # Rm replaced after 120 s
    # the initiator stops using a cookie after 115 s (120 − 5 s latency)
    assert gen.add_macs(msg, 116, 124.9)[132:] != bytes(16)
    assert gen.add_macs(msg, 116, 125.0)[132:] == bytes(16)


def test_forged_cookie_reply_is_ignored() -> None:
    msg = h(V["initiation_message"])
    src = source_bytes(("198.18.0.1", 1000))
    checker = _checker([b"\x01" * 32])
    gen = CookieGenerator(h(V["responder_static_public"]))
    reply = bytearray(checker.create_reply(msg, 116, 7, src, 0.0))
    assert not gen.consume_reply(parse_cookie_reply(bytes(reply)), 0.0)  # nothing sent yet
    gen.add_macs(msg, 116, 0.0)
    reply[40] ^= 1
    assert not gen.consume_reply(parse_cookie_reply(bytes(reply)), 0.0)
    assert not gen.has_fresh_cookie


def test_rate_limiter_token_bucket_and_bounds() -> None:
    rl = RateLimiter()
    ip = bytes([198, 18, 0, 1])
    assert [rl.allow(ip, 0.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert rl.allow(ip, 0.05)  # one token per 50 ms
    assert not rl.allow(ip, 0.05)
    # IPv6 sources share a bucket per /64
    a6 = bytes(range(16))
    b6 = bytes(range(8)) + bytes(8)
    for _ in range(5):
        assert rl.allow(a6, 1.0)
    assert not rl.allow(b6, 1.0)
    # idle entries are dropped; the table never exceeds its bound
    assert len(rl) == 2
    rl.allow(bytes([198, 18, 0, 2]), 5.0)
    assert len(rl) == 1
    small = RateLimiter(max_entries=3)
    results = [small.allow(bytes([198, 18, 1, i]), 0.0) for i in range(5)]
    assert results == [True, True, True, False, False] and len(small) == 3
    assert MAX_ENTRIES >= 1024


def test_a_cookie_reply_is_taken_once_per_mac1_sent() -> None:
    """A replayed cookie reply is refused: the mac1 it answers is forgotten (as in Linux)."""
    msg = h(V["initiation_message"])
    src = source_bytes(("198.18.0.1", 1000))
    checker = _checker([b"\x01" * 32, b"\x02" * 32])
    gen = CookieGenerator(h(V["responder_static_public"]))
    gen.add_macs(msg, 116, 0.0)
    reply = parse_cookie_reply(checker.create_reply(msg, 116, 7, src, 0.0))
    assert gen.consume_reply(reply, 1.0)
    assert not gen.consume_reply(reply, 2.0)  # the same reply again: refused
    assert gen.add_macs(msg, 116, 2.0)[132:] != bytes(16)  # the cookie it carried is kept
    # a fresh reply to the message just sent (with mac2) is taken as usual
    sent = gen.add_macs(msg, 116, 3.0)
    assert gen.consume_reply(parse_cookie_reply(checker.create_reply(sent, 116, 7, src, 3.0)), 3.0)
