"""mac1, mac2 and cookie replies: the DoS mitigation of whitepaper §5.3 and §5.4.7.

Two roles:

- `CookieChecker` (one per device, keyed by *our* static public key) checks
  mac1 on every incoming handshake message, checks mac2 when under load, and
  makes cookie replies. Its secret Rm is random and replaced every 120 s
  (COOKIE_SECRET_MAX_AGE); the cookie for a source is MAC(Rm, ip ‖ port).
- `CookieGenerator` (one per peer, keyed by *the peer's* static public key)
  adds mac1 (and mac2 when it holds a fresh cookie) to the handshake messages
  we send, and consumes cookie replies, whose AEAD associated data is the
  mac1 we last sent.

The core reads no clock: every time-dependent call takes ``now``.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable

from . import crypto
from .constants import (
    COOKIE_NONCE_SIZE,
    COOKIE_SECRET_MAX_AGE,
    COOKIE_SECRET_SIZE,
    COOKIE_VALID_FOR,
    LABEL_COOKIE,
    LABEL_MAC1,
    MAC_SIZE,
)
from .exceptions import DecryptionError
from .messages import CookieReply, serialize_cookie_reply

Address = tuple[str, int]


def source_bytes(addr: Address) -> bytes:
    """The cookie's input: the source IP address bytes ‖ UDP port, big-endian (§5.4.7)."""
    return ipaddress.ip_address(addr[0]).packed + addr[1].to_bytes(2, "big")


def mac1_key(public_key: bytes) -> bytes:
    return crypto.hash_(LABEL_MAC1, public_key)


def cookie_key(public_key: bytes) -> bytes:
    return crypto.hash_(LABEL_COOKIE, public_key)


class CookieChecker:
    """Responder side: validates mac1/mac2 and answers with cookie replies."""

    def __init__(self, public_key: bytes, rng: Callable[[int], bytes] = os.urandom) -> None:
        self._mac1_key = mac1_key(public_key)
        self._cookie_key = cookie_key(public_key)
        self._rng = rng
        self._secret = b""
        self._secret_born = float("-inf")

    def check_mac1(self, message: bytes, mac1_offset: int) -> bool:
        expected = crypto.mac(self._mac1_key, message[:mac1_offset])
        return crypto.constant_time_equal(expected, message[mac1_offset : mac1_offset + MAC_SIZE])

    def secret(self, now: float) -> bytes:
        """Rm as of `now`, replaced first if it is 120 s old (COOKIE_SECRET_MAX_AGE).

        The native plane makes the same cookies in C, so it is handed this
        secret (`pywg._fast.plane`); never logged or shown.
        """
        if now - self._secret_born >= COOKIE_SECRET_MAX_AGE:  # rotate Rm every 120 s
            self._secret = self._rng(COOKIE_SECRET_SIZE)
            self._secret_born = now
        return self._secret

    def _cookie(self, source: bytes, now: float) -> bytes:
        return crypto.mac(self.secret(now), source)

    def check_mac2(self, message: bytes, mac2_offset: int, source: bytes, now: float) -> bool:
        """mac2 = MAC(cookie, msg[:mac2_offset]) with the cookie of the current secret."""
        if now - self._secret_born >= COOKIE_SECRET_MAX_AGE:
            return False  # no cookie handed out under the current secret yet
        expected = crypto.mac(self._cookie(source, now), message[:mac2_offset])
        return crypto.constant_time_equal(expected, message[mac2_offset : mac2_offset + MAC_SIZE])

    def create_reply(
        self, message: bytes, mac1_offset: int, sender_index: int, source: bytes, now: float
    ) -> bytes:
        """A 64-byte cookie reply to `message` (whose mac1 is the AEAD's associated data)."""
        nonce = self._rng(COOKIE_NONCE_SIZE)
        mac1 = message[mac1_offset : mac1_offset + MAC_SIZE]
        encrypted = crypto.xaead_encrypt(self._cookie_key, nonce, self._cookie(source, now), mac1)
        return serialize_cookie_reply(CookieReply(sender_index, nonce, encrypted))

    def __repr__(self) -> str:
        return "<CookieChecker>"


class CookieGenerator:
    """Initiator side: adds mac1/mac2 to what we send to one peer, takes its cookie replies."""

    def __init__(self, peer_public_key: bytes) -> None:
        self._mac1_key = mac1_key(peer_public_key)
        self._cookie_key = cookie_key(peer_public_key)
        self._last_mac1: bytes | None = None
        self._cookie: bytes | None = None
        self._cookie_time = float("-inf")

    def add_macs(self, message: bytes, mac1_offset: int, now: float) -> bytes:
        """Fill mac1 and mac2 (zeros unless a cookie younger than 115 s is held)."""
        body = message[:mac1_offset]
        mac1 = crypto.mac(self._mac1_key, body)
        self._last_mac1 = mac1
        if self._cookie is not None and now - self._cookie_time < COOKIE_VALID_FOR:
            mac2 = crypto.mac(self._cookie, body + mac1)
        else:
            mac2 = bytes(MAC_SIZE)
        return body + mac1 + mac2

    def consume_reply(self, reply: CookieReply, now: float) -> bool:
        """Decrypt and store the cookie; False (state unchanged) if it does not verify."""
        if self._last_mac1 is None:
            return False
        try:
            cookie = crypto.xaead_decrypt(
                self._cookie_key, reply.nonce, reply.encrypted_cookie, self._last_mac1
            )
        except DecryptionError:
            return False
        self._cookie = cookie
        self._cookie_time = now
        # One reply per mac1 sent, as Linux does: a replayed (or second) reply
        # to the same message is refused until we send another one.
        self._last_mac1 = None
        return True

    @property
    def has_fresh_cookie(self) -> bool:
        return self._cookie is not None

    def clear(self) -> None:
        self._last_mac1 = None
        self._cookie = None
        self._cookie_time = float("-inf")

    def __repr__(self) -> str:
        return "<CookieGenerator>"
