"""Tests for pywg.keys: base64/hex forms as `wg` uses them, clamping, derivation, secrecy."""

from __future__ import annotations

import base64
import copy
import hmac
import operator
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers.known_answers import load, unhex
from pywg import keys
from pywg.exceptions import LocalProtocolError
from pywg.keys import (
    PresharedKey,
    PrivateKey,
    PublicKey,
    as_preshared_key,
    as_private_key,
    as_public_key,
    clamp,
)

CAPTURE = load("wireguard_wireshark_capture.json")
B64 = CAPTURE["keys_base64"]
X25519 = load("rfc7748_x25519.json")["diffie_hellman"]

KEY_CLASSES = [PublicKey, PrivateKey, PresharedKey]
SECRET_CLASSES = [PrivateKey, PresharedKey]

_raw32 = st.binary(min_size=32, max_size=32)


def _is_clamped(raw: bytes) -> bool:
    return raw[0] & 7 == 0 and raw[31] & 0x80 == 0 and raw[31] & 0x40 == 0x40


# --------------------------------------------------------------------------- base64 and hex


@pytest.mark.parametrize("cls", KEY_CLASSES)
@given(raw=_raw32)
def test_base64_round_trip(cls: type[keys._Key], raw: bytes) -> None:
    key = cls(raw)
    text = key.to_base64()
    assert len(text) == 44 and text.endswith("=")
    assert text == base64.b64encode(raw).decode()
    assert bytes(cls.from_base64(text)) == raw
    assert cls.from_base64(text) == key


@pytest.mark.parametrize("cls", KEY_CLASSES)
@given(raw=_raw32)
def test_hex_round_trip(cls: type[keys._Key], raw: bytes) -> None:
    key = cls(raw)
    assert key.to_hex() == raw.hex()
    assert cls.from_hex(key.to_hex()) == key
    assert cls.from_hex(raw.hex().upper()) == key


@pytest.mark.parametrize("name", sorted(B64))
def test_capture_keys_round_trip(name: str) -> None:
    # every key the Wireshark suite publishes, in `wg` base64 form
    text = B64[name]
    cls = PublicKey if name.startswith("Spub") else PresharedKey if "psk" in name else PrivateKey
    key = cls.from_base64(text)
    assert key.to_base64() == text
    assert bytes(key) == base64.b64decode(text)


def test_surrounding_whitespace_is_ignored() -> None:
    # config files and `wg genkey | ...` pipelines leave a trailing newline
    key = PublicKey.from_base64(B64["Spub_i"] + "\n")
    assert key.to_base64() == B64["Spub_i"]
    assert PublicKey.from_base64("  " + B64["Spub_i"] + "\t") == key
    assert PublicKey.from_hex(" " + key.to_hex() + "\n") == key


def test_bytes_like_constructors() -> None:
    raw = bytes(range(32))
    assert bytes(PublicKey(bytearray(raw))) == raw
    assert bytes(PublicKey(memoryview(raw))) == raw
    assert isinstance(bytes(PublicKey(bytearray(raw))), bytes)


def test_key_is_immutable_copy_of_input() -> None:
    buf = bytearray(32)
    key = PresharedKey(buf)
    buf[0] = 1
    assert bytes(key) == bytes(32)


# --------------------------------------------------------------------------- bad inputs

_GOOD = B64["Spub_i"]
BAD_BASE64: list[Any] = [
    "",
    "=",
    _GOOD[:43],  # 43 characters: `wg` wants 44
    _GOOD[:-1],  # the '=' missing
    _GOOD + "=",  # 45 characters
    _GOOD[:-2] + "==",  # 44 characters decoding to 31 bytes
    "A" * 44,  # no padding
    "!" + _GOOD[1:],  # not the base64 alphabet
    _GOOD[:20] + " " + _GOOD[21:],  # whitespace inside
    _GOOD[:20] + "-" + _GOOD[21:],  # urlsafe alphabet
    _GOOD[:20] + "é" + _GOOD[21:],  # not ASCII
    "A" * 42 + "B=",  # non-canonical: nonzero bits in the padding (`wg` refuses)
    _GOOD[:42] + chr(ord(_GOOD[42]) + 1) + "=",
    base64.b64encode(bytes(33)).decode(),  # 33 bytes
    base64.b64encode(bytes(31)).decode(),  # 31 bytes
]
BAD_HEX: list[Any] = [
    "",
    "00" * 31,
    "00" * 33,
    "0" * 63,
    "g" + "0" * 63,
    "00" * 31 + " 0",
    "0x" + "00" * 31,
]
NOT_STR: list[Any] = [None, 0, 3.5, b"A" * 44, _GOOD.encode(), bytearray(_GOOD.encode()), [_GOOD]]


@pytest.mark.parametrize("cls", KEY_CLASSES)
@pytest.mark.parametrize("text", BAD_BASE64 + NOT_STR, ids=repr)
def test_bad_base64_raises_local_protocol_error(cls: type[keys._Key], text: Any) -> None:
    with pytest.raises(LocalProtocolError):
        cls.from_base64(text)


@pytest.mark.parametrize("cls", KEY_CLASSES)
@pytest.mark.parametrize("text", BAD_HEX + NOT_STR, ids=repr)
def test_bad_hex_raises_local_protocol_error(cls: type[keys._Key], text: Any) -> None:
    with pytest.raises(LocalProtocolError):
        cls.from_hex(text)


BAD_RAW: list[Any] = [
    b"",
    bytes(31),
    bytes(33),
    bytearray(16),
    memoryview(bytes(64)),
    None,
    0,
    "0" * 32,
    _GOOD,
    list(range(32)),
]


def _stable_id(value: object) -> str:
    """A test id that is the same in every process (a memoryview's repr has its address)."""
    if isinstance(value, memoryview):
        return f"memoryview({bytes(value)!r})"
    return repr(value)


@pytest.mark.parametrize("cls", KEY_CLASSES)
@pytest.mark.parametrize("raw", BAD_RAW, ids=_stable_id)
def test_bad_raw_raises_local_protocol_error(cls: type[keys._Key], raw: Any) -> None:
    with pytest.raises(LocalProtocolError):
        cls(raw)


@pytest.mark.parametrize("cls", SECRET_CLASSES)
def test_error_messages_do_not_echo_the_input(cls: type[keys._Key]) -> None:
    secret = B64["Spriv_i"]
    for bad in (secret[:43], secret + "=", "A" * 42 + "B=", "!" + secret[1:]):
        with pytest.raises(LocalProtocolError) as info:
            cls.from_base64(bad)
        assert bad[1:40] not in str(info.value)
    secret_hex = base64.b64decode(secret).hex()
    with pytest.raises(LocalProtocolError) as info:
        cls.from_hex(secret_hex[:-1] + "z")
    assert secret_hex[:40] not in str(info.value)


def test_as_helpers() -> None:
    pub = PublicKey.from_base64(B64["Spub_r"])
    assert as_public_key(pub) is pub
    assert as_public_key(B64["Spub_r"]) == pub
    assert as_public_key(bytes(pub)) == pub
    priv = PrivateKey.from_base64(B64["Spriv_r"])
    assert as_private_key(priv) is priv
    assert as_private_key(B64["Spriv_r"]) == priv
    assert as_private_key(bytes(priv)) == priv
    psk = PresharedKey.from_base64(B64["psk3"])
    assert as_preshared_key(None) is None
    assert as_preshared_key(psk) is psk
    assert as_preshared_key(B64["psk3"]) == psk
    assert as_preshared_key(bytes(psk)) == psk
    for helper in (as_public_key, as_private_key, as_preshared_key):
        with pytest.raises(LocalProtocolError):
            helper("not a key")
        with pytest.raises(LocalProtocolError):
            helper(bytes(31))
        with pytest.raises(LocalProtocolError):
            helper(12345)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- clamping, genkey


def test_clamp_rfc7748() -> None:
    assert clamp(b"\xff" * 32) == b"\xf8" + b"\xff" * 30 + b"\x7f"
    assert clamp(bytes(32)) == bytes(31) + b"\x40"


@given(raw=_raw32)
def test_clamp_properties(raw: bytes) -> None:
    c = clamp(raw)
    assert len(c) == 32 and _is_clamped(c)
    assert clamp(c) == c
    # only bits 0-2 of byte 0 and bits 6-7 of byte 31 change
    assert c[1:31] == raw[1:31]
    assert c[0] | 7 == raw[0] | 7
    assert c[31] & 0x3F == raw[31] & 0x3F


def test_generate_clamps_like_wg_genkey() -> None:
    calls: list[int] = []

    def rng(n: int) -> bytes:
        calls.append(n)
        return b"\xff" * n

    key = PrivateKey.generate(rng=rng)
    assert calls == [32]
    assert isinstance(key, PrivateKey)
    assert bytes(key) == clamp(b"\xff" * 32)
    assert _is_clamped(bytes(PrivateKey.generate()))
    assert PrivateKey.generate() != PrivateKey.generate()


def test_generate_is_deterministic_with_injected_rng() -> None:
    def rng(n: int) -> bytes:
        return bytes(range(n))

    assert PrivateKey.generate(rng=rng) == PrivateKey.generate(rng=rng)
    psk = PresharedKey.generate(rng=rng)
    assert isinstance(psk, PresharedKey)
    assert bytes(psk) == bytes(range(32))  # a preshared key is not clamped


def test_capture_private_keys_are_clamped() -> None:
    for name, text in B64.items():
        if name.startswith(("Spriv", "Epriv")):
            assert _is_clamped(base64.b64decode(text)), name


# --------------------------------------------------------------------------- public key derivation


@pytest.mark.parametrize(("priv", "pub"), [("Spriv_i", "Spub_i"), ("Spriv_r", "Spub_r")])
def test_public_key_derivation_capture(priv: str, pub: str) -> None:
    key = PrivateKey.from_base64(B64[priv])
    assert isinstance(key.public_key, PublicKey)
    assert key.public_key == PublicKey.from_base64(B64[pub])
    assert str(key.public_key) == B64[pub]
    assert key.public_key is key.public_key  # computed once


def test_public_key_derivation_capture_hex() -> None:
    count = 0
    for cap in CAPTURE["captures"].values():
        for hs in cap["handshakes"]:
            for who in ("initiator_static", "responder_static"):
                for role in (who, who.replace("static", "ephemeral")):
                    priv = PrivateKey.from_hex(hs[f"{role}_private"])
                    assert priv.public_key.to_hex() == hs[f"{role}_public"]
                    count += 1
    assert count == 16


def test_public_key_derivation_rfc7748() -> None:
    for who in ("alice", "bob"):
        priv = PrivateKey(unhex(X25519[f"{who}_private"]))
        assert bytes(priv.public_key) == unhex(X25519[f"{who}_public"])


def test_unclamped_private_key_derives_the_clamped_public() -> None:
    raw = bytes(range(200, 232))
    assert PrivateKey(raw).public_key == PrivateKey(clamp(raw)).public_key


# --------------------------------------------------------------------------- equality and hashing


@pytest.mark.parametrize("cls", KEY_CLASSES)
def test_equality(cls: type[keys._Key]) -> None:
    a, b = cls(bytes(range(32))), cls(bytes(range(32)))
    c = cls(bytes(range(1, 33)))
    assert a == b and operator.ne(a, b) is False
    assert a != c and operator.eq(a, c) is False
    assert hash(a) == hash(b)
    assert len({a, b, c}) == 2
    assert a != bytes(a)  # not equal to its raw bytes
    assert a != a.to_base64()
    assert a != None  # noqa: E711


def test_different_key_types_never_equal() -> None:
    raw = bytes(range(32))
    pub, priv, psk = PublicKey(raw), PrivateKey(raw), PresharedKey(raw)
    assert pub != priv and priv != psk and pub != psk
    assert priv != pub and psk != priv and psk != pub
    assert len({pub, priv, psk}) == 3


@pytest.mark.parametrize("cls", KEY_CLASSES)
def test_equality_is_constant_time(cls: type[keys._Key], monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(x: bytes, y: bytes) -> bool:
        seen.append((x, y))
        return real(x, y)

    monkeypatch.setattr(keys.hmac, "compare_digest", spy)
    a, b = cls(bytes(32)), cls(b"\x01" + bytes(31))
    assert a != b
    assert a == cls(bytes(32))
    assert seen == [(bytes(32), b"\x01" + bytes(31)), (bytes(32), bytes(32))]


@pytest.mark.parametrize("cls", KEY_CLASSES)
def test_is_zero(cls: type[keys._Key]) -> None:
    assert cls(bytes(32)).is_zero()
    assert not cls(bytes(31) + b"\x01").is_zero()


# --------------------------------------------------------------------------- secrecy


def _secret_forms(raw: bytes) -> list[str]:
    b64 = base64.b64encode(raw).decode()
    return [b64, b64[:20], raw.hex(), raw.hex()[:20], repr(raw), str(list(raw))[:40]]


@pytest.mark.parametrize("cls", SECRET_CLASSES)
@pytest.mark.parametrize("name", ["Spriv_i", "Spriv_r", "psk2", "psk3"])
def test_secret_not_in_text_forms(cls: type[keys._Key], name: str) -> None:
    raw = base64.b64decode(B64[name])
    key = cls(raw)
    texts = [
        repr(key),
        f"{key!r}",
        "%r" % (key,),  # noqa: UP031
        repr([key]),
        repr({"key": key}),
        repr((key,)),
    ]
    for text in texts:
        assert cls.__name__ in text
        for form in _secret_forms(raw):
            assert form not in text, (text, form)


@pytest.mark.parametrize("cls", SECRET_CLASSES)
def test_str_is_base64_as_the_contract_says(cls: type[keys._Key]) -> None:
    """The public API: str() is base64 (config files, `wg genkey`); only repr hides secrets."""
    key = cls(base64.b64decode(B64["Spriv_i"]))
    assert str(key) == f"{key}" == B64["Spriv_i"]
    assert cls.from_base64(str(key)) == key


@pytest.mark.parametrize("cls", SECRET_CLASSES)
def test_secret_not_picklable(cls: type[keys._Key]) -> None:
    key = cls(base64.b64decode(B64["Spriv_i"]))
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError):
            pickle.dumps(key, protocol=protocol)
    with pytest.raises(TypeError):
        pickle.dumps([key])


def test_private_key_with_cached_public_not_picklable() -> None:
    key = PrivateKey.from_base64(B64["Spriv_i"])
    _ = key.public_key
    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(TypeError):
        copy.deepcopy(key)


def test_secret_still_available_explicitly() -> None:
    # key files and the UAPI need the secret: only through explicit calls
    key = PrivateKey.from_base64(B64["Spriv_i"])
    assert key.to_base64() == B64["Spriv_i"]
    assert bytes(key) == base64.b64decode(B64["Spriv_i"])
    assert key.to_hex() == base64.b64decode(B64["Spriv_i"]).hex()


def test_public_key_prints_base64() -> None:
    pub = PublicKey.from_base64(B64["Spub_i"])
    assert str(pub) == B64["Spub_i"]
    assert f"{pub}" == B64["Spub_i"]
    assert B64["Spub_i"] in repr(pub)
    assert repr(pub) == f"PublicKey({B64['Spub_i']!r})"


def test_public_key_pickles() -> None:
    pub = PublicKey.from_base64(B64["Spub_r"])
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        again = pickle.loads(pickle.dumps(pub, protocol=protocol))
        assert again == pub and type(again) is PublicKey
    assert copy.deepcopy(pub) == pub


@pytest.mark.parametrize("cls", KEY_CLASSES)
def test_no_instance_dict(cls: type[keys._Key]) -> None:
    key = cls(bytes(32))
    assert not hasattr(key, "__dict__")
    with pytest.raises(AttributeError):
        key.extra = 1  # type: ignore[attr-defined]
