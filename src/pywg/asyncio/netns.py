"""Sockets inside another network namespace, for ioctls on an interface that moved there.

A TUN interface can be moved to another namespace (`ip link set wg0 netns NS`,
the container setup of wireguard.com/netns) while the daemon and its fd stay
where they started. The fd still names the interface (TUNGETIFF) and its
namespace (TUNGETDEVNETNS, Linux 5.2+), but interface ioctls such as
SIOCGIFMTU look names up in the namespace of the socket they are made on. A
socket belongs to the namespace of the thread that created it (socket(7),
setns(2)), so one made by a short-lived thread that entered the interface's
namespace answers for the interface there, while every other thread stays in
the daemon's own namespace.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import threading
from typing import Final

CLONE_NEWNET: Final = 0x40000000  # linux/sched.h
OWN_NAMESPACE: Final = "/proc/thread-self/ns/net"


def namespace_id(ns_fd: int) -> int:
    """The inode that identifies a namespace (equal inodes: the same namespace)."""
    return os.fstat(ns_fd).st_ino


def own_namespace_id() -> int:
    return os.stat(OWN_NAMESPACE).st_ino


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns: {os.strerror(code)}")


def socket_in(ns_fd: int) -> socket.socket:
    """A UDP socket (for interface ioctls) created in the namespace `ns_fd` refers to.

    The creating thread enters that namespace and exits right after, so the
    caller's threads never change namespace. Raises OSError (EPERM without
    CAP_SYS_ADMIN).
    """
    made: list[socket.socket] = []
    failed: list[OSError] = []

    def worker() -> None:
        try:
            _setns(ns_fd)
            made.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        except OSError as exc:
            failed.append(exc)

    thread = threading.Thread(target=worker, name="pywg-netns", daemon=True)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]
