"""Noise Protocol Framework handshake state machine (Noise spec rev. 34, §5).

Theory of operation
-------------------
A `HandshakeState` runs one handshake pattern for one party. It holds the
symmetric state (chaining key ``ck``, handshake hash ``h``, cipher key ``k``
with nonce ``n``) and the key pairs ``s``, ``e``, ``rs``, ``re``, and walks
the pattern's message tokens (``e``, ``s``, ``ee``, ``es``, ``se``, ``ss``,
``psk``) in `write_message` / `read_message`. After the last message,
`split` gives the two transport `CipherState`s.

Only what WireGuard needs is supported: the IK and IKpsk2 patterns with
25519, ChaChaPoly and BLAKE2s. The prologue, payloads, the ephemeral key and
the PSK are all injectable, so the published Noise test vectors run through
this code unchanged; WireGuard (whitepaper §5.4) is the instantiation with
prologue = IDENTIFIER and the TAI64N timestamp as the first payload.

Every method either completes or raises without having changed the state:
`read_message` works on a copy and commits only on success, so a forged
message never corrupts a handshake in progress.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from . import crypto
from .exceptions import LocalProtocolError, RemoteProtocolError

DHLEN = 32
HASHLEN = 32
TAGLEN = 16

# Noise §7.5 (IK) and §9 (psk2 modifier): pre-messages and message patterns.
PATTERNS: dict[str, tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]] = {
    "IK": (("<-s",), (("e", "es", "s", "ss"), ("e", "ee", "se"))),
    "IKpsk2": (("<-s",), (("e", "es", "s", "ss"), ("e", "ee", "se", "psk"))),
}


def protocol_name(pattern: str) -> bytes:
    return f"Noise_{pattern}_25519_ChaChaPoly_BLAKE2s".encode()


@dataclass(slots=True)
class CipherState:
    """Noise §5.1: a key and a 64-bit nonce; nonce 2^64-1 is reserved."""

    k: bytes | None = field(default=None, repr=False)  # secret: never in a repr
    n: int = 0

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        if self.k is None:
            return plaintext
        if self.n >= (1 << 64) - 1:
            raise LocalProtocolError("nonce exhausted")
        out = crypto.aead_encrypt(self.k, self.n, plaintext, ad)
        self.n += 1
        return out

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        if self.k is None:
            return ciphertext
        if self.n >= (1 << 64) - 1:
            raise RemoteProtocolError("nonce exhausted")
        out = crypto.aead_decrypt(self.k, self.n, ciphertext, ad)  # raises DecryptionError
        self.n += 1
        return out


@dataclass(slots=True)
class SymmetricState:
    """Noise §5.2 with HASH = BLAKE2s and HKDF over HMAC-BLAKE2s."""

    ck: bytes = field(repr=False)  # the chaining key is secret
    h: bytes = field(repr=False)
    cipher: CipherState = field(default_factory=CipherState)

    @classmethod
    def initialize(cls, name: bytes) -> SymmetricState:
        h = name.ljust(HASHLEN, b"\0") if len(name) <= HASHLEN else crypto.hash_(name)
        return cls(ck=h, h=h)

    def mix_key(self, ikm: bytes) -> None:
        self.ck, temp_k = crypto.kdf2(self.ck, ikm)
        self.cipher = CipherState(temp_k)

    def mix_hash(self, data: bytes) -> None:
        self.h = crypto.hash_(self.h, data)

    def mix_key_and_hash(self, ikm: bytes) -> None:
        self.ck, temp_h, temp_k = crypto.kdf3(self.ck, ikm)
        self.mix_hash(temp_h)
        self.cipher = CipherState(temp_k)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        k1, k2 = crypto.kdf2(self.ck, b"")
        return CipherState(k1), CipherState(k2)


@dataclass(slots=True)
class DhKeyPair:
    """A Curve25519 key pair for Diffie-Hellman: a static or an ephemeral key (Noise §4.1).

    Not a transport session (the whitepaper's "keypair"): that is `pywg.session.Session`.
    """

    private: bytes = field(repr=False)
    public: bytes

    @classmethod
    def from_private(cls, private: bytes) -> DhKeyPair:
        return cls(private, crypto.dh_public(private))

    def __repr__(self) -> str:
        return f"DhKeyPair(public={self.public.hex()}, private=<secret>)"


class HandshakeState:
    """Noise §5.3 for one party of an IK / IKpsk2 handshake."""

    def __init__(
        self,
        pattern: str,
        initiator: bool,
        *,
        prologue: bytes = b"",
        s: DhKeyPair | None = None,
        e: DhKeyPair | None = None,
        rs: bytes | None = None,
        psks: Sequence[bytes] = (),
        rng: Callable[[int], bytes] = os.urandom,
        symmetric: SymmetricState | None = None,
    ) -> None:
        if pattern not in PATTERNS:
            raise LocalProtocolError(f"unsupported pattern {pattern!r}")
        pre, self._messages = PATTERNS[pattern]
        self.initiator = initiator
        self.s = s
        self.e = e
        self.rs = rs
        self.re: bytes | None = None
        self.psks = list(psks)
        self._psk_mode = "psk" in pattern
        self.rng = rng
        self.message_index = 0
        if symmetric is not None:  # precomputed state after prologue and pre-messages
            self.symmetric = copy.copy(symmetric)
            return
        self.symmetric = SymmetricState.initialize(protocol_name(pattern))
        self.symmetric.mix_hash(prologue)
        for token in pre:  # "<-s": the responder's static key is known to both
            if token != "<-s":
                raise LocalProtocolError(f"unsupported pre-message {token}")
            key = rs if initiator else (s.public if s else None)
            if key is None:
                raise LocalProtocolError("the responder's static key is required")
            self.symmetric.mix_hash(key)

    @property
    def finished(self) -> bool:
        return self.message_index >= len(self._messages)

    @property
    def handshake_hash(self) -> bytes:
        return self.symmetric.h

    @property
    def chaining_key(self) -> bytes:
        return self.symmetric.ck

    def _is_my_turn(self) -> bool:
        return (self.message_index % 2 == 0) == self.initiator

    def _dh(self, token: str) -> bytes:
        # token is "xy": x is the initiator's key, y the responder's (Noise §5.3)
        mine, theirs = (token[0], token[1]) if self.initiator else (token[1], token[0])
        local = self.e if mine == "e" else self.s
        remote = self.re if theirs == "e" else self.rs
        if local is None or remote is None:
            raise LocalProtocolError(f"missing key for {token}")
        return crypto.dh(local.private, remote)  # raises RemoteProtocolError on zero result

    def _psk(self) -> bytes:
        if not self.psks:
            raise LocalProtocolError("psk token without a psk")
        return self.psks.pop(0)

    def write_message(self, payload: bytes = b"") -> bytes:
        if self.finished or not self._is_my_turn():
            raise LocalProtocolError("not this party's turn to write")
        sym = self.symmetric
        out: list[bytes] = []
        for token in self._messages[self.message_index]:
            if token == "e":
                if self.e is None:
                    self.e = DhKeyPair.from_private(self.rng(DHLEN))
                out.append(self.e.public)
                sym.mix_hash(self.e.public)
                if self._psk_mode:
                    sym.mix_key(self.e.public)
            elif token == "s":
                if self.s is None:
                    raise LocalProtocolError("static key required")
                out.append(sym.encrypt_and_hash(self.s.public))
            elif token == "psk":
                sym.mix_key_and_hash(self._psk())
            else:
                sym.mix_key(self._dh(token))
        out.append(sym.encrypt_and_hash(payload))
        self.message_index += 1
        return b"".join(out)

    def read_message(
        self, message: bytes, *, after_static: Callable[[bytes], None] | None = None
    ) -> bytes:
        """Process an incoming message and return its payload.

        ``after_static`` is called with the remote static key as soon as the
        ``s`` token is decrypted; it may set ``self.psks`` (WireGuard looks up
        the peer, and its PSK, by that key) or raise to abort. On any error
        the state is left exactly as it was.
        """
        if self.finished or self._is_my_turn():
            raise LocalProtocolError("not this party's turn to read")
        work = copy.copy(self)
        work.symmetric = copy.copy(self.symmetric)
        work.psks = list(self.psks)
        sym = work.symmetric
        view = memoryview(message)
        pos = 0
        for token in self._messages[self.message_index]:
            if token == "e":
                if len(view) - pos < DHLEN:
                    raise RemoteProtocolError("message too short")
                work.re = bytes(view[pos : pos + DHLEN])
                pos += DHLEN
                sym.mix_hash(work.re)
                if self._psk_mode:
                    sym.mix_key(work.re)
            elif token == "s":
                size = DHLEN + (TAGLEN if sym.cipher.k is not None else 0)
                if len(view) - pos < size:
                    raise RemoteProtocolError("message too short")
                work.rs = sym.decrypt_and_hash(bytes(view[pos : pos + size]))
                pos += size
                if after_static is not None:
                    after_static(work.rs)
            elif token == "psk":
                sym.mix_key_and_hash(work._psk())
            else:
                sym.mix_key(work._dh(token))
        payload = sym.decrypt_and_hash(bytes(view[pos:]))
        work.message_index += 1
        # commit
        self.symmetric = work.symmetric
        self.re, self.rs, self.psks = work.re, work.rs, work.psks
        self.message_index = work.message_index
        return payload

    def split(self) -> tuple[CipherState, CipherState]:
        """The (initiator→responder, responder→initiator) cipher states (Noise §5.2)."""
        if not self.finished:
            raise LocalProtocolError("handshake not finished")
        return self.symmetric.split()
