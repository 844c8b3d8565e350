"""Threads and sockets inside another network namespace, from this process.

A socket belongs to the network namespace of the thread that created it, for
its whole life. `run_in` calls a function on a short-lived thread that first
joins a namespace with setns(2) (CLONE_NEWNET switches only the calling
thread), so the caller's own threads never change namespace, and what the
function makes there (a socket, an event loop's connections) can then be
used from any thread. Python 3.11 has no os.setns, hence ctypes.

Two users: the lab (`pywg.lab`) reaches its hosts' namespaces by name
(`ip netns`), and the I/O shell (`pywg.asyncio.tun`) asks a TUN interface
that was moved to another namespace about its MTU, through a socket made in
that namespace (named by the fd TUNGETDEVNETNS gives).
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

CLONE_NEWNET: Final = 0x40000000  # linux/sched.h
NETNS_DIR: Final = "/var/run/netns"  # where `ip netns add` names namespaces
OWN_NAMESPACE: Final = "/proc/thread-self/ns/net"

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.setns.restype = ctypes.c_int


def namespace_id(ns_fd: int) -> int:
    """The inode that identifies a namespace (equal inodes: the same namespace)."""
    return os.fstat(ns_fd).st_ino


def own_namespace_id() -> int:
    return os.stat(OWN_NAMESPACE).st_ino


def _join(ns_fd: int, what: str) -> None:
    """Move the calling thread into the network namespace `ns_fd` refers to."""
    if _libc.setns(ns_fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns({what}): {os.strerror(err)}")


def run_in_fd(ns_fd: int, function: Callable[[], T], what: str = "namespace") -> T:
    """Call `function` on a new thread inside the namespace `ns_fd` refers to.

    Its result, or its exception raised here. The thread ends in the namespace
    it joined; it is never reused. OSError (EPERM) without CAP_SYS_ADMIN.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            _join(ns_fd, what)
            result.append(function())
        except BaseException as exc:  # handed to the caller's thread
            error.append(exc)

    thread = threading.Thread(target=body, name=f"netns-{what}", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    if not result:
        raise OSError("namespace thread ended without a result")
    return result[0]


def run_in(netns: str, function: Callable[[], T]) -> T:
    """Call `function` on a new thread inside the named namespace (`ip netns` name).

    Everything the function creates there (sockets, an event loop's
    connections: `run_in(ns, lambda: asyncio.run(main()))`) lives in that
    namespace.
    """
    fd = os.open(os.path.join(NETNS_DIR, netns), os.O_RDONLY | os.O_CLOEXEC)
    try:
        return run_in_fd(fd, function, netns)
    finally:
        os.close(fd)


def socket_in(netns: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A new socket created inside the named network namespace (`ip netns` name)."""
    return run_in(netns, lambda: socket.socket(family, kind, proto))
