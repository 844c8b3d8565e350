"""Key types: base64 in and out (as `wg` uses), X25519 clamping, constant-time compare.

str() of every key is its base64 form, the way `wg genkey` prints it, so
`f"PrivateKey = {key}"` writes a valid config line. repr() of a private or
preshared key never shows the secret, nor do pickles (refused), so
containers, tracebacks and debug output built from reprs stay clean. pywg
itself never logs str() of a secret key.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from collections.abc import Callable
from typing import Any, ClassVar, Self, TypeVar, cast

from .constants import KEY_SIZE
from .crypto import dh_public
from .exceptions import LocalProtocolError


def _decode_base64(text: str) -> bytes:
    if not isinstance(text, str):
        raise LocalProtocolError("a base64 key must be a str")
    text = text.strip()
    if len(text) != 44 or not text.endswith("="):
        raise LocalProtocolError("key must be 44 characters of base64 (32 bytes)")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise LocalProtocolError("key is not valid base64") from exc
    if len(raw) != KEY_SIZE:
        raise LocalProtocolError("key must decode to 32 bytes")
    # The last character carries 4 bits of key and 2 padding bits; `wg` (key_from_base64)
    # refuses nonzero padding bits, so a key has exactly one accepted spelling.
    if base64.b64encode(raw).decode("ascii") != text:
        raise LocalProtocolError("key is not canonical base64")
    return raw


def _decode_hex(text: str) -> bytes:
    if not isinstance(text, str):
        raise LocalProtocolError("a hexadecimal key must be a str")
    text = text.strip()
    if len(text) != 2 * KEY_SIZE:
        raise LocalProtocolError("key must be 64 hexadecimal characters")
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise LocalProtocolError("key is not valid hexadecimal") from exc


def clamp(raw: bytes) -> bytes:
    """X25519 scalar clamping (RFC 7748 §5), as `wg genkey` applies."""
    b = bytearray(raw)
    b[0] &= 248
    b[31] = (b[31] & 127) | 64
    return bytes(b)


class _Key:
    """32 bytes, immutable, compared in constant time."""

    __slots__ = ("_raw",)
    _secret: ClassVar[bool] = True

    def __init__(self, raw: bytes) -> None:
        if not isinstance(raw, bytes | bytearray | memoryview):
            raise LocalProtocolError(f"{type(self).__name__} takes 32 bytes")
        raw = bytes(raw)
        if len(raw) != KEY_SIZE:
            raise LocalProtocolError(f"{type(self).__name__} must be 32 bytes, got {len(raw)}")
        self._raw = raw

    @classmethod
    def from_base64(cls, text: str) -> Self:
        return cls(_decode_base64(text))

    @classmethod
    def from_hex(cls, text: str) -> Self:
        return cls(_decode_hex(text))

    def __bytes__(self) -> bytes:
        return self._raw

    def to_base64(self) -> str:
        return base64.b64encode(self._raw).decode("ascii")

    def to_hex(self) -> str:
        return self._raw.hex()

    def is_zero(self) -> bool:
        return hmac.compare_digest(self._raw, bytes(KEY_SIZE))

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Key)
        return hmac.compare_digest(self._raw, other._raw)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._raw))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} (secret)>"

    def __str__(self) -> str:
        return self.to_base64()

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError(f"{type(self).__name__} is not picklable (it holds a secret)")


class PublicKey(_Key):
    """A Curve25519 public key. str() is its base64 form (public, safe to print)."""

    __slots__ = ()
    _secret = False

    def __repr__(self) -> str:
        return f"PublicKey({self.to_base64()!r})"

    def __str__(self) -> str:
        return self.to_base64()

    def __reduce__(self) -> tuple[Any, ...]:
        return (PublicKey, (self._raw,))


class PrivateKey(_Key):
    """A Curve25519 private key (a secret: not in repr, str or pickles)."""

    __slots__ = ("_public",)

    def __init__(self, raw: bytes) -> None:
        super().__init__(raw)
        self._public: PublicKey | None = None

    @classmethod
    def generate(cls, rng: Callable[[int], bytes] = os.urandom) -> PrivateKey:
        """A new clamped private key, as `wg genkey` makes."""
        return cls(clamp(rng(KEY_SIZE)))

    @property
    def public_key(self) -> PublicKey:
        if self._public is None:
            self._public = PublicKey(dh_public(self._raw))
        return self._public


class PresharedKey(_Key):
    """A 32-byte symmetric key mixed into the handshake (whitepaper §5.2), a secret."""

    __slots__ = ()

    @classmethod
    def generate(cls, rng: Callable[[int], bytes] = os.urandom) -> PresharedKey:
        return cls(rng(KEY_SIZE))


_AnyKey = TypeVar("_AnyKey", bound=_Key)


def _as_key(cls: type[_AnyKey], value: _AnyKey | str | bytes) -> _AnyKey:
    """Accept a key of `cls`, its base64 text, or its 32 raw bytes."""
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        return cls.from_base64(value)
    return cls(cast(bytes, value))  # __init__ refuses anything but 32 bytes (a key of another kind)


def as_public_key(value: PublicKey | str | bytes) -> PublicKey:
    """Accept a PublicKey, its base64 text, or its 32 raw bytes."""
    return _as_key(PublicKey, value)


def as_preshared_key(value: PresharedKey | str | bytes | None) -> PresharedKey | None:
    return None if value is None else _as_key(PresharedKey, value)


def as_private_key(value: PrivateKey | str | bytes) -> PrivateKey:
    return _as_key(PrivateKey, value)
