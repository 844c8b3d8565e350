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

import enum

from .constants import KEEPALIVE_TIMEOUT, REKEY_TIMEOUT, ZERO_KEY_MATERIAL_AFTER


class Timer(enum.Enum):
    """The five per-peer timers (whitepaper §6); the Device has one handler for each.

    The values name them in reprs and break ties between equal deadlines
    (`PeerTimers.due` runs those in the order of the values).
    """

    #: No response to our initiation within REKEY_TIMEOUT (+jitter): send
    #: another, or give up after MAX_TIMER_HANDSHAKES attempts (§6.4).
    RETRANSMIT_HANDSHAKE = "retransmit_handshake"
    #: Data arrived and we sent nothing back for KEEPALIVE_TIMEOUT: send a
    #: keepalive so the peer knows the session works (§6.5).
    SEND_KEEPALIVE = "send_keepalive"
    #: We sent data and heard nothing for KEEPALIVE_TIMEOUT + REKEY_TIMEOUT:
    #: start a new handshake (§6.5).
    NEW_HANDSHAKE = "new_handshake"
    #: No new session for ZERO_KEY_MATERIAL_AFTER (3 × REJECT_AFTER_TIME):
    #: erase every session and the handshake in progress (§6.3).
    ZERO_KEY_MATERIAL = "zero_key_material"
    #: The persistent-keepalive interval passed without an authenticated packet
    #: in either direction: send a keepalive (§6.5, wg(8) PersistentKeepalive).
    PERSISTENT_KEEPALIVE = "persistent_keepalive"


class PeerTimers:
    __slots__ = (
        "deadlines",
        "handshake_attempts",
        "need_another_keepalive",
        "persistent_keepalive_interval",
        "sent_last_minute_handshake",
    )

    def __init__(self) -> None:
        self.deadlines: dict[Timer, float] = {}
        self.handshake_attempts = 0
        self.need_another_keepalive = False
        self.sent_last_minute_handshake = False
        self.persistent_keepalive_interval = 0

    # -- primitive operations ------------------------------------------------
    def pending(self, timer: Timer) -> bool:
        return timer in self.deadlines

    def arm(self, timer: Timer, deadline: float) -> None:
        self.deadlines[timer] = deadline

    def stop(self, timer: Timer) -> None:
        self.deadlines.pop(timer, None)

    def stop_all(self) -> None:
        self.deadlines.clear()

    def next_deadline(self) -> float | None:
        return min(self.deadlines.values()) if self.deadlines else None

    def due(self, now: float) -> list[Timer]:
        """Expired timers, removed from the pending set, in deadline order."""
        fired = sorted(
            (timer for timer, deadline in self.deadlines.items() if deadline <= now),
            key=lambda timer: (self.deadlines[timer], timer.value),
        )
        for timer in fired:
            del self.deadlines[timer]
        return fired

    # -- hooks (whitepaper §6.2–§6.5) ----------------------------------------
    def data_sent(self, now: float, jitter: float) -> None:
        """No reply to our data within 15 s (+jitter): start a new handshake."""
        if not self.pending(Timer.NEW_HANDSHAKE):
            self.arm(Timer.NEW_HANDSHAKE, now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + jitter)

    def data_received(self, now: float) -> None:
        """Received data and nothing sent back within 10 s: send a keepalive (§6.5)."""
        if not self.pending(Timer.SEND_KEEPALIVE):
            self.arm(Timer.SEND_KEEPALIVE, now + KEEPALIVE_TIMEOUT)
        else:
            self.need_another_keepalive = True

    def keepalive_sent(self, now: float) -> None:
        """After the send-keepalive timer fired: data that came in meanwhile wants one more."""
        if self.need_another_keepalive:
            self.need_another_keepalive = False
            self.arm(Timer.SEND_KEEPALIVE, now + KEEPALIVE_TIMEOUT)

    def any_authenticated_packet_sent(self) -> None:
        self.stop(Timer.SEND_KEEPALIVE)

    def any_authenticated_packet_received(self) -> None:
        self.stop(Timer.NEW_HANDSHAKE)

    def any_authenticated_packet_traversal(self, now: float) -> None:
        if self.persistent_keepalive_interval > 0:
            self.arm(Timer.PERSISTENT_KEEPALIVE, now + self.persistent_keepalive_interval)

    def handshake_initiated(self, now: float, jitter: float) -> None:
        self.arm(Timer.RETRANSMIT_HANDSHAKE, now + REKEY_TIMEOUT + jitter)

    def handshake_complete(self) -> None:
        self.stop(Timer.RETRANSMIT_HANDSHAKE)
        self.handshake_attempts = 0

    def session_derived(self, now: float) -> None:
        self.sent_last_minute_handshake = False
        self.arm(Timer.ZERO_KEY_MATERIAL, now + ZERO_KEY_MATERIAL_AFTER)

    def __repr__(self) -> str:
        return f"<PeerTimers {self.deadlines}>"
