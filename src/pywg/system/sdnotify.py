"""Readiness and status for systemd's service manager: sd_notify(3) without libsystemd.

A unit of ``Type=notify`` starts the command with NOTIFY_SOCKET naming an
AF_UNIX datagram socket; the service sends newline-separated assignments to
it: ``READY=1`` once it serves (systemd then counts the unit as started),
``STATUS=...`` (shown by ``systemctl status``), ``STOPPING=1`` when it begins
to shut down. A name starting with '@' is in the abstract namespace (the
'@' stands for a leading NUL byte). Without NOTIFY_SOCKET every call is a
no-op, so the commands call these unconditionally.

A process that starts children for other work (the coordinator's relay)
gives them `child_environment()`: they must not speak for the service.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Callable, Mapping
from typing import Final

ENV_NOTIFY_SOCKET: Final = "NOTIFY_SOCKET"


def _address(name: str) -> str | bytes:
    """The socket address of a NOTIFY_SOCKET value (sd_notify(3): '@' means abstract)."""
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    return name


def notify(*assignments: str) -> bool:
    """Send ``KEY=VALUE`` assignments to the service manager; False if there is none.

    A failure to send (the manager gone, a bad address) is not the service's
    problem: it is swallowed and reported as False, as sd_notify(3) returns < 0.
    """
    name = os.environ.get(ENV_NOTIFY_SOCKET, "")
    if not name or not (name.startswith(("/", "@"))):
        return False
    message = "\n".join(assignments).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message, _address(name))
    except OSError:
        return False
    return True


def ready(status: str | None = None) -> bool:
    """The service is up (``READY=1``), with an optional one-line status."""
    return notify("READY=1", *_status(status))


def stopping(status: str | None = None) -> bool:
    """The service begins to shut down (``STOPPING=1``)."""
    return notify("STOPPING=1", *_status(status))


def stop_on_signals(stop: Callable[[], None]) -> None:
    """On SIGINT and SIGTERM, tell the service manager the service stops, then `stop()`
    (on the running event loop)."""

    def on_signal() -> None:
        stopping()
        stop()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)


def status(text: str) -> bool:
    """A one-line status for ``systemctl status`` (``STATUS=...``)."""
    return notify(*_status(text))


def _status(text: str | None) -> list[str]:
    return [] if text is None else ["STATUS=" + " ".join(text.splitlines())]


def child_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`environ` (default: this process's) without NOTIFY_SOCKET, for a child process."""
    source = os.environ if environ is None else environ
    return {key: value for key, value in source.items() if key != ENV_NOTIFY_SOCKET}
