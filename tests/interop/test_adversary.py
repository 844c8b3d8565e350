"""The interop suite's adversarial peer against pywg's own sans-IO Device, in memory.

No namespaces, no sockets, no root: the target is a `pywg.Device` behind an
in-memory transport, with a stand-in kernel that answers ICMP echo requests
to the device's tunnel addresses, on a virtual clock. These tests pin down
that the adversary's messages are exactly what the protocol says (an honest
crafting is accepted, byte-identical to the core's) so that when a hostile
scenario sees a refusal, it is the defect that was refused.
"""

from __future__ import annotations

import collections
import struct
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

import pywg.crypto
from pywg import Device, PrivateKey
from pywg.constants import (
    INITIATION_MAC1_OFFSET,
    INITIATION_MAC2_OFFSET,
    LABEL_COOKIE,
    REJECT_AFTER_MESSAGES,
    REPLAY_WINDOW_SIZE,
)
from pywg.cookie import CookieGenerator
from pywg.exceptions import RemoteProtocolError
from pywg.handshake import create_initiation
from pywg.interop.adversary import (
    LOW_ORDER_POINTS,
    Adversary,
    Session,
    checksum,
    cookie_reply,
    craft_initiation,
    echo_reply_for,
    echo_request,
    forged_response,
    mac2,
    open_cookie_reply,
    parse_echo,
    tai64n_add,
)
from pywg.interop.flood import RAMP_LIMIT, Flooder, flood_initiations
from pywg.messages import message_type
from pywg.noise import DhKeyPair

TUNNEL4, TUNNEL6 = "198.19.1.1", "fd19::1:1"  # the adversary's (its allowed IPs)
TARGET4, TARGET6 = "198.19.1.2", "fd19::1:2"
SOURCE = ("198.18.1.1", 40000)  # where the device sees the adversary's datagrams from


class Clock:
    """A virtual monotonic clock: sleeping moves it, nothing waits for real."""

    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(seconds, 0.0)


class MemoryTarget:
    """A Device as the target; its "kernel" answers echo requests to TARGET4/TARGET6."""

    def __init__(self, clock: Clock, adversary_key: PrivateKey, **device_args: object) -> None:
        self.clock = clock
        self.key = PrivateKey.generate()
        self.device = Device(self.key, listen_port=51820, **device_args)  # type: ignore[arg-type]
        self.device.add_peer(
            adversary_key.public_key, allowed_ips=[f"{TUNNEL4}/32", f"{TUNNEL6}/128"]
        )
        self.outbox: collections.deque[bytes] = collections.deque()
        self.written: list[bytes] = []  # what went to the "TUN"
        self.sent_elsewhere: list[tuple[bytes, tuple[str, int]]] = []

    def send(self, data: bytes) -> None:
        self.device.receive_datagram(data, SOURCE, self.clock.now())
        self._pump()

    def _pump(self) -> None:
        for _ in range(10):
            packets = self.device.packets_to_write()
            for packet in packets:
                self.written.append(packet)
                echo = parse_echo(packet)
                reply = echo_reply_for(packet)
                if echo is not None and echo.destination in (TARGET4, TARGET6) and reply:
                    self.device.send_packet(reply, self.clock.now())
            for data, addr in self.device.datagrams_to_send():
                if addr == SOURCE:
                    self.outbox.append(data)
                else:
                    self.sent_elsewhere.append((data, addr))
            if not packets:
                return

    def recv(self, timeout: float) -> bytes | None:
        if self.outbox:
            return self.outbox.popleft()
        self.clock.sleep(timeout)
        return None

    def close(self) -> None:
        pass


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture
def target(clock: Clock, key: PrivateKey) -> MemoryTarget:
    return MemoryTarget(clock, key)


def make_adversary(target: MemoryTarget, clock: Clock, key: PrivateKey) -> Adversary:
    return Adversary(
        target,
        key,
        target.key.public_key,
        tunnel4=TUNNEL4,
        tunnel6=TUNNEL6,
        target4=TARGET4,
        target6=TARGET6,
        clock=clock.now,
        sleep=clock.sleep,
    )


@pytest.fixture
def adv(target: MemoryTarget, clock: Clock, key: PrivateKey) -> Adversary:
    return make_adversary(target, clock, key)


def answers(target: MemoryTarget) -> list[bytes]:
    out = list(target.outbox)
    target.outbox.clear()
    return out


# ---------------------------------------------------------------------- crafting


def test_crafted_initiation_is_the_cores_byte_for_byte(key: PrivateKey) -> None:
    static = DhKeyPair(bytes(key), bytes(key.public_key))
    responder = bytes(PrivateKey.generate().public_key)
    ephemeral = DhKeyPair.from_private(bytes(range(32)))
    stamp = pywg.crypto.tai64n(1_700_000_000.5)
    mine = craft_initiation(static, responder, 0x01020304, stamp, ephemeral=ephemeral)
    core = create_initiation(static, responder, 0x01020304, stamp, ephemeral=ephemeral)
    expected = CookieGenerator(responder).add_macs(core.message, INITIATION_MAC1_OFFSET, 0.0)
    assert mine.message == expected
    assert len(mine.message) == 148 and message_type(mine.message) == 1
    assert mine.message[INITIATION_MAC2_OFFSET:] == bytes(16)  # no cookie: mac2 zeros
    cookie = bytes(range(16))
    with_cookie = craft_initiation(static, responder, 7, stamp, ephemeral=ephemeral, cookie=cookie)
    assert with_cookie.message[INITIATION_MAC2_OFFSET:] == mac2(with_cookie.message, cookie, 132)
    assert with_cookie.with_cookie(cookie) == with_cookie.message


def test_honest_handshake_and_echo_round_trips(adv: Adversary, target: MemoryTarget) -> None:
    crafted, session = adv.handshake(label="S1")
    assert not crafted.low_order
    assert target.device.dropped == collections.Counter()
    for version in (4, 6):
        reply = adv.echo(session, version=version)
        assert reply is not None and reply.session is session
        assert not reply.echo.is_request
        assert reply.echo.source == (TARGET6 if version == 6 else TARGET4)
        assert len(reply.plaintext) % 16 == 0
    # the device wrote exactly our two echo requests to its "TUN", from our addresses
    sources = [parse_echo(p).source for p in target.written]  # type: ignore[union-attr]
    assert sources == [TUNNEL4, TUNNEL6]


def test_response_must_authenticate(adv: Adversary, target: MemoryTarget) -> None:
    crafted = adv.initiation()
    adv.send(crafted.message)
    (response,) = answers(target)
    tampered = bytearray(response)
    tampered[50] ^= 1  # inside the encrypted empty payload
    with pytest.raises(RemoteProtocolError):
        crafted.consume_response(bytes(tampered))
    other = adv.initiation()
    with pytest.raises(RemoteProtocolError):  # addressed to the first initiation
        other.consume_response(response)
    session = crafted.consume_response(response)
    assert session.local_index == crafted.sender_index
    assert session.remote_index == struct.unpack_from("<I", response, 4)[0]


# ---------------------------------------------------------------------- timestamps, mac1


def test_replayed_initiation_is_refused(adv: Adversary, target: MemoryTarget) -> None:
    first, session = adv.handshake()
    adv.sleep(0.1)
    adv.send(first.message)
    assert answers(target) == []
    assert target.device.dropped["stale_timestamp"] == 1
    assert adv.echo(session) is not None


@pytest.mark.parametrize("delta", [0, -1, -(10**9)])
def test_initiation_not_newer_is_refused(adv: Adversary, target: MemoryTarget, delta: int) -> None:
    first, _ = adv.handshake()
    adv.sleep(0.1)
    probe = adv.initiation(tai64n_add(first.timestamp, delta))
    assert probe.message[8:40] != first.message[8:40]  # a new ephemeral
    assert probe.sender_index != first.sender_index
    adv.send(probe.message)
    assert answers(target) == []
    assert target.device.dropped["stale_timestamp"] == 1
    adv.sleep(0.1)
    control = adv.initiation(tai64n_add(first.timestamp, 1))
    adv.send(control.message)
    (response,) = answers(target)
    assert message_type(response) == 2


def test_tai64n_add_carries_into_seconds() -> None:
    stamp = struct.pack(">QI", (1 << 62) + 10 + 5, 999_999_999)
    assert tai64n_add(stamp, 1) == struct.pack(">QI", (1 << 62) + 16, 0)
    assert tai64n_add(tai64n_add(stamp, 1), -1) == stamp
    assert tai64n_add(stamp, -(10**9)) == struct.pack(">QI", (1 << 62) + 14, 999_999_999)


@pytest.mark.parametrize("bit", [0, 61, 127])
def test_flipped_mac1_bit_is_refused_without_cookie(
    adv: Adversary, target: MemoryTarget, bit: int
) -> None:
    probe = adv.initiation()
    flipped = bytearray(probe.message)
    flipped[INITIATION_MAC1_OFFSET + bit // 8] ^= 1 << (bit % 8)
    adv.send(bytes(flipped))
    assert answers(target) == []
    assert target.device.dropped["bad_mac1"] == 1
    adv.send(probe.message)  # the control: the same message with its mac1
    (response,) = answers(target)
    assert message_type(response) == 2


# ---------------------------------------------------------------------- low-order ephemerals


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p.hex()[:8])
def test_low_order_points_give_the_zero_value(point: bytes) -> None:
    assert len(point) == 32
    for _ in range(3):
        with pytest.raises(ValueError):  # OpenSSL refuses the all-zero X25519 output
            X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(point))
        with pytest.raises(RemoteProtocolError):
            pywg.crypto.dh(bytes(X25519PrivateKey.generate().private_bytes_raw()), point)


def test_zero_ephemeral_initiation_is_refused(adv: Adversary, target: MemoryTarget) -> None:
    crafted = adv.initiation(low_order_point=bytes(32))
    assert crafted.low_order and crafted.message[8:40] == bytes(32)
    adv.send(crafted.message)
    assert answers(target) == []
    assert target.device.dropped["invalid_initiation"] == 1
    _, session = adv.handshake()  # the honest crafting still works after it
    assert adv.echo(session) is not None


def _lax_dh(private: bytes, public: bytes) -> bytes:
    """X25519 without the zero check (a broken responder)."""
    try:
        return X25519PrivateKey.from_private_bytes(private).exchange(
            X25519PublicKey.from_public_bytes(public)
        )
    except ValueError:
        return bytes(32)


@pytest.mark.parametrize("point", LOW_ORDER_POINTS[:3], ids=lambda p: p.hex()[:8])
def test_zero_ephemeral_crafting_fools_a_responder_without_the_check(
    adv: Adversary, target: MemoryTarget, monkeypatch: pytest.MonkeyPatch, point: bytes
) -> None:
    """The probe is right: without the zero check the Device answers and the session works."""
    monkeypatch.setattr(pywg.crypto, "dh", _lax_dh)
    crafted = adv.initiation(low_order_point=point)
    adv.send(crafted.message)
    (response,) = answers(target)
    assert message_type(response) == 2
    session = adv.complete(crafted, response)  # ee = 0 as well
    reply = adv.echo(session)
    assert reply is not None and reply.session is session


# ---------------------------------------------------------------------- cookies and load


def test_under_load_a_cookie_reply_then_mac2_gets_a_response(clock: Clock, key: PrivateKey) -> None:
    target = MemoryTarget(clock, key, under_load_threshold=0)  # every message: under load
    adv = make_adversary(target, clock, key)
    crafted = adv.initiation()
    adv.send(crafted.message)
    (reply,) = answers(target)
    assert message_type(reply) == 3 and len(reply) == 64
    assert struct.unpack_from("<I", reply, 4)[0] == crafted.sender_index
    public = bytes(target.key.public_key)
    with pytest.raises(RemoteProtocolError):  # the AD is the mac1 of the message answered
        open_cookie_reply(reply, public, bytes(16))
    cookie = open_cookie_reply(reply, public, crafted.mac1)
    assert len(cookie) == 16
    retry = adv.initiation(cookie=cookie)
    adv.send(retry.message)
    (response,) = answers(target)
    assert message_type(response) == 2
    session = adv.complete(retry, response)
    assert adv.echo(session) is not None


def test_cookie_reply_is_what_the_core_takes(key: PrivateKey) -> None:
    """A cookie reply made by the adversary is accepted by the core's CookieGenerator."""
    me = DhKeyPair(bytes(key), bytes(key.public_key))
    generator = CookieGenerator(me.public)  # an initiator talking to us
    sent = generator.add_macs(bytes(116) + bytes(32), INITIATION_MAC1_OFFSET, 0.0)
    cookie = bytes(range(16))
    reply = cookie_reply(9, cookie, sent[116:132], me.public)
    assert open_cookie_reply(reply, me.public, sent[116:132]) == cookie
    from pywg.messages import parse_cookie_reply

    assert generator.consume_reply(parse_cookie_reply(reply), 1.0)
    again = generator.add_macs(bytes(116) + bytes(32), INITIATION_MAC1_OFFSET, 2.0)
    assert again[132:] == mac2(again, cookie, 132)
    assert pywg.crypto.hash_(LABEL_COOKIE, me.public) != pywg.crypto.hash_(LABEL_COOKIE, bytes(32))


def test_flood_initiations_pass_mac1_and_are_unknown_peers(
    adv: Adversary, target: MemoryTarget
) -> None:
    pool = flood_initiations(bytes(target.key.public_key), 8)
    assert len(set(pool)) == 8
    for message in pool:
        adv.send(message)
    assert answers(target) == []
    assert target.device.dropped["unknown_peer"] == 8
    assert target.device.dropped["bad_mac1"] == 0


class _FakeSocket:
    def __init__(self) -> None:
        self.sent = 0
        self.closed = False

    def settimeout(self, _: float) -> None:
        pass

    def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
        self.sent += 1
        return len(data)

    def close(self) -> None:
        self.closed = True


def test_flooder_spreads_over_sockets_and_stops_by_itself() -> None:
    socks = [_FakeSocket(), _FakeSocket()]
    flood = Flooder(socks, ("198.18.1.2", 51820), [b"a", b"b", b"c"], max_seconds=0.2)  # type: ignore[arg-type]
    started = time.monotonic()
    with flood:
        flood._thread.join(5.0)
    assert time.monotonic() - started < 5.0
    stats = flood.stats()
    assert stats.sent > 0 and stats.sent == socks[0].sent + socks[1].sent
    assert abs(socks[0].sent - socks[1].sent) <= stats.sent // 2 + 3
    assert all(s.closed for s in socks)
    assert stats.rate > 0


# ---------------------------------------------------------------------- transport


def test_replayed_transport_is_refused(adv: Adversary, target: MemoryTarget) -> None:
    _, session = adv.handshake()
    sent = adv.send_echo(session)
    assert adv.await_echo(sent) is not None
    adv.send(sent.datagram)
    got = adv.collect(1.0)
    assert adv.echo_replies_to(sent, got) == 0
    assert target.device.dropped["transport_rejected"] == 1
    assert adv.echo(session) is not None


def test_window_edge_and_reject_after_messages(adv: Adversary, target: MemoryTarget) -> None:
    _, session = adv.handshake()
    g = 20037
    assert adv.echo(session, counter=g) is not None
    assert adv.echo(session, counter=g - 100) is not None
    assert adv.echo(session, counter=g - 100, timeout=1.0) is None  # seen
    assert adv.echo(session, counter=g - REPLAY_WINDOW_SIZE - 1, timeout=1.0) is None
    assert adv.echo(session, counter=g - REPLAY_WINDOW_SIZE) is not None
    r = REJECT_AFTER_MESSAGES
    assert adv.echo(session, counter=r, timeout=1.0) is None
    assert adv.echo(session, counter=(1 << 64) - 1, timeout=1.0) is None
    assert adv.echo(session, counter=g + 1) is not None  # the refused ones did not move it
    assert adv.echo(session, counter=r - 1) is not None
    assert adv.echo(session, counter=r - 2) is not None


def test_seal_takes_any_counter_and_pads(key: PrivateKey) -> None:
    session = Session(bytes(32), bytes(range(32)), 1, 0xAABBCCDD, initiator=True)
    message = session.seal(b"\x45" + bytes(18), 5)
    assert struct.unpack_from("<IIQ", message) == (4, 0xAABBCCDD, 5)
    assert len(message) == 16 + 32 + 16  # 19 bytes padded to 32, plus the tag
    assert session.next_counter == 6
    assert struct.unpack_from("<Q", session.keepalive(), 8)[0] == 6
    assert len(session.keepalive()) == 32
    session.seal(b"", 3)  # an older counter does not move the next one back
    assert session.next_counter == 8
    with pytest.raises(ValueError):
        session.seal(b"", 1 << 64)
    assert "00010203" not in repr(session) and "0xaabbccdd" in repr(session)


@pytest.mark.parametrize(
    ("length", "padded"),
    [
        (0, 0),
        (1, 16),
        (16, 16),
        (17, 32),
        (28, 32),
        (1404, 1408),
        (1405, 1408),
        (1409, 1420),
        (1419, 1420),
        (1420, 1420),
        (1421, 1436),  # over the MTU: the last MTU-sized unit is padded (pywg.messages.pad)
    ],
)
def test_sealed_plaintexts_are_padded(length: int, padded: int) -> None:
    session = Session(bytes(32), bytes(32), 7, 7, initiator=True)  # opens what it seals
    opened = session.open(session.seal(bytes(length), mtu=1420))
    assert opened is not None and len(opened[1]) == padded


def test_unknown_receiver_indices_are_dropped(adv: Adversary, target: MemoryTarget) -> None:
    _, session = adv.handshake()
    probe = adv.make_echo(session)
    readdressed = (
        probe.datagram[:4] + struct.pack("<I", session.remote_index ^ 1) + probe.datagram[8:]
    )
    public = bytes(target.key.public_key)
    for message in (
        readdressed,
        forged_response(adv.new_index(), session.remote_index ^ 1, public),
        forged_response(adv.new_index(), session.remote_index, public),  # a session's index
        cookie_reply(session.remote_index ^ 1, bytes(16), bytes(16), adv.static.public),
    ):
        adv.send(message)
    assert answers(target) == []
    assert target.device.dropped["unknown_index"] == 4
    assert target.device.dropped["bad_mac1"] == 0  # the forged responses pass mac1
    adv.send(probe.datagram)  # the same, correctly addressed: its counter is still fresh
    assert adv.await_echo(probe) is not None


def test_spoofed_inner_source_is_dropped(adv: Adversary, target: MemoryTarget) -> None:
    _, session = adv.handshake()
    for source in ("198.19.1.77", "fd19::1:77"):
        assert adv.echo(session, source=source, timeout=1.0) is None
    assert target.device.dropped["inner_source_not_allowed"] == 2
    assert target.written == []
    assert adv.echo(session) is not None


def test_expired_session_after_two_rotations(adv: Adversary, target: MemoryTarget) -> None:
    sessions = []
    for _ in range(3):
        _, session = adv.handshake()
        assert adv.echo(session) is not None
        sessions.append(session)
        adv.sleep(0.1)
    assert adv.echo(sessions[0], timeout=1.0) is None
    assert target.device.dropped["unknown_index"] == 1
    assert adv.echo(sessions[2]) is not None


# ---------------------------------------------------------------------- packets


def test_checksum_rfc1071_example() -> None:
    # RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (one's complement)
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0xFFFF - 0xDDF2
    assert checksum(bytes.fromhex("0001f203f4f5f6")) == 0xFFFF - ((0xDDF2 - 0xF7) & 0xFFFF)


@pytest.mark.parametrize(("src", "dst"), [(TUNNEL4, TARGET4), (TUNNEL6, TARGET6)])
def test_echo_request_parses_and_checksums(src: str, dst: str) -> None:
    packet = echo_request(src, dst, 0x1234, 77, total_length=100)
    assert len(packet) == 100
    echo = parse_echo(packet)
    assert echo is not None and echo.is_request
    assert (echo.source, echo.destination, echo.ident, echo.seq) == (src, dst, 0x1234, 77)
    assert parse_echo(packet + bytes(12)) == echo  # padding is ignored
    # IPv6 has no header checksum: traffic class, flow label and hop limit are not covered
    uncovered = {1, 2, 3, 7} if ":" in src else set()
    for i in set(range(len(packet))) - uncovered:
        broken = bytearray(packet)
        broken[i] ^= 0x10
        assert parse_echo(bytes(broken)) != echo  # any flip is noticed (checksum or fields)
    reply = echo_reply_for(packet)
    assert reply is not None
    back = parse_echo(reply)
    assert back is not None and not back.is_request
    assert (back.source, back.destination, back.payload) == (dst, src, echo.payload)
    assert echo_reply_for(reply) is None


def test_reprs_hide_secrets(adv: Adversary, key: PrivateKey) -> None:
    crafted, session = adv.handshake()
    secret = bytes(key).hex()
    for thing in (adv, crafted, session, crafted._state):
        assert secret not in repr(thing)
        assert bytes(key).hex()[:16] not in repr(thing)


def test_flooder_keeps_its_pace_and_doubles_it() -> None:
    socks = [_FakeSocket()]
    flood = Flooder(socks, ("198.18.1.2", 51820), [b"a"] * 100, max_seconds=0.5, rate=1_000.0)  # type: ignore[arg-type]
    with flood:
        flood._thread.join(5.0)
    paced = flood.stats().sent
    assert 300 <= paced <= 700, paced  # 1,000/s for 0.5 s, in rounds of 100
    fast = Flooder(
        [_FakeSocket()], ("198.18.1.2", 51820), [b"a"] * 100, max_seconds=0.5, rate=1_000.0
    )  # type: ignore[arg-type]
    fast.faster()
    assert fast.pace == 2_000.0
    with fast:
        fast._thread.join(5.0)
    assert fast.stats().sent > paced * 1.5, (fast.stats().sent, paced)
    unpaced = Flooder(
        [_FakeSocket()], ("198.18.1.2", 51820), [b"a"], max_seconds=0.1, rate=RAMP_LIMIT
    )  # type: ignore[arg-type]
    unpaced.faster()
    assert unpaced.pace is None  # past the ramp's limit: as fast as it can
