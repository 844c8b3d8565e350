"""The HTTP proxy: CONNECT tunnels (RFC 9110 §9.3.6) and plain http:// requests, via a `Network`.

A CONNECT to host:port opens a connection through the network (which
resolves the name) and, after "200", splices the two. A request with an
absolute http:// target (RFC 9112 §3.2.2) is sent on in origin-form with
the hop-by-hop fields removed (RFC 9110 §7.6.1) and `Connection: close`, and
the answer is passed back as it comes: one request per client connection,
which needs no parsing of bodies. With credentials, `Proxy-Authorization:
Basic` is required (RFC 9110 §11.7.1; 407 otherwise).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
from typing import Final

from .http_request import HttpError, RequestHead, parse_absolute, parse_authority, parse_head
from .limits import Limits
from .network import Network
from .serving import ClientServer
from .splice import splice

# RFC 9110 §7.6.1, and what a proxy client sends for the proxy only
HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate",
     "te", "trailer", "upgrade"}
)  # fmt: skip
_REALM: Final = 'Basic realm="pywg"'


async def read_head(reader: asyncio.StreamReader) -> RequestHead | None:
    """One request head (None: the client closed first); HttpError when too large or malformed."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise HttpError(400, "Bad Request") from None
        return None
    except asyncio.LimitOverrunError:
        raise HttpError(431, "Request Header Fields Too Large") from None
    return parse_head(head)


def origin_request(head: RequestHead, host: str, port: int, path: str) -> bytes:
    """The request for the origin server: origin-form, its Host, no hop-by-hop fields."""
    listed = {
        name.strip().lower() for name in (head.field("Connection") or "").split(",") if name.strip()
    }
    authority = _authority(host, port)
    lines = [f"{head.method} {path} HTTP/1.1", f"Host: {authority}"]
    for name, value in head.fields:
        lowered = name.lower()
        if lowered not in HOP_BY_HOP and lowered not in listed and lowered != "host":
            lines.append(f"{name}: {value}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _authority(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == 80 else f"{shown}:{port}"


def response(status: int, reason: str, *fields: str) -> bytes:
    """A short answer from the proxy itself, closing the connection."""
    lines = [f"HTTP/1.1 {status} {reason}", *fields, "Content-Length: 0", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


class HttpProxy(ClientServer):
    """An HTTP proxy on the kernel's side, reaching destinations through `network`."""

    name = "http-proxy"

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

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self.limits.handshake_timeout):
                head = await read_head(reader)
            if head is None:
                return
            if not self._authorized(head):
                writer.write(
                    response(407, "Proxy Authentication Required", f"Proxy-Authenticate: {_REALM}")
                )
                return
            if head.method == "CONNECT":
                host, port = parse_authority(head.target)
                await self._tunnel(host, port, reader, writer)
            else:
                host, port, path = parse_absolute(head.target)
                await self._forward(head, host, port, path, reader, writer)
        except HttpError as exc:
            writer.write(response(exc.status, exc.reason))
        except TimeoutError:
            writer.write(response(408, "Request Timeout"))

    def _authorized(self, head: RequestHead) -> bool:
        if self._credentials is None:
            return True
        scheme, _, token = (head.field("Proxy-Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, password = self._credentials
        return hmac.compare_digest(given, f"{user}:{password}".encode())

    async def _open(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            async with asyncio.timeout(self.limits.connect_timeout):
                return await self.network.open_connection(host, port)
        except TimeoutError:
            raise HttpError(504, "Gateway Timeout") from None
        except (OSError, ValueError):  # refused, unreachable, no such name (RFC 9110 §15.6.3)
            raise HttpError(502, "Bad Gateway") from None

    async def _tunnel(
        self, host: str, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        upstream = await self._open(host, port)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await splice((reader, writer), upstream)

    async def _forward(
        self,
        head: RequestHead,
        host: str,
        port: int,
        path: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        upstream = await self._open(host, port)
        upstream[1].write(origin_request(head, host, port, path))
        await splice((reader, writer), upstream)
