"""Tests for pywg.messages: the four wire formats (whitepaper §5.4.2–§5.4.7) and padding."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.known_answers import load, unhex
from pywg import constants
from pywg.exceptions import RemoteProtocolError
from pywg.messages import (
    CookieReply,
    Initiation,
    Response,
    TransportHeader,
    message_type,
    pad,
    padded_length,
    parse_cookie_reply,
    parse_initiation,
    parse_response,
    parse_transport_header,
    serialize_cookie_reply,
    serialize_initiation,
    serialize_response,
    serialize_transport_header,
    transport_size,
)

CAPTURE = load("wireguard_wireshark_capture.json")
WG = load("wireguard_constants.json")

FRAMES = [(name, frame) for name, cap in CAPTURE["captures"].items() for frame in cap["frames"]]

PARSERS: dict[int, Callable[[Any], Any]] = {
    1: parse_initiation,
    2: parse_response,
    3: parse_cookie_reply,
    4: parse_transport_header,
}
SIZES = {1: 148, 2: 92, 3: 64}


def _reserialize(mtype: int, data: bytes) -> bytes:
    """Parse data as message mtype and serialize it back."""
    if mtype == 1:
        return serialize_initiation(parse_initiation(data))
    if mtype == 2:
        return serialize_response(parse_response(data))
    if mtype == 3:
        return serialize_cookie_reply(parse_cookie_reply(data))
    header = parse_transport_header(data)
    return serialize_transport_header(header.receiver, header.counter) + bytes(data[16:])


def _frame_id(item: tuple[str, dict[str, Any]]) -> str:
    return f"{item[0].removesuffix('.pcap')}-{item[1]['frame']}"


# --------------------------------------------------------------------------- the real capture


def test_capture_frame_counts() -> None:
    assert len(FRAMES) == 26
    types = [f["type"] for _, f in FRAMES]
    assert types.count(1) == 4 and types.count(2) == 4 and types.count(4) == 18


@pytest.mark.parametrize(("capture", "frame"), FRAMES, ids=[_frame_id(f) for f in FRAMES])
def test_capture_frame_parses_and_reserializes(capture: str, frame: dict[str, Any]) -> None:
    data = unhex(frame["udp_payload"])
    mtype = message_type(data)
    assert mtype == frame["type"]
    assert _reserialize(mtype, data) == data
    msg = PARSERS[mtype](data)
    if mtype == 1:
        assert len(data) == 148
        assert msg.sender == frame["sender_index"]
        assert msg.ephemeral == data[8:40]
        assert msg.encrypted_static == data[40:88]
        assert msg.encrypted_timestamp == data[88:116]
        assert (msg.mac1, msg.mac2) == (data[116:132], bytes(16))
    elif mtype == 2:
        assert len(data) == 92
        assert (msg.sender, msg.receiver) == (frame["sender_index"], frame["receiver_index"])
        assert msg.ephemeral == data[12:44]
        assert msg.encrypted_nothing == data[44:60]
        assert (msg.mac1, msg.mac2) == (data[60:76], bytes(16))
    else:
        assert mtype == 4
        assert msg == TransportHeader(frame["receiver_index"], frame["counter"])
        assert len(data) == transport_size(frame["plaintext_len"])
        assert (len(data) == 32) == frame["keepalive"]
    # bytearray and memoryview inputs parse the same
    assert PARSERS[mtype](bytearray(data)) == msg
    assert PARSERS[mtype](memoryview(data)) == msg


def test_capture_handshake_indices_link_up() -> None:
    for cap in CAPTURE["captures"].values():
        by_frame = {f["frame"]: unhex(f["udp_payload"]) for f in cap["frames"]}
        for hs in cap["handshakes"]:
            init = parse_initiation(by_frame[hs["initiation_frame"]])
            resp = parse_response(by_frame[hs["response_frame"]])
            assert init.sender == hs["initiator_sender_index"]
            assert resp.sender == hs["responder_sender_index"]
            assert resp.receiver == init.sender
            assert init.ephemeral.hex() == hs["initiator_ephemeral_public"]
            assert resp.ephemeral.hex() == hs["responder_ephemeral_public"]


def test_capture_transport_payloads_are_padded() -> None:
    # Linux pads every plaintext to a multiple of 16 (MTU 1420 here)
    for _, frame in FRAMES:
        if frame["type"] == 4:
            n = frame["plaintext_len"]
            assert n % 16 == 0 or n == constants.DEFAULT_MTU
            assert padded_length(n, constants.DEFAULT_MTU) == n


# --------------------------------------------------------------------------- sizes and layout


def test_sizes() -> None:
    assert constants.INITIATION_SIZE == 148
    assert constants.RESPONSE_SIZE == 92
    assert constants.COOKIE_REPLY_SIZE == 64
    assert constants.TRANSPORT_HEADER_SIZE == 16
    assert constants.TRANSPORT_MIN_SIZE == constants.KEEPALIVE_SIZE == 32
    assert transport_size(0) == 32
    assert transport_size(1420) == 1452
    assert len(serialize_initiation(Initiation(0, bytes(32), bytes(48), bytes(28)))) == 148
    assert len(serialize_response(Response(0, 0, bytes(32), bytes(16)))) == 92
    assert len(serialize_cookie_reply(CookieReply(0, bytes(24), bytes(32)))) == 64
    assert len(serialize_transport_header(0, 0)) == 16


def _filled(n: int, seed: int) -> bytes:
    return bytes((seed + i) & 0xFF for i in range(n))


def _sample(mtype: int) -> tuple[bytes, dict[str, bytes]]:
    """A message with a distinct value in every field, and each field's expected bytes."""
    if mtype == 1:
        msg = Initiation(
            0x11223344, _filled(32, 1), _filled(48, 40), _filled(28, 90), _filled(16, 120),
            _filled(16, 140),
        )  # fmt: skip
        fields = {
            "sender_index": struct.pack("<I", 0x11223344),
            "unencrypted_ephemeral": msg.ephemeral,
            "encrypted_static": msg.encrypted_static,
            "encrypted_timestamp": msg.encrypted_timestamp,
            "mac1": msg.mac1,
            "mac2": msg.mac2,
        }
        return serialize_initiation(msg), fields
    if mtype == 2:
        resp = Response(
            0xA1B2C3D4, 0x01020304, _filled(32, 7), _filled(16, 50), _filled(16, 70),
            _filled(16, 99),
        )  # fmt: skip
        fields = {
            "sender_index": struct.pack("<I", 0xA1B2C3D4),
            "receiver_index": struct.pack("<I", 0x01020304),
            "unencrypted_ephemeral": resp.ephemeral,
            "encrypted_nothing": resp.encrypted_nothing,
            "mac1": resp.mac1,
            "mac2": resp.mac2,
        }
        return serialize_response(resp), fields
    if mtype == 3:
        reply = CookieReply(0xDEADBEEF, _filled(24, 3), _filled(32, 200))
        fields = {
            "receiver_index": struct.pack("<I", 0xDEADBEEF),
            "nonce": reply.nonce,
            "encrypted_cookie": reply.encrypted_cookie,
        }
        return serialize_cookie_reply(reply), fields
    body = _filled(48, 77)
    data = serialize_transport_header(0x0BADF00D, 0x0102030405060708) + body
    fields = {
        "receiver_index": struct.pack("<I", 0x0BADF00D),
        "counter": struct.pack("<Q", 0x0102030405060708),
        "encrypted_packet": body,
    }
    return data, fields


LAYOUTS = [
    (1, WG["messages"]["1_handshake_initiation"]),
    (2, WG["messages"]["2_handshake_response"]),
    (3, WG["messages"]["3_cookie_reply"]),
    (4, WG["messages"]["4_transport_data"]),
]


def test_layout_count() -> None:
    assert len(WG["messages"]) == 4


@pytest.mark.parametrize(("mtype", "layout"), LAYOUTS, ids=[f"type{t}" for t, _ in LAYOUTS])
def test_layout_matches_wireguard_constants(mtype: int, layout: dict[str, Any]) -> None:
    data, fields = _sample(mtype)
    if mtype in SIZES:
        assert layout["size"] == SIZES[mtype] == len(data)
    else:
        assert ">= 32" in layout["size"]
    covered = 0
    for name, offset, size, _note in layout["fields"]:
        if size == "variable":
            size = len(data) - offset
        if name == "type":
            assert data[offset : offset + size] == bytes([mtype])
        elif name == "reserved":
            assert data[offset : offset + size] == bytes(size)
        else:
            assert data[offset : offset + size] == fields.pop(name), name
        assert offset == covered, f"{name} does not follow the previous field"
        covered += size
    assert covered == len(data)
    assert not fields, f"fields pywg has but the layout lacks: {sorted(fields)}"
    # and it parses back
    assert _reserialize(mtype, data) == data


def test_mac_offsets() -> None:
    def offset(layout: dict[str, Any], name: str) -> int:
        return next(o for n, o, _, _ in layout["fields"] if n == name)

    init = WG["messages"]["1_handshake_initiation"]
    resp = WG["messages"]["2_handshake_response"]
    assert constants.INITIATION_MAC1_OFFSET == offset(init, "mac1") == 116
    assert constants.INITIATION_MAC2_OFFSET == offset(init, "mac2") == 132
    assert constants.RESPONSE_MAC1_OFFSET == offset(resp, "mac1") == 60
    assert constants.RESPONSE_MAC2_OFFSET == offset(resp, "mac2") == 76
    assert constants.INITIATION_MAC2_OFFSET + constants.MAC_SIZE == constants.INITIATION_SIZE
    assert constants.RESPONSE_MAC2_OFFSET + constants.MAC_SIZE == constants.RESPONSE_SIZE


def test_message_type_constants() -> None:
    assert (
        constants.MESSAGE_INITIATION,
        constants.MESSAGE_RESPONSE,
        constants.MESSAGE_COOKIE_REPLY,
        constants.MESSAGE_TRANSPORT,
    ) == (1, 2, 3, 4)


def test_serialize_rejects_wrong_field_sizes() -> None:
    with pytest.raises(ValueError):
        serialize_initiation(Initiation(0, bytes(31), bytes(48), bytes(28)))
    with pytest.raises(ValueError):
        serialize_initiation(Initiation(0, bytes(32), bytes(48), bytes(28), mac2=bytes(15)))
    with pytest.raises(ValueError):
        serialize_response(Response(0, 0, bytes(32), bytes(17)))
    with pytest.raises(ValueError):
        serialize_cookie_reply(CookieReply(0, bytes(12), bytes(32)))


def test_serialize_defaults_zero_macs() -> None:
    data = serialize_initiation(Initiation(5, bytes(32), bytes(48), bytes(28)))
    assert data[116:] == bytes(32)
    data = serialize_response(Response(5, 6, bytes(32), bytes(16)))
    assert data[60:] == bytes(32)


def test_index_and_counter_extremes() -> None:
    data = serialize_transport_header(2**32 - 1, 2**64 - 1) + bytes(16)
    assert parse_transport_header(data) == TransportHeader(2**32 - 1, 2**64 - 1)
    msg = Response(2**32 - 1, 0, bytes(32), bytes(16))
    assert parse_response(serialize_response(msg)) == msg


# --------------------------------------------------------------------------- malformed input


def _valid(mtype: int) -> bytes:
    return _sample(mtype)[0]


@pytest.mark.parametrize("mtype", [1, 2, 3])
def test_wrong_sizes_raise(mtype: int) -> None:
    good = _valid(mtype)
    parse = PARSERS[mtype]
    for n in (0, 1, 4, 31, 32, len(good) - 1, len(good) + 1, len(good) + 16, 1500):
        data = (good + bytes(2000))[:n]
        with pytest.raises(RemoteProtocolError):
            parse(data)


@pytest.mark.parametrize("n", [0, 1, 3, 4, 16, 31])
def test_transport_too_short_raises(n: int) -> None:
    data = (_valid(4) + bytes(32))[:n]
    with pytest.raises(RemoteProtocolError):
        parse_transport_header(data)


def test_transport_lengths_accepted() -> None:
    # any ciphertext of at least a tag: multiples of 16 are not required of the receiver
    header = serialize_transport_header(1, 2)
    for n in (16, 17, 31, 32, 1436, 65519):
        assert parse_transport_header(header + bytes(n)) == TransportHeader(1, 2)


@pytest.mark.parametrize("mtype", [1, 2, 3, 4])
@pytest.mark.parametrize("byte", [1, 2, 3])
@pytest.mark.parametrize("value", [0x01, 0x80, 0xFF])
def test_nonzero_reserved_bytes_raise(mtype: int, byte: int, value: int) -> None:
    data = bytearray(_valid(mtype))
    data[byte] = value
    assert message_type(data) == 0
    with pytest.raises(RemoteProtocolError):
        PARSERS[mtype](data)


@pytest.mark.parametrize("first", [0, 5, 6, 0x10, 0x7F, 0x80, 0xFF])
def test_unknown_types(first: int) -> None:
    for mtype in (1, 2, 3, 4):
        data = bytearray(_valid(mtype))
        data[0] = first
        assert message_type(data) == 0
        with pytest.raises(RemoteProtocolError):
            PARSERS[mtype](data)


@pytest.mark.parametrize("mtype", [1, 2, 3, 4])
def test_other_type_with_right_size_raises(mtype: int) -> None:
    for other in (1, 2, 3, 4):
        if other == mtype:
            continue
        data = bytearray(_valid(mtype))
        data[0] = other
        assert message_type(data) == other
        with pytest.raises(RemoteProtocolError):
            PARSERS[mtype](data)


def test_message_type() -> None:
    for mtype in (1, 2, 3, 4):
        assert message_type(_valid(mtype)) == mtype
        # only the 4-byte header is looked at
        assert message_type(bytes([mtype, 0, 0, 0])) == mtype
        assert message_type(memoryview(bytes([mtype, 0, 0, 0, 9]))) == mtype
    for short in (b"", b"\x01", b"\x01\x00", b"\x01\x00\x00"):
        assert message_type(short) == 0
    assert message_type(b"\x00\x00\x00\x00") == 0
    assert message_type(b"\x01\x00\x00\x01") == 0


_any_type = st.sampled_from([b"\x01\x00\x00\x00", b"\x02\x00\x00\x00", b"\x03\x00\x00\x00"])
_datagrams = st.one_of(
    st.binary(max_size=200),
    # right type headers and right sizes, so that some parses succeed
    st.builds(lambda h, rest: h + rest, _any_type, st.binary(min_size=60, max_size=144)),
    st.builds(
        lambda mtype, fill: (bytes([mtype, 0, 0, 0]) + fill * 200)[: SIZES[mtype]],
        st.sampled_from([1, 2, 3]),
        st.binary(min_size=1, max_size=4),
    ),
    st.builds(lambda rest: b"\x04\x00\x00\x00" + rest, st.binary(max_size=100)),
)


@settings(max_examples=500, deadline=None)
@given(data=_datagrams)
def test_parse_random_bytes(data: bytes) -> None:
    # a parser returns something that serializes back to the same bytes, or raises
    # RemoteProtocolError: never any other exception
    mtype = message_type(data)
    assert mtype in (0, 1, 2, 3, 4)
    for candidate in (1, 2, 3, 4):
        try:
            again = _reserialize(candidate, data)
        except RemoteProtocolError:
            continue
        assert candidate == mtype
        assert again == data
        if candidate in SIZES:
            assert len(data) == SIZES[candidate]
        else:
            assert len(data) >= 32


@settings(max_examples=100, deadline=None)
@given(
    sender=st.integers(0, 2**32 - 1),
    receiver=st.integers(0, 2**32 - 1),
    blob=st.binary(min_size=200, max_size=200),
)
def test_round_trip_every_type(sender: int, receiver: int, blob: bytes) -> None:
    init = Initiation(sender, blob[:32], blob[32:80], blob[80:108], blob[108:124], blob[124:140])
    assert parse_initiation(serialize_initiation(init)) == init
    resp = Response(sender, receiver, blob[:32], blob[32:48], blob[48:64], blob[64:80])
    assert parse_response(serialize_response(resp)) == resp
    reply = CookieReply(receiver, blob[:24], blob[24:56])
    assert parse_cookie_reply(serialize_cookie_reply(reply)) == reply


# --------------------------------------------------------------------------- padding


def _reference_padded_length(length: int, mtu: int) -> int:
    """wireguard-go calculatePaddingSize / Linux calculate_skb_padding, as a total length."""
    if mtu == 0:
        return length + (-length % 16)
    last_unit = length % mtu if length > mtu else length
    padded = min(last_unit + (-last_unit % 16), mtu)
    return length + padded - last_unit


def test_padding_rule_text() -> None:
    p = WG["padding"]
    assert p["multiple"] == constants.PADDING_MULTIPLE == 16
    assert "min(round_up(len,16), mtu)" in p["rule"]
    assert "32 bytes" in p["keepalive"]


@pytest.mark.parametrize(
    ("length", "mtu", "expected"),
    [
        (0, 1420, 0),  # a keepalive stays empty
        (1, 1420, 16),
        (15, 1420, 16),
        (16, 1420, 16),
        (17, 1420, 32),
        (84, 1420, 96),  # the capture's ICMP echo
        (1404, 1420, 1408),
        (1409, 1420, 1420),  # rounding up would pass the MTU: capped
        (1419, 1420, 1420),
        (1420, 1420, 1420),
        (1280, 1280, 1280),
        (1275, 1280, 1280),
        (60, 65, 64),
        (63, 65, 64),
        (64, 65, 64),
        (65, 65, 65),  # MTU not a multiple of 16: the cap wins
        (1430, 1420, 1436),  # longer than the MTU: the last MTU-sized unit is padded
        (2840, 1420, 2840),
        (2841, 1420, 2856),
        (1, 0, 16),  # unknown MTU: a multiple of 16, no cap
        (1500, 0, 1504),
        (0, 0, 0),
    ],
)
def test_padded_length_examples(length: int, mtu: int, expected: int) -> None:
    assert padded_length(length, mtu) == expected
    assert _reference_padded_length(length, mtu) == expected


@given(length=st.integers(0, 70000), mtu=st.integers(0, 9000))
def test_padded_length_matches_reference(length: int, mtu: int) -> None:
    assert padded_length(length, mtu) == _reference_padded_length(length, mtu)


@given(length=st.integers(0, 1500), mtu=st.integers(576, 9000))
def test_padded_length_rules(length: int, mtu: int) -> None:
    out = padded_length(length, mtu)
    assert out >= length
    assert out - length < 16
    if length == 0:
        assert out == 0
    if length <= mtu:
        assert out <= mtu  # capped at the MTU
        assert out % 16 == 0 or out == mtu  # a multiple of 16 unless capped
        assert out == min(-(-length // 16) * 16, mtu)


@given(packet=st.binary(max_size=1500), mtu=st.sampled_from([0, 576, 1280, 1420, 1500]))
def test_pad(packet: bytes, mtu: int) -> None:
    out = pad(packet, mtu)
    assert len(out) == padded_length(len(packet), mtu)
    assert out[: len(packet)] == packet
    assert out[len(packet) :] == bytes(len(out) - len(packet))


def test_pad_keeps_empty_and_aligned_packets() -> None:
    assert pad(b"", 1420) == b""
    aligned = bytes(range(32))
    assert pad(aligned, 1420) == aligned
