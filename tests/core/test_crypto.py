"""Known-answer and property tests for pywg.crypto (whitepaper §5.4 primitives).

Every vector in the RFC / zinc / WireGuard files under vectors/ runs through
the pywg functions; pyca/cryptography and hashlib are used directly only
where pywg has no function of that shape (12-byte IETF nonces with a nonzero
constant, BLAKE2s output sizes other than 16 and 32).
"""

from __future__ import annotations

import hashlib
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.known_answers import load, unhex
from pywg import constants, crypto
from pywg.exceptions import DecryptionError, RemoteProtocolError

BLAKE2S = load("rfc7693_blake2s.json")
X25519 = load("rfc7748_x25519.json")
ZINC_X25519 = load("zinc_curve25519_selftest.json")["vectors"]
RFC8439 = load("rfc8439_chacha20poly1305.json")["vectors"]
ZINC_AEAD = load("zinc_chacha20poly1305_selftest.json")
XCHACHA = load("xchacha20poly1305.json")
WG = load("wireguard_constants.json")
CAPTURE = load("wireguard_wireshark_capture.json")


def _ids(prefix: str, items: list[object]) -> list[str]:
    return [f"{prefix}{i}" for i in range(len(items))]


# --------------------------------------------------------------------------- BLAKE2s (RFC 7693)


def test_blake2s_vector_counts() -> None:
    assert len(BLAKE2S["kat_unkeyed"]) == 256
    assert len(BLAKE2S["kat_keyed"]["vectors"]) == 256


def test_hash_abc() -> None:
    v = BLAKE2S["abc"]
    assert v["outlen"] == 32 and v["key"] == ""
    assert crypto.hash_(v["input_ascii"].encode()) == unhex(v["digest"])
    # HASH over several parts is HASH over their concatenation
    assert crypto.hash_(b"a", b"", b"bc") == unhex(v["digest"])


def test_hash_empty() -> None:
    v = BLAKE2S["empty"]
    assert crypto.hash_(unhex(v["input"])) == unhex(v["digest"])
    assert crypto.hash_() == unhex(v["digest"])


@pytest.mark.parametrize(
    "vector", BLAKE2S["kat_unkeyed"], ids=_ids("unkeyed-", BLAKE2S["kat_unkeyed"])
)
def test_hash_kat_unkeyed(vector: dict[str, object]) -> None:
    # BLAKE2 reference KAT input: in[i] = i
    n = vector["len"]
    assert isinstance(n, int) and isinstance(vector["digest"], str)
    assert crypto.hash_(bytes(range(n))) == unhex(vector["digest"])


@pytest.mark.parametrize(
    "vector",
    BLAKE2S["kat_keyed"]["vectors"],
    ids=_ids("keyed-", BLAKE2S["kat_keyed"]["vectors"]),
)
def test_blake2s_kat_keyed(vector: dict[str, object]) -> None:
    # 32-byte keyed output: pywg has no such function (MAC is 16 bytes), so this
    # checks the underlying primitive, and that MAC is its digest_size=16 sibling.
    key = unhex(BLAKE2S["kat_keyed"]["key"])
    n = vector["len"]
    assert isinstance(n, int) and isinstance(vector["digest"], str)
    data = bytes(range(n))
    assert hashlib.blake2s(data, key=key).digest() == unhex(vector["digest"])
    assert crypto.mac(key, data) == hashlib.blake2s(data, key=key, digest_size=16).digest()
    # digest_size is in the parameter block: MAC is not a truncated 32-byte keyed hash
    assert crypto.mac(key, data) != unhex(vector["digest"])[:16]


def _selftest_seq(length: int, seed: int) -> bytes:
    """RFC 7693 Appendix E: deterministic test input (a Fibonacci-like generator)."""
    a = (0xDEAD4BAD * seed) & 0xFFFFFFFF
    b = 1
    out = bytearray()
    for _ in range(length):
        t = (a + b) & 0xFFFFFFFF
        a, b = b, t
        out.append((t >> 24) & 0xFF)
    return bytes(out)


def test_blake2s_rfc7693_selftest_grand_hash() -> None:
    # RFC 7693 Appendix E; the 32-byte unkeyed digests go through HASH, the
    # 16-byte keyed ones through MAC, the grand hash itself through HASH.
    parts: list[bytes] = []
    for outlen in (16, 20, 28, 32):
        for inlen in (0, 3, 64, 65, 255, 1024):
            data = _selftest_seq(inlen, inlen)
            key = _selftest_seq(outlen, outlen)
            if outlen == 32:
                parts.append(crypto.hash_(data))
            else:
                parts.append(hashlib.blake2s(data, digest_size=outlen).digest())
            if outlen == 16:
                parts.append(crypto.mac(key, data))
            else:
                parts.append(hashlib.blake2s(data, key=key, digest_size=outlen).digest())
    assert crypto.hash_(*parts) == unhex(BLAKE2S["rfc7693_selftest_grand_hash"])


def test_mac_is_keyed_blake2s_16() -> None:
    notes = BLAKE2S["wireguard_usage_notes"]
    assert "digest_size=16" in notes["MAC"]
    key, data = bytes(range(32)), b"WireGuard"
    out = crypto.mac(key, data)
    assert len(out) == 16
    assert out == hashlib.blake2s(data, key=key, digest_size=16).digest()
    assert out != crypto.hmac(key, data)[:16]


# --------------------------------------------------------------------------- HMAC and KDF


def _rfc2104_hmac_blake2s(key: bytes, data: bytes) -> bytes:
    """An independent HMAC-BLAKE2s (RFC 2104, block size 64) to check crypto.hmac."""
    if len(key) > 64:
        key = hashlib.blake2s(key).digest()
    key = key.ljust(64, b"\x00")
    inner = hashlib.blake2s(bytes(k ^ 0x36 for k in key) + data).digest()
    return hashlib.blake2s(bytes(k ^ 0x5C for k in key) + inner).digest()


KDF_VECTORS = WG["kdf_vectors"]["vectors"]


def test_kdf_vector_count() -> None:
    assert len(KDF_VECTORS) == 3


@pytest.mark.parametrize("vector", KDF_VECTORS, ids=_ids("kdf-", KDF_VECTORS))
def test_kdf_vectors(vector: dict[str, str]) -> None:
    # wireguard-go kdf_test.go; t0, t1, t2 are the first, second, third outputs
    key, data = unhex(vector["key"]), unhex(vector["input"])
    t0, t1, t2 = unhex(vector["t0"]), unhex(vector["t1"]), unhex(vector["t2"])
    assert crypto.kdf1(key, data) == t0
    assert crypto.kdf2(key, data) == (t0, t1)
    assert crypto.kdf3(key, data) == (t0, t1, t2)
    # the KDF is HKDF over HMAC-BLAKE2s
    prk = _rfc2104_hmac_blake2s(key, data)
    assert crypto.hmac(key, data) == prk
    assert _rfc2104_hmac_blake2s(prk, b"\x01") == t0
    assert _rfc2104_hmac_blake2s(prk, t0 + b"\x02") == t1
    assert _rfc2104_hmac_blake2s(prk, t1 + b"\x03") == t2


@settings(max_examples=50, deadline=None)
@given(key=st.binary(max_size=100), data=st.binary(max_size=300))
def test_hmac_matches_rfc2104(key: bytes, data: bytes) -> None:
    assert crypto.hmac(key, data) == _rfc2104_hmac_blake2s(key, data)


# --------------------------------------------------------------------------- X25519 (RFC 7748)


def test_x25519_vector_counts() -> None:
    assert len(X25519["single"]) == 2
    assert set(X25519["iterated"]["results"]) == {"1", "1000", "1000000"}
    assert len(ZINC_X25519) == 81
    assert sum(1 for v in ZINC_X25519 if not v["valid"]) == 16


@pytest.mark.parametrize("vector", X25519["single"], ids=_ids("rfc7748-", X25519["single"]))
def test_dh_rfc7748_single(vector: dict[str, str]) -> None:
    # the u coordinate's top bit is masked, the scalar is clamped: both by X25519 itself
    assert crypto.dh(unhex(vector["scalar"]), unhex(vector["u"])) == unhex(vector["output"])


def _x25519_iterate(count: int) -> bytes:
    k = u = b"\x09" + bytes(31)
    for _ in range(count):
        k, u = crypto.dh(k, u), k
    return k


@pytest.mark.parametrize("count", [1, 1000])
def test_dh_rfc7748_iterated(count: int) -> None:
    assert _x25519_iterate(count) == unhex(X25519["iterated"]["results"][str(count)])


@pytest.mark.slow  # 1,000,000 X25519 iterations
def test_dh_rfc7748_iterated_million() -> None:
    assert _x25519_iterate(1_000_000) == unhex(X25519["iterated"]["results"]["1000000"])


def test_dh_rfc7748_diffie_hellman() -> None:
    v = X25519["diffie_hellman"]
    a_priv, b_priv = unhex(v["alice_private"]), unhex(v["bob_private"])
    a_pub, b_pub = unhex(v["alice_public"]), unhex(v["bob_public"])
    assert crypto.dh_public(a_priv) == a_pub
    assert crypto.dh_public(b_priv) == b_pub
    assert crypto.dh(a_priv, b_pub) == unhex(v["shared_secret"])
    assert crypto.dh(b_priv, a_pub) == unhex(v["shared_secret"])


@pytest.mark.parametrize("vector", ZINC_X25519, ids=_ids("zinc-", ZINC_X25519))
def test_dh_zinc_selftest(vector: dict[str, object]) -> None:
    private, public, result = (unhex(str(vector[k])) for k in ("private", "public", "result"))
    if vector["valid"]:
        assert crypto.dh(private, public) == result
    else:
        # whitepaper §5.4: an all-zero DH result (small-order point) is rejected
        assert result == bytes(32)
        with pytest.raises(RemoteProtocolError):
            crypto.dh(private, public)


def test_dh_public_of_clamped_and_unclamped_scalar_agree() -> None:
    raw = bytes(range(1, 33))
    clamped = bytearray(raw)
    clamped[0] &= 248
    clamped[31] = (clamped[31] & 127) | 64
    assert crypto.dh_public(raw) == crypto.dh_public(bytes(clamped))


@settings(max_examples=25, deadline=None)
@given(a=st.binary(min_size=32, max_size=32), b=st.binary(min_size=32, max_size=32))
def test_dh_commutes(a: bytes, b: bytes) -> None:
    assert crypto.dh(a, crypto.dh_public(b)) == crypto.dh(b, crypto.dh_public(a))


# --------------------------------------------------------------------------- ChaCha20-Poly1305


def test_nonce_layout() -> None:
    # 4 zero bytes ‖ LE64(counter) (whitepaper §5.4, RFC 8439 §2.8 with constant 0)
    assert crypto.nonce(0) == bytes(12)
    assert crypto.nonce(1) == bytes(4) + b"\x01" + bytes(7)
    assert crypto.nonce(0x0807060504030201) == unhex("000000000102030405060708")
    assert crypto.nonce(2**64 - 1) == bytes(4) + b"\xff" * 8


@given(counter=st.integers(min_value=0, max_value=2**64 - 1))
def test_nonce_is_zero_prefix_and_le_counter(counter: int) -> None:
    n = crypto.nonce(counter)
    assert len(n) == 12
    assert n[:4] == bytes(4)
    assert int.from_bytes(n[4:], "little") == counter


def test_aead_vector_counts() -> None:
    assert len(RFC8439) == 2
    assert len(ZINC_AEAD["chacha20poly1305_enc_vectors"]) == 118
    assert len(ZINC_AEAD["chacha20poly1305_dec_vectors"]) == 13
    assert sum(1 for v in ZINC_AEAD["chacha20poly1305_dec_vectors"] if v["expect_failure"]) == 1
    assert len(ZINC_AEAD["xchacha20poly1305_enc_vectors"]) == 1
    assert len(ZINC_AEAD["xchacha20poly1305_dec_vectors"]) == 1


def _wg_counter(nonce12: bytes) -> int | None:
    """The WireGuard counter behind a 12-byte IETF nonce, or None if its constant is nonzero."""
    if nonce12[:4] != bytes(4):
        return None
    return int.from_bytes(nonce12[4:], "little")


@pytest.mark.parametrize("vector", RFC8439, ids=_ids("rfc8439-", RFC8439))
def test_aead_rfc8439(vector: dict[str, object]) -> None:
    key, nonce12, aad, plaintext, ciphertext, tag = (
        unhex(str(vector[k])) for k in ("key", "nonce", "aad", "plaintext", "ciphertext", "tag")
    )
    sealed = ciphertext + tag
    # cross-check with pyca/cryptography on the IETF nonce
    assert ChaCha20Poly1305(key).encrypt(nonce12, plaintext, aad) == sealed
    assert ChaCha20Poly1305(key).decrypt(nonce12, sealed, aad) == plaintext
    if "poly1305_one_time_key" in vector:
        # RFC 8439 §2.6: the first 32 bytes of ChaCha20 keystream block 0
        block0 = Cipher(algorithms.ChaCha20(key, bytes(4) + nonce12), mode=None).encryptor()
        assert block0.update(bytes(32)) == unhex(str(vector["poly1305_one_time_key"]))
    counter = _wg_counter(nonce12)
    if counter is None:
        # a nonzero constant cannot be expressed as a WireGuard counter
        assert all(crypto.nonce(c) != nonce12 for c in (0, 2**64 - 1))
        return
    assert crypto.nonce(counter) == nonce12
    assert crypto.aead_encrypt(key, counter, plaintext, aad) == sealed
    assert crypto.aead_decrypt(key, counter, sealed, aad) == plaintext


def test_rfc8439_wireguard_form_is_exercised() -> None:
    assert any(_wg_counter(unhex(v["nonce"])) is not None for v in RFC8439)


ZINC_ENC = ZINC_AEAD["chacha20poly1305_enc_vectors"]
ZINC_DEC = ZINC_AEAD["chacha20poly1305_dec_vectors"]


@pytest.mark.parametrize("vector", ZINC_ENC, ids=_ids("zinc-enc-", ZINC_ENC))
def test_aead_zinc_enc(vector: dict[str, str]) -> None:
    key, nonce_, aad, plaintext, sealed, nonce12 = (
        unhex(vector[k])
        for k in ("key", "nonce", "aad", "plaintext", "ciphertext_and_tag", "nonce12")
    )
    assert len(sealed) == len(plaintext) + 16
    if len(nonce_) == 8:
        # zinc's u64 nonce is WireGuard's little-endian counter
        counter = int.from_bytes(nonce_, "little")
        assert crypto.nonce(counter) == nonce12
        assert crypto.aead_encrypt(key, counter, plaintext, aad) == sealed
        assert crypto.aead_decrypt(key, counter, sealed, aad) == plaintext
    else:
        assert len(nonce_) == 12 and nonce12 == nonce_
        assert ChaCha20Poly1305(key).encrypt(nonce12, plaintext, aad) == sealed
        assert ChaCha20Poly1305(key).decrypt(nonce12, sealed, aad) == plaintext
        counter_ = _wg_counter(nonce12)
        if counter_ is not None:
            assert crypto.aead_encrypt(key, counter_, plaintext, aad) == sealed


def test_zinc_enc_has_both_nonce_forms() -> None:
    sizes = {len(v["nonce"]) // 2 for v in ZINC_ENC}
    assert sizes == {8, 12}
    assert sum(1 for v in ZINC_ENC if len(v["nonce"]) == 16) >= 60


@pytest.mark.parametrize("vector", ZINC_DEC, ids=_ids("zinc-dec-", ZINC_DEC))
def test_aead_zinc_dec(vector: dict[str, object]) -> None:
    key, nonce_, aad, sealed, plaintext, nonce12 = (
        unhex(str(vector[k]))
        for k in ("key", "nonce", "aad", "ciphertext_and_tag", "plaintext", "nonce12")
    )
    assert len(nonce_) == 8
    counter = int.from_bytes(nonce_, "little")
    assert crypto.nonce(counter) == nonce12
    if vector["expect_failure"]:
        with pytest.raises(DecryptionError):
            crypto.aead_decrypt(key, counter, sealed, aad)
    else:
        assert crypto.aead_decrypt(key, counter, sealed, aad) == plaintext
        assert crypto.aead_encrypt(key, counter, plaintext, aad) == sealed


def test_aead_empty_plaintext_is_tag_only() -> None:
    # the response's "encrypted nothing" and the keepalive: 16 bytes of tag
    sealed = crypto.aead_encrypt(bytes(32), 0, b"", b"")
    assert len(sealed) == 16
    assert crypto.aead_decrypt(bytes(32), 0, sealed, b"") == b""


@settings(max_examples=50, deadline=None)
@given(
    key=st.binary(min_size=32, max_size=32),
    counter=st.integers(min_value=0, max_value=2**64 - 1),
    plaintext=st.binary(max_size=200),
    ad=st.binary(max_size=64),
)
def test_aead_round_trip(key: bytes, counter: int, plaintext: bytes, ad: bytes) -> None:
    sealed = crypto.aead_encrypt(key, counter, plaintext, ad)
    assert len(sealed) == len(plaintext) + 16
    assert sealed == ChaCha20Poly1305(key).encrypt(crypto.nonce(counter), plaintext, ad)
    assert crypto.aead_decrypt(key, counter, sealed, ad) == plaintext


# --------------------------------------------------------------------------- XChaCha20-Poly1305


def _rotl32(v: int, n: int) -> int:
    return ((v << n) | (v >> (32 - n))) & 0xFFFFFFFF


def _hchacha20(key: bytes, nonce16: bytes) -> bytes:
    """HChaCha20 (draft-irtf-cfrg-xchacha §2.2), to check the XAEAD construction."""
    s = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    s += list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", nonce16))

    def qr(a: int, b: int, c: int, d: int) -> None:
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF
        s[d] = _rotl32(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF
        s[b] = _rotl32(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF
        s[d] = _rotl32(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF
        s[b] = _rotl32(s[b] ^ s[c], 7)

    for _ in range(10):
        qr(0, 4, 8, 12)
        qr(1, 5, 9, 13)
        qr(2, 6, 10, 14)
        qr(3, 7, 11, 15)
        qr(0, 5, 10, 15)
        qr(1, 6, 11, 12)
        qr(2, 7, 8, 13)
        qr(3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def test_hchacha20_vector() -> None:
    v = XCHACHA["hchacha20"]
    assert _hchacha20(unhex(v["key"]), unhex(v["nonce16"])) == unhex(v["subkey"])


def test_xaead_draft_vector() -> None:
    v = XCHACHA["aead"]
    key, nonce24, aad, plaintext = (unhex(v[k]) for k in ("key", "nonce24", "aad", "plaintext"))
    sealed = unhex(v["ciphertext"]) + unhex(v["tag"])
    assert crypto.xaead_encrypt(key, nonce24, plaintext, aad) == sealed
    assert crypto.xaead_decrypt(key, nonce24, sealed, aad) == plaintext
    # the construction: HChaCha20 subkey, then the IETF AEAD with 0^4 ‖ nonce[16:24]
    subkey = _hchacha20(key, nonce24[:16])
    assert subkey == unhex(v["derived_subkey"])
    nonce12 = bytes(4) + nonce24[16:]
    assert nonce12 == unhex(v["derived_nonce12"])
    assert ChaCha20Poly1305(subkey).encrypt(nonce12, plaintext, aad) == sealed


XZINC_ENC = ZINC_AEAD["xchacha20poly1305_enc_vectors"]
XZINC_DEC = ZINC_AEAD["xchacha20poly1305_dec_vectors"]


@pytest.mark.parametrize("vector", XZINC_ENC, ids=_ids("zinc-xenc-", XZINC_ENC))
def test_xaead_zinc_enc(vector: dict[str, str]) -> None:
    key, nonce24, aad, plaintext, sealed = (
        unhex(vector[k]) for k in ("key", "nonce", "aad", "plaintext", "ciphertext_and_tag")
    )
    assert crypto.xaead_encrypt(key, nonce24, plaintext, aad) == sealed
    assert crypto.xaead_decrypt(key, nonce24, sealed, aad) == plaintext


@pytest.mark.parametrize("vector", XZINC_DEC, ids=_ids("zinc-xdec-", XZINC_DEC))
def test_xaead_zinc_dec(vector: dict[str, object]) -> None:
    key, nonce24, aad, sealed, plaintext = (
        unhex(str(vector[k])) for k in ("key", "nonce", "aad", "ciphertext_and_tag", "plaintext")
    )
    if vector["expect_failure"]:
        with pytest.raises(DecryptionError):
            crypto.xaead_decrypt(key, nonce24, sealed, aad)
    else:
        assert crypto.xaead_decrypt(key, nonce24, sealed, aad) == plaintext


@settings(max_examples=30, deadline=None)
@given(
    key=st.binary(min_size=32, max_size=32),
    nonce24=st.binary(min_size=24, max_size=24),
    plaintext=st.binary(max_size=64),
    ad=st.binary(max_size=32),
)
def test_xaead_round_trip(key: bytes, nonce24: bytes, plaintext: bytes, ad: bytes) -> None:
    sealed = crypto.xaead_encrypt(key, nonce24, plaintext, ad)
    assert len(sealed) == len(plaintext) + 16
    assert crypto.xaead_decrypt(key, nonce24, sealed, ad) == plaintext


# --------------------------------------------------------------------------- tampering


_KEY = bytes(range(32))
_AD = b"associated data"
_PLAIN = b"an IP packet, padded to sixteen!"  # 32 bytes: sealed = 48 bytes
_COUNTER = 7
_NONCE24 = bytes(range(100, 124))


def _flip(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


_SEALED_BITS = [0, 7, 8 * 15 + 3, 8 * 31 + 7, 8 * 32, 8 * 40 + 1, 8 * 47 + 7]  # body, then tag


@pytest.mark.parametrize("bit", _SEALED_BITS)
def test_aead_flipped_ciphertext_or_tag_bit(bit: int) -> None:
    sealed = crypto.aead_encrypt(_KEY, _COUNTER, _PLAIN, _AD)
    assert len(_PLAIN) == 32 and len(sealed) == 48
    with pytest.raises(DecryptionError):
        crypto.aead_decrypt(_KEY, _COUNTER, _flip(sealed, bit), _AD)


@pytest.mark.parametrize("bit", [0, 9, 8 * len(_AD) - 1])
def test_aead_flipped_ad_bit(bit: int) -> None:
    sealed = crypto.aead_encrypt(_KEY, _COUNTER, _PLAIN, _AD)
    with pytest.raises(DecryptionError):
        crypto.aead_decrypt(_KEY, _COUNTER, sealed, _flip(_AD, bit))


def test_aead_wrong_counter_key_or_length() -> None:
    sealed = crypto.aead_encrypt(_KEY, _COUNTER, _PLAIN, _AD)
    bad_inputs = [
        (_KEY, _COUNTER + 1, sealed, _AD),
        (_flip(_KEY, 0), _COUNTER, sealed, _AD),
        (_KEY, _COUNTER, sealed[:-1], _AD),
        (_KEY, _COUNTER, sealed + b"\x00", _AD),
        (_KEY, _COUNTER, sealed, _AD + b"\x00"),
        (_KEY, _COUNTER, sealed, b""),
        (_KEY, _COUNTER, sealed[:15], _AD),
        (_KEY, _COUNTER, b"", _AD),
    ]
    for key, counter, data, ad in bad_inputs:
        with pytest.raises(DecryptionError):
            crypto.aead_decrypt(key, counter, data, ad)


@pytest.mark.parametrize("bit", _SEALED_BITS)
def test_xaead_flipped_ciphertext_or_tag_bit(bit: int) -> None:
    sealed = crypto.xaead_encrypt(_KEY, _NONCE24, _PLAIN, _AD)
    with pytest.raises(DecryptionError):
        crypto.xaead_decrypt(_KEY, _NONCE24, _flip(sealed, bit), _AD)


@pytest.mark.parametrize("bit", [0, 9, 8 * len(_AD) - 1])
def test_xaead_flipped_ad_bit(bit: int) -> None:
    sealed = crypto.xaead_encrypt(_KEY, _NONCE24, _PLAIN, _AD)
    with pytest.raises(DecryptionError):
        crypto.xaead_decrypt(_KEY, _NONCE24, sealed, _flip(_AD, bit))


def test_xaead_wrong_nonce_key_or_length() -> None:
    sealed = crypto.xaead_encrypt(_KEY, _NONCE24, _PLAIN, _AD)
    bad_inputs = [
        (_KEY, _flip(_NONCE24, 0), sealed, _AD),
        (_KEY, _flip(_NONCE24, 8 * 23), sealed, _AD),  # the part outside HChaCha20
        (_flip(_KEY, 255), _NONCE24, sealed, _AD),
        (_KEY, _NONCE24, sealed[:-1], _AD),
        (_KEY, _NONCE24, sealed, b""),
        (_KEY, _NONCE24, sealed[:15], _AD),
        (_KEY, _NONCE24, b"", _AD),
    ]
    for key, nonce24, data, ad in bad_inputs:
        with pytest.raises(DecryptionError):
            crypto.xaead_decrypt(key, nonce24, data, ad)


@settings(max_examples=50, deadline=None)
@given(data=st.binary(max_size=80), ad=st.binary(max_size=16))
def test_decrypt_of_garbage_raises_only_decryption_error(data: bytes, ad: bytes) -> None:
    with pytest.raises(DecryptionError):
        crypto.aead_decrypt(_KEY, 0, data, ad)
    with pytest.raises(DecryptionError):
        crypto.xaead_decrypt(_KEY, _NONCE24, data, ad)


def test_decryption_error_is_remote() -> None:
    assert issubclass(DecryptionError, RemoteProtocolError)


# --------------------------------------------------------------------------- TAI64N

_TAI64_LABEL_1970 = (1 << 62) + 10


def test_tai64n_layout() -> None:
    assert WG["tai64n"]["size"] == 12
    assert crypto.tai64n(0.0) == unhex("400000000000000a") + bytes(4)
    stamp = crypto.tai64n(1.5, round_down=False)
    assert stamp == struct.pack(">QI", _TAI64_LABEL_1970 + 1, 500_000_000)
    assert crypto.tai64n_parts(stamp) == (1, 500_000_000)


def test_tai64n_rounds_down_to_2_24_ns() -> None:
    assert constants.TAI64N_NSEC_ROUND == 1 << 24
    # 0.5 s = 500,000,000 ns = 29 * 2^24 + 13,456,384
    assert crypto.tai64n_parts(crypto.tai64n(1.5)) == (1, 29 << 24)
    assert crypto.tai64n_parts(crypto.tai64n(7.999999)) == (7, 59 << 24)  # 59 * 2^24 < 1e9
    assert crypto.tai64n_parts(crypto.tai64n(3.0)) == (3, 0)


_CAPTURE_STAMPS = [
    f for cap in CAPTURE["captures"].values() for f in cap["frames"] if f["type"] == 1
]


def test_capture_timestamp_count() -> None:
    assert len(_CAPTURE_STAMPS) == 4


@pytest.mark.parametrize("frame", _CAPTURE_STAMPS, ids=_ids("initiation-", _CAPTURE_STAMPS))
def test_tai64n_capture_examples(frame: dict[str, object]) -> None:
    stamp = unhex(str(frame["timestamp_tai64n"]))
    seconds, nanos = frame["timestamp_unix"], frame["timestamp_nanos"]
    assert isinstance(seconds, int) and isinstance(nanos, int)
    assert crypto.tai64n_parts(stamp) == (seconds, nanos)
    assert stamp == struct.pack(">QI", _TAI64_LABEL_1970 + seconds, nanos)
    # a float carries ~240 ns at this magnitude: seconds exact, nanoseconds close
    s2, n2 = crypto.tai64n_parts(crypto.tai64n(seconds + nanos / 1e9, round_down=False))
    assert s2 == seconds and abs(n2 - nanos) < 1000
    # the 2018 kernel did not whiten; pywg sends the value rounded down to 2^24 ns
    rounded = crypto.tai64n(seconds + nanos / 1e9)
    assert rounded == struct.pack(">QI", _TAI64_LABEL_1970 + seconds, nanos & ~0xFFFFFF)
    assert rounded <= stamp


_times = st.floats(min_value=0, max_value=2**33, allow_nan=False, allow_infinity=False)


@given(t=_times)
def test_tai64n_round_trip(t: float) -> None:
    exact_s, exact_ns = crypto.tai64n_parts(crypto.tai64n(t, round_down=False))
    assert 0 <= exact_ns < 1_000_000_000
    total = exact_s * 1_000_000_000 + exact_ns
    assert total == int(t * 1_000_000_000)
    s, ns = crypto.tai64n_parts(crypto.tai64n(t))
    assert s == exact_s
    assert ns % (1 << 24) == 0
    assert exact_ns - (1 << 24) < ns <= exact_ns
    assert crypto.tai64n(t) == struct.pack(">QI", _TAI64_LABEL_1970 + s, ns)


@given(a=_times, b=_times)
def test_tai64n_monotonic(a: float, b: float) -> None:
    lo, hi = min(a, b), max(a, b)
    # bytewise comparison of TAI64N is numeric comparison (the responder's replay rule)
    assert crypto.tai64n(lo) <= crypto.tai64n(hi)
    assert crypto.tai64n(lo, round_down=False) <= crypto.tai64n(hi, round_down=False)
    if hi - lo >= 0.02:  # more than 2^24 ns apart: strictly increasing even when rounded
        assert crypto.tai64n(lo) < crypto.tai64n(hi)


# --------------------------------------------------------------------------- WireGuard constants


def test_construction_and_identifier_strings() -> None:
    s = WG["strings"]
    assert s["CONSTRUCTION"].encode("ascii") == constants.CONSTRUCTION
    assert len(constants.CONSTRUCTION) == s["CONSTRUCTION_len"]
    assert s["IDENTIFIER"].encode("ascii") == constants.IDENTIFIER
    assert len(constants.IDENTIFIER) == s["IDENTIFIER_len"]
    assert s["LABEL_MAC1"].encode("ascii") == constants.LABEL_MAC1
    assert s["LABEL_COOKIE"].encode("ascii") == constants.LABEL_COOKIE
    for name in ("CONSTRUCTION", "IDENTIFIER", "LABEL_MAC1", "LABEL_COOKIE"):
        assert CAPTURE["constants"][name] == s[name]


def test_initial_chaining_key_and_hash() -> None:
    # whitepaper §5.4: Ci = HASH(CONSTRUCTION), Hi = HASH(Ci ‖ IDENTIFIER), no NUL hashed
    ci = crypto.hash_(constants.CONSTRUCTION)
    hi = crypto.hash_(ci, constants.IDENTIFIER)
    assert ci == unhex(WG["derived"]["initial_chaining_key_Ci"])
    assert hi == unhex(WG["derived"]["initial_hash_Hi"])
    assert ci == unhex(CAPTURE["constants"]["initial_chaining_key"])
    assert hi == unhex(CAPTURE["constants"]["initial_hash"])
    assert crypto.hash_(constants.CONSTRUCTION + b"\x00") != ci


def test_timer_constants() -> None:
    t = WG["timers_and_limits"]
    assert t["REKEY_AFTER_MESSAGES"] == constants.REKEY_AFTER_MESSAGES
    assert t["REJECT_AFTER_MESSAGES_go_and_whitepaper"] == constants.REJECT_AFTER_MESSAGES
    assert t["REKEY_AFTER_TIME_s"] == constants.REKEY_AFTER_TIME
    assert t["REJECT_AFTER_TIME_s"] == constants.REJECT_AFTER_TIME
    assert t["REKEY_ATTEMPT_TIME_s"] == constants.REKEY_ATTEMPT_TIME
    assert t["REKEY_TIMEOUT_s"] == constants.REKEY_TIMEOUT
    assert round(constants.REKEY_TIMEOUT_JITTER_MAX * 1000) == t["REKEY_TIMEOUT_JITTER_MAX_ms"]
    assert t["KEEPALIVE_TIMEOUT_s"] == constants.KEEPALIVE_TIMEOUT
    assert t["COOKIE_SECRET_MAX_AGE_s"] == constants.COOKIE_SECRET_MAX_AGE
    assert t["COOKIE_SECRET_LATENCY_s"] == constants.COOKIE_SECRET_LATENCY
    assert t["INITIATIONS_PER_SECOND"] == constants.INITIATIONS_PER_SECOND
    assert t["MAX_TIMER_HANDSHAKES"] == constants.MAX_TIMER_HANDSHAKES
    assert t["COUNTER_WINDOW_SIZE"] == constants.REPLAY_WINDOW_SIZE
    # derived values (whitepaper §6)
    assert constants.REJECT_AFTER_MESSAGES == 2**64 - 2**13 - 1
    assert constants.ZERO_KEY_MATERIAL_AFTER == 540
    assert constants.REKEY_ON_RECEIVE_AGE == 165
    assert constants.COOKIE_VALID_FOR == 115
    assert pytest.approx(0.02) == constants.INITIATION_MIN_INTERVAL


# --------------------------------------------------------------------------- the real capture

_HANDSHAKES = [(name, hs) for name, cap in CAPTURE["captures"].items() for hs in cap["handshakes"]]


def test_capture_handshake_count() -> None:
    assert len(_HANDSHAKES) == 4


@pytest.mark.parametrize(("capture", "hs"), _HANDSHAKES, ids=_ids("handshake-", _HANDSHAKES))
def test_capture_dh_and_macs(capture: str, hs: dict[str, object]) -> None:
    def h(name: str) -> bytes:
        return unhex(str(hs[name]))

    tr = hs["trace"]
    assert isinstance(tr, dict)
    for who in ("initiator_static", "responder_static", "initiator_ephemeral"):
        assert crypto.dh_public(h(f"{who}_private")) == h(f"{who}_public")
    assert crypto.dh_public(h("responder_ephemeral_private")) == h("responder_ephemeral_public")
    # the four DH results of IKpsk2 (whitepaper §5.4.2, §5.4.3), from both sides
    es = crypto.dh(h("initiator_ephemeral_private"), h("responder_static_public"))
    assert es == crypto.dh(h("responder_static_private"), h("initiator_ephemeral_public"))
    assert es == unhex(tr["after_es"]["dh"])
    ss = crypto.dh(h("initiator_static_private"), h("responder_static_public"))
    assert ss == unhex(tr["after_ss"]["dh"])
    ee = crypto.dh(h("responder_ephemeral_private"), h("initiator_ephemeral_public"))
    assert ee == unhex(tr["resp_after_ee"]["dh"])
    se = crypto.dh(h("responder_ephemeral_private"), h("initiator_static_public"))
    assert se == crypto.dh(h("initiator_static_private"), h("responder_ephemeral_public"))
    assert se == unhex(tr["resp_after_se"]["dh"])
    # transport keys: (T1, T2) = KDF2(C, "") (whitepaper §5.4.5)
    t1, t2 = crypto.kdf2(unhex(tr["resp_after_psk"]["ck"]), b"")
    assert (t1, t2) == (unhex(tr["transport"]["T1"]), unhex(tr["transport"]["T2"]))
    # mac1 keys and the mac1 of both messages as sent by the Linux kernel
    mac1_i = crypto.hash_(constants.LABEL_MAC1, h("responder_static_public"))
    mac1_r = crypto.hash_(constants.LABEL_MAC1, h("initiator_static_public"))
    assert mac1_i == unhex(tr["mac1_key_for_initiation"])
    assert mac1_r == unhex(tr["mac1_key_for_response"])
    cookie_i = crypto.hash_(constants.LABEL_COOKIE, h("responder_static_public"))
    assert cookie_i == unhex(tr["cookie_key_for_initiation"])
    frames = {f["frame"]: unhex(f["udp_payload"]) for f in CAPTURE["captures"][capture]["frames"]}
    init, resp = frames[hs["initiation_frame"]], frames[hs["response_frame"]]
    assert crypto.mac(mac1_i, init[:116]) == init[116:132]
    assert crypto.mac(mac1_r, resp[:60]) == resp[60:76]
    assert init[132:148] == bytes(16) and resp[76:92] == bytes(16)  # no cookie in play


def _transport_cases() -> list[tuple[bytes, dict[str, object]]]:
    cases = []
    for name, cap in CAPTURE["captures"].items():
        keys: dict[int, bytes] = {}
        for hs in cap["handshakes"]:
            tr = hs["trace"]["transport"]
            keys[hs["responder_sender_index"]] = unhex(tr["initiator_send"])
            keys[hs["initiator_sender_index"]] = unhex(tr["responder_send"])
        for f in cap["frames"]:
            if f["type"] == 4:
                cases.append((keys[f["receiver_index"]], f))
        assert name
    return cases


_TRANSPORT = _transport_cases()


def test_capture_transport_count() -> None:
    assert len(_TRANSPORT) == 18


@pytest.mark.parametrize(("key", "frame"), _TRANSPORT, ids=_ids("transport-", _TRANSPORT))
def test_capture_transport_decrypts(key: bytes, frame: dict[str, object]) -> None:
    payload = unhex(str(frame["udp_payload"]))
    counter = frame["counter"]
    assert isinstance(counter, int)
    plaintext = unhex(str(frame["plaintext"]))
    assert crypto.aead_decrypt(key, counter, payload[16:], b"") == plaintext
    assert crypto.aead_encrypt(key, counter, plaintext, b"") == payload[16:]
    with pytest.raises(DecryptionError):
        crypto.aead_decrypt(key, counter + 1, payload[16:], b"")


def test_constant_time_equal() -> None:
    assert crypto.constant_time_equal(b"abc", b"abc")
    assert not crypto.constant_time_equal(b"abc", b"abd")
    assert not crypto.constant_time_equal(b"abc", b"ab")
    assert crypto.constant_time_equal(b"", b"")
