"""The relay's TLS layer (pywg.mesh.relayserver.tlsstream) in memory: bounded buffers, the
handshake's start and deadline, close_notify, abort, flow control.

A `TlsStream` runs over a fake raw transport that records what it is given;
the client is an `ssl.SSLObject` over memory BIOs with the dialer's context,
and the bytes between the two are moved by hand, in pieces as a socket
would hand them over.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pywg.mesh.relayserver import server_tls
from pywg.mesh.relayserver.tlsstream import (
    FEED_BYTES,
    READ_BYTES,
    WRITE_SLICE,
    ReadBuffer,
    TlsStream,
)
from pywg.mesh.tls import dialer_context, load_or_make

# what one slice of plaintext becomes: its records' headers and tags (RFC 8446 §5.2)
SLICE_CIPHERTEXT = WRITE_SLICE + 256 + 5


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    return server_tls(load_or_make(str(tmp_path_factory.mktemp("tls")), ["relay.test"])).context


class RawTransport(asyncio.Transport):
    """What the loop's TCP transport would be: records writes, closes on request."""

    def __init__(self, protocol: asyncio.BufferedProtocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.sent = bytearray()
        self.pieces: list[int] = []
        self.closed = self.aborted = False
        self.lost = False
        self.buffered = 0

    def write(self, data: Any) -> None:
        self.pieces.append(len(data))
        self.sent += data

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def close(self) -> None:
        self.closed = True
        self._lose()

    def abort(self) -> None:
        self.aborted = True
        self._lose()

    def _lose(self) -> None:
        if not self.lost:
            self.lost = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def take(self) -> bytes:
        data, self.sent = bytes(self.sent), bytearray()
        return data


class App(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.received = bytearray()
        self.events: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")


class Pair:
    """A `TlsStream` on a `RawTransport`, and a client speaking to it."""

    def __init__(self, context: ssl.SSLContext, deadline: float = 60.0) -> None:
        loop = asyncio.get_running_loop()
        self.app = App()
        self.failures: list[bool] = []
        self.stream = TlsStream(
            context,
            ReadBuffer(),
            loop.time() + deadline,
            lambda stream: self.app,
            lambda stream, timed_out: self.failures.append(timed_out),
        )
        self.raw = RawTransport(self.stream)
        self.stream.connection_made(self.raw)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.client = dialer_context().wrap_bio(self.incoming, self.outgoing)

    def to_server(self, data: bytes) -> None:
        """`data` into the stream as socket reads fill its buffer; the BIOs are empty after
        each read (unless it closed)."""
        view = memoryview(data)
        while view:
            buffer = self.stream.get_buffer(-1)
            n = min(len(buffer), len(view))
            buffer[:n] = view[:n]
            view = view[n:]
            self.stream.buffer_updated(n)
            assert self.stream.closing or self.stream.bio_pending == (0, 0)

    def flush_client(self) -> None:
        self.to_server(self.outgoing.read())

    def to_client(self) -> None:
        self.incoming.write(self.raw.take())

    def handshake(self) -> None:
        for _ in range(10):
            try:
                self.client.do_handshake()
            except ssl.SSLWantReadError:
                pass
            else:
                self.flush_client()
                return
            self.flush_client()
            self.to_client()
        raise AssertionError("no handshake")

    def client_read_all(self) -> bytes:
        self.to_client()
        out = bytearray()
        while True:
            try:
                out += self.client.read(1 << 16)
            except ssl.SSLWantReadError:
                return bytes(out)


def run(test: Callable[[], Any]) -> None:
    async def main() -> None:
        test()
        await asyncio.sleep(0)

    asyncio.run(main())


@pytest.fixture
def peaks(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The largest size each of a stream's BIOs reached: the incoming one is largest just
    before OpenSSL reads it, the outgoing one just after OpenSSL wrote to it."""
    seen: dict[str, Any] = {"stream": None, "incoming": 0, "outgoing": 0}
    real_read, real_write = ssl.SSLObject.read, ssl.SSLObject.write
    real_handshake = ssl.SSLObject.do_handshake

    def note(obj: ssl.SSLObject) -> None:
        stream = seen["stream"]
        if stream is not None and obj is stream._sslobj:
            incoming, outgoing = stream.bio_pending
            seen["incoming"] = max(seen["incoming"], incoming)
            seen["outgoing"] = max(seen["outgoing"], outgoing)

    def read(self: ssl.SSLObject, *args: Any) -> Any:
        note(self)
        return real_read(self, *args)

    def write(self: ssl.SSLObject, data: Any) -> int:
        written = real_write(self, data)
        note(self)
        return written

    def do_handshake(self: ssl.SSLObject) -> None:
        note(self)
        real_handshake(self)

    monkeypatch.setattr(ssl.SSLObject, "read", read)
    monkeypatch.setattr(ssl.SSLObject, "write", write)
    monkeypatch.setattr(ssl.SSLObject, "do_handshake", do_handshake)
    yield seen


def test_tls_up_hands_over_to_the_protocol_with_alpn_and_data_both_ways(
    context: ssl.SSLContext,
) -> None:
    def test() -> None:
        pair = Pair(context)
        pair.handshake()
        assert pair.app.events == ["made"]
        transport = pair.app.transport
        assert transport is not None
        ssl_object = transport.get_extra_info("ssl_object")
        assert isinstance(ssl_object, ssl.SSLObject)
        assert ssl_object.selected_alpn_protocol() == "http/1.1"
        assert transport.get_extra_info("sslcontext") is context
        pair.client.write(b"GET /pywg-relay HTTP/1.1\r\n")
        pair.flush_client()
        assert pair.app.received == b"GET /pywg-relay HTTP/1.1\r\n"
        transport.write(b"HTTP/1.1 101 Switching Protocols\r\n")
        assert pair.client_read_all() == b"HTTP/1.1 101 Switching Protocols\r\n"
        assert pair.failures == []

    run(test)


def test_a_burst_each_way_keeps_both_bios_within_a_record(
    context: ssl.SSLContext, peaks: dict[str, Any]
) -> None:
    burst = os.urandom(2 << 20)

    def test() -> None:
        pair = Pair(context)
        peaks["stream"] = pair.stream
        pair.handshake()
        for start in range(0, len(burst), 1 << 16):  # the client writes as fast as it can
            pair.client.write(burst[start : start + (1 << 16)])
        data = pair.outgoing.read()
        assert len(data) > 4 * READ_BYTES  # many reads, each a full buffer
        pair.to_server(data)
        assert pair.app.received == burst
        assert 0 < peaks["incoming"] <= FEED_BYTES
        assert pair.app.transport is not None
        pair.raw.pieces.clear()
        pair.app.transport.write(burst)
        assert 0 < peaks["outgoing"] <= SLICE_CIPHERTEXT
        assert max(pair.raw.pieces) <= SLICE_CIPHERTEXT
        assert pair.stream.bio_pending == (0, 0)
        assert pair.client_read_all() == burst

    run(test)


def test_no_tls_state_before_the_client_sends_and_the_deadline_aborts() -> None:
    context = dialer_context()  # never used: nothing arrives

    async def main() -> None:
        pair = Pair(context, deadline=0.05)
        assert pair.stream.transport is not None
        assert pair.stream.transport.get_extra_info("ssl_object") is None
        await asyncio.sleep(0.2)
        assert pair.raw.aborted and pair.failures == [True]
        assert pair.app.events == []

    asyncio.run(main())


def test_the_deadline_stops_at_the_handshake(context: ssl.SSLContext) -> None:
    async def main() -> None:
        pair = Pair(context, deadline=0.1)
        pair.handshake()
        await asyncio.sleep(0.3)
        assert not pair.raw.is_closing() and pair.failures == []

    asyncio.run(main())


def test_a_stalled_handshake_is_aborted_at_the_deadline(context: ssl.SSLContext) -> None:
    async def main() -> None:
        pair = Pair(context, deadline=0.1)
        with pytest.raises(ssl.SSLWantReadError):
            pair.client.do_handshake()
        pair.flush_client()  # a ClientHello, then nothing
        assert pair.raw.sent  # the server's flight
        await asyncio.sleep(0.3)
        assert pair.raw.aborted and pair.failures == [True]

    asyncio.run(main())


def test_not_tls_is_refused_and_reported(context: ssl.SSLContext) -> None:
    async def main() -> None:
        pair = Pair(context)
        pair.to_server(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert pair.raw.closed and not pair.raw.aborted  # after the alert, if any
        await asyncio.sleep(0)
        assert pair.failures == [False] and pair.app.events == []

    asyncio.run(main())


def test_a_connection_lost_before_tls_is_reported_once(context: ssl.SSLContext) -> None:
    async def main() -> None:
        pair = Pair(context)
        pair.stream.connection_lost(None)
        pair.stream.connection_lost(None)
        assert pair.failures == [False]

    asyncio.run(main())


def test_close_sends_close_notify_after_what_was_written(context: ssl.SSLContext) -> None:
    async def main() -> None:
        pair = Pair(context)
        pair.handshake()
        transport = pair.app.transport
        assert transport is not None
        transport.write(b"last words")
        transport.close()
        assert transport.is_closing() and pair.raw.closed and not pair.raw.aborted
        transport.write(b"after")  # dropped
        pair.to_client()
        assert pair.client.read(100) == b"last words"
        assert pair.client.read(100) == b""  # close_notify (CPython reads it as b"")
        await asyncio.sleep(0)
        assert pair.app.events == ["made", "lost"]

    asyncio.run(main())


def test_the_clients_close_notify_is_answered_and_closes(context: ssl.SSLContext) -> None:
    async def main() -> None:
        pair = Pair(context)
        pair.handshake()
        pair.client.write(b"bye")
        with pytest.raises(ssl.SSLWantReadError):
            pair.client.unwrap()
        pair.flush_client()
        assert pair.app.received == b"bye"
        assert pair.raw.closed
        pair.to_client()
        pair.client.unwrap()  # the relay's close_notify came

    asyncio.run(main())


def test_abort_sends_nothing_more(context: ssl.SSLContext) -> None:
    async def main() -> None:
        pair = Pair(context)
        pair.handshake()
        pair.raw.take()
        assert pair.app.transport is not None
        pair.app.transport.abort()
        assert pair.raw.aborted and pair.raw.take() == b""
        await asyncio.sleep(0)
        assert pair.app.events == ["made", "lost"]

    asyncio.run(main())


def test_flow_control_reaches_the_protocol(context: ssl.SSLContext) -> None:
    async def main() -> None:
        pair = Pair(context)
        pair.stream.pause_writing()  # during the handshake: told once it starts
        pair.handshake()
        pair.stream.resume_writing()
        assert pair.app.events == ["made", "pause", "resume"]
        assert pair.app.transport is not None
        pair.raw.buffered = 1234
        assert pair.app.transport.get_write_buffer_size() == 1234

    asyncio.run(main())
