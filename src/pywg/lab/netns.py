"""Sockets inside a lab host's network namespace, from this process.

A socket belongs to the network namespace of the thread that created it, for
its whole life. `socket_in` creates one on a short-lived thread that first
joins the namespace with setns(2) (CLONE_NEWNET, which switches only the
calling thread), so the caller's own threads never leave the root
namespace, and the socket can then be used from any thread: the interop
suite's adversarial peer sends from a lab host this way without a
subprocess. Python 3.11 has no os.setns, hence ctypes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import threading
from collections.abc import Callable
from typing import Final, TypeVar

T = TypeVar("T")

CLONE_NEWNET: Final = 0x40000000
NETNS_DIR: Final = "/var/run/netns"

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.setns.restype = ctypes.c_int


def _join(netns: str) -> None:
    """Move the calling thread into the named network namespace."""
    fd = os.open(os.path.join(NETNS_DIR, netns), os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({netns}): {os.strerror(err)}")
    finally:
        os.close(fd)


def run_in(netns: str, function: Callable[[], T]) -> T:
    """Call `function` on a new thread inside the named namespace; its result or its exception.

    Everything the function creates there (sockets, an event loop's
    connections: `run_in(ns, lambda: asyncio.run(main()))`) lives in that
    namespace. The thread ends in the namespace it joined; it is never reused.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            _join(netns)
            result.append(function())
        except BaseException as exc:  # handed to the caller's thread
            error.append(exc)

    thread = threading.Thread(target=body, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    if not result:
        raise OSError("namespace thread ended without a result")
    return result[0]


def socket_in(netns: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A new socket created inside the named network namespace (`ip netns` name)."""
    return run_in(netns, lambda: socket.socket(family, kind, proto))
