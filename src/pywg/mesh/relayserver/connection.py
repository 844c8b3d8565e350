"""One TCP connection of the relay protocol, either side: HTTP head, frames, the bounded queue.

`FramedConnection` is an asyncio protocol over a TLS transport that reads an
HTTP head (while `expect_head` is on), then frames (`relayproto.FrameDecoder`,
bounded), and answers PING once authenticated. Its subclasses say what the
head and the frames mean: the relay's accepted connections (`tcp`) and its
links dialed to other relays (`peers`).

Sending never blocks and never buffers without limit: a frame goes to the
transport while it takes more, else into the connection's `OutQueue`
(docs/relay.md, "The relay's queues"); the transport pauses us above
`Limits.write_high_water`. Frames for the transport are batched: they go
in one write (one TLS record run, one system call) at the loop's next turn,
or at once when the batch reaches BATCH_BYTES or would take the transport
past its high-water mark, so a burst of datagrams costs one write rather
than one each and the transport holds at most its high-water mark and one
frame. `sweep` closes a connection paused for longer
than `stall_timeout` (its peer does not read) or silent for `idle_timeout`,
and sends PING after `keepalive_interval` without sending.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import cast

from ..relayproto import (
    PING_SIZE,
    CloseReason,
    FrameDecoder,
    FrameType,
    HttpRefusal,
    RelayProtocolError,
    encode_frame,
    split_head,
)
from .limits import Limits, QueueLimits
from .outqueue import OutQueue

BATCH_BYTES = 64 << 10  # a batch of frames this long is written at once


@dataclass(eq=False)
class Shared:
    """What every connection of one relay shares."""

    loop: asyncio.AbstractEventLoop
    limits: Limits
    counters: Counter[str]
    connections: set[FramedConnection] = field(default_factory=set)


class FramedConnection(asyncio.Protocol):
    """See the module docstring; the hooks are `started`, `head_received`, `frame_received`,
    `ended`."""

    def __init__(self, shared: Shared, queue: QueueLimits) -> None:
        self._shared = shared
        self._limits = shared.limits
        self._counters = shared.counters
        self.transport: asyncio.Transport | None = None
        self._decoder = FrameDecoder()
        self._queue = OutQueue(queue)
        self._batch = bytearray()  # frames for the transport's next write
        self._batch_limit = BATCH_BYTES  # ... written at once when this long (`_batch_room`)
        self._flush_handle: asyncio.Handle | None = None
        self._head: bytearray | None = None
        self._paused_since: float | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self.closed = False
        self.authenticated = False
        self._finished = False
        self.last_received = self.last_sent = shared.loop.time()

    # -- hooks -------------------------------------------------------------------------------

    def started(self) -> None:
        """The transport is up (TLS done)."""

    def head_received(self, head: bytes) -> None:
        """The HTTP head (after `expect_head`), without its final empty line."""

    def head_refused(self, refusal: HttpRefusal) -> None:
        """The HTTP head is too long (`split_head`)."""
        self.abort()

    def frame_received(self, kind: int, payload: bytes) -> None:
        """A frame (PING and PONG are answered here once authenticated)."""

    def ended(self) -> None:
        """The connection is closing or gone (called once, at the first of the two)."""

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=self._limits.write_high_water)
        self.last_received = self.last_sent = self._shared.loop.time()
        self._shared.connections.add(self)
        self.started()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._finish()

    def _finish(self) -> None:
        if not self._finished:
            self._finished = True
            self._shared.connections.discard(self)
            self.disarm()
            self._queue.clear()
            self._drop_batch()
            self.ended()

    def data_received(self, data: bytes) -> None:
        self.last_received = self._shared.loop.time()
        if self.closed:
            return
        if self._head is not None:
            rest = self._take_head(data)
            if rest is None:
                return
            data = rest
        try:
            frames = self._decoder.feed(data)
        except RelayProtocolError:
            self._counters["closed_bad_frame"] += 1
            self.abort()
            return
        for kind, payload in frames:
            if self.closed:
                return
            if self.authenticated and kind in (FrameType.PING, FrameType.PONG):
                if kind == FrameType.PING and len(payload) == PING_SIZE:
                    self.send_frame(FrameType.PONG, payload)
                continue
            self.frame_received(kind, payload)

    def pause_writing(self) -> None:
        self._paused_since = self._shared.loop.time()

    def resume_writing(self) -> None:
        self._paused_since = None
        self._flush()
        while self._queue and self._paused_since is None and not self.closed:
            self._write(self._queue.pop())

    # -- the HTTP head -----------------------------------------------------------------------

    def expect_head(self) -> None:
        self._head = bytearray()

    def _take_head(self, data: bytes) -> bytes | None:
        """The bytes after the head once it is complete and handled, else None."""
        assert self._head is not None
        self._head += data
        try:
            split = split_head(self._head)
        except HttpRefusal as refusal:
            self._head = None
            self.head_refused(refusal)
            return None
        if split is None:
            return None
        self._head = None
        head, rest = split
        self.head_received(head)
        return None if self.closed else rest

    # -- sending -----------------------------------------------------------------------------

    def use_queue(self, limits: QueueLimits) -> None:
        """Bound the queue by `limits` from now on (before anything was queued)."""
        assert not self._queue
        self._queue = OutQueue(limits)

    def send_frame(self, kind: int, payload: bytes) -> bool:
        """Send or queue a frame; False (counted) if the queue is full or the connection closed."""
        if self.closed:
            return False
        if self._paused_since is None and not self._queue:
            if not self._batch:
                self._batch_limit = self._batch_room()
            self._batch += struct.pack("!BI", kind, len(payload))
            self._batch += payload
            if len(self._batch) >= self._batch_limit:
                self._flush()
            elif self._flush_handle is None:
                self._flush_handle = self._shared.loop.call_soon(self._flush)
            return True
        if self._queue.push(struct.pack("!BI", kind, len(payload)) + payload):
            return True
        self._counters["drop_queue_full"] += 1
        return False

    def _batch_room(self) -> int:
        """How long a batch may grow before it is written: BATCH_BYTES, or less so that the
        transport holds at most its high-water mark and one frame."""
        assert self.transport is not None
        room = self._limits.write_high_water - self.transport.get_write_buffer_size()
        return max(1, min(BATCH_BYTES, room))

    def write_raw(self, data: bytes) -> None:
        """Bytes outside the frames (the HTTP exchange), past the queue."""
        if not self.closed:
            self._flush()
            self._write(data)

    def _flush(self) -> None:
        """The batch to the transport, in one write."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._batch and not self.closed:
            batch, self._batch = self._batch, bytearray()  # the transport keeps it as it is
            self._write(batch)

    def _drop_batch(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._batch = bytearray()

    def _write(self, data: bytes | bytearray) -> None:
        assert self.transport is not None
        self.last_sent = self._shared.loop.time()
        self.transport.write(data)

    def queued(self) -> int:
        """Bytes waiting: the batch's, the queue's and the transport's."""
        buffered = 0 if self.transport is None else self.transport.get_write_buffer_size()
        return len(self._batch) + self._queue.octets + buffered

    # -- time --------------------------------------------------------------------------------

    def arm(self, when: float) -> None:
        """Abort at loop time `when` unless `disarm`ed first (the handshake deadline)."""
        self._deadline = self._shared.loop.call_at(when, self._deadline_passed)

    def disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        self._deadline = None
        if not self.closed:
            self._counters["closed_deadline"] += 1
            self.abort()

    def sweep(self, now: float) -> None:
        """Close a stalled or idle connection; keep a quiet one alive with a PING."""
        if self.closed:
            return
        if self._paused_since is not None and now - self._paused_since > self._limits.stall_timeout:
            self._counters["closed_stalled"] += 1
            self.abort()
        elif now - self.last_received > self._limits.idle_timeout:
            self._counters["closed_idle"] += 1
            self.abort()
        elif self.authenticated and now - self.last_sent >= self._limits.keepalive_interval:
            self.send_frame(FrameType.PING, os.urandom(PING_SIZE))

    # -- closing -----------------------------------------------------------------------------

    def close(self, reason: CloseReason | None = None, last: bytes = b"") -> None:
        """Send `last` (an HTTP answer) or CLOSE(reason), then close; abort if that lingers."""
        if self.closed or self.transport is None:
            return
        self._flush()
        self.closed = True
        transport = self.transport
        if reason is not None:
            self._counters[f"closed_{reason.name.lower()}"] += 1
            last += encode_frame(FrameType.CLOSE, bytes([reason]))
        if last:
            transport.write(last)
        transport.close()
        self._shared.loop.call_later(self._limits.close_linger, transport.abort)
        self._finish()

    def abort(self) -> None:
        """Close at once; what was sent before still goes to the transport, as far as it
        takes it."""
        if not self.closed:
            self._flush()
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        self._finish()
