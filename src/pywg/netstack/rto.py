"""The retransmission timeout (RFC 6298): SRTT, RTTVAR, exponential backoff.

Karn's rule (§3) is the caller's: it feeds `sample` only with segments sent once. The floor
defaults to 0.2 s as Linux uses rather than §2.4's 1 s: the stack runs over tunnels whose
round trips are short, and a spurious retransmission costs one segment.
"""

from __future__ import annotations

CLOCK_GRANULARITY = 0.001  # G of RFC 6298 §2
INITIAL_RTO = 1.0  # RFC 6298 §2.1
MAX_RTO = 60.0  # RFC 6298 §2.5


class RtoEstimator:
    """Smoothed round-trip time and the timeout derived from it."""

    __slots__ = ("_base", "backoffs", "rto_max", "rto_min", "rttvar", "srtt")

    def __init__(
        self, rto_min: float = 0.2, initial: float = INITIAL_RTO, rto_max: float = MAX_RTO
    ) -> None:
        self.rto_min = rto_min
        self.rto_max = rto_max
        self.srtt: float | None = None
        self.rttvar = 0.0
        self._base = initial
        self.backoffs = 0

    @property
    def rto(self) -> float:
        """The current timeout, backoff included."""
        return min(self._base * (1 << min(self.backoffs, 16)), self.rto_max)

    def sample(self, rtt: float) -> None:
        """Take one round-trip measurement (RFC 6298 §2.2, §2.3); clears the backoff."""
        rtt = max(rtt, 0.0)
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        base = self.srtt + max(CLOCK_GRANULARITY, 4 * self.rttvar)
        self._base = min(max(base, self.rto_min), self.rto_max)
        self.backoffs = 0

    def back_off(self) -> None:
        """Double the timeout after it expired (RFC 6298 §5.5)."""
        self.backoffs += 1

    def reset_backoff(self) -> None:
        """New data was acknowledged: the timeout returns to the estimate (RFC 6298 §5.7)."""
        self.backoffs = 0
