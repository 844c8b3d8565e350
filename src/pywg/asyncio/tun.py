"""The Linux TUN device, opened with plain ioctls.

Why not python-pytun: it wraps the same TUNSETIFF ioctl but gives no access to
IFF_VNET_HDR / TUNSETOFFLOAD (which the native plane needs for TCP segmentation offload),
and its object owns the fd in blocking mode, while the event loop and the C
plane both want the raw non-blocking fd. The ioctls needed are few and stable
(linux/if_tun.h, linux/sockios.h), so they live here.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Final, TypeVar

from ..constants import DEFAULT_MTU, MAX_IP_PACKET_SIZE, VNET_HDR_LEN
from ..system import netns

_T = TypeVar("_T")

TUN_PATH: Final = "/dev/net/tun"
TUNSETIFF: Final = 0x400454CA  # _IOW('T', 202, int)
IFF_TUN: Final = 0x0001
IFF_NO_PI: Final = 0x1000
IFF_VNET_HDR: Final = 0x4000
TUNSETOFFLOAD: Final = 0x400454D0  # _IOW('T', 208, unsigned int)
TUNGETIFF: Final = 0x800454D2  # _IOR('T', 210, unsigned int)
TUNGETDEVNETNS: Final = 0x54E3  # _IO('T', 227), Linux 5.2+: an fd of the interface's namespace
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
IFF_TAP: Final = 0x0002
IFNAMSIZ: Final = 16
_NOT_IN_IFNAME: Final = "/: \t\n\v\f\r"  # the kernel's dev_valid_name: '/', ':', isspace()
SYSFS_NET: Final = "/sys/class/net"
# struct tun_pi (linux/if_tun.h): flags and EtherType before each packet of a TUN
# opened without IFF_NO_PI
PI_LEN: Final = 4
_PI_BY_VERSION: Final = {4: struct.pack("!HH", 0, 0x0800), 6: struct.pack("!HH", 0, 0x86DD)}


_EMPTY_VNET_HDR: Final = bytes(VNET_HDR_LEN)  # no GSO, checksum complete


class TunError(OSError):
    """The TUN device could not be created or configured; str() says why, in one line."""


def check_ifname(name: str) -> str:
    """Linux interface names (the kernel's dev_valid_name): 1-15 bytes, not '.' or '..',
    no '/', ':' or whitespace. A '%d' in it is a template the kernel fills in."""
    raw = name.encode("utf-8", "surrogateescape")
    if not 0 < len(raw) < IFNAMSIZ or name in (".", "..") or any(c in name for c in _NOT_IN_IFNAME):
        raise TunError(
            errno.EINVAL,
            f"invalid interface name {name!r}: 1-15 bytes, not '.' or '..', "
            "without '/', ':' or whitespace",
        )
    return name


def _ifreq(name: str, fmt: str = "", *values: int) -> bytes:
    body = struct.pack(fmt, *values) if fmt else b""
    return struct.pack("16s", name.encode()) + body.ljust(24, b"\0")


def _ioctl_sock(request: int, arg: bytes, sock: socket.socket | None) -> bytes:
    """An interface ioctl on `sock` (it names the namespace), or on a fresh socket in ours."""
    if sock is not None:
        answer: bytes = fcntl.ioctl(sock.fileno(), request, arg)
        return answer
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        result: bytes = fcntl.ioctl(s.fileno(), request, arg)
        return result


def set_mtu(name: str, mtu: int, sock: socket.socket | None = None) -> None:
    _ioctl_sock(SIOCSIFMTU, _ifreq(name, "i", mtu), sock)


def set_txqueuelen(name: str, length: int, sock: socket.socket | None = None) -> None:
    _ioctl_sock(SIOCSIFTXQLEN, _ifreq(name, "i", length), sock)


def set_up(name: str, sock: socket.socket | None = None) -> None:
    (flags,) = struct.unpack_from("H", _ioctl_sock(SIOCGIFFLAGS, _ifreq(name), sock), 16)
    _ioctl_sock(SIOCSIFFLAGS, _ifreq(name, "H", flags | IFF_UP), sock)


def get_mtu(name: str, sock: socket.socket | None = None) -> int:
    (mtu,) = struct.unpack_from("i", _ioctl_sock(SIOCGIFMTU, _ifreq(name), sock), 16)
    return int(mtu)


def fd_interface(fd: int) -> tuple[str, int]:
    """The current name and the flags of the interface a TUN fd is attached to (TUNGETIFF).

    The fd knows its interface in whatever namespace it now is, under whatever
    name. Once the interface is deleted (`ip link del`, anywhere) the kernel
    detaches the fd and this, like read and write on it, fails with EBADFD.
    """
    ifr = fcntl.ioctl(fd, TUNGETIFF, bytes(40))
    (flags,) = struct.unpack_from("H", ifr, IFNAMSIZ)
    return ifr[:IFNAMSIZ].rstrip(b"\0").decode(errors="surrogateescape"), int(flags)


def has_pi_header(name: str) -> bool:
    """Whether TUN `name` (in this namespace) puts a struct tun_pi before each packet.

    Its tun_flags in sysfs say (IFF_NO_PI clear); TUNGETIFF cannot, as it sets
    IFF_NOFILTER, the same bit, for every fd without a socket filter.
    Unreadable: False, as upstream wireguard-go assumes of a handed-over TUN.
    """
    try:
        with open(os.path.join(SYSFS_NET, name, "tun_flags"), encoding="ascii") as flags:
            return not int(flags.read().strip(), 16) & IFF_NO_PI
    except (OSError, ValueError):
        return False


def _open_tun() -> int:
    try:
        return os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise TunError(
            errno.ENOENT, f"{TUN_PATH} is missing: load the tun module (modprobe tun)"
        ) from None
    except PermissionError:
        raise TunError(errno.EPERM, f"cannot open {TUN_PATH}: run as root") from None


def _create_error(name: str, exc: OSError) -> TunError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    if exc.errno == errno.EPERM:
        reason += " (CAP_NET_ADMIN is needed: run as root)"
    elif exc.errno in (errno.EBUSY, errno.EINVAL):
        reason += " (is the name in use by another interface?)"
    return TunError(exc.errno, f"cannot create TUN {name!r}: {reason}")


class Tun:
    """A TUN interface (IFF_TUN | IFF_NO_PI): each read or write is one IP packet.

    The interface lives as long as the fd: `close()` (or process exit) removes it.
    The fd is non-blocking; `read()` returns None when nothing is waiting. The
    fd, not the name, identifies the interface: it may be renamed or moved to
    another network namespace (`ip link set NAME netns NS`) and this object
    still follows it (`alive()`, `current_mtu()`, `up()`).
    """

    def __init__(self, name: str, *, mtu: int = DEFAULT_MTU, offload: bool = False) -> None:
        """`offload`: IFF_VNET_HDR with TSO (for the native plane, which segments).

        Every read and write then carries a virtio_net_hdr; `write` adds an
        empty one. If the kernel refuses the offloads, the header stays and
        `tso` is False (the kernel then sends plain packets behind it).
        """
        check_ifname(name)
        fd = _open_tun()
        try:
            flags = IFF_TUN | IFF_NO_PI | (IFF_VNET_HDR if offload else 0)
            ifr = fcntl.ioctl(fd, TUNSETIFF, _ifreq(name, "H", flags))
            self._attach(fd, ifr[:IFNAMSIZ].rstrip(b"\0").decode(), offload)
            set_mtu(self.name, mtu)
            set_txqueuelen(self.name, TX_QUEUE_LEN)
        except OSError as exc:
            os.close(fd)
            raise _create_error(name, exc) from None
        self.mtu = mtu
        if offload:
            self._set_offload()

    @classmethod
    def from_fd(
        cls, fd: int, *, mtu: int = DEFAULT_MTU, vnet_reader: bool = False, offload: bool = False
    ) -> Tun:
        """Adopt an open, attached TUN fd (wireguard-go's WG_TUN_FD); the object owns it.

        The fd is made non-blocking and its interface, named by TUNGETIFF,
        gets MTU `mtu` as a created one does; where that is not permitted
        (a supervisor that dropped CAP_NET_ADMIN) it keeps the MTU it has.
        The interface must be IFF_TUN. Without IFF_NO_PI (Debian's
        wireguard-go 0.0.20220316 reads a handed-over TUN so) `pi` is True and
        read/write strip/add the struct tun_pi. With IFF_VNET_HDR it is taken
        only by a `vnet_reader` (the native plane), which then gets TSO if it
        asks for `offload` and the kernel grants it.
        """
        try:
            os.set_blocking(fd, False)
            name, flags = fd_interface(fd)
        except OSError as exc:
            raise TunError(exc.errno, f"fd {fd} is not an attached TUN: {exc.strerror}") from None
        if not flags & IFF_TUN or flags & IFF_TAP:
            raise TunError(errno.EINVAL, f"interface {name!r} (fd {fd}) is not an IFF_TUN")
        vnet, pi = bool(flags & IFF_VNET_HDR), has_pi_header(name)
        if vnet and (pi or not vnet_reader):
            reason = "without IFF_NO_PI" if pi else "needs the native plane"
            raise TunError(errno.EINVAL, f"TUN {name!r} (fd {fd}) has IFF_VNET_HDR {reason}")
        tun = cls.__new__(cls)
        tun._attach(fd, name, vnet)
        tun.pi = pi
        tun.mtu = mtu
        try:
            tun._ioctl(set_mtu, mtu)
            tun._ioctl(set_txqueuelen, TX_QUEUE_LEN)
        except OSError:
            with contextlib.suppress(OSError):
                tun.current_mtu()
        if vnet and offload:
            tun._set_offload()
        return tun

    def _attach(self, fd: int, name: str, vnet_hdr: bool) -> None:
        self.fd: int = fd
        self.name: str = name
        self.vnet_hdr = vnet_hdr
        self.pi = False  # a struct tun_pi before each packet (no IFF_NO_PI)
        self.tso = False
        self.mtu = DEFAULT_MTU

    def _set_offload(self) -> None:
        try:
            fcntl.ioctl(self.fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
            self.tso = True
        except OSError:
            self.tso = False  # an old kernel: plain packets, still behind the header

    def read(self) -> bytes | None:
        """One packet (only without offload: with it, the native plane reads)."""
        if self.vnet_hdr:
            raise TunError(errno.EINVAL, "an offloading TUN is read by the native plane")
        try:
            if self.pi:
                return os.read(self.fd, PI_LEN + MAX_IP_PACKET_SIZE)[PI_LEN:]
            return os.read(self.fd, MAX_IP_PACKET_SIZE)
        except BlockingIOError:
            return None

    def write(self, packet: bytes) -> bool:
        """Write one packet; False if it was dropped (TUN queue full, or refused)."""
        try:
            if self.vnet_hdr:
                os.write(self.fd, _EMPTY_VNET_HDR + packet)
            elif self.pi:
                header = _PI_BY_VERSION.get(packet[0] >> 4) if packet else None
                if header is None:
                    return False
                os.write(self.fd, header + packet)
            else:
                os.write(self.fd, packet)
        except OSError:  # EAGAIN; EINVAL for a packet the kernel will not take
            return False
        return True

    def alive(self) -> bool:
        """Whether the interface still exists, in whatever namespace: the fd tells.

        Deleting it anywhere detaches the fd (EBADFD); a name lookup would
        miss an interface moved to another namespace, or find a stranger.
        """
        if self.fd < 0:
            return False
        try:
            fd_interface(self.fd)
        except OSError as exc:
            return exc.errno not in (errno.EBADFD, errno.EBADF)
        return True

    def current_mtu(self) -> int:
        """The MTU as set now (wg-quick and users change it with `ip link`), wherever it is.

        In another namespace the kernel answers only a socket of that
        namespace: one is made there for the question (`netns`;
        CAP_SYS_ADMIN). Without TUNGETDEVNETNS (Linux < 5.2) the name is
        looked up in the daemon's own namespace. OSError when unreadable.
        """
        self.mtu = self._ioctl(get_mtu)
        return self.mtu

    def up(self) -> None:
        self._ioctl(set_up)

    def _ioctl(self, call: Callable[..., _T], *args: int) -> _T:
        """`call(name, *args, sock)` on the interface under its current name, in its namespace."""
        self.name, _ = fd_interface(self.fd)
        with self._namespace_socket() as sock:
            return call(self.name, *args, sock)

    @contextlib.contextmanager
    def _namespace_socket(self) -> Iterator[socket.socket | None]:
        """A socket in the interface's namespace, or None when that is the daemon's own.

        Made for each use and closed after it: a socket holds its namespace,
        and the interface must die with it when the container's namespace goes.
        """
        sock = self._socket_in_namespace()
        try:
            yield sock
        finally:
            if sock is not None:
                sock.close()

    def _socket_in_namespace(self) -> socket.socket | None:
        try:
            ns_fd = fcntl.ioctl(self.fd, TUNGETDEVNETNS)
        except OSError as exc:
            if exc.errno == errno.EBADFD:
                raise
            return None  # Linux < 5.2, or not permitted: look in our own namespace
        try:
            if netns.namespace_id(ns_fd) == netns.own_namespace_id():
                return None
            return netns.run_in_fd(
                ns_fd, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM), self.name
            )
        except FileNotFoundError:  # no /proc: our own namespace is the best guess
            return None
        finally:
            os.close(ns_fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __repr__(self) -> str:
        return f"<Tun {self.name} fd={self.fd} mtu={self.mtu}>"
