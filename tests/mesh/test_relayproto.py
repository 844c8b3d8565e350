"""The home relay's protocol bytes (pywg.mesh.relayproto, and the association in pywg.mesh.wire).

No network: tagging, frames, the HTTP upgrade, the set-up messages and their
signatures, relay-link payloads, and a fuzz loop that feeds random and
mutated bytes to every parser, which may raise RelayProtocolError and
nothing else.
"""

from __future__ import annotations

import contextlib
import os
import random
import struct
from collections.abc import Callable

import pytest
from nacl.signing import SigningKey

from pywg import stun
from pywg.mesh import relayproto as rp
from pywg.mesh import wire
from pywg.mesh.relayproto import FrameType, HttpRefusal, RelayProtocolError


def wg(kind: int, size: int) -> bytes:
    """An untagged WireGuard-shaped message: type, three zero bytes, random rest."""
    return bytes([kind, 0, 0, 0]) + os.urandom(size - 4)


# -- tagged messages -------------------------------------------------------------------------


def test_message_id_reads_forwarded_types_and_sizes_only() -> None:
    good = [(1, 148), (2, 92), (3, 64), (4, 32), (4, 1452), (4, rp.MAX_DATAGRAM_SIZE)]
    for kind, size in good:
        message = rp.tag(wg(kind, size), 0xABCDEF)
        assert rp.message_id(message) == 0xABCDEF
        assert rp.message_id(memoryview(message)) == 0xABCDEF
    bad = [
        b"",
        b"\x04\x00\x00\x01",
        bytes([1, 0, 0, 7]) + bytes(143),  # 147
        bytes([1, 0, 0, 7]) + bytes(145),  # 149
        bytes([2, 0, 0, 7]) + bytes(87),
        bytes([3, 0, 0, 7]) + bytes(61),
        bytes([4, 0, 0, 7]) + bytes(27),  # 31
        bytes([4, 0, 0, 7]) + bytes(rp.MAX_DATAGRAM_SIZE - 3),  # one over
        bytes([5, 0, 0, 7]) + bytes(144),
        bytes([0, 0, 0, 7]) + bytes(144),
        wg(4, 64),  # id 0: untagged
        stun.binding_request(stun.new_transaction_id()),
    ]
    assert [rp.message_id(m) for m in bad] == [0] * len(bad)


def test_tag_and_untag_round_trip() -> None:
    for kind, size in ((1, 148), (2, 92), (3, 64), (4, 32), (4, 200)):
        message = wg(kind, size)
        tagged = rp.tag(message, 1)
        assert tagged[1:4] == b"\x00\x00\x01" and tagged[4:] == message[4:]
        assert len(tagged) == len(message)  # no overhead
        assert rp.untag(tagged) == (1, message)
        retagged = rp.with_id(tagged, rp.encode_id(rp.MAX_NODE_ID))
        assert rp.untag(retagged) == (rp.MAX_NODE_ID, message)


def test_tag_refuses_what_the_relay_would_not_forward() -> None:
    for message in (wg(1, 147), wg(5, 64), rp.tag(wg(4, 32), 9), b"\x04", b""):
        with pytest.raises(ValueError):
            rp.tag(message, 1)
    for node_id in (0, -1, rp.MAX_NODE_ID + 1):
        with pytest.raises(ValueError):
            rp.tag(wg(4, 32), node_id)
    for message in (wg(4, 32), wg(1, 100), b""):
        with pytest.raises(RelayProtocolError):
            rp.untag(message)


def test_encode_id_range() -> None:
    assert rp.encode_id(1) == b"\x00\x00\x01"
    assert rp.encode_id(0xFFFFFF) == b"\xff\xff\xff"
    for bad in (0, 1 << 24):
        with pytest.raises(ValueError):
            rp.encode_id(bad)


# -- frames ----------------------------------------------------------------------------------


def test_frames_round_trip_fed_in_any_pieces() -> None:
    frames = [
        (FrameType.DATAGRAM, rp.tag(wg(4, 100), 5)),
        (FrameType.PING, b"12345678"),
        (FrameType.PRESENT, b""),
        (0xEE, b"unknown"),
        (FrameType.FORWARD, bytes(rp.MAX_FRAME_PAYLOAD)),
    ]
    stream = b"".join(rp.encode_frame(kind, payload) for kind, payload in frames)
    rng = random.Random(7)
    for _ in range(20):
        decoder = rp.FrameDecoder()
        got: list[rp.Frame] = []
        position = 0
        while position < len(stream):
            step = rng.choice((1, 2, 5, 64, 4096, 70000))
            got += decoder.feed(stream[position : position + step])
            position += step
            assert decoder.buffered < rp.FRAME_HEADER_SIZE + rp.MAX_FRAME_PAYLOAD
        assert got == [rp.Frame(kind, payload) for kind, payload in frames]
        assert decoder.buffered == 0


def test_an_oversized_frame_is_refused_at_its_header() -> None:
    header = struct.pack("!BI", FrameType.DATAGRAM, rp.MAX_FRAME_PAYLOAD + 1)
    decoder = rp.FrameDecoder()
    assert decoder.feed(header[:4]) == []
    with pytest.raises(RelayProtocolError):  # the fifth byte completes the header
        decoder.feed(header[4:] + bytes(1000))
    assert decoder.buffered == 0
    with pytest.raises(RelayProtocolError):  # and stays failed: no resynchronisation
        decoder.feed(rp.encode_frame(FrameType.PING, bytes(8)))
    small = rp.FrameDecoder(max_payload=8)
    assert small.feed(rp.encode_frame(FrameType.PING, bytes(8))) == [(FrameType.PING, bytes(8))]
    with pytest.raises(RelayProtocolError):
        small.feed(struct.pack("!BI", FrameType.PING, 9))


def test_frame_header_arguments() -> None:
    assert rp.frame_header(FrameType.OK, 67) == b"\x04\x00\x00\x00\x43"
    for kind, length in ((256, 0), (-1, 0), (1, rp.MAX_FRAME_PAYLOAD + 1), (1, -1)):
        with pytest.raises(ValueError):
            rp.frame_header(kind, length)


# -- the HTTP upgrade ------------------------------------------------------------------------


def request_head(*lines: str, start: str = "GET /pywg-relay HTTP/1.1") -> bytes:
    return "\r\n".join((start, *lines)).encode()


def test_the_upgrade_request_is_taken() -> None:
    data = rp.upgrade_request("relay.example.org") + b"\x06rest"
    split = rp.split_head(data)
    assert split is not None
    head, rest = split
    assert rest == b"\x06rest"
    assert rp.parse_upgrade_request(head) == "relay.example.org"
    # header names and tokens are case-insensitive; other tokens may be listed
    other = request_head(
        "host: [2001:db8::1]:443",
        "UPGRADE: Pywg-Relay",
        "connection: keep-alive, UPGRADE",
        "User-Agent: x",
    )
    assert rp.parse_upgrade_request(other) == "[2001:db8::1]:443"


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (
            request_head(
                "Host: a", "Upgrade: pywg-relay", "Connection: Upgrade", start="GET / HTTP/1.1"
            ),
            404,
        ),
        (request_head("Host: a", start="GET /index.html HTTP/1.1"), 404),
        (
            request_head(
                "Host: a",
                "Upgrade: pywg-relay",
                "Connection: Upgrade",
                start="POST /pywg-relay HTTP/1.1",
            ),
            404,
        ),
        (request_head("Host: a", "Upgrade: websocket", "Connection: Upgrade"), 404),
        (request_head("Host: a", "Upgrade: pywg-relay"), 404),
        (request_head("Host: a", "Upgrade: pywg-relay", "Connection: close"), 404),
        (request_head("Upgrade: pywg-relay", "Connection: Upgrade"), 400),
        (request_head("Host: a", "Host: b", "Upgrade: pywg-relay", "Connection: Upgrade"), 400),
        (request_head("Host: a", start="GET /pywg-relay HTTP/1.0"), 400),
        (request_head("Host: a", start="GET /pywg-relay"), 400),
        (request_head("Host: a", start="GET  /pywg-relay HTTP/1.1"), 400),
        (request_head("Host: a", " folded", "Upgrade: pywg-relay"), 400),
        (request_head("Host a"), 400),
        (request_head("Bad Name: a"), 400),
        (request_head("Host: a\nUpgrade: pywg-relay"), 400),
        (request_head("Host: \xe9"), 400),  # UTF-8: not ASCII
        (request_head("Host: a", *[f"X-{i}: y" for i in range(rp.MAX_HEADERS)]), 431),
    ],
)
def test_other_requests_are_refused_with_their_status(head: bytes, status: int) -> None:
    with pytest.raises(HttpRefusal) as refused:
        rp.parse_upgrade_request(head)
    assert refused.value.status == status


def test_split_head_bounds() -> None:
    assert rp.split_head(b"GET / HTTP/1.1\r\nHost: a\r\n") is None
    assert rp.split_head(b"") is None
    # a head of exactly MAX_HEAD bytes (its final CRLF CRLF included) is taken
    filler = "X: " + "y" * (rp.MAX_HEAD - len("GET / HTTP/1.1\r\n") - 3 - 4)
    exact = f"GET / HTTP/1.1\r\n{filler}\r\n\r\n".encode()
    assert len(exact) == rp.MAX_HEAD
    assert rp.split_head(exact) is not None
    longer = exact[:-4] + b"z\r\n\r\n"
    with pytest.raises(HttpRefusal) as refused:
        rp.split_head(longer)
    assert refused.value.status == 431
    with pytest.raises(HttpRefusal):  # no end in sight after MAX_HEAD bytes
        rp.split_head(b"a" * rp.MAX_HEAD)
    assert rp.split_head(b"a" * (rp.MAX_HEAD - 1)) is None


def test_answers() -> None:
    split = rp.split_head(rp.upgrade_response() + b"frames")
    assert split is not None and split[1] == b"frames"
    rp.parse_upgrade_response(split[0])
    for status in (400, 404, 431):
        answer = rp.error_response(status)
        head, body = answer.split(b"\r\n\r\n", 1)
        assert head.startswith(f"HTTP/1.1 {status} ".encode())
        assert f"Content-Length: {len(body)}".encode() in head
        assert b"Connection: close" in head
        with pytest.raises(RelayProtocolError, match=str(status)):
            rp.parse_upgrade_response(head)
    for head in (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: pywg-relay",
        b"SSH-2.0-OpenSSH",
        b"",
    ):
        with pytest.raises(RelayProtocolError):
            rp.parse_upgrade_response(head)
    for host in ("", "a b", "a\r\nX: y", "h\xe9"):
        with pytest.raises(ValueError):
            rp.upgrade_request(host)


# -- the set-up messages ---------------------------------------------------------------------


RELAY = SigningKey(bytes(range(32)))
RELAY_KEY = bytes(RELAY.verify_key)
CONTROL = SigningKey(bytes(range(1, 33)))
CONTROL_KEY = bytes(CONTROL.verify_key)
NODE = bytes(range(2, 34))
BINDING = rp.certificate_binding(b"a certificate")


def test_a_node_hello_verifies_for_its_challenge_only() -> None:
    challenge = rp.Challenge.new(RELAY_KEY)
    assert rp.Challenge.parse(challenge.encode()) == challenge
    assert len(challenge.encode()) == 65 and challenge.version == rp.PROTOCOL_VERSION
    hello = rp.node_hello(NODE, CONTROL, challenge, BINDING)
    assert rp.Hello.parse(hello.encode()) == hello and len(hello.encode()) == 97
    assert hello.verify_node(CONTROL_KEY, challenge, BINDING)
    other_nonce = rp.Challenge(1, RELAY_KEY, os.urandom(32))
    other_relay = rp.Challenge(1, bytes(SigningKey.generate().verify_key), challenge.nonce)
    assert not hello.verify_node(CONTROL_KEY, other_nonce, BINDING)
    assert not hello.verify_node(CONTROL_KEY, other_relay, BINDING)
    assert not hello.verify_node(CONTROL_KEY, challenge, rp.certificate_binding(b"another"))
    assert not hello.verify_node(bytes(SigningKey.generate().verify_key), challenge, BINDING)
    assert not hello.verify_node(b"short", challenge, BINDING)
    forged = rp.Hello(1, bytes(32), hello.signature)  # another node's key, same signature
    assert not forged.verify_node(CONTROL_KEY, challenge, BINDING)
    assert not hello.verify_peer(challenge, BINDING)  # a node's hello is no relay's


def test_a_peer_hello_and_the_ok() -> None:
    challenge = rp.Challenge.new(RELAY_KEY)
    dialer = SigningKey.generate()
    hello = rp.peer_hello(dialer, challenge, BINDING)
    assert hello.key == bytes(dialer.verify_key)
    assert hello.verify_peer(challenge, BINDING)
    assert not hello.verify_peer(rp.Challenge.new(RELAY_KEY), BINDING)
    assert not hello.verify_node(hello.key, challenge, BINDING)  # contexts differ
    ok = rp.Ok.sign(RELAY, hello, 0)
    assert rp.Ok.parse(ok.encode()) == ok and len(ok.encode()) == 67
    assert ok.verify(RELAY_KEY, hello)
    assert not ok.verify(hello.key, hello)
    node_hello = rp.node_hello(NODE, CONTROL, challenge, BINDING)
    assert not ok.verify(RELAY_KEY, node_hello)  # an OK is for one hello
    node_ok = rp.Ok.sign(RELAY, node_hello, 77)
    assert node_ok.verify(RELAY_KEY, node_hello)
    assert not rp.Ok(78, node_ok.signature).verify(RELAY_KEY, node_hello)  # the id is signed
    with pytest.raises(ValueError):
        rp.Ok.sign(RELAY, node_hello, rp.MAX_NODE_ID + 1)


def test_small_payloads() -> None:
    assert rp.parse_close(bytes([rp.CloseReason.REPLACED])) == 4
    assert rp.parse_ping(b"abcdefgh") == b"abcdefgh"
    for parse, size in (
        (rp.parse_close, 1),
        (rp.parse_ping, 8),
        (rp.Challenge.parse, 65),
        (rp.Hello.parse, 97),
        (rp.Ok.parse, 67),
    ):
        for wrong in (size - 1, size + 1, 0):
            with pytest.raises(RelayProtocolError):
                parse(bytes(wrong))


def test_relay_link_payloads() -> None:
    message = rp.tag(wg(4, 48), 9)
    source, destination, carried = rp.parse_forward(rp.forward_payload(rp.encode_id(3), message))
    assert (source, destination, bytes(carried)) == (3, 9, message)
    for bad in (b"", rp.encode_id(3), bytes(3) + message, rp.encode_id(3) + wg(4, 48)):
        with pytest.raises(RelayProtocolError):
            rp.parse_forward(bad)
    ids = list(range(1, 2500))
    payloads = rp.presence_payloads(ids)
    assert [len(p) for p in payloads] == [3072, 3072, 1353]
    assert [i for p in payloads for i in rp.parse_presence(p)] == ids
    assert rp.presence_payloads([]) == []
    for bad in (b"", b"\x00\x00", bytes(3), b"\x00\x00\x01" * (rp.MAX_PRESENCE_IDS + 1)):
        with pytest.raises(RelayProtocolError):
            rp.parse_presence(bad)


# -- the UDP association (pywg.mesh.wire) ----------------------------------------------------


def test_an_association_is_for_one_relay() -> None:
    tid = stun.new_transaction_id()
    request = wire.association_request(tid, NODE, CONTROL, RELAY_KEY, 1_700_000_000_000)
    assert request[0] == 0x00 and stun.is_stun(request)  # byte 0 tells it from WireGuard
    association = wire.parse_association(stun.parse_message(request))
    assert association is not None
    assert (association.node_key, association.time_ms) == (NODE, 1_700_000_000_000)
    assert association.verify(RELAY_KEY, CONTROL_KEY)
    assert not association.verify(bytes(32), CONTROL_KEY)
    assert not association.verify(RELAY_KEY, RELAY_KEY)
    assert wire.parse_association(stun.parse_message(stun.binding_request(tid))) is None


def test_the_association_answer_is_small_and_never_an_initiation() -> None:
    tid = stun.new_transaction_id()
    for source in (("203.0.113.9", 5), ("2001:db8::1", 65535)):
        answer = wire.association_answer(tid, source, rp.MAX_NODE_ID)
        assert len(answer) <= 68 and len(answer) != 148
        response = stun.parse_binding_response(answer)
        assert response.mapped == source
        assert wire.answered_node_id(response) == rp.MAX_NODE_ID
    request = wire.association_request(tid, NODE, CONTROL, RELAY_KEY, 0)
    assert len(request) >= 68  # no amplification


# -- fuzz ------------------------------------------------------------------------------------


PARSERS: list[Callable[[bytes], object]] = [
    rp.Challenge.parse,
    rp.Hello.parse,
    rp.Ok.parse,
    rp.parse_close,
    rp.parse_ping,
    rp.parse_forward,
    rp.parse_presence,
    rp.untag,
    rp.split_head,
    rp.parse_upgrade_request,
    rp.parse_upgrade_response,
    rp.message_id,
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        action = rng.randrange(3)
        if action == 0 and out:
            out[rng.randrange(len(out))] = rng.randrange(256)
        elif action == 1 and out:
            del out[rng.randrange(len(out)) :]
        else:
            out[rng.randrange(len(out) + 1) : 0] = os.urandom(rng.randint(1, 8))
    return bytes(out)


def seeds() -> list[bytes]:
    challenge = rp.Challenge.new(RELAY_KEY)
    hello = rp.node_hello(NODE, CONTROL, challenge, BINDING)
    return [
        rp.upgrade_request("relay.example")[:-4],
        rp.upgrade_response()[:-4],
        challenge.encode(),
        hello.encode(),
        rp.Ok.sign(RELAY, hello, 5).encode(),
        rp.forward_payload(rp.encode_id(3), rp.tag(wg(1, 148), 4)),
        b"".join(rp.presence_payloads([1, 2, 3])),
        rp.tag(wg(2, 92), 6),
    ]


def test_fuzz_parsers_raise_only_their_own_error() -> None:
    rng = random.Random(0x5E1A7)
    corpus = seeds()
    for round_ in range(3000):
        if round_ % 2:
            data = os.urandom(rng.choice((0, 1, 3, 5, 64, 65, 67, 97, 148, 300)))
        else:
            data = mutate(rng, rng.choice(corpus))
        for parse in PARSERS:
            with contextlib.suppress(RelayProtocolError):
                parse(data)


def test_fuzz_frame_decoder_raises_only_its_own_error_and_stays_bounded() -> None:
    rng = random.Random(0xF4A3E)
    valid = b"".join(rp.encode_frame(k, os.urandom(n)) for k, n in ((6, 40), (7, 8), (9, 200)))
    for _ in range(500):
        decoder = rp.FrameDecoder(max_payload=1024)
        stream = mutate(rng, valid) if rng.random() < 0.5 else os.urandom(rng.randint(0, 2000))
        try:
            position = 0
            while position < len(stream):
                step = rng.randint(1, 300)
                for frame in decoder.feed(stream[position : position + step]):
                    assert len(frame.payload) <= 1024
                position += step
                assert decoder.buffered <= rp.FRAME_HEADER_SIZE + 1024
        except RelayProtocolError:
            pass


def test_fuzz_associations_never_raise() -> None:
    rng = random.Random(0xA550C)
    tid = stun.new_transaction_id()
    request = wire.association_request(tid, NODE, CONTROL, RELAY_KEY, 1)
    for _ in range(2000):
        data = mutate(rng, request)
        try:
            message = stun.parse_message(data)
        except stun.StunError:
            continue
        association = wire.parse_association(message)
        if association is not None:
            association.verify(RELAY_KEY, CONTROL_KEY)
