"""The send side's SACK scoreboard (RFC 2018, RFC 6675 §3): what the receiver holds above SND.UNA.

Blocks are kept as sorted, merged [start, end) intervals of unwrapped sequence numbers.
During fast recovery the connection resends the holes between them, lowest first, instead
of one segment per round trip as plain NewReno would.
"""

from __future__ import annotations

from .intervals import merge


class Scoreboard:
    """SACKed ranges of one connection's send sequence space."""

    __slots__ = ("ranges",)

    def __init__(self) -> None:
        self.ranges: list[list[int]] = []

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def clear(self) -> None:
        """Forget all blocks (after a timeout: RFC 2018 §8, the receiver may renege)."""
        self.ranges.clear()

    def add(self, start: int, end: int, snd_una: int, snd_max: int) -> None:
        """Record one block, ignoring what is below SND.UNA or beyond what was sent."""
        start, end = max(start, snd_una), min(end, snd_max)
        if start >= end:
            return
        merge(self.ranges, start, end)

    def advance(self, snd_una: int) -> None:
        """Drop what the cumulative ACK now covers."""
        ranges = self.ranges
        while ranges and ranges[0][1] <= snd_una:
            ranges.pop(0)
        if ranges and ranges[0][0] < snd_una:
            ranges[0][0] = snd_una

    @property
    def high(self) -> int | None:
        """One past the highest SACKed byte, None without blocks."""
        return self.ranges[-1][1] if self.ranges else None

    def sacked_bytes(self) -> int:
        """How many bytes above SND.UNA the receiver reported holding."""
        return sum(end - start for start, end in self.ranges)

    def sacked_below(self, seq: int) -> int:
        """How many SACKed bytes lie below `seq`."""
        return sum(min(end, seq) - start for start, end in self.ranges if start < seq)

    def next_hole(self, seq: int) -> tuple[int, int] | None:
        """The first un-SACKed range at or after `seq` below the highest SACKed byte."""
        for start, end in self.ranges:
            if seq < start:
                return seq, start
            if seq < end:
                seq = end
        return None
