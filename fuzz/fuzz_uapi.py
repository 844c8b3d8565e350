"""Fuzz the UAPI protocol: pywg.uapi.UapiSession.feed on a configured Device.

Each input is a byte stream for one connection to a fresh Device (fixed
keys, two peers), either raw or built from the protocol's own lines with
fuzzed values (keys, ports, endpoints, CIDRs, booleans, junk). It is fed in
pieces: cut after every newline, so that one ``feed`` finishes at most one
request, and at fuzzed points inside lines. Oracle:

- ``feed`` never raises and answers only whole replies: the configuration
  and ``errno=0``, or ``errno=N`` with N one of 0, -EINVAL, -EPROTO; never
  -EIO, which the session answers when parsing or applying raised
  something unexpected;
- a feed answered with errno != 0 leaves ``pywg.uapi.get(device)`` as it
  was (no half-applied request);
- once the session is closed it answers nothing;
- after a successful set, ``get`` is itself a valid set: applied to a new
  device it gives the same ``get`` back (the statistics aside).

    python3 fuzz/fuzz_uapi.py -atheris_runs=200000
"""

from __future__ import annotations

import errno
import itertools
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Reader, add_source_path, run

add_source_path()

from pywg import (  # noqa: E402
    Device,
    PresharedKey,
    PrivateKey,
    uapi,
)


def _key(first: int) -> PrivateKey:
    return PrivateKey.generate(lambda n: bytes(range(first, first + n)))  # clamped, as set makes


OWN = _key(1)
PEER1 = _key(33).public_key
PEER2 = _key(65).public_key
NEW_PEER = _key(97).public_key
PSK = PresharedKey(bytes(range(129, 161)))

ALLOWED_ERRNOS = {0, -errno.EINVAL, -errno.EPROTO}
_REPLY = re.compile(rb"errno=(-?[0-9]+)\n\n")
# get answers lines that are not settable (statistics and the version)
_NOT_SETTABLE = (
    "protocol_version=",
    "last_handshake_time_sec=",
    "last_handshake_time_nsec=",
    "tx_bytes=",
    "rx_bytes=",
    "errno=",
)

HEX_KEYS = (
    OWN.to_hex(),
    OWN.public_key.to_hex(),
    PEER1.to_hex(),
    PEER2.to_hex(),
    NEW_PEER.to_hex(),
    PSK.to_hex(),
    "0" * 64,
    PEER1.to_hex().upper(),
    PEER1.to_hex()[:-1],
    PEER1.to_hex() + "0",
    PEER1.to_hex()[:-1] + "g",
)
NUMBERS = (
    "0",
    "1",
    "25",
    "51820",
    "65535",
    "65536",
    "4294967295",
    "4294967296",
    "-1",
    "007",
    "",
    "+1",
    " 1",
    "1 ",
    "0x10",
    "\u0663",
    "99999999999",
)
ENDPOINTS = (
    "198.18.0.1:51820",
    "[fd18::1]:1",
    "[::ffff:198.18.0.3]:5",
    "[fe80::1%eth0]:7",
    "198.18.0.1:65536",
    "198.18.0.1:0",
    "host.example:1",
    "198.18.0.1",
    "[::1]",
    ":80",
    "[198.18.0.1]:1",
    "fd18::1:1",
    "198.18.0.256:1",
    "[]:1",
    "[fd18::1]:",
)
CIDRS = (
    "198.19.0.0/24",
    "198.19.0.5/32",
    "198.19.0.5/24",
    "fd19::/64",
    "fd19::2/128",
    "0.0.0.0/0",
    "::/0",
    "198.19.0.1/33",
    "::/129",
    "198.19.0.1",
    "198.19.0.1/-1",
    "01.2.3.4/8",
    "1.2.3.4/08",
    "::ffff:1.2.3.4/128",
    "fe80::1%eth0/64",
    "/24",
    "1.2.3.4/",
)
BOOLS = ("true", "false", "True", "", "1")
LINES = (
    ("get=1", None),
    ("set=1", None),
    ("private_key=", HEX_KEYS),
    ("listen_port=", NUMBERS),
    ("fwmark=", NUMBERS),
    ("replace_peers=", BOOLS),
    ("public_key=", HEX_KEYS),
    ("remove=", BOOLS),
    ("update_only=", BOOLS),
    ("preshared_key=", HEX_KEYS),
    ("endpoint=", ENDPOINTS),
    ("persistent_keepalive_interval=", NUMBERS),
    ("replace_allowed_ips=", BOOLS),
    ("allowed_ip=", CIDRS),
    ("allowed_ip=-", CIDRS),
    ("protocol_version=", NUMBERS),
    ("", None),  # the empty line that ends a request
)


def new_device() -> Device:
    dev = Device(OWN, 51820, rng=lambda n: bytes(n))
    dev.add_peer(
        PEER1,
        ["198.19.0.2/32", "fd19::2/128"],
        endpoint=("198.18.0.2", 51820),
        preshared_key=PSK,
        persistent_keepalive=25,
    )
    dev.add_peer(PEER2, ["198.19.1.0/24"], endpoint=("fd18::2", 1))
    return dev


def _structured(r: Reader) -> bytes:
    out = []
    for _ in range(1 + r.u8() % 24):
        if r.remaining() == 0:
            break
        prefix, values = LINES[r.below(len(LINES))]
        if values is None:
            line = prefix.encode()
        elif r.u8() % 8 == 0:  # a fuzzed value
            line = prefix.encode() + r.take_upto(r.u8() % 80).replace(b"\n", b"")
        else:
            line = (prefix + str(r.choice(values))).encode()
        out.append(line)
    if r.flag():
        out.append(b"")  # end the last request
    return b"\n".join(out) + b"\n"


def _pieces(r: Reader, stream: bytes) -> list[bytes]:
    """stream cut after each newline and at a few fuzzed points."""
    cuts = {i + 1 for i, byte in enumerate(stream) if byte == 10}
    for _ in range(r.u8() % 4):
        cuts.add(r.u16() % (len(stream) + 1))
    points = [0, *sorted(c for c in cuts if 0 < c < len(stream)), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(points)]


def _settable(get_text: str) -> list[str]:
    lines = [line for line in get_text.split("\n") if line]
    return [line for line in lines if not line.startswith(_NOT_SETTABLE)]


def _check_get_round_trip(dev: Device, text: str) -> None:
    fresh = Device(None, 0, rng=lambda n: bytes(n))
    uapi.apply_set(fresh, ["replace_peers=true", *_settable(text)])
    again = _settable(uapi.get(fresh))  # statistics aside (a keepalive may have been sent)
    assert again == _settable(text), "get is not a set that reproduces the configuration"


def TestOneInput(data: bytes) -> None:
    r = Reader(data)
    stream = _structured(r) if r.u8() % 4 else r.rest()
    pieces = _pieces(r, stream)
    dev = new_device()
    session = uapi.UapiSession(dev, clock=lambda: 1.0)
    config = uapi.get(dev)  # changes only when a set succeeds
    for piece in pieces:
        was_closed = session.closed
        reply = session.feed(piece)
        if was_closed:
            assert reply == b"", "a closed session answered"
            continue
        if not reply:
            continue
        assert reply.endswith(b"\n\n"), reply
        codes = [int(m) for m in _REPLY.findall(reply)]
        assert len(codes) == 1, reply  # one request finished at most, one errno line
        assert codes[0] in ALLOWED_ERRNOS, f"errno={codes[0]}: an unexpected exception inside"
        if codes[0] != 0:
            assert reply == f"errno={codes[0]}\n\n".encode()
            assert uapi.get(dev) == config, "a failed request changed the configuration"
        elif not reply.startswith(b"errno="):
            assert reply == config.encode(), "get answered something else than get()"
        else:
            config = uapi.get(dev)
            _check_get_round_trip(dev, config)


if __name__ == "__main__":
    run(TestOneInput, dictionary="uapi.dict")
