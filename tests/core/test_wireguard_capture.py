"""The real Linux-kernel capture (Wireshark test suite): regenerate, decrypt, replay.

Every handshake message is rebuilt bit-exactly from the published keys, the
Noise chaining key and hash match the trace after each token, and a pywg
Device acting as the responder reproduces the responder's own messages byte
for byte (handshake responses and transport packets) and decrypts every
transport packet the initiator sent, with and without a preshared key.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from helpers.known_answers import load
from pywg import Device, HandshakeCompleted, PrivateKey, crypto
from pywg.constants import CONSTRUCTION, IDENTIFIER
from pywg.cookie import CookieGenerator
from pywg.handshake import consume_initiation, consume_response, create_initiation, create_response
from pywg.messages import parse_initiation, parse_response
from pywg.noise import DhKeyPair, SymmetricState
from pywg.session import Session

DATA = load("wireguard_wireshark_capture.json")
h = bytes.fromhex


def _handshakes() -> list[tuple[str, dict[str, Any], dict[int, dict[str, Any]]]]:
    out = []
    for name, cap in DATA["captures"].items():
        frames = {f["frame"]: f for f in cap["frames"]}
        for hs in cap["handshakes"]:
            out.append((name, hs, frames))
    return out


HANDSHAKES = _handshakes()


def test_initial_chaining_key_and_hash() -> None:
    c = DATA["constants"]
    assert crypto.hash_(CONSTRUCTION).hex() == c["initial_chaining_key"]
    assert crypto.hash_(crypto.hash_(CONSTRUCTION), IDENTIFIER).hex() == c["initial_hash"]


def test_keys_match() -> None:
    k = DATA["keys_base64"]
    assert str(PrivateKey.from_base64(k["Spriv_i"]).public_key) == k["Spub_i"]
    assert str(PrivateKey.from_base64(k["Spriv_r"]).public_key) == k["Spub_r"]


@pytest.mark.parametrize(("name", "hs", "frames"), HANDSHAKES)
def test_trace_token_by_token(name: str, hs: dict[str, Any], frames: dict[int, Any]) -> None:
    """ck and h after every Noise token equal the trace (whitepaper §5.4.2-5.4.3)."""
    t = hs["trace"]
    si = h(hs["initiator_static_private"])
    ei = h(hs["initiator_ephemeral_private"])
    er = h(hs["responder_ephemeral_private"])
    spub_r = h(hs["responder_static_public"])
    sym = SymmetricState.initialize(CONSTRUCTION)
    sym.mix_hash(IDENTIFIER)
    sym.mix_hash(spub_r)
    assert sym.h.hex() == t["h0_after_mixhash_Spub_r"]
    epub_i = crypto.dh_public(ei)
    sym.mix_hash(epub_i)
    sym.mix_key(epub_i)
    assert (sym.ck.hex(), sym.h.hex()) == (t["after_e"]["ck"], t["after_e"]["h"])
    dh = crypto.dh(ei, spub_r)
    assert dh.hex() == t["after_es"]["dh"]
    sym.mix_key(dh)
    assert (sym.ck.hex(), sym.cipher.k.hex()) == (t["after_es"]["ck"], t["after_es"]["key"])  # type: ignore[union-attr]
    sym.encrypt_and_hash(crypto.dh_public(si))
    assert sym.h.hex() == t["after_static"]["h"]
    dh = crypto.dh(si, spub_r)
    assert dh.hex() == t["after_ss"]["dh"]
    sym.mix_key(dh)
    assert (sym.ck.hex(), sym.cipher.k.hex()) == (t["after_ss"]["ck"], t["after_ss"]["key"])  # type: ignore[union-attr]
    sym.encrypt_and_hash(h(t["after_timestamp"]["timestamp"]))
    assert sym.h.hex() == t["after_timestamp"]["h"]
    epub_r = crypto.dh_public(er)
    sym.mix_hash(epub_r)
    sym.mix_key(epub_r)
    assert (sym.ck.hex(), sym.h.hex()) == (t["resp_after_e"]["ck"], t["resp_after_e"]["h"])
    dh = crypto.dh(ei, epub_r)
    assert dh.hex() == t["resp_after_ee"]["dh"]
    sym.mix_key(dh)
    assert sym.ck.hex() == t["resp_after_ee"]["ck"]
    dh = crypto.dh(si, epub_r)
    assert dh.hex() == t["resp_after_se"]["dh"]
    sym.mix_key(dh)
    assert sym.ck.hex() == t["resp_after_se"]["ck"]
    ck, tau, key = crypto.kdf3(sym.ck, h(hs["psk"]))
    assert (ck.hex(), tau.hex(), key.hex()) == (
        t["resp_after_psk"]["ck"],
        t["resp_after_psk"]["tau"],
        t["resp_after_psk"]["key"],
    )
    sym.mix_key_and_hash(h(hs["psk"]))
    assert sym.h.hex() == t["resp_after_psk"]["h"]
    sym.encrypt_and_hash(b"")
    assert sym.h.hex() == t["resp_after_empty"]["h"]
    t1, t2 = crypto.kdf2(sym.ck, b"")
    assert (t1.hex(), t2.hex()) == (t["transport"]["T1"], t["transport"]["T2"])


@pytest.mark.parametrize(("name", "hs", "frames"), HANDSHAKES)
def test_regenerate_handshake_bit_exact(
    name: str, hs: dict[str, Any], frames: dict[int, Any]
) -> None:
    init_frame = frames[hs["initiation_frame"]]
    resp_frame = frames[hs["response_frame"]]
    si = DhKeyPair.from_private(h(hs["initiator_static_private"]))
    sr = DhKeyPair.from_private(h(hs["responder_static_private"]))
    created = create_initiation(
        si,
        sr.public,
        hs["initiator_sender_index"],
        h(init_frame["timestamp_tai64n"]),
        ephemeral=DhKeyPair.from_private(h(hs["initiator_ephemeral_private"])),
    )
    t = hs["trace"]
    assert created.state.handshake_hash.hex() == t["after_timestamp"]["h"]
    initiation = CookieGenerator(sr.public).add_macs(created.message, 116, 0.0)
    assert initiation.hex() == init_frame["udp_payload"]
    consumed = consume_initiation(sr, parse_initiation(initiation))
    assert consumed.remote_static == si.public
    assert consumed.timestamp.hex() == init_frame["timestamp_tai64n"]
    psk = h(hs["psk"])
    response, r_send, r_recv = create_response(
        consumed,
        hs["responder_sender_index"],
        psk,
        ephemeral=DhKeyPair.from_private(h(hs["responder_ephemeral_private"])),
    )
    assert consumed.state.handshake_hash.hex() == t["resp_after_empty"]["h"]
    response = CookieGenerator(si.public).add_macs(response, 60, 0.0)
    assert response.hex() == resp_frame["udp_payload"]
    i_send, i_recv = consume_response(created.state, parse_response(response), psk)
    tr = t["transport"]
    assert (i_send.k, i_recv.k) == (h(tr["initiator_send"]), h(tr["initiator_recv"]))
    assert (r_send.k, r_recv.k) == (h(tr["responder_send"]), h(tr["responder_recv"]))


def _scripted_rng(values: dict[int, list[bytes]]) -> Callable[[int], bytes]:
    def rng(n: int) -> bytes:
        queue = values.get(n)
        return queue.pop(0) if queue else os.urandom(n)

    return rng


@pytest.mark.parametrize(("name", "hs", "frames"), HANDSHAKES)
def test_device_as_responder_reproduces_response(
    name: str, hs: dict[str, Any], frames: dict[int, Any]
) -> None:
    """A Device fed the captured initiation answers with the captured response."""
    rng = _scripted_rng(
        {
            4: [hs["responder_sender_index"].to_bytes(4, "little")],
            32: [h(hs["responder_ephemeral_private"])],
        }
    )
    dev = Device(h(hs["responder_static_private"]), 51820, rng=rng)
    psk = h(hs["psk"])
    dev.add_peer(
        h(hs["initiator_static_public"]),
        ["0.0.0.0/0"],
        preshared_key=None if psk == bytes(32) else psk,
    )
    init_frame = frames[hs["initiation_frame"]]
    host, port = init_frame["src"].rsplit(":", 1)
    dev.receive_datagram(h(init_frame["udp_payload"]), (host, int(port)), now=1.0)
    out = dev.datagrams_to_send()
    assert [d.hex() for d, _ in out] == [frames[hs["response_frame"]]["udp_payload"]]
    assert out[0][1] == (host, int(port))
    assert not dev.dropped


def _unpadded(plaintext: bytes) -> bytes:
    if not plaintext:
        return b""
    total = int.from_bytes(plaintext[2:4], "big")
    return plaintext[:total]


def test_device_replays_whole_ping_tcp_capture() -> None:
    """Drive a Device as 10.9.0.2 through the whole capture, both handshakes.

    Every transport packet from the initiator decrypts to the captured
    plaintext; every transport packet the responder sent is reproduced bit
    for bit by the Device; the initiator's side decrypts with pywg keypairs.
    """
    cap = DATA["captures"]["wireguard-ping-tcp.pcap"]
    frames = cap["frames"]
    hss = cap["handshakes"]
    rng = _scripted_rng(
        {
            4: [hs["responder_sender_index"].to_bytes(4, "little") for hs in hss],
            32: [h(hs["responder_ephemeral_private"]) for hs in hss],
        }
    )
    responder_addr = "10.9.0.2:51820"
    dev = Device(h(hss[0]["responder_static_private"]), 51820, rng=rng)
    dev.add_peer(h(hss[0]["initiator_static_public"]), ["0.0.0.0/0"])
    # the initiator's receiving keys, by its index, to check what the Device sends
    initiator_side: dict[int, Session] = {}
    for hs in hss:
        tr = hs["trace"]["transport"]
        initiator_side[hs["initiator_sender_index"]] = Session(
            h(tr["initiator_send"]),
            h(tr["initiator_recv"]),
            hs["initiator_sender_index"],
            hs["responder_sender_index"],
            is_initiator=True,
            created=0.0,
        )
    decrypted = reproduced = completed = 0
    for f in frames:
        now = float(f["frame"])
        host, port = f["src"].rsplit(":", 1)
        data = h(f["udp_payload"])
        if f["dst"] == responder_addr:
            dev.receive_datagram(data, (host, int(port)), now)
            out = dev.packets_to_write()
            if f["type"] == 4:
                expected = _unpadded(h(f["plaintext"]))
                assert out == ([expected] if expected else []), f["frame"]
                decrypted += 1
            else:
                assert out == []
            sent = dev.datagrams_to_send()
            if f["type"] == 1:
                nxt = next(g for g in frames if g["frame"] == f["frame"] + 1)
                assert [d.hex() for d, _ in sent] == [nxt["udp_payload"]]
            else:
                assert sent == []
        else:
            if f["type"] != 4:
                continue  # responses were checked when the initiation went in
            # the responder sent this: the Device must produce the same bytes
            dev.send_packet(_unpadded(h(f["plaintext"])), now)
            sent = dev.datagrams_to_send()
            assert [d.hex() for d, _ in sent] == [f["udp_payload"]], f["frame"]
            kp = initiator_side[f["receiver_index"]]
            plain = kp.open(f["counter"], data[16:])
            assert plain is not None and plain.hex() == f["plaintext"]
            reproduced += 1
        while (ev := dev.next_event()) is not None:
            completed += isinstance(ev, HandshakeCompleted)
    assert decrypted == sum(1 for f in frames if f["type"] == 4 and f["dst"] == responder_addr)
    assert reproduced == sum(1 for f in frames if f["type"] == 4 and f["src"] == responder_addr)
    assert decrypted > 0 and reproduced > 0
    assert completed == 2
    assert not dev.dropped, dev.dropped
