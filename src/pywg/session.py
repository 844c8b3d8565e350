"""Transport sessions: one session's keys, counters and replay window (whitepaper §5.4.5–§5.4.6).

A `Session` is what the whitepaper and wireguard-go call a "keypair": the two
symmetric transport keys a completed handshake derives, with the receiver
indices, the send counter and the replay window that go with them. (Not to be
confused with `pywg.noise.DhKeyPair`, a Curve25519 private/public key pair.)

A peer holds up to three: `previous`, `current` and `next` (the responder's
session before the initiator has confirmed it). Python's copy of bytes cannot
be wiped, so `zero()` drops every reference to the key material (best effort);
the native plane zeroes its copies for real.

When a native data plane carries the session (`pywg._fast.plane`), the
session is `link`ed to its C twin: from then on the send counter and the
replay window live in C only, and `seal`/`open` go through it, so Python and
the plane's threads never use a counter twice.
"""

from __future__ import annotations

import struct
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .constants import MESSAGE_TRANSPORT, REJECT_AFTER_MESSAGES, REJECT_AFTER_TIME
from .crypto import nonce
from .replay import ReplayWindow

_header = struct.Struct("<IIQ")


class NativeTwin(Protocol):
    """The C side of a linked session (see pywg._fast.plane.NativeKeypair)."""

    @property
    def send_counter(self) -> int: ...

    def seal(self, padded: bytes) -> bytes | None: ...

    def open(self, counter: int, ciphertext: bytes) -> bytes | None: ...

    def free(self) -> None: ...


class Session:
    """One transport session (a "keypair" in the whitepaper): see the module docstring."""

    __slots__ = (
        "_native",
        "_opener",
        "_sealer",
        "_send_counter",
        "created",
        "is_initiator",
        "local_index",
        "receive_key",
        "remote_index",
        "replay",
        "send_key",
    )

    def __init__(
        self,
        send_key: bytes,
        receive_key: bytes,
        local_index: int,
        remote_index: int,
        *,
        is_initiator: bool,
        created: float,
    ) -> None:
        self.send_key: bytes | None = send_key
        self.receive_key: bytes | None = receive_key
        self._sealer: ChaCha20Poly1305 | None = ChaCha20Poly1305(send_key)
        self._opener: ChaCha20Poly1305 | None = ChaCha20Poly1305(receive_key)
        self.local_index = local_index
        self.remote_index = remote_index
        self.is_initiator = is_initiator
        self.created = created
        self._send_counter = 0
        self._native: NativeTwin | None = None
        self.replay = ReplayWindow(REJECT_AFTER_MESSAGES)

    @property
    def send_counter(self) -> int:
        """The next counter to send with (in C once linked)."""
        return self._native.send_counter if self._native is not None else self._send_counter

    @send_counter.setter
    def send_counter(self, value: int) -> None:
        if self._native is not None:
            raise ValueError("a linked session's counter lives in the native plane")
        self._send_counter = value

    @property
    def native(self) -> NativeTwin | None:
        return self._native

    def link(self, twin: NativeTwin) -> None:
        """Hand the counter and replay window over to `twin` (created from their state)."""
        self._native = twin

    def age(self, now: float) -> float:
        return now - self.created

    def expired(self, now: float) -> bool:
        """Unusable: REJECT_AFTER_TIME passed, or zeroed (whitepaper §6.1)."""
        return self._sealer is None or now - self.created >= REJECT_AFTER_TIME

    def can_send(self, now: float) -> bool:
        return not self.expired(now) and self.send_counter < REJECT_AFTER_MESSAGES

    def seal(self, padded: bytes) -> bytes:
        """One transport message (§5.4.6): header ‖ AEAD(key, counter, padded packet, ε)."""
        if self._native is not None and self._sealer is not None:
            message = self._native.seal(padded)
            if message is None:
                raise ValueError("session cannot send")
            return message
        counter = self._send_counter
        if self._sealer is None or counter >= REJECT_AFTER_MESSAGES:
            raise ValueError("session cannot send")
        self._send_counter = counter + 1
        header = _header.pack(MESSAGE_TRANSPORT, self.remote_index, counter)
        return header + self._sealer.encrypt(nonce(counter), padded, None)

    def open(self, counter: int, ciphertext: bytes) -> bytes | None:
        """Decrypt and then check and mark the replay window; None when either fails."""
        if self._native is not None and self._opener is not None:
            return self._native.open(counter, ciphertext)
        if self._opener is None or not self.replay.would_accept(counter):
            return None
        try:
            plain = self._opener.decrypt(nonce(counter), ciphertext, None)
        except InvalidTag:
            return None
        if not self.replay.check(counter):  # RFC 6479: mark only after authentication
            return None
        return plain

    def zero(self) -> None:
        self.send_key = self.receive_key = None
        self._sealer = self._opener = None
        if self._native is not None:
            self._native.free()  # the C copies are wiped for real

    def __repr__(self) -> str:
        return (
            f"<Session local={self.local_index:#010x} remote={self.remote_index:#010x} "
            f"initiator={self.is_initiator} sent={self.send_counter}>"
        )
