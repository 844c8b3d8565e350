"""Log lines that fit the systemd journal, and the one place the commands set up logging.

Under systemd the service's stdout/stderr is a stream to journald, which
stamps every line itself and reads a ``<N>`` prefix (a syslog priority,
sd-daemon(3)) as the line's level. systemd.exec(5): JOURNAL_STREAM holds
``DEVICE:INODE`` of that stream; a process whose own output is that file
is talking to the journal (a child whose output was redirected is not, even
with the variable inherited). On the journal each line then goes without a
time stamp and with its priority; elsewhere the command's own format.
"""

from __future__ import annotations

import logging
import os
from typing import Final, TextIO

ENV_JOURNAL_STREAM: Final = "JOURNAL_STREAM"

# syslog(3) priorities (RFC 5424 §6.2.1) of Python's levels
LOG_CRIT: Final = 2
LOG_ERR: Final = 3
LOG_WARNING: Final = 4
LOG_INFO: Final = 6
LOG_DEBUG: Final = 7


def priority(levelno: int) -> int:
    """The syslog priority of a Python log level."""
    if levelno >= logging.CRITICAL:
        return LOG_CRIT
    if levelno >= logging.ERROR:
        return LOG_ERR
    if levelno >= logging.WARNING:
        return LOG_WARNING
    if levelno >= logging.INFO:
        return LOG_INFO
    return LOG_DEBUG


def is_journal(stream: TextIO) -> bool:
    """Whether `stream` is the journal stream JOURNAL_STREAM names (systemd.exec(5))."""
    device, sep, inode = os.environ.get(ENV_JOURNAL_STREAM, "").partition(":")
    if not sep or not (device.isdigit() and inode.isdigit()):
        return False
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError):  # no file descriptor behind it (a test's StringIO)
        return False
    return (info.st_dev, info.st_ino) == (int(device), int(inode))


class JournalFormatter(logging.Formatter):
    """`inner`'s text with the record's ``<N>`` priority before every line."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self._inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in self._inner.format(record).splitlines())


def handler(
    stream: TextIO, plain: logging.Formatter, journal: logging.Formatter
) -> logging.Handler:
    """A handler writing to `stream`: `plain` lines, or on the journal `journal`'s
    (which has no time stamp) with priorities."""
    made = logging.StreamHandler(stream)
    made.setFormatter(JournalFormatter(journal) if is_journal(stream) else plain)
    return made


def setup(
    stream: TextIO,
    level: int,
    plain: logging.Formatter,
    journal: logging.Formatter,
    logger: str = "pywg",
) -> None:
    """Send `logger` (pywg's loggers) to `stream` only, at `level` (see `handler`)."""
    root = logging.getLogger(logger)
    root.handlers[:] = [handler(stream, plain, journal)]
    root.propagate = False
    root.setLevel(level)
