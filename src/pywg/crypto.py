"""Primitives of whitepaper §5.4: HASH, MAC, HMAC, KDFn, DH, AEAD, XAEAD, TAI64N.

Thin, allocation-light wrappers over hashlib (BLAKE2s), cryptography
(X25519, ChaCha20-Poly1305) and PyNaCl (XChaCha20-Poly1305).
"""

from __future__ import annotations

import hashlib
import hmac as _hmac
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)
from nacl.exceptions import CryptoError

from .constants import TAI64N_NSEC_ROUND
from .exceptions import DecryptionError, RemoteProtocolError

_ZERO32 = bytes(32)
_NONCE_PREFIX = bytes(4)
_pack_q = struct.Struct("<Q").pack


def hash_(*parts: bytes) -> bytes:
    """HASH(input) = BLAKE2s(input, 32), over the concatenation of parts."""
    h = hashlib.blake2s()
    for p in parts:
        h.update(p)
    return h.digest()


def mac(key: bytes, data: bytes) -> bytes:
    """MAC(key, input) = Keyed-BLAKE2s(key, input, 16): a keyed hash, not HMAC."""
    return hashlib.blake2s(data, key=key, digest_size=16).digest()


def hmac(key: bytes, data: bytes) -> bytes:
    """HMAC(key, input) = HMAC-BLAKE2s(key, input, 32) (RFC 2104)."""
    return _hmac.new(key, data, hashlib.blake2s).digest()


def kdf1(key: bytes, data: bytes) -> bytes:
    """KDF1: HKDF with HMAC-BLAKE2s, one 32-byte output (whitepaper §5.4)."""
    t0 = hmac(key, data)
    return hmac(t0, b"\x01")


def kdf2(key: bytes, data: bytes) -> tuple[bytes, bytes]:
    t0 = hmac(key, data)
    t1 = hmac(t0, b"\x01")
    t2 = hmac(t0, t1 + b"\x02")
    return t1, t2


def kdf3(key: bytes, data: bytes) -> tuple[bytes, bytes, bytes]:
    t0 = hmac(key, data)
    t1 = hmac(t0, b"\x01")
    t2 = hmac(t0, t1 + b"\x02")
    t3 = hmac(t0, t2 + b"\x03")
    return t1, t2, t3


def dh_public(private: bytes) -> bytes:
    """DH-Pubkey(private): X25519 base-point multiplication (RFC 7748, clamps)."""
    return (
        X25519PrivateKey.from_private_bytes(private)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


def dh(private: bytes, public: bytes) -> bytes:
    """DH(private, public): X25519; an all-zero result is rejected (whitepaper §5.4).

    Raises RemoteProtocolError for a public key that yields the all-zero
    shared secret (a small-order point).
    """
    try:
        out = X25519PrivateKey.from_private_bytes(private).exchange(
            X25519PublicKey.from_public_bytes(public)
        )
    except ValueError as exc:  # OpenSSL refuses the all-zero result itself
        raise RemoteProtocolError("X25519 produced the all-zero value") from exc
    if _hmac.compare_digest(out, _ZERO32):
        raise RemoteProtocolError("X25519 produced the all-zero value")
    return out


def nonce(counter: int) -> bytes:
    """The AEAD nonce: 32 zero bits followed by the 64-bit little-endian counter."""
    return _NONCE_PREFIX + _pack_q(counter)


def aead_encrypt(key: bytes, counter: int, plaintext: bytes, ad: bytes) -> bytes:
    """AEAD(key, counter, plain, auth): ChaCha20-Poly1305 per RFC 8439."""
    return ChaCha20Poly1305(key).encrypt(nonce(counter), plaintext, ad)


def aead_decrypt(key: bytes, counter: int, ciphertext: bytes, ad: bytes) -> bytes:
    try:
        return ChaCha20Poly1305(key).decrypt(nonce(counter), ciphertext, ad)
    except InvalidTag as exc:
        raise DecryptionError("AEAD tag mismatch") from exc


def xaead_encrypt(key: bytes, nonce24: bytes, plaintext: bytes, ad: bytes) -> bytes:
    """XAEAD: XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha), used for cookie replies."""
    out: bytes = crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, ad, nonce24, key)
    return out


def xaead_decrypt(key: bytes, nonce24: bytes, ciphertext: bytes, ad: bytes) -> bytes:
    if len(ciphertext) < 16:  # PyNaCl would raise a bare ValueError from cffi
        raise DecryptionError("XAEAD ciphertext shorter than its tag")
    try:
        out: bytes = crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, ad, nonce24, key)
    except CryptoError as exc:
        raise DecryptionError("XAEAD tag mismatch") from exc
    return out


_TAI64_BASE = (1 << 62) + 10  # TAI64 label of 1970 TAI, +10 s TAI-UTC offset (whitepaper §5.1)


def tai64n(unix_time: float, *, round_down: bool = True) -> bytes:
    """TAI64N timestamp: BE64(2^62 + 10 + seconds) ‖ BE32(nanoseconds).

    Nanoseconds are rounded down to 2^24 ns unless round_down is False
    (as wireguard-go and Linux do, to hide the clock's precision).
    """
    ns_total = int(unix_time * 1_000_000_000)
    seconds, nanos = divmod(ns_total, 1_000_000_000)
    if round_down:
        nanos -= nanos % TAI64N_NSEC_ROUND
    return struct.pack(">QI", _TAI64_BASE + seconds, nanos)


def tai64n_parts(stamp: bytes) -> tuple[int, int]:
    """Split a TAI64N timestamp into (unix seconds, nanoseconds)."""
    hi, lo = struct.unpack(">QI", stamp)
    return hi - _TAI64_BASE, lo


def constant_time_equal(a: bytes, b: bytes) -> bool:
    return _hmac.compare_digest(a, b)
