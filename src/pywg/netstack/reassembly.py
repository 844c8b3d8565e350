"""The receive side's out-of-order queue (RFC 9293 §3.10.7.4) and its SACK blocks (RFC 2018).

Segments that arrive beyond RCV.NXT wait here, keyed by their (unwrapped) sequence number;
`ranges` is their union as sorted, merged [start, end) intervals, which is both what the
SACK option reports and how the queue knows when a hole has been filled. The caller trims
every segment to the receive window first, so the queue never holds more than one window.
"""

from __future__ import annotations

from .intervals import merge


class Reassembly:
    """Out-of-order data of one connection."""

    __slots__ = ("fin", "last", "ranges", "segments", "size")

    def __init__(self) -> None:
        self.segments: dict[int, bytes] = {}
        self.ranges: list[list[int]] = []
        self.size = 0
        self.last = 0  # start of the segment that arrived last: its block is reported first
        self.fin: int | None = None  # sequence number of a FIN that arrived out of order

    def __bool__(self) -> bool:
        return bool(self.segments)

    def add(self, seq: int, data: bytes) -> None:
        """Keep `data` (starting at `seq`, past RCV.NXT) until the hole before it fills."""
        held = self.segments.get(seq)
        if held is not None and len(held) >= len(data):
            self.last = seq
            return
        self.segments[seq] = data
        self.size += len(data) - (len(held) if held is not None else 0)
        self.last = seq
        merge(self.ranges, seq, seq + len(data))

    def pop_ready(self, rcv_nxt: int) -> list[bytes]:
        """The data that now continues the stream at `rcv_nxt`, in order, removed from the queue."""
        if not self.ranges or self.ranges[0][0] > rcv_nxt:
            return []
        end = self.ranges.pop(0)[1]
        taken = sorted((s, d) for s, d in self.segments.items() if s < end)
        out = []
        for start, data in taken:
            del self.segments[start]
            self.size -= len(data)
            if start + len(data) > rcv_nxt:
                piece = data[rcv_nxt - start :]
                out.append(piece)
                rcv_nxt += len(piece)
        return out

    def sack_blocks(self, limit: int) -> list[tuple[int, int]]:
        """Up to `limit` blocks, the one holding the latest arrival first (RFC 2018 §4)."""
        first = [r for r in self.ranges if r[0] <= self.last < r[1]]
        rest = [r for r in reversed(self.ranges) if r not in first]
        return [(r[0], r[1]) for r in (first + rest)[:limit]]
