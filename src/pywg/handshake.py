"""WireGuard's instantiation of Noise_IKpsk2 (whitepaper §5.4.2–§5.4.4).

Message 1 is the Noise message ``e, es, s, ss`` with the TAI64N timestamp as
payload; message 2 is ``e, ee, se, psk`` with an empty payload. The prologue
is the IDENTIFIER. These functions build and read the Noise part of the
messages (mac1/mac2 are added by `pywg.cookie`); the ephemeral key, sender
index and timestamp are parameters so the real Linux capture regenerates
bit-exactly.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from .constants import CONSTRUCTION, IDENTIFIER, KEY_SIZE, TIMESTAMP_SIZE
from .exceptions import RemoteProtocolError
from .messages import (
    Initiation,
    Response,
    serialize_initiation,
    serialize_response,
)
from .noise import CipherState, DhKeyPair, HandshakeState, SymmetricState

PATTERN = "IKpsk2"
_ZERO_PSK = bytes(KEY_SIZE)
assert b"Noise_" + PATTERN.encode() + b"_25519_ChaChaPoly_BLAKE2s" == CONSTRUCTION


@lru_cache(maxsize=4096)
def _initial_state(responder_static: bytes) -> SymmetricState:
    """ck, h after the prologue and the ``<- s`` pre-message: Ci, Hi of §5.4.2."""
    sym = SymmetricState.initialize(CONSTRUCTION)
    sym.mix_hash(IDENTIFIER)
    sym.mix_hash(responder_static)
    return sym


@dataclass(frozen=True, slots=True)
class InitiationCreated:
    """What the initiator keeps after writing message 1."""

    state: HandshakeState
    message: bytes  # 148 bytes, mac1/mac2 still zero


def create_initiation(
    local_static: DhKeyPair,
    remote_static: bytes,
    sender_index: int,
    timestamp: bytes,
    *,
    ephemeral: DhKeyPair | None = None,
    rng: Callable[[int], bytes] = os.urandom,
) -> InitiationCreated:
    """Message 1 (whitepaper §5.4.2) without its MACs."""
    state = HandshakeState(
        PATTERN,
        True,
        s=local_static,
        e=ephemeral,
        rs=remote_static,
        rng=rng,
        symmetric=_initial_state(remote_static),
    )
    body = state.write_message(timestamp)
    msg = Initiation(
        sender=sender_index,
        ephemeral=body[:32],
        encrypted_static=body[32:80],
        encrypted_timestamp=body[80:108],
    )
    return InitiationCreated(state, serialize_initiation(msg))


@dataclass(frozen=True, slots=True)
class InitiationConsumed:
    """What the responder learns from message 1: who, when, and the state to answer with."""

    state: HandshakeState
    remote_static: bytes
    timestamp: bytes
    sender_index: int


def consume_initiation(local_static: DhKeyPair, msg: Initiation) -> InitiationConsumed:
    """Read message 1 as responder. Raises RemoteProtocolError if it does not decrypt."""
    state = HandshakeState(
        PATTERN,
        False,
        s=local_static,
        symmetric=_initial_state(local_static.public),
    )
    payload = state.read_message(msg.ephemeral + msg.encrypted_static + msg.encrypted_timestamp)
    if len(payload) != TIMESTAMP_SIZE or state.rs is None:
        raise RemoteProtocolError("bad initiation payload")
    return InitiationConsumed(state, state.rs, payload, msg.sender)


def create_response(
    consumed: InitiationConsumed,
    sender_index: int,
    preshared_key: bytes | None,
    *,
    ephemeral: DhKeyPair | None = None,
    rng: Callable[[int], bytes] = os.urandom,
) -> tuple[bytes, CipherState, CipherState]:
    """Message 2 (whitepaper §5.4.3) without MACs, and the (send, receive) transport keys."""
    state = consumed.state
    state.e = ephemeral
    state.rng = rng
    state.psks = [preshared_key or _ZERO_PSK]
    body = state.write_message(b"")
    msg = Response(
        sender=sender_index,
        receiver=consumed.sender_index,
        ephemeral=body[:32],
        encrypted_nothing=body[32:48],
    )
    initiator_to_responder, responder_to_initiator = state.split()
    return serialize_response(msg), responder_to_initiator, initiator_to_responder


def consume_response(
    state: HandshakeState, msg: Response, preshared_key: bytes | None
) -> tuple[CipherState, CipherState]:
    """Read message 2 as initiator; returns the (send, receive) transport keys.

    Raises RemoteProtocolError (state unchanged) if it does not authenticate.
    """
    state.psks = [preshared_key or _ZERO_PSK]
    payload = state.read_message(msg.ephemeral + msg.encrypted_nothing)
    if payload:
        raise RemoteProtocolError("response payload must be empty")
    initiator_to_responder, responder_to_initiator = state.split()
    return initiator_to_responder, responder_to_initiator


__all__ = [
    "InitiationConsumed",
    "InitiationCreated",
    "consume_initiation",
    "consume_response",
    "create_initiation",
    "create_response",
]
