"""Client faults in the coordinator's log: one short line each, at a bounded rate, no traceback.

A server on the internet meets broken and hostile clients all the time: a
connection reset in the middle of a body, a request line of binary junk, a
chunked body that is not one. Each is the client's fault and worth at most
a line, and a client must not be able to fill the disk or the journal with
them: `FaultLog` writes one line of at most MAX_LINE characters (control
characters escaped, so a line cannot forge another) and at most `burst`
lines, then `rate` a second; the lines it dropped are counted in the next
one it writes.

`ServerLog` is the same for aiohttp's own server logger (``aiohttp.server``
logs a parse error as a traceback with the offending bytes in it): it is
given to the coordinator's AppRunner as its ``logger``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Final

from ..ratelimiter import TokenBucket

MAX_LINE: Final = 200  # characters of a fault's description
LINES_PER_SECOND: Final = 1.0
LINES_BURST: Final = 20


def brief(detail: object, limit: int = MAX_LINE) -> str:
    """`detail` (an exception: its type and message) on one line of at most `limit`
    characters, anything unprintable escaped."""
    if isinstance(detail, BaseException):
        message = str(detail)[: limit * 2]
        text = f"{type(detail).__name__}: {message}" if message else type(detail).__name__
    else:
        text = str(detail)[: limit * 2]
    escaped = "".join(c if c.isprintable() else f"\\x{ord(c) & 0xFF:02x}" for c in text)
    return escaped if len(escaped) <= limit else escaped[: limit - 3] + "..."


class FaultLog:
    """Brief, rate-limited lines about what clients did wrong (and the rare internal error)."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        rate: float = LINES_PER_SECOND,
        burst: float = LINES_BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self._clock = clock
        self._bucket = TokenBucket(rate, burst, burst, clock())
        self.suppressed = 0  # lines dropped since the last one written

    def _admit(self) -> str | None:
        """The note on lines dropped before this one, or None if this one is dropped too."""
        if not self._bucket.take(self._clock()):
            self.suppressed += 1
            return None
        note = f" ({self.suppressed} similar lines suppressed)" if self.suppressed else ""
        self.suppressed = 0
        return note

    def fault(self, what: str, peer: str | None, detail: object, level: int = logging.INFO) -> None:
        """One line: `what` a client (at `peer`, if known) did, and `detail` (an exception)."""
        if not self.logger.isEnabledFor(level):
            return
        note = self._admit()
        if note is not None:
            source = f" from {brief(peer, 64)}" if peer else ""
            self.logger.log(level, "%s%s: %s%s", what, source, brief(detail), note)

    def internal(self, what: str) -> None:
        """An error of the server's own, with its traceback (inside an ``except`` block)."""
        note = self._admit()
        if note is not None:
            self.logger.error("%s%s", brief(what), note, exc_info=True)


class ServerLog:
    """What aiohttp's request handler may call on its ``logger``, through a FaultLog:
    every message one brief line, never a traceback (the exception's type and message,
    shortened, instead)."""

    def __init__(self, faults: FaultLog) -> None:
        self.faults = faults

    def _line(self, level: int, msg: object, args: tuple[object, ...], exc: object) -> None:
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = str(msg)
        if exc is True:
            exc = sys.exc_info()[1]
        detail = exc if isinstance(exc, BaseException) else "no detail"
        self.faults.fault(brief(text, 80), None, detail, level)

    def debug(self, msg: object, *args: object, exc_info: object = None, **_: object) -> None:
        self._line(logging.DEBUG, msg, args, exc_info)

    def info(self, msg: object, *args: object, exc_info: object = None, **_: object) -> None:
        self._line(logging.INFO, msg, args, exc_info)

    def warning(self, msg: object, *args: object, exc_info: object = None, **_: object) -> None:
        self._line(logging.WARNING, msg, args, exc_info)

    def error(self, msg: object, *args: object, exc_info: object = None, **_: object) -> None:
        self._line(logging.INFO, msg, args, exc_info)  # a client's doing, not the server's

    def exception(self, msg: object, *args: object, exc_info: object = True, **_: object) -> None:
        self._line(logging.INFO, msg, args, exc_info)

    def isEnabledFor(self, level: int) -> bool:
        return self.faults.logger.isEnabledFor(level)
