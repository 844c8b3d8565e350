"""Noise IK and IKpsk2 test vectors (cacophony/snow) through pywg.noise."""

from __future__ import annotations

from typing import Any

import pytest

from helpers.known_answers import load
from pywg.exceptions import DecryptionError, LocalProtocolError
from pywg.noise import DhKeyPair, HandshakeState

CASES = [("noise_IKpsk2.json", "IKpsk2"), ("noise_IK_25519_ChaChaPoly_BLAKE2s.json", "IK")]


def _vectors(name: str) -> list[dict[str, Any]]:
    data = load(name)
    vs = data["vectors"] if isinstance(data, dict) else data
    assert vs, name
    return list(vs)


def _parties(v: dict[str, Any], pattern: str) -> tuple[HandshakeState, HandshakeState]:
    h = bytes.fromhex
    init = HandshakeState(
        pattern,
        True,
        prologue=h(v["init_prologue"]),
        s=DhKeyPair.from_private(h(v["init_static"])),
        e=DhKeyPair.from_private(h(v["init_ephemeral"])),
        rs=h(v["init_remote_static"]),
        psks=[h(x) for x in v.get("init_psks", [])],
    )
    resp = HandshakeState(
        pattern,
        False,
        prologue=h(v["resp_prologue"]),
        s=DhKeyPair.from_private(h(v["resp_static"])),
        e=DhKeyPair.from_private(h(v["resp_ephemeral"])),
        psks=[h(x) for x in v.get("resp_psks", [])],
    )
    return init, resp


@pytest.mark.parametrize(("name", "pattern"), CASES)
def test_noise_vectors(name: str, pattern: str) -> None:
    h = bytes.fromhex
    for v in _vectors(name):
        init, resp = _parties(v, pattern)
        msgs = v["messages"]
        c = init.write_message(h(msgs[0]["payload"]))
        assert c.hex() == msgs[0]["ciphertext"]
        assert resp.read_message(c) == h(msgs[0]["payload"])
        c = resp.write_message(h(msgs[1]["payload"]))
        assert c.hex() == msgs[1]["ciphertext"]
        assert init.read_message(c) == h(msgs[1]["payload"])
        assert init.finished and resp.finished
        assert init.handshake_hash.hex() == v["handshake_hash"] == resp.handshake_hash.hex()
        i_send, i_recv = init.split()
        r_recv, r_send = resp.split()
        for n, m in enumerate(msgs[2:]):
            sender, receiver = (i_send, r_recv) if n % 2 == 0 else (r_send, i_recv)
            c = sender.encrypt_with_ad(b"", h(m["payload"]))
            assert c.hex() == m["ciphertext"]
            assert receiver.decrypt_with_ad(b"", c) == h(m["payload"])


def test_tampered_message_leaves_state_unchanged() -> None:
    v = _vectors("noise_IKpsk2.json")[0]
    init, resp = _parties(v, "IKpsk2")
    c = bytearray(init.write_message(b"hello"))
    before = (resp.symmetric.ck, resp.symmetric.h, resp.message_index, resp.re, resp.rs)
    c[-1] ^= 1
    with pytest.raises(DecryptionError):
        resp.read_message(bytes(c))
    assert (resp.symmetric.ck, resp.symmetric.h, resp.message_index, resp.re, resp.rs) == before
    c[-1] ^= 1
    assert resp.read_message(bytes(c)) == b"hello"


def test_turns_are_enforced() -> None:
    v = _vectors("noise_IKpsk2.json")[0]
    init, resp = _parties(v, "IKpsk2")
    with pytest.raises(LocalProtocolError):
        resp.write_message(b"")
    with pytest.raises(LocalProtocolError):
        init.split()
    with pytest.raises(LocalProtocolError):
        HandshakeState("XX", True)
