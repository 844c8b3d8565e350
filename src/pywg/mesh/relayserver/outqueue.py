"""A TCP connection's outgoing queue: bounded in frames and in bytes, never blocking the sender.

A frame offered to a full queue is refused (the caller drops and counts it):
the relay forwards datagrams as a router does, and never buffers without
limit for a client that does not read (docs/relay.md, "The relay's queues").
"""

from __future__ import annotations

from collections import deque

from .limits import QueueLimits


class OutQueue:
    def __init__(self, limits: QueueLimits) -> None:
        self._frames: deque[bytes] = deque()
        self._limits = limits
        self.octets = 0

    def push(self, frame: bytes) -> bool:
        """Queue `frame` if there is room for it; False if not (nothing queued)."""
        if (
            len(self._frames) >= self._limits.datagrams
            or self.octets + len(frame) > self._limits.octets
        ):
            return False
        self._frames.append(frame)
        self.octets += len(frame)
        return True

    def pop(self) -> bytes:
        frame = self._frames.popleft()
        self.octets -= len(frame)
        return frame

    def clear(self) -> None:
        self._frames.clear()
        self.octets = 0

    def __len__(self) -> int:
        return len(self._frames)
