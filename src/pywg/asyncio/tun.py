"""The Linux TUN device, opened with plain ioctls.

Why not python-pytun: it wraps the same TUNSETIFF ioctl but gives no access to
IFF_VNET_HDR / TUNSETOFFLOAD (which the native plane needs for TCP segmentation offload),
and its object owns the fd in blocking mode, while the event loop and the C
plane both want the raw non-blocking fd. The ioctls needed are few and stable
(linux/if_tun.h, linux/sockios.h), so they live here.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
from typing import Final

from ..constants import DEFAULT_MTU, MAX_IP_PACKET_SIZE, VNET_HDR_LEN

TUN_PATH: Final = "/dev/net/tun"
TUNSETIFF: Final = 0x400454CA  # _IOW('T', 202, int)
IFF_TUN: Final = 0x0001
IFF_NO_PI: Final = 0x1000
IFF_VNET_HDR: Final = 0x4000
TUNSETOFFLOAD: Final = 0x400454D0  # _IOW('T', 208, unsigned int)
TUN_F_CSUM: Final = 0x01
TUN_F_TSO4: Final = 0x02
TUN_F_TSO6: Final = 0x04
SIOCGIFFLAGS: Final = 0x8913
SIOCSIFFLAGS: Final = 0x8914
SIOCGIFMTU: Final = 0x8921
SIOCSIFMTU: Final = 0x8922
SIOCSIFTXQLEN: Final = 0x8943
# The kernel queues packets for us in the TUN's tx queue and drops them when it
# is full (500 by default): a burst from a fast sender then costs TCP
# retransmits. A longer queue absorbs the bursts.
TX_QUEUE_LEN: Final = 8192
IFF_UP: Final = 0x1
IFNAMSIZ: Final = 16


_EMPTY_VNET_HDR: Final = bytes(VNET_HDR_LEN)  # no GSO, checksum complete


class TunError(OSError):
    """The TUN device could not be created or configured; str() says why, in one line."""


def check_ifname(name: str) -> str:
    """Linux interface names: 1-15 bytes, no '/', no whitespace, not '.' or '..'."""
    raw = name.encode("utf-8", "surrogateescape")
    if not 0 < len(raw) < IFNAMSIZ or name in (".", "..") or any(c in name for c in "/: \t\n"):
        raise TunError(errno.EINVAL, f"invalid interface name {name!r} (1-15 characters)")
    return name


def _ifreq(name: str, fmt: str = "", *values: int) -> bytes:
    body = struct.pack(fmt, *values) if fmt else b""
    return struct.pack("16s", name.encode()) + body.ljust(24, b"\0")


def _ioctl_sock(name: str, request: int, arg: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        result: bytes = fcntl.ioctl(s.fileno(), request, arg)
        return result


def get_mtu(name: str) -> int:
    (mtu,) = struct.unpack_from("i", _ioctl_sock(name, SIOCGIFMTU, _ifreq(name)), 16)
    return int(mtu)


def set_mtu(name: str, mtu: int) -> None:
    _ioctl_sock(name, SIOCSIFMTU, _ifreq(name, "i", mtu))


def set_txqueuelen(name: str, length: int) -> None:
    _ioctl_sock(name, SIOCSIFTXQLEN, _ifreq(name, "i", length))


def set_up(name: str) -> None:
    (flags,) = struct.unpack_from("H", _ioctl_sock(name, SIOCGIFFLAGS, _ifreq(name)), 16)
    _ioctl_sock(name, SIOCSIFFLAGS, _ifreq(name, "H", flags | IFF_UP))


def exists(name: str) -> bool:
    """Whether an interface of that name exists in this network namespace."""
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


class Tun:
    """A TUN interface (IFF_TUN | IFF_NO_PI): each read or write is one IP packet.

    The interface lives as long as the fd: `close()` (or process exit) removes it.
    The fd is non-blocking; `read()` returns None when nothing is waiting.
    """

    def __init__(self, name: str, *, mtu: int = DEFAULT_MTU, offload: bool = False) -> None:
        """`offload`: IFF_VNET_HDR with TSO (for the native plane, which segments).

        Every read and write then carries a virtio_net_hdr; `write` adds an
        empty one. If the kernel refuses the offloads, the header stays and
        `tso` is False (the kernel then sends plain packets behind it).
        """
        check_ifname(name)
        self.vnet_hdr = offload
        self.tso = False
        try:
            fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise TunError(
                errno.ENOENT, f"{TUN_PATH} is missing: load the tun module (modprobe tun)"
            ) from None
        except PermissionError:
            raise TunError(errno.EPERM, f"cannot open {TUN_PATH}: run as root") from None
        try:
            flags = IFF_TUN | IFF_NO_PI | (IFF_VNET_HDR if offload else 0)
            ifr = fcntl.ioctl(fd, TUNSETIFF, _ifreq(name, "H", flags))
            self.name: str = ifr[:IFNAMSIZ].rstrip(b"\0").decode()
            set_mtu(self.name, mtu)
            set_txqueuelen(self.name, TX_QUEUE_LEN)
        except OSError as exc:
            os.close(fd)
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            if exc.errno == errno.EPERM:
                reason += " (CAP_NET_ADMIN is needed: run as root)"
            elif exc.errno in (errno.EBUSY, errno.EINVAL):
                reason += " (is the name in use by another interface?)"
            raise TunError(exc.errno, f"cannot create TUN {name!r}: {reason}") from None
        self.fd: int = fd
        self.mtu = mtu
        if offload:
            try:
                fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
                self.tso = True
            except OSError:
                self.tso = False  # an old kernel: plain packets, still behind the header

    def read(self) -> bytes | None:
        """One packet (only without offload: with it, the native plane reads)."""
        if self.vnet_hdr:
            raise TunError(errno.EINVAL, "an offloading TUN is read by the native plane")
        try:
            return os.read(self.fd, MAX_IP_PACKET_SIZE)
        except BlockingIOError:
            return None

    def write(self, packet: bytes) -> bool:
        """Write one packet; False if it was dropped (TUN queue full, or refused)."""
        try:
            if self.vnet_hdr:
                os.write(self.fd, _EMPTY_VNET_HDR + packet)
            else:
                os.write(self.fd, packet)
        except OSError:  # EAGAIN; EINVAL for a packet the kernel will not take
            return False
        return True

    def current_mtu(self) -> int:
        """The MTU as set now (wg-quick and users change it with `ip link`)."""
        self.mtu = get_mtu(self.name)
        return self.mtu

    def up(self) -> None:
        set_up(self.name)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __repr__(self) -> str:
        return f"<Tun {self.name} fd={self.fd} mtu={self.mtu}>"
