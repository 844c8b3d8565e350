"""The UAPI socket under abuse: a real pywgd in a lab namespace, spoken to raw.

Malformed, oversized, truncated, idle and
concurrent requests get `errno=` answers and never take the daemon down or
leave a half-applied configuration; only root can connect.

One pywgd (foreground, so its pid is ours to watch, output in a file) serves
the whole module in one lab namespace; every test snapshots its configuration
with `get=1` first and checks afterwards that

- the process is alive and still answers `get=1` with errno=0,
- a request that failed changed nothing (get before == get after, counters
  and handshake times left out),
- every complete request got exactly one `errno=N` reply,

and at the end of the module that the daemon never logged a traceback.

Replies are read until the daemon closes the connection: a client half-closes
(SHUT_WR) after writing, so the daemon sees end-of-file once it has answered
everything it was sent, and closes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from helpers.time_bounds import wait_for
from helpers.wg_nodes import pywgd_path, uapi_config
from pywg.asyncio.uapi_server import MAX_CONNECTIONS
from pywg.keys import PresharedKey, PrivateKey
from pywg.lab import Host, Lab

PREFIX = "pwuapi"
UAPI_DIR = Path("/var/run/wireguard")
EINVAL, EPROTO, EADDRINUSE = -errno.EINVAL, -errno.EPROTO, -errno.EADDRINUSE
MAX_LINE = 4096  # pywg.uapi.MAX_LINE
MAX_REQUEST = 16 << 20  # pywg.uapi.MAX_REQUEST
NOBODY = 65534

pytestmark = pytest.mark.needs_lab("setpriv", "ss", "pywgd")

_REPLY = re.compile(rb"(?<![^\n])errno=(-?\d+)\n\n")  # at the start of a line


# -- talking to the socket -------------------------------------------------------------


@dataclass
class Exchange:
    """What came back on one connection: the reply bytes and how the connection ended."""

    data: bytes
    ended: str  # "eof", "reset" or "timeout"

    @property
    def replies(self) -> list[bytes]:
        """The replies, each ending with its `errno=N` line and the blank line."""
        out, start = [], 0
        for match in _REPLY.finditer(self.data):
            out.append(self.data[start : match.end()])
            start = match.end()
        assert self.data[start:] == b"", f"bytes after the last reply: {self.data[start:]!r}"
        return out

    @property
    def errnos(self) -> list[int]:
        return [int(m.group(1)) for m in _REPLY.finditer(self.data)]


def connect(path: str, timeout: float = 10.0) -> socket.socket:
    """Connect as `wg` does, waiting while the listen backlog is full (bounded by `timeout`).

    A socket with a timeout connects non-blocking, and AF_UNIX answers EAGAIN
    at once when the daemon's backlog is full where a blocking connect waits.
    """
    end = time.monotonic() + timeout
    for attempt in range(int(timeout / 0.01) + 1):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except BlockingIOError:
            sock.close()
            if time.monotonic() >= end:
                raise
            time.sleep(0.01 if attempt < 100 else 0.05)
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise TimeoutError(f"cannot connect to {path} within {timeout} s")


def read_all(sock: socket.socket) -> Exchange:
    """Read until the daemon closes (or resets, or the socket's timeout passes)."""
    chunks = []
    ended = "eof"
    for _ in range(1 << 16):  # bounded: at most 4 GiB at 64 KiB a read
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            ended = "timeout"
            break
        except ConnectionResetError:  # it closed with our unread bytes in its queue
            ended = "reset"
            break
        if not chunk:
            break
        chunks.append(chunk)
    return Exchange(b"".join(chunks), ended)


def exchange(path: str, data: bytes, *, timeout: float = 10.0, half_close: bool = True) -> Exchange:
    """Send `data` on a new connection, half-close, and read whatever comes back."""
    with connect(path, timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        return read_all(sock)


def request_text(*lines: str) -> bytes:
    return ("".join(f"{line}\n" for line in lines) + "\n").encode()


def set_request(*lines: str) -> bytes:
    return request_text("set=1", *lines)


def peer_request(*lines: str) -> bytes:
    return set_request(f"public_key={'11' * 32}", *lines)


GET = b"get=1\n\n"


def parse_config(reply: bytes) -> dict[str, Any]:
    """A `get=1` reply as comparable data (counters and handshake times left out)."""
    return uapi_config(reply.decode())


# -- the daemon under test ---------------------------------------------------------------


@dataclass
class Daemon:
    lab: Lab
    host: Host
    ifname: str
    proc: subprocess.Popen[bytes]
    output: Path  # its stdout and stderr

    @property
    def path(self) -> str:
        return str(UAPI_DIR / f"{self.ifname}.sock")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def get(self) -> dict[str, Any]:
        got = exchange(self.path, GET)
        assert got.errnos == [0], got.data[-300:]
        return parse_config(got.data)

    def set(self, *lines: str) -> None:
        got = exchange(self.path, set_request(*lines))
        assert got.errnos == [0], got.data

    def status_kib(self, field: str) -> int:
        """A memory figure of the process from /proc/PID/status (VmRSS, VmHWM), in KiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        raise AssertionError(f"no {field}")

    def assert_healthy(self, before: dict[str, Any] | None = None) -> None:
        """Alive, answering get=1, and (with `before`) configured exactly as before."""
        assert self.alive(), f"pywgd exited with {self.proc.returncode}: {self.log_tail()}"
        now = self.get()
        if before is not None:
            assert now == before, "the configuration changed"

    def log_tail(self) -> str:
        return self.output.read_text(errors="replace")[-3000:]


def _hex_key() -> str:
    return PrivateKey.generate().public_key.to_hex()


BASE_PEERS = [_hex_key() for _ in range(3)]
BASE_PSKS = [PresharedKey.generate().to_hex() for _ in BASE_PEERS]
BASE_KEY = PrivateKey.generate()
BASE_PORT = 51820


def base_config() -> list[str]:
    lines = [
        f"private_key={BASE_KEY.to_hex()}",
        f"listen_port={BASE_PORT}",
        "fwmark=66",
        "replace_peers=true",
    ]
    for i, key in enumerate(BASE_PEERS):
        lines += [
            f"public_key={key}",
            f"preshared_key={BASE_PSKS[i]}",
            f"endpoint=198.18.9.{i + 1}:{51820 + i}",
            f"allowed_ip=198.19.9.{i + 1}/32",
            f"allowed_ip=fd19::9:{i + 1}/128",
        ]
    return lines


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    with Lab(PREFIX) as lab, tempfile.TemporaryDirectory(prefix="pywg-uapi-") as tmp:
        host = lab.host("d")
        ifname = lab.ifname("pw")
        output = Path(tmp) / "pywgd.log"
        with output.open("wb") as out:
            proc = host.popen(
                pywgd_path(),
                "-f",
                ifname,
                env={"LOG_LEVEL": "debug"},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        sock = UAPI_DIR / f"{ifname}.sock"
        assert wait_for(lambda: sock.exists() or proc.poll() is not None, 15), "no socket"
        d = Daemon(lab, host, ifname, proc, output)
        assert d.alive(), d.log_tail()
        d.set(*base_config())
        yield d
        assert d.alive(), f"pywgd exited during the module: {d.log_tail()}"
        log = output.read_text(errors="replace")
        for sign in ("Traceback", "Exception in", "exception was never retrieved"):
            assert sign not in log, log[-3000:]
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


@pytest.fixture
def before(daemon: Daemon) -> Iterator[dict[str, Any]]:
    """The configuration at the start of a test; the daemon is healthy at its end."""
    daemon.set(*base_config())
    snapshot = daemon.get()
    yield snapshot
    daemon.assert_healthy()


# -- 1. malformed requests ---------------------------------------------------------------

# (id, request bytes, expected errno, whether the daemon keeps the connection)
MALFORMED: list[tuple[str, bytes, int, bool]] = [
    ("no-equals", b"hello\n\n", EPROTO, False),
    ("unknown-operation", b"put=1\n\n", EPROTO, False),
    ("get-2", b"get=2\n\n", EPROTO, False),
    ("empty-first-line", b"\n", EPROTO, False),
    ("crlf", b"get=1\r\n\r\n", EPROTO, False),
    ("nul-in-operation", b"get=1\x00\n\n", EPROTO, False),
    ("non-utf8-key", b"set=1\n\xff\xfe=1\n\n", EPROTO, False),
    ("non-utf8-value", b"set=1\nfwmark=\xc3\x28\n\n", EPROTO, False),
    ("line-without-equals-in-set", set_request("fwmark=1", "fwmark"), EPROTO, False),
    ("get-with-arguments", request_text("get=1", "foo=bar"), EINVAL, True),
    ("empty-key", set_request("=1"), EINVAL, True),
    ("unknown-device-key", set_request("frobnicate=1"), EINVAL, True),
    ("nul-in-key", b"set=1\nfwmark\x00=1\n\n", EINVAL, True),
    ("nul-in-value", b"set=1\nfwmark=1\x00\n\n", EINVAL, True),
    ("private-key-short", set_request("private_key=abcd"), EINVAL, True),
    ("private-key-unicode-digits", set_request("private_key=" + "\u0661" * 64), EINVAL, True),
    ("listen-port-huge", set_request("listen_port=" + "9" * 4000), EINVAL, True),
    ("listen-port-negative", set_request("listen_port=-1"), EINVAL, True),
    ("fwmark-2^32", set_request("fwmark=4294967296"), EINVAL, True),
    ("replace-peers-false", set_request("replace_peers=false"), EINVAL, True),
    ("peer-key-before-public-key", set_request("endpoint=198.18.0.1:1"), EINVAL, True),
    ("device-key-in-peer", peer_request("fwmark=1"), EINVAL, True),
    ("endpoint-garbage", peer_request("endpoint=[:1"), EINVAL, True),
    ("endpoint-scope-port", peer_request("endpoint=[::1%]:"), EINVAL, True),
    ("allowed-ip-33", peer_request("allowed_ip=1.2.3.4/33"), EINVAL, True),
    ("allowed-ip-minus-garbage", peer_request("allowed_ip=-x"), EINVAL, True),
    ("allowed-ip-scope", peer_request("allowed_ip=fe80::1%1/64"), EINVAL, True),
    ("keepalive-70000", peer_request("persistent_keepalive_interval=70000"), EINVAL, True),
    ("protocol-version-0", peer_request("protocol_version=0"), EINVAL, True),
    ("remove-yes", peer_request("remove=yes"), EINVAL, True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "data", "expected", "keeps"), MALFORMED, ids=[c[0] for c in MALFORMED]
)
def test_malformed_request_answers_errno_and_changes_nothing(
    daemon: Daemon, before: dict[str, Any], case: str, data: bytes, expected: int, keeps: bool
) -> None:
    got = exchange(daemon.path, data + GET)
    if keeps:  # the request was consumed whole: the connection answers on
        assert got.errnos == [expected, 0], (case, got)
        assert parse_config(got.replies[1]) == before
    else:  # a framing error: one reply, then the daemon closes
        assert got.errnos == [expected], (case, got)
    daemon.assert_healthy(before)


def test_random_garbage_is_answered_or_ignored_never_applied(
    daemon: Daemon, before: dict[str, Any]
) -> None:
    """Seeded random byte strings, with and without newlines and '=': never errno=0."""
    rng = random.Random(5)
    alphabet = b"=\n\n\n\x00\xff setgt1_=abcdef0123456789:/.[]-"
    for i in range(300):
        size = rng.choice((1, 2, 7, 40, 300, 5000))
        if i % 3 == 0:
            body = rng.randbytes(size)
        else:
            body = bytes(rng.choice(alphabet) for _ in range(size))
        # no valid key name can be spelled from the alphabet: only an empty set=1 may pass
        prefix = rng.choice((b"", b"set=1\n", b"get=1\n"))
        got = exchange(daemon.path, prefix + body, timeout=5)
        assert got.ended in ("eof", "reset"), (i, got)
        assert len(got.replies) <= (prefix + body).count(b"\n") + 1, (i, got)
        if i % 50 == 0:
            daemon.assert_healthy(before)
    daemon.assert_healthy(before)


# -- 2. failed sets apply nothing ------------------------------------------------------------


def _everything_changes(port: int) -> list[str]:
    """Valid lines that would change every part of the configuration."""
    return [
        f"private_key={PrivateKey.generate().to_hex()}",
        f"listen_port={port}",
        "fwmark=77",
        "replace_peers=true",
        f"public_key={BASE_PEERS[0]}",
        "replace_allowed_ips=true",
        "allowed_ip=198.19.44.0/24",
        "endpoint=[fd18::44:1]:4444",
        f"preshared_key={'00' * 32}",
        "persistent_keepalive_interval=0",
        f"public_key={BASE_PEERS[1]}",
        "remove=true",
        f"public_key={_hex_key()}",
        "allowed_ip=198.19.45.0/24",
        "allowed_ip=fd19::45:0/112",
        "endpoint=198.18.45.1:45",
    ]


@pytest.mark.parametrize(
    "bad_line",
    [
        "frobnicate=1",
        "allowed_ip=198.19.0.0/99",
        "endpoint=nowhere",
        f"private_key={'aa' * 32}",  # a device key inside a peer section
        "persistent_keepalive_interval=65536",
        "remove=false",
    ],
)
def test_failed_set_leaves_no_half_applied_configuration(
    daemon: Daemon, before: dict[str, Any], bad_line: str
) -> None:
    got = exchange(daemon.path, set_request(*_everything_changes(40123), bad_line) + GET)
    assert got.errnos == [EINVAL, 0], got
    assert parse_config(got.replies[1]) == before
    sockets = daemon.host.run("ss", "-Hulpn").stdout
    assert f":{BASE_PORT} " in sockets and ":40123 " not in sockets, sockets
    daemon.assert_healthy(before)


def test_set_refused_by_the_port_in_use_applies_nothing(
    daemon: Daemon, before: dict[str, Any]
) -> None:
    holder = daemon.host.popen(
        sys.executable,
        "-c",
        "import socket, time\n"
        "s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
        "s.bind(('::', 40124))\n"
        "print('bound', flush=True)\n"
        "time.sleep(30)\n",
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"bound"
        got = exchange(daemon.path, set_request(*_everything_changes(40124)) + GET)
        assert got.errnos == [EADDRINUSE, 0], got
        assert parse_config(got.replies[1]) == before
    finally:
        holder.kill()
        holder.wait(5)
    daemon.assert_healthy(before)


# -- 3. oversized ------------------------------------------------------------------------------


def test_line_of_max_length_is_read_one_byte_longer_is_refused(
    daemon: Daemon, before: dict[str, Any]
) -> None:
    key = "frobnicate="
    at_limit = set_request(key + "x" * (MAX_LINE - len(key)))
    got = exchange(daemon.path, at_limit + GET)
    assert got.errnos == [EINVAL, 0], got  # read whole and refused as a bad key
    too_long = set_request(key + "x" * (MAX_LINE + 1 - len(key)))
    got = exchange(daemon.path, too_long + GET)
    assert got.errnos == [EPROTO], got
    daemon.assert_healthy(before)


@pytest.mark.parametrize("size", [MAX_LINE + 1, 70_000, 3 << 20], ids=["4k+1", "70k", "3M"])
def test_endless_line_is_refused_without_waiting_for_its_end(
    daemon: Daemon, before: dict[str, Any], size: int
) -> None:
    """No newline at all: the daemon answers once the line is too long, then closes."""
    with connect(daemon.path) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"set=1\nfwmark=" + b"1" * size)  # no shutdown: it must not wait
        got = read_all(sock)
    assert got.errnos == [EPROTO], got
    assert got.ended in ("eof", "reset")
    daemon.assert_healthy(before)


def test_request_over_max_request_is_refused_and_applies_nothing(
    daemon: Daemon, before: dict[str, Any]
) -> None:
    peer = _hex_key()
    lines = [f"public_key={peer}"]
    count = MAX_REQUEST // len("allowed_ip=198.19.0.0/32\n") + 1  # the shortest line
    lines += [f"allowed_ip=198.19.{n >> 8 & 255}.{n & 255}/32" for n in range(count)]
    data = set_request(*lines)
    assert len(data) > MAX_REQUEST
    got = exchange(daemon.path, data + GET, timeout=30)
    assert got.errnos == [EPROTO], got
    assert peer not in daemon.get()["peers"]
    daemon.assert_healthy(before)


def test_request_just_under_max_request_is_applied(daemon: Daemon, before: dict[str, Any]) -> None:
    lines = ["fwmark=1"] * ((MAX_REQUEST - 100) // len("fwmark=1\n")) + ["fwmark=66"]
    data = set_request(*lines)
    assert MAX_REQUEST - 100 < len(data) < MAX_REQUEST
    got = exchange(daemon.path, data + GET, timeout=30)
    assert got.errnos == [0, 0], got
    daemon.assert_healthy(before)


# -- 4. truncated -----------------------------------------------------------------------------


def _cut_points(data: bytes) -> list[int]:
    newlines = [i for i, b in enumerate(data) if b == 0x0A]
    mid_lines = [(a + b) // 2 for a, b in zip([0, *newlines], newlines, strict=False)]
    return sorted({1, *mid_lines, *(n + 1 for n in newlines[:-1]), len(data) - 1})


@pytest.mark.parametrize("how", ["close", "half-close", "reset"])
def test_connection_closed_mid_request_applies_nothing(
    daemon: Daemon, before: dict[str, Any], how: str
) -> None:
    """A valid set request cut at every line end and in every line, then the client goes."""
    data = set_request(*_everything_changes(40125))
    for cut in _cut_points(data):
        sock = connect(daemon.path)
        try:
            sock.sendall(data[:cut])
            if how == "half-close":
                sock.shutdown(socket.SHUT_WR)
                got = read_all(sock)
                assert got.data == b"" and got.ended == "eof", (cut, got)
            elif how == "reset":  # RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        finally:
            sock.close()
        assert daemon.get() == before, f"cut at {cut} of {len(data)}: {data[:cut]!r}"
    daemon.assert_healthy(before)


def test_client_gone_before_reading_a_large_reply(daemon: Daemon, before: dict[str, Any]) -> None:
    """Many peers make get=1 long; clients that never read it must not wedge the daemon."""
    many = [
        f"public_key={_hex_key()}\nallowed_ip=198.19.{50 + i // 250}.{i % 250}/32"
        for i in range(500)
    ]
    daemon.set(*many)
    try:
        for _ in range(20):
            with connect(daemon.path) as sock:
                sock.sendall(GET * 4)
        held = [connect(daemon.path) for _ in range(10)]  # ask, then never read
        for sock in held:
            sock.sendall(GET * 4)
        assert len(daemon.get()["peers"]) == len(BASE_PEERS) + 500
        for sock in held:
            sock.close()
    finally:
        daemon.set(*base_config())
    daemon.assert_healthy(before)


# -- 5. slow and idle clients ---------------------------------------------------------------------


def test_drip_fed_request_is_answered_while_others_are_served(
    daemon: Daemon, before: dict[str, Any]
) -> None:
    """One byte at a time (slowloris style); meanwhile other clients are answered at once."""
    data = set_request("fwmark=99", "fwmark=66") + GET
    with connect(daemon.path) as slow:
        for i, byte in enumerate(data):
            slow.sendall(bytes([byte]))
            if i % 8 == 0:
                started = time.monotonic()
                assert exchange(daemon.path, GET).errnos == [0]
                assert time.monotonic() - started < 2.0
            time.sleep(0.005)
        slow.shutdown(socket.SHUT_WR)
        got = read_all(slow)
    assert got.errnos == [0, 0], got
    assert parse_config(got.replies[1]) == before
    daemon.assert_healthy(before)


IDLE_CLIENTS = MAX_CONNECTIONS + 40  # past the cap: the idlest are evicted, new ones served


@contextlib.contextmanager
def idle_connections(path: str, count: int, partial: bytes = b"") -> Iterator[list[socket.socket]]:
    """`count` connections that sent `partial` (maybe nothing) and then just sit there."""
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = connect(path)
            held.append(sock)
            if partial:
                sock.sendall(partial)
        time.sleep(0.3)  # let the daemon accept them all
        yield held
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize("partial", [b"", b"set=1\nfwmark=1"], ids=["silent", "mid-request"])
def test_idle_connections_never_take_the_daemon_down(
    daemon: Daemon, before: dict[str, Any], partial: bytes
) -> None:
    with idle_connections(daemon.path, IDLE_CLIENTS, partial):
        time.sleep(1.0)
        assert daemon.alive()
    # once they are gone the socket serves as before
    assert wait_for(lambda: exchange(daemon.path, GET).errnos == [0], 5)
    daemon.assert_healthy(before)


def test_idle_connections_do_not_lock_out_new_clients(
    daemon: Daemon, before: dict[str, Any]
) -> None:
    with idle_connections(daemon.path, IDLE_CLIENTS):
        got = exchange(daemon.path, GET, timeout=15)
    assert got.errnos == [0], got
    daemon.assert_healthy(before)


def test_pipelined_gets_do_not_balloon_memory(daemon: Daemon, before: dict[str, Any]) -> None:
    """One 64 KiB write of `get=1` requests (9362 of them), replies never read.

    With 25 peers (a 9 KB reply), a daemon that built every reply before
    writing the first grew its peak RSS by ~140 MB and stalled its event loop
    (handshakes, timers, every other client) for seconds; pywgd now writes
    each reply out before making the next.
    """
    many = [
        f"public_key={_hex_key()}\nallowed_ip=198.19.{60 + i // 250}.{i % 250}/32"
        for i in range(25)
    ]
    daemon.set(*many)
    try:
        rss = daemon.status_kib("VmRSS")
        with connect(daemon.path) as sock:
            sock.sendall(GET * (65536 // len(GET)))
            time.sleep(0.2)
            started = time.monotonic()
            assert exchange(daemon.path, GET, timeout=60).errnos == [0]
            stalled = time.monotonic() - started
            grown = daemon.status_kib("VmHWM") - rss
        assert grown < 32 * 1024, f"peak RSS grew by {grown // 1024} MiB"
        assert stalled < 1.0, f"another client waited {stalled:.1f} s for get=1"
    finally:
        assert wait_for(lambda: exchange(daemon.path, GET, timeout=60).errnos == [0], 60)
        daemon.set(*base_config())
    daemon.assert_healthy(before)


# -- 6. many clients at once ----------------------------------------------------------------------

CLIENTS = 200
SHARED = _hex_key()  # a peer every valid set rewrites whole: the atomicity witness


def _shared_lines(k: int) -> list[str]:
    """Client k's complete settings for the SHARED peer (allowed IPs, endpoint, keepalive)."""
    return [
        f"public_key={SHARED}",
        "replace_allowed_ips=true",
        *(f"allowed_ip=198.19.{10 + k}.{j}/32" for j in range(5)),
        *(f"allowed_ip=fd19::a:{k:x}:{j}/128" for j in range(3)),
        f"endpoint=198.18.{k}.1:{10000 + k}",
        f"persistent_keepalive_interval={1000 + k}",
    ]


def _shared_state(k: int) -> dict[str, Any]:
    ips = {f"198.19.{10 + k}.{j}/32" for j in range(5)} | {
        f"fd19::a:{k:x}:{j}/128" for j in range(3)
    }
    return {
        "allowed_ip": frozenset(ips),
        "endpoint": f"198.18.{k}.1:{10000 + k}",
        "persistent_keepalive_interval": str(1000 + k),
    }


def _shared_view(config: dict[str, Any]) -> dict[str, Any]:
    peer = config["peers"][SHARED]
    return {k: peer.get(k) for k in ("allowed_ip", "endpoint", "persistent_keepalive_interval")}


@dataclass
class Client:
    kind: str  # valid | get | half | framing | truncated
    data: bytes
    own_peer: str | None = None
    psk: str | None = None
    result: Exchange | None = None
    error: str | None = None


def _clients(rng: random.Random) -> list[Client]:
    clients = []
    for k in range(CLIENTS):
        kind = ("valid", "valid", "get", "half", "framing", "truncated", "valid", "half")[k % 8]
        own = _hex_key()
        psk = PresharedKey.generate().to_hex()
        mine = [
            f"public_key={own}",
            f"preshared_key={psk}",
            f"allowed_ip=fd19::b:{k:x}/128",
        ]
        if kind == "valid":
            data = set_request(*_shared_lines(k), *mine)
        elif kind == "get":
            data = GET * rng.randint(1, 3)
        elif kind == "half":  # valid lines, one bad one at the end
            data = set_request(*_shared_lines(k), *mine, rng.choice(["bogus=1", "fwmark=-1"]))
        elif kind == "framing":
            data = rng.choice([b"nonsense\n\n", b"set=1\n\xff=1\n\n", b"x" * 5000, b"\n"])
        else:  # cut somewhere in a valid request, then gone
            full = set_request(*_shared_lines(k), *mine)
            data = full[: rng.randint(1, len(full) - 1)]
        clients.append(Client(kind, data, own, psk))
    return clients


def _storm(daemon: Daemon) -> list[Client]:
    """CLIENTS connections at once (all connected, then all write), each read to the end."""
    daemon.set(f"public_key={SHARED}", *_shared_lines(240)[1:])
    clients = _clients(random.Random(200))
    barrier = threading.Barrier(CLIENTS, timeout=30)

    def run(client: Client) -> None:
        try:
            with connect(daemon.path, timeout=30) as sock:
                barrier.wait()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    sock.sendall(client.data)
                    if client.kind != "truncated":
                        sock.shutdown(socket.SHUT_WR)
                if client.kind != "truncated":
                    client.result = read_all(sock)
        except Exception as exc:  # reported by the tests, per client
            client.error = f"{type(exc).__name__}: {exc}"

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        list(pool.map(run, clients))
    assert daemon.alive(), daemon.log_tail()
    problems = [(i, c.kind, c.error) for i, c in enumerate(clients) if c.error is not None]
    assert not problems, problems
    return clients


def _unanswered(clients: list[Client]) -> list[int]:
    """Clients with a complete request whose connection was closed without a byte."""
    return [
        k
        for k, c in enumerate(clients)
        if c.kind != "truncated" and c.result is not None and c.result.data == b""
    ]


def test_200_concurrent_clients_each_set_applies_atomically(
    daemon: Daemon, before: dict[str, Any]
) -> None:
    """Every answer is complete and right, every set all-or-nothing, garbage never applied.

    Connections the daemon turned away (see the test below) must have got no
    bytes at all and applied nothing.
    """
    clients = _storm(daemon)
    refused = set(_unanswered(clients))
    assert len(refused) < CLIENTS // 2 + 40, f"only {CLIENTS - len(refused)} answered"
    allowed = [_shared_state(240)] + [
        _shared_state(k) for k, c in enumerate(clients) if c.kind == "valid" and k not in refused
    ]
    for k, c in enumerate(clients):
        if c.kind == "truncated" or k in refused:
            continue
        assert c.result is not None
        assert c.result.ended in ("eof", "reset"), (k, c.result)
        expected_count = c.data.count(GET) if c.kind == "get" else 1
        assert len(c.result.errnos) == expected_count, (k, c.kind, c.data[:80], c.result)
        if c.kind == "valid":
            assert c.result.errnos == [0], (k, c.result)
        elif c.kind == "get":
            assert set(c.result.errnos) == {0}
            for reply in c.result.replies:  # every snapshot shows one whole set, never a mix
                assert _shared_view(parse_config(reply)) in allowed
        elif c.kind == "half":
            assert c.result.errnos == [EINVAL], (k, c.result)
        else:
            assert c.result.errnos[0] in (EPROTO, EINVAL), (k, c.result)

    after = daemon.get()
    assert _shared_view(after) in allowed, "the shared peer is not one client's whole set"
    for k, c in enumerate(clients):
        present = c.own_peer in after["peers"]
        if c.kind == "valid" and k not in refused:
            assert present, k
            peer = after["peers"][c.own_peer]
            assert peer["preshared_key"] == c.psk
            assert peer["allowed_ip"] == {f"fd19::b:{k:x}/128"}
        else:
            assert not present, (k, c.kind)
    # nothing else changed: the base peers and device settings are as they were
    assert after["device"] == before["device"]
    for key in BASE_PEERS:
        assert after["peers"][key] == before["peers"][key]
    daemon.set(*base_config())
    daemon.assert_healthy(before)


def test_200_concurrent_clients_are_all_answered(daemon: Daemon, before: dict[str, Any]) -> None:
    clients = _storm(daemon)
    daemon.set(*base_config())
    assert _unanswered(clients) == []
    daemon.assert_healthy(before)


# -- 7. only root ----------------------------------------------------------------------------------

_NOBODY_CONNECT = r"""
import errno, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print(errno.errorcode.get(exc.errno, exc.errno))
else:
    s.sendall(b"get=1\n\n")
    print("CONNECTED", s.recv(100))
"""


def _nobody_python() -> str | None:
    """A Python interpreter uid 65534 may run (the test's own may live under /root)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3", shutil.which("python3")):
        if candidate and os.access(candidate, os.X_OK):
            probe = subprocess.run(
                ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                 candidate, "-c", "pass"],
                capture_output=True,
                timeout=30,
            )  # fmt: skip
            if probe.returncode == 0:
                return candidate
    return None


def test_only_root_can_connect(daemon: Daemon, before: dict[str, Any]) -> None:
    directory = UAPI_DIR.stat()
    assert stat.S_IMODE(directory.st_mode) == 0o700 and directory.st_uid == 0
    sock = Path(daemon.path).stat()
    assert stat.S_ISSOCK(sock.st_mode) and sock.st_uid == 0
    assert sock.st_mode & 0o077 == 0, oct(sock.st_mode)
    python = _nobody_python()
    if python is None:
        pytest.skip("no Python interpreter that uid 65534 can run")
    argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    result = subprocess.run(
        [*argv, python, "-c", _NOBODY_CONNECT, daemon.path],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.stdout.strip() in ("EACCES", "EPERM"), (result.stdout, result.stderr)
    # `wg` itself, run as nobody, cannot read the interface
    if shutil.which("wg"):
        shown = subprocess.run(
            [*argv, "wg", "show", daemon.ifname], capture_output=True, text=True, timeout=30
        )
        assert shown.returncode != 0 and shown.stdout == "", shown
    # and from inside the daemon's own namespace, the same
    inside = daemon.host.run(*argv, python, "-c", _NOBODY_CONNECT, daemon.path, check=False)
    assert inside.stdout.strip() in ("EACCES", "EPERM"), (inside.stdout, inside.stderr)
    daemon.assert_healthy(before)
