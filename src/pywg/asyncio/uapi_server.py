"""The UAPI socket: /var/run/wireguard/IFACE.sock, serving `UapiSession`s.

The directory is created 0700 and the socket with umask 077, so only root can
connect, as wireguard-go does. A stale socket (connection
refused) is removed; a live one means another daemon owns the interface.
`gone()` tells the daemon when its socket file was deleted or replaced, which
is how `wg-quick down` and admins stop a userspace daemon.

A supervisor may instead hand over a socket it bound and made listen itself
(wireguard-go's WG_UAPI_FD): `UapiServer(tunnel, sock=...)` serves that one,
and watches the file it is bound to, wherever that is.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import socket
import stat
import time
from typing import Final

from .tunnel import Tunnel

SOCKET_DIR: Final = "/var/run/wireguard"
# Connections served at once. At the cap a new client evicts the one idle
# longest, so clients that connect and sit there never lock `wg` out.
MAX_CONNECTIONS: Final = 512
IDLE_TIMEOUT: Final = 120.0  # seconds without a byte from the client: closed
# Seconds a reply may wait for the client to read the next WRITE_SIZE bytes of
# it: a slow client that keeps reading gets a get reply of many MB in full.
WRITE_TIMEOUT: Final = 30.0
READ_SIZE: Final = 65536
WRITE_SIZE: Final = 65536

log = logging.getLogger("pywg.uapi")


def socket_path(name: str, directory: str = SOCKET_DIR) -> str:
    return os.path.join(directory, f"{name}.sock")


class UapiServer:
    """Serve the UAPI of `tunnel` on its socket; `await start()`, then `close()`."""

    def __init__(
        self, tunnel: Tunnel, *, directory: str = SOCKET_DIR, sock: socket.socket | None = None
    ) -> None:
        """`sock`: a listening AF_UNIX stream socket to serve instead of binding one."""
        self.tunnel = tunnel
        self.directory = directory
        self.path = socket_path(tunnel.name, directory)
        self._handed_over = sock
        self._server: asyncio.AbstractServer | None = None
        self._inode: tuple[int, int] | None = None
        # open connections -> monotonic time of their last activity
        self._open: dict[asyncio.StreamWriter, float] = {}

    async def start(self) -> None:
        _ensure_fd_room(MAX_CONNECTIONS + 256)
        sock = self._bind() if self._handed_over is None else self._adopt(self._handed_over)
        sock.setblocking(False)
        self._server = await asyncio.start_unix_server(self._serve, sock=sock)

    def _adopt(self, sock: socket.socket) -> socket.socket:
        """Check a handed-over socket; its bound path is the file `gone()` watches."""
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise OSError(errno.ENOTSOCK, "not an AF_UNIX stream socket")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise OSError(errno.EINVAL, "the socket is not listening")
        bound = sock.getsockname()
        if not isinstance(bound, str) or not bound or bound.startswith("\0"):
            raise OSError(errno.EINVAL, "the socket is not bound to a file")
        self.path = os.path.abspath(bound)
        st = os.stat(self.path)
        self._inode = (st.st_dev, st.st_ino)
        return sock

    def _bind(self) -> socket.socket:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        os.chmod(self.directory, 0o700)
        _remove_stale(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o077)
        try:
            sock.bind(self.path)
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old_umask)
        st = os.stat(self.path)
        self._inode = (st.st_dev, st.st_ino)
        sock.listen(128)
        return sock

    def gone(self) -> bool:
        """Whether our socket file was deleted or replaced."""
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self._inode

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._inode is not None and not self.gone():
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        self._inode = None

    @property
    def connections(self) -> int:
        return len(self._open)

    def _admit(self, writer: asyncio.StreamWriter) -> None:
        if len(self._open) >= MAX_CONNECTIONS:
            idlest = min(self._open, key=self._open.__getitem__)
            log.debug("UAPI: %d connections open, closing the one idle longest", len(self._open))
            del self._open[idlest]
            idlest.close()
        self._open[writer] = time.monotonic()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._admit(writer)
        session = self.tunnel.uapi_session()
        try:
            while not session.closed and not self.tunnel.closed and writer in self._open:
                try:
                    data = await asyncio.wait_for(reader.read(READ_SIZE), IDLE_TIMEOUT)
                except TimeoutError:
                    log.debug("UAPI connection idle for %.0f s, closed", IDLE_TIMEOUT)
                    break
                if not data or writer not in self._open:
                    break
                self._open[writer] = time.monotonic()
                self.tunnel.refresh()  # `wg show` sees the plane's latest counters
                session.push(data)
                # One request at a time, each reply written out before the next
                # is made: a client pipelining requests it never reads stalls
                # on its own full socket instead of growing our memory.
                while (reply := session.next_reply()) is not None:
                    self.tunnel.changed()
                    await self._write(writer, reply)
                    await asyncio.sleep(0)  # let other clients and the tunnel run
        except TimeoutError:
            log.debug("UAPI client did not read its reply for %.0f s, closed", WRITE_TIMEOUT)
        except (ConnectionError, OSError) as exc:
            log.debug("UAPI connection ended: %s", exc)
        finally:
            self._open.pop(writer, None)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _write(self, writer: asyncio.StreamWriter, reply: bytes) -> None:
        """Write `reply` WRITE_SIZE bytes at a time, each waiting for the client to read
        (back-pressure); TimeoutError if it stops reading for WRITE_TIMEOUT."""
        view = memoryview(reply)
        for start in range(0, len(view), WRITE_SIZE):
            writer.write(view[start : start + WRITE_SIZE])
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
            if writer not in self._open:
                return  # evicted meanwhile (see _admit): it is closed already
            self._open[writer] = time.monotonic()


def _ensure_fd_room(wanted: int) -> None:
    """Raise the soft open-files limit to `wanted` if the hard limit allows (1024 is common)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _remove_stale(path: str) -> None:
    """Remove a socket nobody listens on; refuse if a daemon answers on it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # stale: its daemon is gone
        return
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"{path} is in use by a running daemon")
