"""The UAPI socket: /var/run/wireguard/IFACE.sock, serving `UapiSession`s.

The directory is created 0700 and the socket with umask 077, so only root can
connect (PROTOCOL-NOTES, the daemon contract). A stale socket (connection
refused) is removed; a live one means another daemon owns the interface.
`gone()` tells the daemon when its socket file was deleted or replaced, which
is how `wg-quick down` and admins stop a userspace daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
from typing import Final

from .tunnel import Tunnel

SOCKET_DIR: Final = "/var/run/wireguard"
MAX_CONNECTIONS: Final = 64
READ_SIZE: Final = 65536

log = logging.getLogger("pywg.uapi")


def socket_path(name: str, directory: str = SOCKET_DIR) -> str:
    return os.path.join(directory, f"{name}.sock")


class UapiServer:
    """Serve the UAPI of `tunnel` on its socket; `await start()`, then `close()`."""

    def __init__(self, tunnel: Tunnel, *, directory: str = SOCKET_DIR) -> None:
        self.tunnel = tunnel
        self.directory = directory
        self.path = socket_path(tunnel.name, directory)
        self._server: asyncio.AbstractServer | None = None
        self._inode: tuple[int, int] | None = None
        self._connections = 0

    async def start(self) -> None:
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
        sock.listen(16)
        sock.setblocking(False)
        self._server = await asyncio.start_unix_server(self._serve, sock=sock)

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

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._connections >= MAX_CONNECTIONS:
            writer.close()
            return
        self._connections += 1
        session = self.tunnel.uapi_session()
        try:
            while not session.closed and not self.tunnel.closed:
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                self.tunnel.refresh()  # `wg show` sees the plane's latest counters
                reply = session.feed(data)
                self.tunnel.changed()
                if reply:
                    writer.write(reply)
                    await writer.drain()
        except (ConnectionError, OSError) as exc:
            log.debug("UAPI connection ended: %s", exc)
        finally:
            self._connections -= 1
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


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
