"""The server side of TLS over a plain TCP transport, with every buffer bounded per connection.

`TlsStream` is the protocol of an accepted socket's transport and, once TLS
is up, the transport (`TlsTransport`) of the protocol above it. It runs
OpenSSL through `ssl.SSLContext.wrap_bio` and two `ssl.MemoryBIO`s, so what
each connection holds is OpenSSL's own state plus two memory BIOs, and a
memory BIO keeps the largest size it ever held (OpenSSL's BUF_MEM never
shrinks):

- reading, the socket is read into a `ReadBuffer` shared by every
  connection of the listener (it is emptied before the next read); the
  incoming BIO is fed `FEED_BYTES` at a time and `SSLObject.read` drained
  after each slice, which leaves the BIO empty (OpenSSL takes a partial
  record into its own record buffer), so it never holds more than a slice;
- writing, a write is encrypted `WRITE_SLICE` bytes at a time and the
  outgoing BIO emptied into the transport after each slice; the transport's
  buffer is bounded by the protocol above, which the transport's flow
  control (`pause_writing`, `resume_writing`) reaches as it is.

The handshake starts with the client's first bytes: a connection that
sends nothing costs no OpenSSL state. It must end by `deadline` (loop
time), else the connection is aborted. Closing sends close_notify
(RFC 8446 §6.1) after what was written.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from typing import Any, Final, cast

# TLS's largest record: 2^14 bytes of plaintext and, encrypted, at most 2048 more plus the
# 5-byte header (RFC 5246 §6.2.3; RFC 8446 §5.2 allows 256 more).
RECORD_PLAINTEXT: Final = 1 << 14
FEED_BYTES: Final = RECORD_PLAINTEXT + 2048 + 5  # fed to the incoming BIO at once, at most
WRITE_SLICE: Final = RECORD_PLAINTEXT  # plaintext encrypted at once: one full record
READ_BYTES: Final = 64 << 10  # one socket read (into the listener's shared buffer)


class ReadBuffer:
    """The buffer every `TlsStream` of one event loop reads its socket into."""

    def __init__(self, size: int = READ_BYTES) -> None:
        self.view = memoryview(bytearray(size))


class TlsStream(asyncio.BufferedProtocol):
    """See the module docstring. `app(stream)` makes the protocol above once TLS is up;
    `failed(stream, timed_out)` is told once if the connection ends before that (`timed_out`:
    at the deadline). Once the connection is lost the stream holds nothing of it."""

    def __init__(
        self,
        context: ssl.SSLContext,
        buffer: ReadBuffer,
        deadline: float,
        app: Callable[[TlsStream], asyncio.BaseProtocol],
        failed: Callable[[TlsStream, bool], None],
    ) -> None:
        self._context = context
        self._buffer = buffer
        self._deadline_at = deadline
        self._make_app: Callable[[TlsStream], asyncio.BaseProtocol] | None = app
        self._failed: Callable[[TlsStream, bool], None] | None = failed
        self._raw: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._sslobj: ssl.SSLObject | None = None
        self._secure = False
        self._app: asyncio.Protocol | None = None
        self._write_paused = False
        self.closing = False
        self.transport: TlsTransport | None = TlsTransport(self)

    # -- the raw transport's protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._raw = cast(asyncio.Transport, transport)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(self._deadline_at, self._deadline_passed)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer.view

    def buffer_updated(self, nbytes: int) -> None:
        if self.closing:
            return
        if self._sslobj is None:
            self._sslobj = self._context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        received: list[bytes] = []
        view = self._buffer.view
        for start in range(0, nbytes, FEED_BYTES):
            self._incoming.write(view[start : min(nbytes, start + FEED_BYTES)])
            if not self._pump(received):
                break
        if received and self._app is not None:  # what came before a close_notify or an error
            self._app.data_received(b"".join(received))

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self._disarm()
        app, self._app = self._app, None
        if app is not None:
            app.connection_lost(exc)
        else:
            self._fail(timed_out=False)
        # OpenSSL's state and the references back to this stream go now, not at a collection
        self._sslobj = self._raw = self.transport = self._make_app = None

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._app is not None:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._app is not None:
            self._app.resume_writing()

    # -- TLS ---------------------------------------------------------------------------------

    def _pump(self, received: list[bytes]) -> bool:
        """The handshake, then what the incoming BIO decrypts to (into `received`); the
        incoming BIO is empty after. False if the connection is closing."""
        sslobj = self._sslobj
        assert sslobj is not None
        try:
            if not self._secure:
                sslobj.do_handshake()
                self._secure_now()
            while not self.closing:
                data = sslobj.read(RECORD_PLAINTEXT)
                if not data:  # the client's close_notify (CPython reads it as b"")
                    raise ssl.SSLZeroReturnError
                received.append(data)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            self._flush_outgoing()
            self.close()  # ours in answer (RFC 8446 §6.1)
            return False
        except ssl.SSLError:
            self._flush_outgoing()  # an alert, if OpenSSL made one
            self._abort(graceful=not self._secure)  # a refused handshake's alert goes out
            return False
        self._flush_outgoing()
        return not self.closing

    def _secure_now(self) -> None:
        """The handshake is done: the protocol above starts."""
        self._secure = True
        self._disarm()
        self._failed = None
        self._flush_outgoing()  # the handshake's last flight before anything of the app's
        make_app, self._make_app = self._make_app, None
        assert make_app is not None and self.transport is not None
        app = self._app = cast(asyncio.Protocol, make_app(self))
        app.connection_made(self.transport)
        if self._write_paused and not self.closing:
            app.pause_writing()

    def _flush_outgoing(self) -> None:
        if self._outgoing.pending and self._raw is not None:
            self._raw.write(self._outgoing.read())

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt `data` a record at a time and hand it to the raw transport."""
        sslobj = self._sslobj
        if self.closing or sslobj is None or not self._secure or self._raw is None:
            return
        pieces = []
        try:
            with memoryview(data) as view:
                for start in range(0, len(view), WRITE_SLICE):
                    sslobj.write(view[start : start + WRITE_SLICE])
                    pieces.append(self._outgoing.read())
        except ssl.SSLError:
            self.abort()
            return
        self._raw.writelines(pieces)

    def close(self) -> None:
        """close_notify after what was written, then the raw transport closes."""
        if self.closing:
            return
        self.closing = True
        if self._sslobj is not None and self._secure:
            with contextlib.suppress(ssl.SSLError):  # SSLWantReadError: the peer's is not awaited
                self._sslobj.unwrap()
            self._flush_outgoing()
        if self._raw is not None:
            self._raw.close()

    def abort(self) -> None:
        self._abort(graceful=False)

    def _abort(self, graceful: bool) -> None:
        """Close at once, without close_notify (`graceful`: after what the raw transport
        holds)."""
        self.closing = True
        if self._raw is not None:
            if graceful:
                self._raw.close()
            else:
                self._raw.abort()

    # -- the deadline ------------------------------------------------------------------------

    def _deadline_passed(self) -> None:
        self._timer = None
        if not self._secure:
            self._fail(timed_out=True)
            self.abort()

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fail(self, timed_out: bool) -> None:
        failed, self._failed = self._failed, None
        if failed is not None:
            failed(self, timed_out)

    # -- for the transport above -------------------------------------------------------------

    def extra(self, name: str, default: Any) -> Any:
        sslobj = self._sslobj
        if name == "ssl_object":
            return sslobj
        if name == "sslcontext":
            return self._context
        if sslobj is not None and name == "peercert":
            return sslobj.getpeercert()
        if sslobj is not None and name == "cipher":
            return sslobj.cipher()
        return default if self._raw is None else self._raw.get_extra_info(name, default)

    @property
    def raw(self) -> asyncio.Transport | None:
        return self._raw

    @property
    def bio_pending(self) -> tuple[int, int]:
        """Bytes in the incoming and the outgoing BIO now."""
        return self._incoming.pending, self._outgoing.pending


class TlsTransport(asyncio.Transport):
    """The transport the protocol above a `TlsStream` writes to."""

    def __init__(self, stream: TlsStream) -> None:
        super().__init__()
        self._stream = stream

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._stream.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self._stream.write(b"".join(list_of_data))

    def close(self) -> None:
        self._stream.close()

    def abort(self) -> None:
        self._stream.abort()

    def is_closing(self) -> bool:
        return self._stream.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._stream.extra(name, default)

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        raw = self._stream.raw
        return 0 if raw is None else raw.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        raw = self._stream.raw
        return (0, 0) if raw is None else raw.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        raw = self._stream.raw
        if raw is not None:
            raw.set_write_buffer_limits(high, low)

    def pause_reading(self) -> None:
        raw = self._stream.raw
        if raw is not None:
            raw.pause_reading()

    def resume_reading(self) -> None:
        raw = self._stream.raw
        if raw is not None:
            raw.resume_reading()

    def is_reading(self) -> bool:
        raw = self._stream.raw
        return raw is not None and raw.is_reading()
