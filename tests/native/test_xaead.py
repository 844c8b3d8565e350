"""The C XChaCha20-Poly1305 seal (src/pywg/_fast/xaead.c) against libsodium and the draft."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pywg.crypto import xaead_decrypt, xaead_encrypt

fast = pytest.importorskip("pywg._fast._fast_cffi")
ffi, lib = fast.ffi, fast.lib


def c_seal(key: bytes, nonce: bytes, plain: bytes, ad: bytes) -> bytes:
    out = ffi.new("uint8_t[]", len(plain) + 16)
    assert lib.pywg_xaead_seal(out, key, nonce, plain, len(plain), ad, len(ad)) == 0
    return bytes(ffi.buffer(out, len(plain) + 16))


def test_hchacha20_vector() -> None:
    # draft-irtf-cfrg-xchacha-03 §2.2.1
    key = bytes(range(32))
    nonce = bytes.fromhex("000000090000004a0000000031415927")
    out = ffi.new("uint8_t[]", 32)
    lib.pywg_hchacha20(out, key, nonce)
    assert bytes(ffi.buffer(out, 32)).hex() == (
        "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc"
    )


def test_cookie_reply_shape_matches_libsodium() -> None:
    key, nonce, cookie, mac1 = os.urandom(32), os.urandom(24), os.urandom(16), os.urandom(16)
    sealed = c_seal(key, nonce, cookie, mac1)
    assert sealed == xaead_encrypt(key, nonce, cookie, mac1)
    assert xaead_decrypt(key, nonce, sealed, mac1) == cookie


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=24, max_size=24),
       st.binary(max_size=300), st.binary(max_size=64))  # fmt: skip
def test_any_input_matches_libsodium(key: bytes, nonce: bytes, plain: bytes, ad: bytes) -> None:
    assert c_seal(key, nonce, plain, ad) == xaead_encrypt(key, nonce, plain, ad)
