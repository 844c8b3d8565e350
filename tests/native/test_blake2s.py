"""The C BLAKE2s (src/pywg/_fast/blake2s.c) against hashlib and RFC 7693."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pywg.cookie import mac1_key
from pywg.crypto import mac

fast = pytest.importorskip("pywg._fast._fast_cffi")
ffi, lib = fast.ffi, fast.lib


def c_blake2s(data: bytes, key: bytes = b"", size: int = 32) -> bytes:
    out = ffi.new("uint8_t[]", 32)
    assert lib.pywg_blake2s(out, size, key, len(key), data, len(data)) == 0
    return bytes(ffi.buffer(out, size))


def test_rfc7693_appendix_b_abc() -> None:
    # RFC 7693 Appendix B: BLAKE2s-256("abc")
    assert c_blake2s(b"abc").hex() == (
        "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982"
    )


@pytest.mark.parametrize("length", [0, 1, 55, 63, 64, 65, 116, 127, 128, 129, 1000])
@pytest.mark.parametrize("keylen", [0, 1, 16, 32])
@pytest.mark.parametrize("size", [16, 32])
def test_block_boundaries_match_hashlib(length: int, keylen: int, size: int) -> None:
    data = bytes(range(256)) * 4
    key = bytes(range(100, 100 + keylen))
    want = hashlib.blake2s(data[:length], key=key, digest_size=size).digest()
    assert c_blake2s(data[:length], key, size) == want


@given(st.binary(max_size=300), st.binary(max_size=32), st.integers(1, 32))
def test_any_input_matches_hashlib(data: bytes, key: bytes, size: int) -> None:
    assert c_blake2s(data, key, size) == hashlib.blake2s(data, key=key, digest_size=size).digest()


def test_mac1_as_the_core_computes_it() -> None:
    key = mac1_key(bytes(range(32)))
    message = bytes(range(116))
    assert c_blake2s(message, key, 16) == mac(key, message)


def test_bad_sizes_are_refused() -> None:
    out = ffi.new("uint8_t[]", 64)
    assert lib.pywg_blake2s(out, 0, ffi.NULL, 0, b"x", 1) == -1
    assert lib.pywg_blake2s(out, 33, ffi.NULL, 0, b"x", 1) == -1
    assert lib.pywg_blake2s(out, 16, b"k" * 33, 33, b"x", 1) == -1
