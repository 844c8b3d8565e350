"""A TCP connection to the relay, directly or through an HTTP proxy's tunnel.

`CONNECT host:port` (RFC 9110 §9.3.6): any 2xx answer turns the connection
into a tunnel to the target; anything else is the proxy's refusal
(407: it wants credentials, which this client does not send; 403: it
forbids the target). The proxy's address comes from an argument or from
`HTTPS_PROXY` / `https_proxy` as ``http://host:port``.
"""

from __future__ import annotations

import asyncio
import os
import urllib.parse
from collections.abc import Mapping

from ..relayproto import MAX_HEAD
from .config import RelayClientError

_HEAD_END = b"\r\n\r\n"
_REASONS = {407: "the proxy wants authentication (407)", 403: "the proxy forbids it (403)"}


class ProxyError(RelayClientError):
    """The proxy refused the tunnel or did not speak HTTP; str() says which."""


def parse_proxy(url: str) -> tuple[str, int]:
    """(host, port) of ``http://host:port``; ProxyError for anything else."""
    parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    if (
        parts.scheme != "http"
        or not parts.hostname
        or parts.username
        or parts.path not in ("", "/")
    ):
        raise ProxyError(f"a proxy is http://host:port without credentials, not {url!r}")
    try:
        port = parts.port or 80
    except ValueError:
        raise ProxyError(f"a bad proxy port in {url!r}") from None
    return parts.hostname, port


def proxy_from_environment(env: Mapping[str, str] | None = None) -> tuple[str, int] | None:
    """The proxy `HTTPS_PROXY` (or `https_proxy`) names; None without one."""
    source = os.environ if env is None else env
    url = source.get("HTTPS_PROXY") or source.get("https_proxy")
    return parse_proxy(url) if url else None


def uri_host(host: str) -> str:
    """`host` as a URI writes it: an IPv6 literal in brackets (RFC 3986 §3.2.2)."""
    return f"[{host}]" if ":" in host else host


def _check_answer(head: bytes, target: str) -> None:
    try:
        status_line = head.split(b"\r\n", 1)[0].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyError("the proxy's answer is not HTTP") from None
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProxyError(f"the proxy's answer is not HTTP: {status_line[:80]!r}")
    status = int(parts[1])
    if not 200 <= status < 300:
        why = _REASONS.get(status, f"it answered {status}")
        raise ProxyError(f"the proxy refused CONNECT {target}: {why}")


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """An HTTP answer's head, its final empty line included (at most MAX_HEAD bytes)."""
    try:
        head = await reader.readuntil(_HEAD_END)
    except asyncio.IncompleteReadError:
        raise ProxyError("the proxy closed the connection before answering") from None
    except asyncio.LimitOverrunError:
        raise ProxyError("the proxy's answer head is too long") from None
    if len(head) > MAX_HEAD:
        raise ProxyError("the proxy's answer head is too long")
    return head


async def open_tcp(
    host: str, port: int, proxy: tuple[str, int] | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to `host`:`port`, through `proxy`'s CONNECT tunnel when given."""
    if proxy is None:
        return await asyncio.open_connection(host, port)
    reader, writer = await asyncio.open_connection(*proxy)
    try:
        target = f"{uri_host(host)}:{port}"  # RFC 9110 §9.3.6: authority-form
        writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode("ascii"))
        await writer.drain()
        _check_answer(await read_head(reader), target)
    except BaseException:
        writer.close()
        raise
    return reader, writer
