"""Fuzz configuration files: pywg.config.parse_config (wg(8) / wg-quick(8) syntax).

Input: raw text, or a file assembled from section headers and ``Key = Value``
lines of every known key with good, bad and fuzzed values, odd case,
spacing and comments. Oracle:

- ``parse_config`` returns a Config or raises ConfigError, nothing else;
- a ConfigError's message never holds a key of the file (any 44-character
  base64 run that decodes to 32 bytes);
- a Config that parsed is one the device takes: ``to_uapi_set`` (host names
  resolved by a fake resolver, no DNS) fed to a UapiSession on a new Device
  answers errno=0, and the device then has exactly the file's peers (its own
  key excepted), each with its preshared key, keepalive, endpoint and the
  allowed IPs that it was the last to claim.

    python3 fuzz/fuzz_config.py -atheris_runs=200000
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import socket
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Reader, add_source_path, run

add_source_path()

from pywg import (  # noqa: E402
    Device,
    PrivateKey,
    uapi,
)
from pywg.config import Config, ConfigError, parse_config, to_uapi_set  # noqa: E402

RESOLVED = "198.18.0.77"


def _b64(first: int) -> str:
    return base64.b64encode(bytes(range(first, first + 32))).decode()


KEYS = (
    _b64(1),
    _b64(33),
    _b64(65),
    base64.b64encode(bytes(32)).decode(),
    str(PrivateKey.generate(lambda n: bytes(range(1, 1 + n))).public_key),  # our own public key
    _b64(1)[:-1],
    _b64(1)[:-2] + "==",
    _b64(1).rstrip("="),
    "not a key",
    _b64(1) + "AAAA",
)
VALUES: dict[str, tuple[str, ...]] = {
    "PrivateKey": KEYS,
    "ListenPort": ("51820", "0", "65535", "65536", "-1", "0x10", "", "51820 1"),
    "FwMark": ("0", "off", "OFF", "0x1234", "0XFFFFFFFF", "4294967295", "4294967296", "0x", "1.5"),
    "Address": (
        "198.19.0.1/24",
        "fd19::1/64",
        "198.19.0.1",
        "198.19.0.1/24, fd19::1/64",
        "198.19.0.1/33",
        "fe80::1%eth0/64",
        "10.0.0.1/8,",
        ",",
        "198.19.0.1/024",
    ),
    "DNS": (
        "198.18.0.53",
        "fd18::53",
        "example.org",
        "198.18.0.53, example.org",
        "1.2.3.999",
        "-bad-",
        "a..b",
        "x" * 64,
    ),
    "MTU": ("1420", "576", "575", "65535", "65536", "0", "1420.0"),
    "Table": ("off", "auto", "main", "1234", "bad table", "x" * 65),
    "PreUp": ("echo up", "", "# comment only", "iptables -A FORWARD"),
    "PostUp": ("echo %i",),
    "PreDown": ("true",),
    "PostDown": ("false",),
    "SaveConfig": ("true", "false", "TRUE", "yes", ""),
    "PublicKey": KEYS,
    "PresharedKey": KEYS,
    "AllowedIPs": (
        "198.19.0.2/32",
        "0.0.0.0/0, ::/0",
        "198.19.0.2/24",
        "fd19::2",
        "",
        " , ",
        "198.19.0.0/16, 198.19.0.2/32",
        "::ffff:1.2.3.4/128",
        "1.2.3.4/-1",
    ),
    "Endpoint": (
        "198.18.0.2:51820",
        "[fd18::2]:51820",
        "example.org:51820",
        "[fe80::1%eth0]:1",
        "fd18::2:51820",
        "198.18.0.2",
        "198.18.0.2:0",
        "198.18.0.2:65536",
        "[fd18::2]",
        "host_name.example:1",
        "1.2.3.999:1",
        ":1",
        "[::ffff:198.18.0.3]:7",
    ),
    "PersistentKeepalive": ("25", "0", "off", "65535", "65536", "-1"),
}
NAMES = tuple(VALUES)
SECTIONS = ("[Interface]", "[Peer]", "[interface]", "[ PEER ]", "[Other]", "[Peer", "[]")
_KEYLIKE = re.compile(r"[A-Za-z0-9+/]{43}=")


def fake_resolver(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
    return [(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP, "", (RESOLVED, port))]


INTERFACE_NAMES = NAMES[:12]
PEER_NAMES = NAMES[12:]


def _line(r: Reader, names: tuple[str, ...]) -> str:
    name = str(r.choice(names if r.u8() % 16 else NAMES))  # now and then a misplaced key
    if r.u8() % 8 == 0:
        value = r.take_upto(r.u8() % 64).decode("latin-1")
    else:
        value = str(r.choice(VALUES[name]))
    if r.u8() % 8 == 0:
        name = name.lower() if r.flag() else name.upper()
    sep = str(r.choice((" = ", "=", "  =\t", " = ", " == ", " ")))
    line = f"{name}{sep}{value}"
    if r.u8() % 8 == 0:
        line += " # " + r.take_upto(8).decode("latin-1")
    return line


def _structured(r: Reader) -> str:
    """[Interface] and a few [Peer] sections of mostly plausible lines."""
    lines = []
    for section in range(1 + r.u8() % 4):
        header = "[Peer]" if section else "[Interface]"
        if r.u8() % 16 == 0:
            header = str(r.choice(SECTIONS))
        lines.append(header)
        names = PEER_NAMES if section else INTERFACE_NAMES
        for _ in range(r.u8() % 6):
            lines.append(_line(r, names))
        if r.remaining() == 0:
            break
    return "\n".join(lines)


def _secrets(text: str) -> set[str]:
    found = set()
    for candidate in _KEYLIKE.findall(text):
        try:
            if len(base64.b64decode(candidate, validate=True)) == 32:
                found.add(candidate)
        except (binascii.Error, ValueError):
            continue
    return found


def _host(host: str) -> str:
    """The endpoint address the device should end up with (UAPI: no scope, v4-mapped is v4)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return RESOLVED
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip).split("%", 1)[0]


def _check_device_takes(config: Config) -> None:
    request = to_uapi_set(config, resolver=fake_resolver)
    dev = Device(None, 0, rng=lambda n: bytes(n))
    session = uapi.UapiSession(dev)
    reply = session.feed(request.encode())
    assert reply == b"errno=0\n\n", f"the device refused a parsed configuration: {reply!r}"
    own = config.private_key.public_key if config.private_key is not None else None
    peers = [p for p in config.peers if p.public_key != own]
    assert set(dev.peers) == {p.public_key for p in peers}, "peers differ"
    owner: dict[str, Any] = {}
    for p in peers:
        for network in p.allowed_ips:
            owner[network] = p.public_key
    for p in peers:
        got = dev.peer(p.public_key)
        assert got.preshared_key == p.preshared_key, "preshared key differs"
        assert (got.persistent_keepalive or 0) == p.persistent_keepalive, "keepalive differs"
        want_endpoint = None if p.endpoint is None else (_host(p.endpoint[0]), p.endpoint[1])
        assert got.endpoint == want_endpoint, (got.endpoint, want_endpoint)
        want = {n for n, k in owner.items() if k == p.public_key}
        assert set(dev.allowed_ips(p.public_key)) == want, "allowed IPs differ"


def TestOneInput(data: bytes) -> None:
    r = Reader(data)
    mode = r.u8() % 4
    if mode == 0:
        text = r.rest().decode("utf-8", "replace")
    elif mode == 1:
        text = r.rest().decode("latin-1")
    else:
        text = _structured(r)
    try:
        config = parse_config(text, source="fuzz.conf")
    except ConfigError as exc:
        message = str(exc)
        for secret in _secrets(text):
            assert secret not in message, "a key of the file in an error message"
        return
    _check_device_takes(config)


if __name__ == "__main__":
    run(TestOneInput, dictionary="config.dict")
