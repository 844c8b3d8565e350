"""HTTP/1.1 request heads for the proxy (RFC 9112 §2-§5, RFC 9110 §7.1), sans-IO.

`parse_head` takes a head as read up to its empty line and returns the
method, target, version and fields, or raises `HttpError` with the status to
answer. It is strict where leniency has made request smuggling (RFC 9112
§11.2): no whitespace before a field's colon, no line folding, no control
characters, one Content-Length. The targets a proxy sees are the
authority-form of CONNECT (RFC 9110 §9.3.6) and the absolute-form of a
plain request (RFC 9112 §3.2.2), each turned into a host and a port here.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

MAX_FIELDS: Final = 100
# RFC 9110 §5.6.2: token = 1*tchar
_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# a field value (RFC 9110 §5.5): visible ASCII, SP, HTAB, obs-text; never CR, LF or NUL
_VALUE: Final = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_TARGET: Final = re.compile(rb"[\x21-\x7e]+")
_VERSION: Final = re.compile(rb"HTTP/1\.[01]")
_HOST: Final = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=%-]+")


class HttpError(ValueError):
    """A request the proxy refuses; `status` and `reason` make the answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: str
    target: str
    version: str
    fields: tuple[tuple[str, str], ...]  # (name as sent, value without surrounding whitespace)

    def field(self, name: str) -> str | None:
        """The value of field `name` (case-insensitive), the first if repeated."""
        wanted = name.lower()
        return next((value for key, value in self.fields if key.lower() == wanted), None)


def parse_head(head: bytes) -> RequestHead:
    """A request line and its fields, up to and including the empty line (CRLF CRLF)."""
    if not head.endswith(b"\r\n\r\n"):
        raise HttpError(400, "Bad Request")
    lines = head[:-4].lstrip(b"\r\n").split(b"\r\n")  # §2.2: empty lines before it are ignored
    method, target, version = _request_line(lines[0])
    if len(lines) - 1 > MAX_FIELDS:
        raise HttpError(431, "Request Header Fields Too Large")
    fields = tuple(_field(line) for line in lines[1:])
    lengths = {value for name, value in fields if name.lower() == "content-length"}
    if len(lengths) > 1 or any(not value.isdigit() for value in lengths):
        raise HttpError(400, "Bad Request")  # RFC 9112 §6.3: an invalid Content-Length
    return RequestHead(method, target, version, fields)


def _request_line(line: bytes) -> tuple[str, str, str]:
    """method SP request-target SP HTTP-version (RFC 9112 §3)."""
    parts = line.split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not _TARGET.fullmatch(parts[1]):
        raise HttpError(400, "Bad Request")
    if not _VERSION.fullmatch(parts[2]):
        raise HttpError(505, "HTTP Version Not Supported")
    return parts[0].decode("ascii"), parts[1].decode("ascii"), parts[2].decode("ascii")


def _field(line: bytes) -> tuple[str, str]:
    """field-name ":" OWS field-value OWS (RFC 9112 §5)."""
    name, colon, value = line.partition(b":")
    if not colon or not _TOKEN.fullmatch(name):  # also refuses folding and space before ':'
        raise HttpError(400, "Bad Request")
    value = value.strip(b" \t")
    if not _VALUE.fullmatch(value):
        raise HttpError(400, "Bad Request")
    return name.decode("ascii"), value.decode("latin-1")


def parse_authority(authority: str, default_port: int | None = None) -> tuple[str, int]:
    """host ":" port (RFC 9110 §9.3.6; RFC 3986 §3.2.2), an IPv6 address in brackets."""
    if authority.startswith("["):
        end = authority.find("]")
        host, rest = authority[1:end], authority[end + 1 :]
        if end < 0 or not _is_ipv6(host) or (rest and not rest.startswith(":")):
            raise HttpError(400, "Bad Request")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_found = authority.rpartition(":")
        if not colon:
            host, port_text_found = authority, ""
        port_text = port_text_found if colon else None
        if not _HOST.fullmatch(host) or "@" in authority:
            raise HttpError(400, "Bad Request")
    if port_text is None:
        if default_port is None:
            raise HttpError(400, "Bad Request")
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536 or len(port_text) > 5:
        raise HttpError(400, "Bad Request")
    return host, int(port_text)


def parse_absolute(target: str) -> tuple[str, int, str]:
    """An absolute-form http target: (host, port, the origin-form path and query)."""
    scheme, sep, rest = target.partition("://")
    if not sep or scheme.lower() != "http":
        raise HttpError(400, "Bad Request")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, path = rest[:cut], rest[cut:]
    host, port = parse_authority(authority, 80)
    path = path.partition("#")[0]
    if not path.startswith("/"):
        path = "/" + path
    return host, port, path


def _is_ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False
