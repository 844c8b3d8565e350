"""Hypothesis on the proxies' parsers: SOCKS5 messages (pywg.proxy.socks5) and HTTP heads.

Any bytes either parse, ask for more (a positive count), or raise the
module's own error, never anything else; what the encoders make parses back
to what was encoded, fed exactly as the parser asks for it.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pywg.proxy import socks5
from pywg.proxy.http_request import HttpError, parse_absolute, parse_authority, parse_head
from pywg.proxy.socks5 import Need, Socks5Error

T = TypeVar("T")
pytestmark = pytest.mark.time_limit(30)
SETTINGS = settings(max_examples=200, deadline=None)

names = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=255
).filter(lambda name: not _is_address(name))
hosts = st.one_of(st.ip_addresses().map(str), names)
ports = st.integers(0, 65535)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def feed(parse: Callable[[bytes], T | Need], stream: bytes) -> tuple[T, int]:
    """Parse from `stream` exactly as a reader would: (the message, bytes consumed)."""
    data = b""
    while True:
        got = parse(data)
        if not isinstance(got, Need):
            return got, len(data)
        assert got.count > 0
        if len(data) + got.count > len(stream):
            raise EOFError
        data = stream[: len(data) + got.count]


PARSERS = [socks5.parse_greeting, socks5.parse_user_password, socks5.parse_request]


@SETTINGS
@given(st.sampled_from(PARSERS), st.binary(max_size=600))
def test_socks5_parsers_take_any_bytes(parse: Callable[[bytes], object], data: bytes) -> None:
    try:
        _, used = feed(parse, data)  # type: ignore[arg-type]
    except (Socks5Error, EOFError):
        return
    assert used <= 513  # never reads more than the largest message


@SETTINGS
@given(
    st.sampled_from([socks5.CONNECT, socks5.UDP_ASSOCIATE]), hosts, ports, st.binary(max_size=20)
)
def test_socks5_request_round_trip(command: int, host: str, port: int, after: bytes) -> None:
    encoded = socks5.encode_request(command, host, port)
    request, used = feed(socks5.parse_request, encoded + after)
    assert used == len(encoded)  # not a byte of what follows
    assert (request.command, request.host, request.port) == (command, host, port)
    if after:  # a message with bytes behind it is refused, not silently cut
        with pytest.raises(Socks5Error):
            socks5.parse_request(encoded + after)


@SETTINGS
@given(
    st.lists(st.integers(0, 255), max_size=255), st.binary(max_size=255), st.binary(max_size=255)
)
def test_socks5_greeting_and_credentials_round_trip(
    methods: list[int], user: bytes, password: bytes
) -> None:
    assert feed(socks5.parse_greeting, socks5.encode_greeting(tuple(methods)))[0] == tuple(methods)
    message = bytes([1, len(user)]) + user + bytes([len(password)]) + password
    assert feed(socks5.parse_user_password, message)[0] == (user, password)


@SETTINGS
@given(st.binary(max_size=300))
def test_socks5_udp_datagrams_take_any_bytes(data: bytes) -> None:
    with contextlib.suppress(Socks5Error):
        socks5.parse_udp_datagram(data)


@SETTINGS
@given(hosts, ports, st.binary(max_size=100))
def test_socks5_udp_datagram_round_trip(host: str, port: int, payload: bytes) -> None:
    got = socks5.parse_udp_datagram(socks5.encode_udp_datagram(host, port, payload))
    assert (got.fragment, got.host, got.port, got.payload) == (0, host, port, payload)


@SETTINGS
@given(st.binary(max_size=400).map(lambda b: b + b"\r\n\r\n"))
def test_http_heads_take_any_bytes(head: bytes) -> None:
    try:
        parsed = parse_head(head)
    except HttpError as exc:
        assert exc.status in (400, 431, 505)
        return
    for name, value in parsed.fields:
        assert name and "\r" not in value and "\n" not in value and "\0" not in value


tokens = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-!#$%&'*+.^_`|~",
    min_size=1,
    max_size=20,
)
values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)


@SETTINGS
@given(tokens, st.lists(st.tuples(tokens, values), max_size=20), st.sampled_from(["1.0", "1.1"]))
def test_http_head_round_trip(method: str, fields: list[tuple[str, str]], version: str) -> None:
    fields = [(n, v) for n, v in fields if n.lower() != "content-length"]
    lines = [f"{method} http://h/ HTTP/{version}"] + [f"{n}:  {v} " for n, v in fields]
    head = parse_head(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert (head.method, head.target, head.version) == (method, "http://h/", f"HTTP/{version}")
    assert list(head.fields) == fields


@SETTINGS
@given(st.text(max_size=80))
def test_http_targets_take_any_text(target: str) -> None:
    for parse in (parse_authority, parse_absolute):
        try:
            parse(target)  # type: ignore[operator]
        except HttpError as exc:
            assert exc.status == 400


@SETTINGS
@given(
    st.one_of(
        st.ip_addresses().map(str),
        st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,30}[a-z0-9])?", fullmatch=True),
    ),
    st.integers(1, 65535),
)
def test_http_authority_round_trip(host: str, port: int) -> None:
    shown = f"[{host}]" if ":" in host else host
    assert parse_authority(f"{shown}:{port}") == (host, port)
    assert parse_absolute(f"http://{shown}:{port}/p?q#f") == (host, port, "/p?q")
