"""One TCP/TLS session with the home relay (docs/relay.md, "The TCP transport").

`TcpSession.open` runs the client's side of the set-up: TCP (through a
proxy's CONNECT when given), TLS with the relay's host as SNI, the HTTP
upgrade, CHALLENGE (the relay key must be the expected one), HELLO signed
by the control key over the certificate's SHA-256 (the binding), and OK,
whose signature by the relay key authenticates the relay: it proves the
relay holds its key and saw the certificate this client saw, so no CA is
needed. A pinned certificate SHA-256, when given, is checked first.

`run` then carries DATAGRAM frames both ways. Outgoing, `send` appends
each frame to a batch that goes to the TLS stream in one write at the
loop's next turn (or at once when it reaches BATCH_BYTES): one TLS record
and one system call for a burst rather than one per datagram. What waits
(the batch and the stream's buffer) is bounded by QUEUE_BYTES; a datagram
beyond is dropped and counted (WireGuard retransmits what matters).
Incoming, a read takes whatever the stream has (up to READ_SIZE) and hands
every DATAGRAM in it to a callback. The session answers PINGs, sends a
PING when nothing was sent for the keepalive interval, and ends
(RelayClientError) when the relay closes, sends nothing for three
intervals, or breaks the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
from collections.abc import Callable
from typing import Final

from ..relayproto import (
    FRAME_HEADER_SIZE,
    PROTOCOL_VERSION,
    Challenge,
    CloseReason,
    Frame,
    FrameDecoder,
    FrameType,
    Hello,
    Ok,
    RelayProtocolError,
    certificate_binding,
    encode_frame,
    frame_header,
    message_id,
    node_hello,
    parse_close,
    parse_ping,
    parse_upgrade_response,
    upgrade_request,
)
from ..schema import HomeRelay
from ..tls import dialer_context
from .config import NodeIdentity, RelayClientError
from .proxy import open_tcp, read_head, uri_host

QUEUE_BYTES: Final = 512 << 10  # frames waiting for the TLS stream (the relay's node queue's)
BATCH_BYTES: Final = 64 << 10  # a batch this long is written at once
READ_SIZE: Final = 256 << 10


class RelayRefused(RelayClientError):
    """The relay sent CLOSE; `reason` is its CloseReason (or a later version's number)."""

    def __init__(self, reason: int) -> None:
        known = {r.value: r.name.lower() for r in CloseReason}
        name = known.get(reason, str(reason))
        super().__init__(f"the relay closed the connection: {name}")
        self.reason = reason


class _Frames:
    """Frames read from a stream, one at a time (`FrameDecoder` bounds each)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.decoder = FrameDecoder()
        self.pending: list[Frame] = []

    async def batch(self) -> list[Frame]:
        """The frames read but not taken yet, else those of the stream's next bytes."""
        while not self.pending:
            data = await self.reader.read(READ_SIZE)
            if not data:
                raise RelayClientError("the relay closed the connection")
            self.pending = self.decoder.feed(data)
        frames, self.pending = self.pending, []
        return frames

    async def next(self) -> Frame:
        if not self.pending:
            self.pending = await self.batch()
        return self.pending.pop(0)

    async def expect(self, kind: FrameType) -> bytes:
        frame = await self.next()
        if frame.kind == FrameType.CLOSE:
            raise RelayRefused(parse_close(frame.payload))
        if frame.kind != kind:
            raise RelayClientError(f"expected {kind.name}, got frame type {frame.kind}")
        return frame.payload


async def _tls(writer: asyncio.StreamWriter, relay: HomeRelay) -> bytes:
    """Start TLS; the binding (SHA-256 of the relay's certificate), checked against the pin."""
    await writer.start_tls(dialer_context(), server_hostname=relay.host)
    tls = writer.get_extra_info("ssl_object")
    der = tls.getpeercert(binary_form=True) if tls is not None else None
    if not der:
        raise RelayClientError("the relay presented no certificate")
    binding = certificate_binding(der)
    if relay.pin is not None and not hmac.compare_digest(binding, relay.pin):
        raise RelayClientError("the relay's certificate is not the pinned one")
    return binding


async def _upgrade(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
    writer.write(upgrade_request(uri_host(host)))  # the Host header, RFC 9110 §7.2
    head = await read_head(reader)
    parse_upgrade_response(head[: -len(b"\r\n\r\n")])


async def _authenticate(
    frames: _Frames, writer: asyncio.StreamWriter, node: NodeIdentity, relay: HomeRelay,
    binding: bytes,
) -> int:  # fmt: skip
    """CHALLENGE -> HELLO -> OK; the node id in the OK, whose signature is checked."""
    challenge = Challenge.parse(await frames.expect(FrameType.CHALLENGE))
    if challenge.version != PROTOCOL_VERSION:
        raise RelayClientError(f"the relay speaks version {challenge.version}")
    if not hmac.compare_digest(challenge.relay_key, relay.key):
        raise RelayClientError("the relay's CHALLENGE names another relay key")
    hello: Hello = node_hello(node.wireguard_key, node.control, challenge, binding)
    writer.write(encode_frame(FrameType.HELLO, hello.encode()))
    ok = Ok.parse(await frames.expect(FrameType.OK))
    if ok.node_id == 0 or not ok.verify(relay.key, hello):
        raise RelayClientError("the relay's OK is not signed by its relay key")
    return ok.node_id


class TcpSession:
    """An authenticated connection to the relay; make one with `open`."""

    def __init__(self, frames: _Frames, writer: asyncio.StreamWriter, node_id: int) -> None:
        self._frames = frames
        self._writer = writer
        self._transport = writer.transport
        self.node_id = node_id
        self._loop = asyncio.get_running_loop()
        self._batch = bytearray()  # DATAGRAM frames for the next write
        self._batched = 0  # datagrams in it
        self._flush_handle: asyncio.Handle | None = None
        self._last_sent = self._loop.time()
        self.sent = self.received = self.dropped = 0

    @classmethod
    async def open(
        cls, node: NodeIdentity, relay: HomeRelay, *, proxy: tuple[str, int] | None = None,
        timeout: float = 10.0,
    ) -> TcpSession:  # fmt: skip
        """Connect and authenticate within `timeout` seconds; RelayClientError (ProxyError,
        RelayRefused), OSError, ssl.SSLError or TimeoutError if it cannot."""
        async with asyncio.timeout(timeout):
            reader, writer = await open_tcp(relay.host, relay.tcp_port, proxy)
            try:
                binding = await _tls(writer, relay)
                await _upgrade(reader, writer, relay.host)
                frames = _Frames(reader)
                node_id = await _authenticate(frames, writer, node, relay, binding)
            except RelayProtocolError as exc:
                writer.close()
                raise RelayClientError(f"the relay broke the protocol: {exc}") from None
            except BaseException:
                writer.close()
                raise
        return cls(frames, writer, node_id)

    def send(self, message: bytes | bytearray | memoryview) -> bool:
        """Add a tagged message for the relay to the batch (copied: the caller may reuse its
        buffer); False (dropped, counted) if it is not a message the relay forwards or
        QUEUE_BYTES already wait."""
        if message_id(message) == 0:
            self.dropped += 1
            return False
        waiting = len(self._batch) + self._transport.get_write_buffer_size()
        if waiting + FRAME_HEADER_SIZE + len(message) > QUEUE_BYTES:
            self.dropped += 1
            return False
        self._batch += frame_header(FrameType.DATAGRAM, len(message))
        self._batch += message
        self._batched += 1
        if len(self._batch) >= BATCH_BYTES:
            self._flush()
        elif self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)
        return True

    def _flush(self) -> None:
        """The batch to the TLS stream, in one write."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._batch or self._transport.is_closing():
            return
        batch, self._batch = self._batch, bytearray()  # the transport keeps `batch` as it is
        self._transport.write(batch)
        self.sent += self._batched
        self._batched = 0
        self._last_sent = self._loop.time()

    async def run(self, deliver: Callable[[bytes], None], keepalive: float) -> None:
        """Carry frames until the connection ends; always raises RelayClientError (or the
        stream's OSError) saying why."""
        tasks = [
            asyncio.create_task(self._read(deliver, 3 * keepalive)),
            asyncio.create_task(self._keepalive(keepalive)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
            raise RelayClientError("the relay session ended")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read(self, deliver: Callable[[bytes], None], idle: float) -> None:
        while True:
            try:
                async with asyncio.timeout(idle):
                    frames = await self._frames.batch()
            except TimeoutError:
                raise RelayClientError(f"nothing from the relay for {idle:g} s") from None
            except RelayProtocolError as exc:
                raise RelayClientError(f"the relay broke the protocol: {exc}") from None
            for kind, payload in frames:
                if kind == FrameType.DATAGRAM:
                    self.received += 1
                    deliver(payload)
                elif kind == FrameType.PING:
                    self._writer.write(encode_frame(FrameType.PONG, parse_ping(payload)))
                elif kind == FrameType.CLOSE:
                    raise RelayRefused(parse_close(payload))
                # PONG and frames of later versions: skipped (docs/relay.md, "Frames")

    async def _keepalive(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.0, self._last_sent + interval - loop.time()))
            if loop.time() - self._last_sent >= interval:
                self._writer.write(encode_frame(FrameType.PING, os.urandom(8)))
                self._last_sent = loop.time()
                await self._writer.drain()

    def close(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        with contextlib.suppress(Exception):
            self._writer.close()
