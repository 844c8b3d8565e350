"""One TCP/TLS session with the home relay (docs/relay.md, "The TCP transport").

`TcpSession.open` runs the client's side of the set-up: TCP (through a
proxy's CONNECT when given), TLS with the relay's host as SNI, the HTTP
upgrade, CHALLENGE (the relay key must be the expected one), HELLO signed
by the control key over the certificate's SHA-256 (the binding), and OK,
whose signature by the relay key authenticates the relay: it proves the
relay holds its key and saw the certificate this client saw, so no CA is
needed. A pinned certificate SHA-256, when given, is checked first.

`run` then carries DATAGRAM frames both ways: outgoing through a bounded
queue (a datagram for a full queue is dropped and counted: WireGuard
retransmits what matters), incoming handed to a callback; it answers PINGs,
sends a PING when nothing was sent for the keepalive interval, and ends
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

QUEUE_DATAGRAMS: Final = 256  # outgoing datagrams waiting for the TLS stream (as the relay's)
READ_SIZE: Final = 65536


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

    async def next(self) -> Frame:
        while not self.pending:
            data = await self.reader.read(READ_SIZE)
            if not data:
                raise RelayClientError("the relay closed the connection")
            self.pending += self.decoder.feed(data)
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
        self.node_id = node_id
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_DATAGRAMS)
        self._last_sent = asyncio.get_running_loop().time()
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

    def send(self, message: bytes) -> bool:
        """Queue a tagged message for the relay; False (dropped, counted) if the queue is full
        or it is not a message the relay forwards."""
        if message_id(message) == 0:
            self.dropped += 1
            return False
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        return True

    async def run(self, deliver: Callable[[bytes], None], keepalive: float) -> None:
        """Carry frames until the connection ends; always raises RelayClientError (or the
        stream's OSError) saying why."""
        tasks = [
            asyncio.create_task(self._read(deliver, 3 * keepalive)),
            asyncio.create_task(self._write()),
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
                    kind, payload = await self._frames.next()
            except TimeoutError:
                raise RelayClientError(f"nothing from the relay for {idle:g} s") from None
            except RelayProtocolError as exc:
                raise RelayClientError(f"the relay broke the protocol: {exc}") from None
            if kind == FrameType.DATAGRAM:
                self.received += 1
                deliver(payload)
            elif kind == FrameType.PING:
                self._writer.write(encode_frame(FrameType.PONG, parse_ping(payload)))
            elif kind == FrameType.CLOSE:
                raise RelayRefused(parse_close(payload))
            # PONG and frames of later versions: skipped (docs/relay.md, "Frames")

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            message = await self._queue.get()
            self._writer.write(encode_frame(FrameType.DATAGRAM, message))
            self.sent += 1
            self._last_sent = loop.time()
            if self._queue.empty():
                await self._writer.drain()

    async def _keepalive(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.0, self._last_sent + interval - loop.time()))
            if loop.time() - self._last_sent >= interval:
                self._writer.write(encode_frame(FrameType.PING, os.urandom(8)))
                self._last_sent = loop.time()
                await self._writer.drain()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
