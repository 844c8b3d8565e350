"""Handshake floods against pywgd while a legitimate wireguard-go peer connects and moves data.

    sudo python3 benches/flood.py [--seconds 8] [--mbytes 50] [--procs 1] [--pool 4096]
        [--kinds mac1,garbage,badmac1] [--paced 12000] [--handshake-deadline 30]
        [--no-reference] [--json]

Three lab namespaces (pywg.lab): the flooded daemon, pywgd, run in the
foreground with LOG_LEVEL=debug so that SIGUSR1 writes its health counters to
a log file; a wireguard-go peer on one veth link (198.18.1.0/24); a flooder
on another (198.18.2.0/24) with 31 source addresses, 198.18.2.10-.40. The
flooder precomputes a pool of messages and sends them round-robin from all
its addresses as fast as Python can drive the kernel: libc ``sendmmsg``
through ctypes, 64 datagrams a call, ``--procs`` processes. The floods:

- ``mac1``: handshake initiations with a valid mac1 for pywgd's public key,
  built by the core (``pywg.handshake.create_initiation`` + ``CookieGenerator``)
  from 64 random static keys pywgd does not know, each with its own ephemeral
  key. Without the DoS defence each costs the responder its Noise DH work;
  with it pywgd goes under load and answers cookie replies (whitepaper §5.3),
  which the flooder counts, and a sample of which it decrypts with the cookie
  key (AD = the mac1 it sent).
- ``garbage``: random bytes of random lengths, a third with a valid type
  byte (1-4) in front; nothing may come back.
- ``badmac1``: 148-byte initiations with a wrong mac1; nothing may come back.
- ``--paced RATE``: then, for 12 s or more, bad-mac1 initiations paced to
  RATE/s from one address, in bursts of 8, so that pywgd's backlog keeps
  emptying and refilling (0 skips it).

Each flood runs against a fresh daemon. Measured over the flood: the rate
the flooder held (its own sendmmsg count); what the daemon's socket read
(UdpInDatagrams of its namespace, the counter `nstat` shows, read from
/proc/PID/net/snmp) and what the kernel dropped for a full socket
(UdpRcvbufErrors); pywgd's counters: datagrams its C plane handed up to
Python and dropped at that bounded queue, what the protocol core judged, by
reason, the cookie replies it sent; the replies the flooder received; the
daemon's CPU (utime + stime of all its threads, /proc/PID/stat) and VmRSS
(/proc/PID/status, sampled every 0.25 s: before, peak, after); pywgd's index
table (it must hold nothing for unauthenticated senders). The legitimate
peer: both sides drop and re-add each other once the flood runs, so the
handshake happens in the flood (seconds from the first ping to it), then
``--mbytes`` of TCP each way through the tunnel, against the same transfers
unflooded just before, with the same daemon. After the flood, 50 single
bad-mac1 probes must each be judged (pywgd still listens) and a fresh
handshake must complete.

For reference (skip with ``--no-reference``) the same floods then run
against Debian's wireguard-go as the flooded daemon (the /proc and nstat
figures, the handshake and throughput; it has no counters to ask).

Every process shares this machine's CPUs, so the flooder's CPU use is part
of what the legitimate peer loses. Needs root, iproute2 and wireguard-go.
`tests/tunnel/test_hardening_net.py` runs a short version in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pywg.constants import INITIATION_MAC1_OFFSET, MAC_SIZE
from pywg.cookie import CookieGenerator, cookie_key
from pywg.crypto import tai64n, xaead_decrypt
from pywg.exceptions import DecryptionError
from pywg.handshake import create_initiation
from pywg.keys import PrivateKey, PublicKey
from pywg.lab import UAPI_DIR, Host, Lab, LabError, require_root, tcp_transfer
from pywg.lab.relay import read_line
from pywg.lab.wireguard import PYWGD, WIREGUARD_GO, WgNode, endpoint, start_node
from pywg.messages import parse_cookie_reply
from pywg.noise import DhKeyPair

MB = 1_000_000
PORT = 51820
FLOOD_SOURCES = tuple(f"198.18.2.{i}" for i in range(10, 41))  # on the flooder's link
FLOOD_KINDS = ("mac1", "garbage", "badmac1")
BATCH = 64  # datagrams per sendmmsg call
CLK_TCK = os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 20.0  # seconds for a daemon or a flood worker to start
COUNTERS_TIMEOUT = 10.0  # seconds pywgd has to answer SIGUSR1 (it may be busy: a flood)
REPLY_SAMPLE = 32  # cookie replies the flooder keeps for verification
LINGER = 0.5  # seconds the flooder keeps counting replies after it stopped sending
PROBES = 50  # datagrams sent one by one after a flood, each of which pywgd must judge
PACED_BATCH = 8  # datagrams per burst of the paced flood
PACED_SECONDS = 12.0  # it lasts at least this long


# -- /proc --------------------------------------------------------------------------------


def _udp_line(text: str) -> dict[str, int]:
    rows = [line.split() for line in text.splitlines() if line.startswith("Udp:")]
    names, values = rows[0], rows[1]
    return {name: int(value) for name, value in zip(names[1:], values[1:], strict=True)}


def proc_udp_counters(pid: int) -> dict[str, int]:
    """The Udp counters of PID's network namespace (/proc/PID/net/snmp, what `nstat` shows)."""
    return _udp_line(Path(f"/proc/{pid}/net/snmp").read_text())


def rss_kib(pid: int) -> int:
    """VmRSS of a process, KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LabError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5)


# -- a pywgd in the foreground: counters, RSS, CPU -------------------------------------------


class _Victim:
    """What both flooded daemons report about their process (pid, from /proc)."""

    pid: int

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def udp_counters(self) -> dict[str, int]:
        return proc_udp_counters(self.pid)


class ForegroundPywgd(_Victim):
    """pywgd in the foreground in a lab host (``pywgd -f IFACE``, LOG_LEVEL=debug).

    Its log goes to a file, so :meth:`counters` can send SIGUSR1 and read the
    JSON line of health counters it writes; :attr:`pid` is the daemon itself,
    for /proc. Keyed, listening on `port`, addressed 198.19.NET.INDEX and
    fd19::NET:INDEX and up, as :func:`pywg.lab.wireguard.start_node` does.
    The lab kills it at close; :meth:`close` removes the log.
    """

    name = "pywgd"

    def __init__(
        self,
        lab: Lab,
        host: Host,
        *,
        net: int,
        index: int,
        port: int = PORT,
        mtu: int = 1420,
        env: dict[str, str] | None = None,
    ) -> None:
        ifname = lab.ifname("pw")
        fd, name = tempfile.mkstemp(prefix=f"pywgd-{ifname}-", suffix=".log")
        self.log_path = Path(name)
        self._seen = 0  # log bytes already searched for counters
        argv = (*PYWGD.argv, "-f", ifname)
        with os.fdopen(fd, "wb") as log:  # the daemon keeps its own copy
            self.proc = host.popen(
                *argv, env={"LOG_LEVEL": "debug", **(env or {})}, stdout=log, stderr=log
            )
        self.pid = self.proc.pid  # `ip netns exec` execs: this is the daemon
        sock = UAPI_DIR / f"{ifname}.sock"
        end = time.monotonic() + START_TIMEOUT
        while not sock.exists():
            if self.proc.poll() is not None or time.monotonic() > end:
                raise LabError(f"pywgd -f {ifname} did not start: {self.log_tail()}")
            time.sleep(0.02)
        key = PrivateKey.generate()
        addr4, addr6 = f"198.19.{net}.{index}", f"fd19::{net}:{index}"
        self.node = WgNode(lab, host, PYWGD, ifname, key, port, addr4, addr6)
        self.node.set(f"private_key={key.to_hex()}\nlisten_port={port}\n")
        host.addr(ifname, f"{addr4}/24")
        host.addr(ifname, f"{addr6}/112")
        host.link_up(ifname, mtu=mtu)
        host.wait_ipv6_ready(ifname)

    @property
    def public_key(self) -> PublicKey:
        return self.node.public_key

    def log_tail(self, size: int = 2000) -> str:
        return self.log_path.read_bytes()[-size:].decode(errors="replace")

    def counters(self, timeout: float = COUNTERS_TIMEOUT) -> dict[str, Any]:
        """Send SIGUSR1 and return the health counters pywgd logs in answer."""
        path = self.log_path
        self._seen = max(self._seen, path.stat().st_size)
        os.kill(self.pid, signal.SIGUSR1)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with path.open("rb") as f:
                f.seek(self._seen)
                fresh = f.read()
            complete = fresh[: fresh.rfind(b"\n") + 1]
            for line in complete.decode(errors="replace").splitlines():
                _, sep, rest = line.partition(" counters ")
                if sep:
                    self._seen += len(complete)
                    result: dict[str, Any] = json.loads(rest)
                    return result
            if self.proc.poll() is not None:
                raise LabError(f"pywgd exited ({self.proc.returncode}): {self.log_tail()}")
            time.sleep(0.02)
        raise LabError(f"pywgd did not log its counters within {timeout:g} s of SIGUSR1")

    def stop(self) -> None:
        """SIGTERM (it removes its interface and UAPI socket), then remove the log."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.close()

    def close(self) -> None:
        """Remove the log (the lab stops the daemon)."""
        self.log_path.unlink(missing_ok=True)


def dropped_total(counters: dict[str, Any]) -> int:
    """Datagrams the core dropped, all reasons (initiations answered with a cookie too)."""
    return sum(int(v) for v in counters.get("dropped", {}).values())


def rejected_total(counters: dict[str, Any]) -> int:
    """Transport packets rejected (bad tag, replayed, too old): C plane plus Python core."""
    plane = counters.get("plane", {})
    dropped = counters.get("dropped", {})
    return int(plane.get("rx_rejected", 0)) + int(dropped.get("transport_rejected", 0))


def counter_delta(before: dict[str, Any], after: dict[str, Any], key: str) -> dict[str, int]:
    """after[key] - before[key] for a dict of counters, non-zero entries only."""
    old, new = before.get(key, {}), after.get(key, {})
    out = {name: int(new[name]) - int(old.get(name, 0)) for name in new}
    return {name: value for name, value in sorted(out.items()) if value}


# -- what the flooder sends -------------------------------------------------------------------


def mac1_initiations(responder: PublicKey, count: int, *, keys: int = 64) -> list[bytes]:
    """Real initiations to `responder` from `keys` random static keys it does not know.

    Each has its own ephemeral key and a random sender index; mac1 is valid,
    mac2 zero (the flooder holds no cookie). Without the DoS defence each one
    costs the responder its DH work before it finds the sender unknown.
    """
    statics = [DhKeyPair.from_private(bytes(PrivateKey.generate())) for _ in range(keys)]
    macs = CookieGenerator(bytes(responder))
    stamp = tai64n(time.time())
    out = []
    for i in range(count):
        index = int.from_bytes(os.urandom(4), "little")
        created = create_initiation(statics[i % keys], bytes(responder), index, stamp)
        out.append(macs.add_macs(created.message, INITIATION_MAC1_OFFSET, 0.0))
    return out


def bad_mac1_drops(counters: dict[str, Any]) -> int:
    """pywgd's bad-mac1 drops: in the C plane before the queue, and in the core."""
    plane = counters.get("plane") or {}
    return int(plane.get("rx_bad_mac1", 0)) + int(counters["dropped"].get("bad_mac1", 0))


def bad_mac1_initiations(count: int, rng: random.Random) -> list[bytes]:
    """148-byte type-1 messages whose mac1 is wrong (random bodies and macs)."""
    return [b"\x01\x00\x00\x00" + rng.randbytes(144) for _ in range(count)]


def garbage(count: int, rng: random.Random) -> list[bytes]:
    """Random bytes of random lengths (1-1400); a third start with a valid type (1-4)."""
    out = []
    for i in range(count):
        size = rng.randint(1, 200) if i % 2 else rng.randint(1, 1400)
        data = rng.randbytes(size)
        if i % 3 == 0 and size >= 4:
            data = bytes((rng.randint(1, 4), 0, 0, 0)) + data[4:]
        out.append(data)
    return out


def message_pool(kind: str, responder: PublicKey, count: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    if kind == "mac1":
        return mac1_initiations(responder, count)
    if kind == "badmac1":
        return bad_mac1_initiations(count, rng)
    if kind == "garbage":
        return garbage(count, rng)
    raise ValueError(f"unknown flood kind {kind!r}")


def verify_cookie_replies(responder: PublicKey, pool: list[bytes], replies: list[bytes]) -> int:
    """How many of `replies` are cookie replies that decrypt (AD = mac1 of what we sent)."""
    mac1_by_index = {
        int.from_bytes(m[4:8], "little"): m[INITIATION_MAC1_OFFSET : INITIATION_MAC1_OFFSET + 16]
        for m in pool
        if len(m) == 148
    }
    key = cookie_key(bytes(responder))
    good = 0
    for data in replies:
        try:
            reply = parse_cookie_reply(data)
            mac1 = mac1_by_index[reply.receiver]
            cookie = xaead_decrypt(key, reply.nonce, reply.encrypted_cookie, mac1)
        except (KeyError, DecryptionError, ValueError):
            continue
        good += len(cookie) == MAC_SIZE
    return good


# -- the flooder: a process in the flooder's namespace ----------------------------------------

_WORKER = r"""
import ctypes, json, os, select, socket, sys, time
cfg = json.loads(sys.argv[1])
raw, msgs, i = open(cfg["pool"], "rb").read(), [], 0
while i < len(raw):
    n = int.from_bytes(raw[i:i + 2], "big")
    msgs.append(raw[i + 2:i + 2 + n])
    i += 2 + n
batch = cfg["batch"]
msgs = (msgs * batch)[: max(batch, len(msgs) // batch * batch)]  # whole batches

class IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
class MsgHdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.c_void_p), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]
class MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", MsgHdr), ("len", ctypes.c_uint)]

libc = ctypes.CDLL(None, use_errno=True)
sendmmsg = libc.sendmmsg
sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
sendmmsg.restype = ctypes.c_int
MSG_DONTWAIT = 0x40
store = ctypes.create_string_buffer(b"".join(msgs))
iov = (IOVec * len(msgs))()
vec = (MMsgHdr * len(msgs))()
base, off = ctypes.addressof(store), 0
for k, m in enumerate(msgs):
    iov[k].base, iov[k].len = base + off, len(m)
    vec[k].hdr.iov, vec[k].hdr.iovlen = ctypes.addressof(iov) + k * ctypes.sizeof(IOVec), 1
    off += len(m)
vbase, vsize, n = ctypes.addressof(vec), ctypes.sizeof(MMsgHdr), len(msgs)

socks = []
for src in cfg["sources"]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    s.bind((src, 0))
    s.connect(tuple(cfg["target"]))
    s.setblocking(False)
    socks.append(s)
fds = [s.fileno() for s in socks]
pos = [(k * batch * 7) % n for k in range(len(fds))]
sent = errors = 0
replies, samples = {}, []

def drain():
    for s in socks:
        while True:
            try:
                d = s.recv(4096)
            except BlockingIOError:
                break
            except OSError:  # ICMP errors queued on the socket
                replies["error"] = replies.get("error", 0) + 1
                continue
            t = str(d[0]) if d else "empty"
            replies[t] = replies.get(t, 0) + 1
            if d[:1] == b"\x03" and len(samples) < cfg["sample"]:
                samples.append(d.hex())

stdin = sys.stdin.fileno()
print("go", flush=True)
start = time.monotonic()
deadline, rate = start + cfg["seconds"], cfg["rate"]
while True:
    for k in range(len(fds)):
        r = sendmmsg(fds[k], vbase + pos[k] * vsize, batch, MSG_DONTWAIT)
        if r > 0:
            sent += r
        else:
            errors += 1
        pos[k] = (pos[k] + batch) % n
    drain()
    now = time.monotonic()
    if rate > 0 and start + sent / rate > now:  # paced: wait for the schedule
        select.select([stdin], [], [], min(0.05, start + sent / rate - now))
        now = time.monotonic()
    if now >= deadline or select.select([stdin], [], [], 0)[0]:
        break
stop = time.monotonic()
while time.monotonic() < stop + cfg["linger"]:
    drain()
    time.sleep(0.01)
print(json.dumps({"sent": sent, "errors": errors, "seconds": stop - start,
                  "replies": replies, "samples": samples}), flush=True)
"""


_PROBE = r"""
import socket, sys, time
addr, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr.rsplit(".", 1)[0] + ".2", 0))  # the flooder's link address, not a flood source
for m in sys.argv[3:]:
    s.sendto(bytes.fromhex(m), (addr, port))
    time.sleep(0.01)
"""


@dataclass
class WorkerResult:
    sent: int
    errors: int  # sendmmsg calls that sent nothing (EAGAIN, ENOBUFS)
    seconds: float
    replies: dict[str, int]  # datagrams received back, by first byte (message type)
    samples: list[bytes]  # the first cookie replies, for verification
    cpu_s: float


class Flooder:
    """`procs` flood workers in `host`, each sending `pool` round-robin from every source.

    `rate` (datagrams/s, all workers together) paces them; None: as fast as
    they can. Starts at once; :meth:`stop` ends them (or `seconds` does) and
    collects what they counted. The lab kills them if the caller does not.
    """

    def __init__(
        self,
        host: Host,
        pool: list[bytes],
        target: tuple[str, int],
        *,
        sources: tuple[str, ...] = FLOOD_SOURCES,
        procs: int = 1,
        seconds: float = 120.0,
        rate: float | None = None,
        batch: int = BATCH,
        workdir: str,
    ) -> None:
        self.pool_path = Path(workdir) / f"pool-{id(self)}.bin"
        self.pool_path.write_bytes(b"".join(len(m).to_bytes(2, "big") + m for m in pool))
        self.procs: list[subprocess.Popen[bytes]] = []
        procs = max(1, min(procs, len(sources)))
        share = [sources[i::procs] for i in range(procs)]
        for mine in share:
            cfg = {
                "pool": str(self.pool_path),
                "target": list(target),
                "sources": list(mine),
                "batch": batch,
                "seconds": seconds,
                "rate": rate / procs if rate else 0,
                "linger": LINGER,
                "sample": REPLY_SAMPLE,
            }
            pipes: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
            self.procs.append(host.popen(sys.executable, "-c", _WORKER, json.dumps(cfg), **pipes))
        for proc in self.procs:  # wait for every worker to start sending
            assert proc.stdout is not None
            line = read_line(proc.stdout, START_TIMEOUT)
            if line.strip() != b"go":
                self.kill()
                raise LabError(f"a flood worker did not start: {line!r}")
        self.started = time.monotonic()

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.procs:
            with contextlib.suppress(OSError):  # already gone
                total += cpu_seconds(proc.pid)
        return total

    def stop(self, timeout: float = 20.0) -> WorkerResult:
        cpu = self.cpu_seconds()
        for proc in self.procs:
            assert proc.stdin is not None
            with contextlib.suppress(OSError):  # the worker stops sending, counts replies, reports
                proc.stdin.write(b"stop\n")
                proc.stdin.flush()
        total = WorkerResult(0, 0, 0.0, {}, [], cpu)
        end = time.monotonic() + timeout
        try:
            for proc in self.procs:
                out, _ = proc.communicate(timeout=max(0.1, end - time.monotonic()))
                if proc.returncode != 0:
                    raise LabError(f"a flood worker failed (exit {proc.returncode})")
                got = json.loads(out.decode().strip().splitlines()[-1])
                total.sent += got["sent"]
                total.errors += got["errors"]
                total.seconds = max(total.seconds, got["seconds"])
                for kind, count in got["replies"].items():
                    total.replies[kind] = total.replies.get(kind, 0) + count
                total.samples += [bytes.fromhex(s) for s in got["samples"]]
        finally:
            self.kill()
            self.pool_path.unlink(missing_ok=True)
        return total

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


# -- the scenario -------------------------------------------------------------------------


@dataclass
class FloodResult:
    """One kind of flood against a fresh daemon, the legitimate peer reconnecting through it."""

    kind: str
    victim: str  # the flooded daemon: pywgd, or wireguard-go for reference
    rate_cap: float | None  # datagrams/s the flooder was paced to; None: as fast as it goes
    procs: int
    sources: int  # flooder addresses
    seconds: float  # flood duration
    sent: int  # by the flooder (its sendmmsg count)
    sent_pps: float
    send_errors: int  # sendmmsg calls that sent nothing
    victim_udp_in: int  # UdpInDatagrams of the victim's namespace over the flood (legit too)
    victim_udp_in_pps: float
    rcvbuf_errors: int  # UdpRcvbufErrors: the kernel dropped, the victim's socket was full
    # pywgd's SIGUSR1 counters (empty / 0 for wireguard-go):
    plane_up: int  # handed up by the C plane to Python (the flood, and handshakes)
    plane_queue_drops: int  # dropped at the plane's bounded queue to Python
    unjudged: int  # handed up but not dropped by the core (the legit peer's: accepted)
    core_dropped: dict[str, int]  # what the protocol core dropped, by reason
    core_pps: float  # datagrams the core judged per second
    c_dropped: dict[str, int]  # dropped by the C plane before Python: junk, bad_mac1, ...
    replies_received: dict[str, int]  # at the flooder, by message type
    cookie_replies_verified: str  # "k/n" of the sampled cookie replies that decrypt
    victim_cpu_percent: float  # of one core, over the flood
    flooder_cpu_percent: float
    rss_before_kib: int
    rss_peak_kib: int  # sampled every 0.25 s during the flood
    rss_after_kib: int
    index_table_unauth: int  # during the flood, before the legit handshake (-1: unknown)
    index_table_max: int  # during the flood, the legitimate peer's entries included
    handshake_s: float | None  # the legit peer's first ping to its handshake; None: none
    baseline_mbit: dict[str, float] = field(default_factory=dict)  # unflooded, same pywgd
    legit_mbit: dict[str, float] = field(default_factory=dict)  # during the flood
    legit_ok: bool = True  # every legitimate transfer arrived intact
    probes_sent: int = 0  # after the flood: single bad-mac1 datagrams, slowly (pywgd only)
    probes_judged: int = 0  # ... of which the core judged (bad_mac1): is pywgd still listening?
    recovery_handshake_s: float | None = None  # a fresh handshake after the flood

    def judged(self) -> dict[str, int]:
        """Every drop by reason, in the core or (before the queue) in C."""
        out = dict(self.core_dropped)
        for reason, n in self.c_dropped.items():
            out[reason] = out.get(reason, 0) + n
        return out

    def fraction(self, direction: str) -> float:
        """Flooded / unflooded legitimate throughput in one direction."""
        base = self.baseline_mbit.get(direction, 0.0)
        return self.legit_mbit.get(direction, 0.0) / base if base else 0.0


@dataclass
class Report:
    pool: int
    floods: list[FloodResult]


VICTIMS = ("pywgd", "wireguard-go")


class WireguardGoDaemon(_Victim):
    """Debian's wireguard-go as the flooded daemon, for reference: /proc figures only.

    It has no counters to ask for (:meth:`counters` returns an empty dict).
    """

    name = "wireguard-go"

    def __init__(self, lab: Lab, host: Host, *, net: int, index: int) -> None:
        self.node = start_node(lab, host, WIREGUARD_GO, net=net, index=index)
        pids = host.run("ip", "netns", "pids", host.netns).stdout.split()
        mine = [int(p) for p in pids if _comm(int(p)) == "wireguard-go"]
        if len(mine) != 1:
            raise LabError(f"cannot tell wireguard-go's pid in {host.netns}: {pids}")
        self.pid = mine[0]

    @property
    def public_key(self) -> PublicKey:
        return self.node.public_key

    def counters(self, timeout: float = COUNTERS_TIMEOUT) -> dict[str, Any]:
        return {}

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)  # it removes its interface and UAPI socket
        end = time.monotonic() + 10
        while Path(f"/proc/{self.pid}").exists() and time.monotonic() < end:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


Victim = ForegroundPywgd | WireguardGoDaemon


class FloodLab:
    """The flooded daemon (the victim: pywgd in the foreground, or wireguard-go for
    reference), a wireguard-go peer on link 1 (198.18.1.0/24) and a flooder on
    link 2 (198.18.2.0/24, 31 more addresses).

    Each :meth:`measure` restarts the victim (a fresh daemon, a new key), so one
    flood cannot leave state behind for the next.
    """

    def __init__(
        self,
        lab: Lab,
        workdir: str,
        *,
        victim: str = "pywgd",
        env: dict[str, str] | None = None,
    ) -> None:
        if victim not in VICTIMS:
            raise ValueError(f"unknown victim {victim!r}")
        self.lab = lab
        self.workdir = workdir
        self.victim_impl = victim
        self.env = env
        self.v_host, go_host, self.fl = lab.host("v"), lab.host("go"), lab.host("fl")
        self.link = lab.link(self.v_host, go_host, v6=False)
        self.flood_link = lab.link(self.v_host, self.fl, v6=False)
        for address in FLOOD_SOURCES:
            self.fl.addr(self.flood_link.b_if, f"{address}/24")
        self.go = start_node(lab, go_host, WIREGUARD_GO, net=1, index=2)
        self.target = (self.flood_link.a_addr4, PORT)
        self._victim: Victim | None = None

    @property
    def victim(self) -> Victim:
        if self._victim is None:
            raise LabError("the flooded daemon is not running")
        return self._victim

    @property
    def directions(self) -> tuple[str, str]:
        """The legitimate transfers' labels: to the victim, from the victim (both ends of
        each are the flooded daemon and its wireguard-go peer)."""
        name = self.victim_impl
        return f"into {name}", f"out of {name}"

    def start_victim(self) -> Victim:
        self.stop_victim()
        if self.victim_impl == "pywgd":
            self._victim = ForegroundPywgd(self.lab, self.v_host, net=1, index=1, env=self.env)
        else:
            self._victim = WireguardGoDaemon(self.lab, self.v_host, net=1, index=1)
        return self._victim

    def stop_victim(self) -> None:
        if self._victim is not None:
            self._victim.stop()
            self._victim = None

    def close(self) -> None:
        self.stop_victim()

    def connect(self) -> None:
        """(Re)make the two peers, each with the other's endpoint: no session left."""
        v, go = self.victim.node, self.go
        for node in (v, go):
            node.set("replace_peers=true\n")
        v.add_peer(go, endpoint=endpoint(self.link.b_addr4, go.port))
        go.add_peer(v, endpoint=endpoint(self.link.a_addr4, v.port))

    def handshake(self, deadline: float) -> float | None:
        """Ping from wireguard-go's host until it reports a handshake; the seconds it took."""
        go, v = self.go, self.victim.node
        start = time.monotonic()
        while time.monotonic() < start + deadline:
            go.host.ping(v.addr4, count=1, timeout=0.5)
            if go.peer_status(v).last_handshake:
                return time.monotonic() - start
        return None

    def transfers(self, nbytes: int, timeout: float) -> tuple[dict[str, float], bool]:
        """`nbytes` each way through the tunnel: Mbit/s per direction, and all intact."""
        go, v = self.go, self.victim.node
        to_victim, from_victim = self.directions
        ends = {to_victim: (go.host, v.host, v.addr4), from_victim: (v.host, go.host, go.addr4)}
        out, ok = {}, True
        for label, (tx, rx, address) in ends.items():
            try:
                result = tcp_transfer(tx, rx, address, nbytes, timeout=timeout)
            except LabError as exc:  # stalled: reported as 0 Mbit/s, not intact
                print(f"legitimate transfer {label} failed: {exc}", file=sys.stderr)
                out[label], ok = 0.0, False
                continue
            out[label] = round(result.mbit_per_s, 1)
            ok = ok and result.ok and result.received_bytes == nbytes
        return out, ok

    def probe(self, count: int = PROBES, deadline: float = 5.0) -> int:
        """Send `count` bad-mac1 initiations slowly; how many pywgd judged (bad_mac1).

        After a flood this shows whether pywgd still processes what arrives:
        each probe must come out as one more bad_mac1 drop, counted by the C
        plane (which checks mac1 before queuing) or by the core (pure Python).
        -1 for wireguard-go.
        """
        if not self.victim.counters():
            return -1
        probes = bad_mac1_initiations(count, random.Random(7))
        before = bad_mac1_drops(self.victim.counters())
        target = (self.target[0], str(self.target[1]))
        self.fl.run(sys.executable, "-c", _PROBE, *target, *(m.hex() for m in probes))
        judged = 0
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            judged = bad_mac1_drops(self.victim.counters()) - before
            if judged >= count:
                break
            time.sleep(0.2)
        return judged

    def settled_counters(self, deadline: float = 5.0) -> dict[str, Any]:
        """The victim's counters once its core has stopped judging (its backlog worked off)."""
        counters = self.victim.counters()
        end = time.monotonic() + deadline
        while counters and time.monotonic() < end:
            time.sleep(0.3)
            fresh = self.victim.counters()
            if dropped_total(fresh) == dropped_total(counters):
                return fresh
            counters = fresh
        return counters

    def measure(
        self,
        kind: str,
        *,
        seconds: float,
        nbytes: int,
        pool_size: int = 4096,
        procs: int = 1,
        rate: float | None = None,
        sources: tuple[str, ...] = FLOOD_SOURCES,
        batch: int = BATCH,
        legit: bool = True,
        handshake_deadline: float = 30.0,
        transfer_timeout: float = 60.0,
    ) -> FloodResult:
        """A fresh victim: the legitimate baseline, then a flood of `kind` for >= `seconds`.

        With `legit`, wireguard-go's peer is made anew once the flood runs (so it
        must handshake through it) and moves `nbytes` each way. After the flood,
        single probes and a fresh handshake show whether the victim still listens.
        """
        victim = self.start_victim()
        pool = message_pool(kind, victim.public_key, pool_size)
        self.connect()
        if self.handshake(10) is None:
            raise LabError(f"no handshake with {self.victim_impl} before the flood")
        baseline: dict[str, float] = {}
        if legit:
            baseline, ok = self.transfers(nbytes, transfer_timeout)
            if not ok:
                raise LabError("the unflooded transfers did not arrive intact")
        self.connect()  # no session: the legitimate peer has to handshake during the flood
        c0, u0 = victim.counters(), victim.udp_counters()
        cpu0, rss0 = victim.cpu_seconds(), victim.rss_kib()
        t0 = time.monotonic()
        flooder = Flooder(
            self.fl,
            pool,
            self.target,
            sources=sources,
            procs=procs,
            seconds=seconds + handshake_deadline + 2 * transfer_timeout + 10,  # a cap
            rate=rate,
            batch=batch,
            workdir=self.workdir,
        )
        peak = [rss0]
        sampling = threading.Event()

        def sample_rss() -> None:
            while not sampling.wait(0.25):
                with contextlib.suppress(OSError):
                    peak[0] = max(peak[0], victim.rss_kib())

        sampler = threading.Thread(target=sample_rss, daemon=True)
        sampler.start()
        handshake_s: float | None = None
        mbit: dict[str, float] = {}
        ok = True
        try:
            time.sleep(min(1.0, seconds / 4))  # under way: the responder is under load by now
            unauth = int(victim.counters().get("index_table", -1))
            if legit:
                handshake_s = self.handshake(handshake_deadline)
                ok = handshake_s is not None
                if ok:
                    mbit, ok = self.transfers(nbytes, transfer_timeout)
            during = victim.counters()
            left = flooder.started + seconds - time.monotonic()
            if left > 0:
                time.sleep(left)
            flood_cpu = flooder.cpu_seconds()
            cpu1 = victim.cpu_seconds()
            t1 = time.monotonic()
            worker = flooder.stop()
        finally:
            flooder.kill()
            sampling.set()
            sampler.join(5)
        c1 = self.settled_counters()
        u1, rss1 = victim.udp_counters(), victim.rss_kib()
        probes_judged = self.probe()
        recovery = None
        if probes_judged != 0:  # else it hears nothing at all: no handshake either
            self.connect()
            recovery = self.handshake(10)
        flood_s = worker.seconds or (t1 - t0)
        window = t1 - t0
        core = counter_delta(c0, c1, "dropped")
        plane = counter_delta(c0, c1, "plane")
        c_dropped = {
            reason: plane[name]
            for reason, name in (
                ("junk", "rx_junk"),
                ("bad_mac1", "rx_bad_mac1"),
                ("unknown_index", "rx_unknown_index"),
                ("cookie_reply_sent", "rx_cookie_replies"),  # answered from C under load
                ("cookie_limited", "rx_cookie_limited"),  # that source had its share
            )
            if plane.get(name)
        }
        cookies = [d for d in worker.samples if len(d) == 64]
        verified = verify_cookie_replies(victim.public_key, pool, cookies)
        udp_in = u1["InDatagrams"] - u0["InDatagrams"]
        return FloodResult(
            kind=kind,
            victim=self.victim_impl,
            rate_cap=rate,
            procs=procs,
            sources=len(sources),
            seconds=round(flood_s, 2),
            sent=worker.sent,
            sent_pps=round(worker.sent / flood_s),
            send_errors=worker.errors,
            victim_udp_in=udp_in,
            victim_udp_in_pps=round(udp_in / window),
            rcvbuf_errors=u1["RcvbufErrors"] - u0["RcvbufErrors"],
            plane_up=plane.get("up_datagrams", 0),
            plane_queue_drops=plane.get("queue_drops", 0),
            unjudged=plane.get("up_datagrams", 0) - sum(core.values()),
            core_dropped=core,
            core_pps=round(sum(core.values()) / window),
            c_dropped=c_dropped,
            replies_received=worker.replies,
            cookie_replies_verified=f"{verified}/{len(cookies)}",
            victim_cpu_percent=round(100 * (cpu1 - cpu0) / window, 1),
            flooder_cpu_percent=round(100 * flood_cpu / flood_s, 1),
            rss_before_kib=rss0,
            rss_peak_kib=peak[0],
            rss_after_kib=rss1,
            index_table_unauth=unauth,
            index_table_max=max(int(during.get("index_table", -1)), int(c1.get("index_table", -1))),
            handshake_s=None if handshake_s is None else round(handshake_s, 2),
            baseline_mbit=baseline,
            legit_mbit=mbit,
            legit_ok=ok,
            probes_sent=PROBES if probes_judged >= 0 else 0,
            probes_judged=probes_judged,
            recovery_handshake_s=None if recovery is None else round(recovery, 2),
        )


def run(
    *,
    kinds: tuple[str, ...] = FLOOD_KINDS,
    victims: tuple[str, ...] = ("pywgd",),
    seconds: float = 8.0,
    mbytes: int = 50,
    procs: int = 1,
    pool_size: int = 4096,
    paced: float = 0.0,
    handshake_deadline: float = 30.0,
    progress: bool = False,
) -> Report:
    """Each kind of flood against a fresh daemon of each victim (one lab per victim);
    with `paced`, then pywgd's paced flood."""
    require_root()
    nbytes = mbytes * MB
    results = []
    for victim in victims:
        with Lab("pwf") as lab, tempfile.TemporaryDirectory(prefix="pywg-flood-") as workdir:
            fl = FloodLab(lab, workdir, victim=victim)
            try:
                phases: list[tuple[str, dict[str, Any]]] = [(k, {}) for k in kinds]
                if paced and victim == "pywgd":  # small bursts: the backlog empties, refills
                    one: dict[str, Any] = {"rate": paced, "batch": PACED_BATCH, "legit": False}
                    one["sources"] = FLOOD_SOURCES[:1]
                    one["seconds"] = max(seconds, PACED_SECONDS)
                    phases.append(("badmac1", one))
                for kind, extra in phases:
                    args: dict[str, Any] = {"seconds": seconds, "procs": procs, **extra}
                    result = fl.measure(
                        kind,
                        nbytes=nbytes,
                        pool_size=pool_size,
                        handshake_deadline=handshake_deadline,
                        **args,
                    )
                    if progress:
                        print(format_flood(result) + "\n", flush=True)
                    results.append(result)
            finally:
                fl.close()
    return Report(pool_size, results)


def format_flood(r: FloodResult) -> str:
    """One flood's figures, a few lines of text."""
    cap = "as fast as it goes" if r.rate_cap is None else f"paced to {r.rate_cap:,.0f}/s"
    hs = "none" if r.handshake_s is None else f"{r.handshake_s:.1f} s"
    recovery = "none" if r.recovery_handshake_s is None else f"{r.recovery_handshake_s:.1f} s"
    pywgd = r.victim == "pywgd"
    lines = [
        f"{r.kind!r} flood against {r.victim} ({cap}): {r.procs} process(es), "
        f"{r.sources} source addresses, {r.seconds:.1f} s",
        f"  sent by the flooder    {r.sent_pps:>9,.0f} pkt/s ({r.sent:,} datagrams, "
        f"{r.send_errors} empty sendmmsg calls), flooder CPU {r.flooder_cpu_percent:.0f}%",
        f"  {r.victim}'s socket read {r.victim_udp_in_pps:>9,.0f} pkt/s (UdpInDatagrams "
        f"{r.victim_udp_in:,}; UdpRcvbufErrors {r.rcvbuf_errors:,})",
    ]
    if pywgd:
        lines += [
            f"  C plane dropped        {sum(r.c_dropped.values()):>9,} before Python {r.c_dropped}",
            f"  C plane handed up      {r.plane_up:>9,} (queue drops {r.plane_queue_drops:,}; "
            f"not dropped {r.unjudged:,})",
            f"  protocol core judged   {r.core_pps:>9,.0f} pkt/s {r.core_dropped}",
        ]
    lines += [
        f"  back to the flooder    {r.replies_received} "
        f"(cookie replies that decrypt: {r.cookie_replies_verified})",
        f"  {r.victim} CPU {r.victim_cpu_percent:.0f}% of a core; VmRSS "
        f"{r.rss_before_kib / 1024:.1f} -> peak {r.rss_peak_kib / 1024:.1f} -> "
        f"{r.rss_after_kib / 1024:.1f} MiB",
    ]
    if pywgd:
        lines.append(
            f"  index table: {r.index_table_unauth} before the legitimate handshake, "
            f"at most {r.index_table_max} with it"
        )
    if r.baseline_mbit:
        rates = ", ".join(
            f"{d} {r.legit_mbit.get(d, 0):.0f} Mbit/s ({100 * r.fraction(d):.0f}% of "
            f"{r.baseline_mbit[d]:.0f} unflooded)"
            for d in r.baseline_mbit
        )
        intact = "intact" if r.legit_ok else "NOT INTACT"
        lines.append(f"  legitimate wireguard-go peer: handshake in {hs}; TCP {rates}; {intact}")
    probes = f"{r.probes_judged} of {r.probes_sent} single probes judged; " if pywgd else ""
    lines.append(f"  after the flood: {probes}a fresh handshake in {recovery}")
    return "\n".join(lines)


def format_summary(report: Report) -> str:
    """A table of all floods: one line each."""
    head = (
        f"{'victim':<13}{'flood':<12}{'sent/s':>9}{'read/s':>9}{'cookies':>11}{'CPU%':>6}"
        f"{'RSS MiB':>14}{'handshake':>11}{'legit in/out % of unflooded':>29}"
    )
    lines = [head]
    for r in report.floods:
        kind = r.kind if r.rate_cap is None else f"{r.kind}@{r.rate_cap / 1000:.0f}k"
        hs = (
            "-"
            if not r.baseline_mbit
            else "none"
            if r.handshake_s is None
            else f"{r.handshake_s:.1f} s"
        )
        share = "/".join(f"{100 * r.fraction(d):.0f}" for d in r.baseline_mbit) or "-"
        rss = f"{r.rss_before_kib / 1024:.0f}->{r.rss_peak_kib / 1024:.0f}"
        lines.append(
            f"{r.victim:<13}{kind:<12}{r.sent_pps:>9,.0f}{r.victim_udp_in_pps:>9,.0f}"
            f"{r.replies_received.get('3', 0):>11,}{r.victim_cpu_percent:>6.0f}{rss:>14}"
            f"{hs:>11}{share:>29}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="least flood time per kind")
    parser.add_argument("--mbytes", type=int, default=50, help="MB per legitimate transfer")
    parser.add_argument("--procs", type=int, default=1, help="flood worker processes")
    parser.add_argument("--pool", type=int, default=4096, help="distinct messages per flood")
    parser.add_argument("--kinds", default=",".join(FLOOD_KINDS), help="mac1,garbage,badmac1")
    parser.add_argument(
        "--paced", type=float, default=12000, help="then bad-mac1 at this rate from one address"
    )
    parser.add_argument(
        "--handshake-deadline", type=float, default=30.0, help="seconds for the legit handshake"
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the same floods against wireguard-go"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    for kind in kinds:
        if kind not in FLOOD_KINDS:
            parser.error(f"unknown flood kind {kind!r}")
    started = time.monotonic()
    report = run(
        kinds=kinds,
        victims=("pywgd",) if args.no_reference else VICTIMS,
        seconds=args.seconds,
        mbytes=args.mbytes,
        procs=args.procs,
        pool_size=args.pool,
        paced=args.paced,
        handshake_deadline=args.handshake_deadline,
        progress=not args.json,
    )
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        print(format_summary(report))
        print(f"\n(pool of {report.pool} messages per flood; {os.cpu_count()} CPUs; run time "
              f"{time.monotonic() - started:.0f} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
