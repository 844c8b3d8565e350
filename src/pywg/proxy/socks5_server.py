"""The SOCKS5 server (RFC 1928): CONNECT and UDP ASSOCIATE through a `Network`.

A client on this machine negotiates (no authentication, or RFC 1929's user
and password when the server has credentials), then asks to CONNECT to an
IPv4 or IPv6 address or a domain name, which the network resolves (inside
the mesh, for a tunnel's stack), or to associate for UDP
(`socks5_udp`). BIND is answered "command not supported". Every failure to
reach the destination gets the reply code that says why (§6).
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import socket
from collections.abc import Callable
from typing import TypeVar

from . import socks5
from .limits import Limits
from .network import Network
from .serving import ClientServer
from .socks5 import Need, Request, Socks5Error
from .socks5_udp import UdpRelay
from .splice import splice

_T = TypeVar("_T")

# errno of a failed connect -> the reply that names it (RFC 1928 §6)
_REPLY_BY_ERRNO = {
    errno.ECONNREFUSED: socks5.CONNECTION_REFUSED,
    errno.ENETUNREACH: socks5.NETWORK_UNREACHABLE,
    errno.EHOSTUNREACH: socks5.HOST_UNREACHABLE,
    errno.ETIMEDOUT: socks5.HOST_UNREACHABLE,
    errno.EACCES: socks5.NOT_ALLOWED,
    errno.EPERM: socks5.NOT_ALLOWED,
}


async def read_message(reader: asyncio.StreamReader, parse: Callable[[bytes], _T | Need]) -> _T:
    """Read one message exactly, as `parse` asks for it (never a byte past its end)."""
    data = b""
    while True:
        got = parse(data)
        if not isinstance(got, Need):
            return got
        data += await reader.readexactly(got.count)


def reply_for(exc: BaseException) -> int:
    """The reply code for a destination that could not be reached."""
    if isinstance(exc, socket.gaierror):
        return socks5.HOST_UNREACHABLE
    if isinstance(exc, TimeoutError):
        return socks5.HOST_UNREACHABLE
    if isinstance(exc, OSError) and exc.errno in _REPLY_BY_ERRNO:
        return _REPLY_BY_ERRNO[exc.errno]
    return socks5.GENERAL_FAILURE


def bound_address(writer: asyncio.StreamWriter) -> tuple[str, int]:
    """BND.ADDR and BND.PORT: the local end of a connection, or zeros when unknown."""
    name = writer.get_extra_info("sockname")
    if isinstance(name, tuple) and len(name) >= 2:
        return str(name[0]), int(name[1])
    return "0.0.0.0", 0


class Socks5Server(ClientServer):
    """SOCKS5 on the kernel's side, reaching destinations through `network`."""

    name = "socks5"

    def __init__(
        self,
        network: Network,
        *,
        credentials: tuple[str, str] | None = None,
        limits: Limits | None = None,
    ) -> None:
        super().__init__(limits)
        self.network = network
        self._credentials = credentials
        self.udp = UdpRelay(network, self.limits)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(self.limits.handshake_timeout):
            request = await self._negotiate(reader, writer)
        if request is None:
            return
        if request.command == socks5.CONNECT:
            await self._connect(request, reader, writer)
        elif request.command == socks5.UDP_ASSOCIATE:
            await self.udp.associate(request, reader, writer)
        else:
            await _answer(writer, socks5.COMMAND_NOT_SUPPORTED)

    async def _negotiate(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Request | None:
        """Method choice (§3), authentication, and the request (§4); None: refused."""
        methods = await read_message(reader, socks5.parse_greeting)
        method = socks5.USER_PASSWORD if self._credentials else socks5.NO_AUTH
        if method not in methods:
            writer.write(socks5.encode_method(socks5.NO_ACCEPTABLE))
            await writer.drain()
            return None
        writer.write(socks5.encode_method(method))
        if self._credentials and not await self._authenticate(reader, writer):
            return None
        try:
            return await read_message(reader, socks5.parse_request)
        except Socks5Error as exc:
            await _answer(writer, exc.reply)
            return None

    async def _authenticate(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """RFC 1929: the user and password, compared in constant time."""
        assert self._credentials is not None
        user, password = await read_message(reader, socks5.parse_user_password)
        want_user, want_password = (part.encode() for part in self._credentials)
        ok = hmac.compare_digest(user, want_user) & hmac.compare_digest(password, want_password)
        writer.write(socks5.encode_auth_status(socks5.AUTH_OK if ok else socks5.AUTH_FAILED))
        await writer.drain()
        return ok

    async def _connect(
        self, request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            async with asyncio.timeout(self.limits.connect_timeout):
                upstream = await self.network.open_connection(request.host, request.port)
        except (OSError, TimeoutError, ValueError) as exc:
            await _answer(writer, reply_for(exc))
            return
        writer.write(socks5.encode_reply(socks5.SUCCEEDED, *bound_address(upstream[1])))
        await splice((reader, writer), upstream)


async def _answer(writer: asyncio.StreamWriter, code: int) -> None:
    writer.write(socks5.encode_reply(code))
    await writer.drain()
