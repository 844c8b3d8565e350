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
from typing import Final

CLONE_NEWNET: Final = 0x40000000
NETNS_DIR: Final = "/var/run/netns"

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.setns.restype = ctypes.c_int


def socket_in(netns: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A new socket created inside the named network namespace (`ip netns` name)."""
    result: list[socket.socket | BaseException] = []

    def create() -> None:
        try:
            fd = os.open(os.path.join(NETNS_DIR, netns), os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({netns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(socket.socket(family, kind, proto))
        except BaseException as exc:  # handed to the caller's thread
            result.append(exc)

    # The thread ends in the namespace it joined; it is never reused.
    thread = threading.Thread(target=create, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    got = result[0] if result else OSError("socket thread ended without a result")
    if isinstance(got, BaseException):
        raise got
    return got
