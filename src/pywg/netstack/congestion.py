"""NewReno congestion control (RFC 5681, RFC 6582) on a byte-counted window.

The connection reports acknowledgements, duplicates and timeouts; this says how large the
congestion window is and when to retransmit fast. Growth counts the bytes acknowledged
(RFC 3465) so that stretch ACKs grow the window as much as one ACK per segment would.
"""

from __future__ import annotations

DUP_THRESHOLD = 3  # RFC 5681 §3.2


class NewReno:
    """The congestion window of one connection."""

    __slots__ = ("cwnd", "dupacks", "in_recovery", "mss", "recover", "ssthresh")

    def __init__(self, mss: int, iss: int) -> None:
        self.mss = mss
        self.cwnd = min(4 * mss, max(2 * mss, 4380))  # RFC 5681 §3.1 (IW, RFC 3390)
        self.ssthresh = 1 << 30  # arbitrarily high (RFC 5681 §3.1)
        self.dupacks = 0
        self.in_recovery = False
        self.recover = iss  # RFC 6582 §3.2 step 1

    @property
    def send_window(self) -> int:
        """The window new data may use: cwnd, plus one segment for each of the first two
        duplicate ACKs outside recovery (Limited Transmit, RFC 3042 §2)."""
        if self.in_recovery or self.dupacks >= DUP_THRESHOLD:
            return self.cwnd
        return self.cwnd + self.dupacks * self.mss

    def on_ack(self, acked: int, ack: int, flight: int) -> bool:
        """New data acknowledged; True when a partial ACK asks for the next hole to be resent."""
        self.dupacks = 0
        if self.in_recovery:
            if ack >= self.recover:  # full acknowledgement (RFC 6582 §3.2 step 3)
                self.in_recovery = False
                self.cwnd = max(min(self.ssthresh, flight + self.mss), 2 * self.mss)
                return False
            # partial acknowledgement: deflate by what was acked, add back one MSS (step 4)
            self.cwnd = max(self.cwnd - acked + self.mss, self.mss)
            return True
        if self.cwnd < self.ssthresh:
            self.cwnd += acked  # slow start
        else:
            self.cwnd += max(1, self.mss * self.mss // self.cwnd) * max(1, acked // self.mss)
        return False

    def on_dupack(self, snd_una: int, snd_max: int, flight: int) -> bool:
        """A duplicate ACK; True when it is the one that triggers a fast retransmit."""
        self.dupacks += 1
        if self.in_recovery:
            self.cwnd += self.mss  # inflate for the segment that left (RFC 6582 §3.2 step 3)
            return False
        # `recover` is one past the highest sequence sent, so "ack covers more than
        # recover" (RFC 6582 §3.2 step 2) is snd_una >= recover here
        if self.dupacks != DUP_THRESHOLD or snd_una < self.recover:
            return False
        self.enter_recovery(snd_max, flight)
        return True

    def enter_recovery(self, snd_max: int, flight: int) -> None:
        """Halve the window and start fast recovery (RFC 6582 §3.2 step 2)."""
        self.recover = snd_max
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.ssthresh + DUP_THRESHOLD * self.mss
        self.in_recovery = True

    def on_timeout(self, flight: int, snd_max: int) -> None:
        """The retransmission timer expired: one segment's window (RFC 5681 §3.1, eq. 4)."""
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss
        self.in_recovery = False
        self.dupacks = 0
        self.recover = snd_max  # RFC 6582 §3.2 step 1 after a timeout
