"""Events the Device reports through `Device.next_event()` (frozen dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass

from .keys import PublicKey


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of every event; `public_key` names the peer concerned."""

    public_key: PublicKey


@dataclass(frozen=True, slots=True)
class HandshakeCompleted(Event):
    """A new session is usable in both directions (whitepaper §6.1).

    For the initiator: on receiving the response. For the responder: on
    receiving the first transport packet on the new session.
    """

    initiator: bool
    at: float  # the `now` it happened at


@dataclass(frozen=True, slots=True)
class EndpointChanged(Event):
    """The peer's endpoint follows its latest authenticated packet (roaming, §2.1)."""

    endpoint: tuple[str, int]


@dataclass(frozen=True, slots=True)
class HandshakeTimedOut(Event):
    """No handshake completed within REKEY_ATTEMPT_TIME (90 s); staged packets dropped."""


@dataclass(frozen=True, slots=True)
class SessionsExpired(Event):
    """All key material of the peer was zeroed (no session for 3 × REJECT_AFTER_TIME)."""
