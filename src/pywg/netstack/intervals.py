"""Sorted, merged [start, end) intervals of unwrapped sequence numbers.

Both ends of a TCP connection keep one such list: the receiver's out-of-order queue
(`reassembly`, the SACK blocks it reports) and the sender's scoreboard of what was
SACKed (`scoreboard`).
"""

from __future__ import annotations

import bisect


def merge(ranges: list[list[int]], start: int, end: int) -> None:
    """Add [start, end) to `ranges` (sorted, disjoint, not touching), merging in place."""
    i = bisect.bisect_left(ranges, [start, start])
    if i > 0 and ranges[i - 1][1] >= start:
        i -= 1
    j = i
    while j < len(ranges) and ranges[j][0] <= end:
        start, end = min(start, ranges[j][0]), max(end, ranges[j][1])
        j += 1
    ranges[i:j] = [[start, end]]
