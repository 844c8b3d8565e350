"""Per-peer timers of whitepaper §6, as deadlines on the caller's clock.

The core never sleeps: each timer is an absolute deadline (or None) and the
Device asks `due(now)` which have expired. The hook methods are named after
the moment they must be called, as in the whitepaper:

- `data_sent`: after a transport packet with data was sent;
- `data_received`: after a transport packet with data was received;
- `any_authenticated_packet_sent` / `_received`: after any authenticated
  packet (handshake or transport, keepalive included) was sent / received;
- `any_authenticated_packet_traversal`: either direction (re-arms the
  persistent keepalive);
- `handshake_initiated`, `handshake_complete`, `session_derived`.
"""

from __future__ import annotations

from .constants import KEEPALIVE_TIMEOUT, REKEY_TIMEOUT, ZERO_KEY_MATERIAL_AFTER

RETRANSMIT_HANDSHAKE = "retransmit_handshake"
SEND_KEEPALIVE = "send_keepalive"
NEW_HANDSHAKE = "new_handshake"
ZERO_KEY_MATERIAL = "zero_key_material"
PERSISTENT_KEEPALIVE = "persistent_keepalive"
ALL_TIMERS = (
    RETRANSMIT_HANDSHAKE,
    SEND_KEEPALIVE,
    NEW_HANDSHAKE,
    ZERO_KEY_MATERIAL,
    PERSISTENT_KEEPALIVE,
)


class PeerTimers:
    __slots__ = (
        "deadlines",
        "handshake_attempts",
        "need_another_keepalive",
        "persistent_keepalive_interval",
        "sent_last_minute_handshake",
    )

    def __init__(self) -> None:
        self.deadlines: dict[str, float] = {}
        self.handshake_attempts = 0
        self.need_another_keepalive = False
        self.sent_last_minute_handshake = False
        self.persistent_keepalive_interval = 0

    # -- primitive operations ------------------------------------------------
    def pending(self, name: str) -> bool:
        return name in self.deadlines

    def arm(self, name: str, deadline: float) -> None:
        self.deadlines[name] = deadline

    def stop(self, name: str) -> None:
        self.deadlines.pop(name, None)

    def stop_all(self) -> None:
        self.deadlines.clear()

    def next_deadline(self) -> float | None:
        return min(self.deadlines.values()) if self.deadlines else None

    def due(self, now: float) -> list[str]:
        """Expired timers, removed from the pending set, in deadline order."""
        fired = sorted((t, n) for n, t in self.deadlines.items() if t <= now)
        for _, name in fired:
            del self.deadlines[name]
        return [name for _, name in fired]

    # -- hooks (whitepaper §6.2–§6.5) ----------------------------------------
    def data_sent(self, now: float, jitter: float) -> None:
        """No reply to our data within 15 s (+jitter): start a new handshake."""
        if not self.pending(NEW_HANDSHAKE):
            self.arm(NEW_HANDSHAKE, now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + jitter)

    def data_received(self, now: float) -> None:
        """Received data and nothing sent back within 10 s: send a keepalive (§6.5)."""
        if not self.pending(SEND_KEEPALIVE):
            self.arm(SEND_KEEPALIVE, now + KEEPALIVE_TIMEOUT)
        else:
            self.need_another_keepalive = True

    def keepalive_sent(self, now: float) -> None:
        """After the send-keepalive timer fired: data that came in meanwhile wants one more."""
        if self.need_another_keepalive:
            self.need_another_keepalive = False
            self.arm(SEND_KEEPALIVE, now + KEEPALIVE_TIMEOUT)

    def any_authenticated_packet_sent(self) -> None:
        self.stop(SEND_KEEPALIVE)

    def any_authenticated_packet_received(self) -> None:
        self.stop(NEW_HANDSHAKE)

    def any_authenticated_packet_traversal(self, now: float) -> None:
        if self.persistent_keepalive_interval > 0:
            self.arm(PERSISTENT_KEEPALIVE, now + self.persistent_keepalive_interval)

    def handshake_initiated(self, now: float, jitter: float) -> None:
        self.arm(RETRANSMIT_HANDSHAKE, now + REKEY_TIMEOUT + jitter)

    def handshake_complete(self) -> None:
        self.stop(RETRANSMIT_HANDSHAKE)
        self.handshake_attempts = 0

    def session_derived(self, now: float) -> None:
        self.sent_last_minute_handshake = False
        self.arm(ZERO_KEY_MATERIAL, now + ZERO_KEY_MATERIAL_AFTER)

    def __repr__(self) -> str:
        return f"<PeerTimers {self.deadlines}>"
