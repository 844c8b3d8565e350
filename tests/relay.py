"""A UDP relay for lab tests: reorders, duplicates, records and replays WireGuard datagrams.

The relay runs (this interpreter, :meth:`Host.popen`) in a middle lab host
with one socket on each side: what arrives on the left socket goes out of the
right one to side B, what arrives on the right goes out of the left to side
A. The two WireGuard peers use the relay's addresses as each other's
endpoints, so every datagram between them passes through it, and each sees
the other at the relay's address (which is where replays come from too).

Faults, per direction, seeded: with probability `hold` a datagram is held
back and sent after 1-`depth` later ones (or after `idle` seconds of quiet),
so it arrives out of order; with probability `dup` a copy is sent as well,
itself held back the same way. Commands on stdin, one JSON object a line,
each answered by one JSON line on stdout:

- ``{"cmd": "faults", "hold": 0.03, "dup": 0.03}``: set the faults (0 = none);
- ``{"cmd": "record", "to": "a", "count": 200}``: keep copies of the next
  `count` transport data messages (type 4, longer than a keepalive) going to
  side a (or b);
- ``{"cmd": "replay", "to": "a", "source": "own"}``: send those copies again,
  now, to that side, from the relay's address that side knows (``"own"``) or
  from its other one (``"other"``: a stranger's address, through R's routing);
- ``{"cmd": "stats"}``: datagrams relayed, held, duplicated, recorded, replayed.

:class:`Relay` starts it and speaks this protocol; the lab kills it at close.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any

from pywg.lab import Host, LabError

COMMAND_TIMEOUT = 10.0  # seconds the relay has to answer a command

_RELAY = r"""
import json, random, select, socket, sys, time
cfg = json.loads(sys.argv[1])
rng = random.Random(cfg["seed"])
def sock(addr):
    s = socket.socket(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 23)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 23)
    s.bind(tuple(addr))
    s.setblocking(False)
    return s
left, right = sock(cfg["left"]), sock(cfg["right"])
a, b = tuple(cfg["a"]), tuple(cfg["b"])
# a datagram arriving on `left` goes out of `right` to b, and the other way round
route = {left.fileno(): (right, b, "b"), right.fileno(): (left, a, "a")}
hold = dup = 0.0
depth, idle = cfg["depth"], cfg["idle"]
held = {"a": [], "b": []}  # [countdown, data] per direction
stats = {"to_a": 0, "to_b": 0, "held": 0, "duplicated": 0, "duplicated_to_a": 0,
         "duplicated_to_b": 0, "recorded": 0, "replayed": 0, "send_errors": 0}
record = {"a": 0, "b": 0}  # transport data messages still to record, per side
recorded = {"a": [], "b": []}
last = time.monotonic()

def send(out, dest, data):
    try:
        out.sendto(data, dest)
    except OSError:
        stats["send_errors"] += 1

def release(side, out, dest, all_=False):
    queue, keep = held[side], []
    for item in queue:
        item[0] -= 1
        if all_ or item[0] <= 0:
            send(out, dest, item[1])
        else:
            keep.append(item)
    held[side] = keep

def forward(fd, data):
    out, dest, side = route[fd]
    stats["to_" + side] += 1
    if record[side] and len(data) > 32 and data[:4] == b"\x04\x00\x00\x00":
        recorded[side].append(data)
        record[side] -= 1
        stats["recorded"] += 1
    if held[side]:
        release(side, out, dest)
    if hold and rng.random() < hold:
        held[side].append([rng.randint(1, depth), data])
        stats["held"] += 1
    else:
        send(out, dest, data)
    if dup and rng.random() < dup:
        held[side].append([rng.randint(0, depth), data])
        stats["duplicated"] += 1
        stats["duplicated_to_" + side] += 1

def command(line):
    global hold, dup
    req = json.loads(line)
    cmd = req["cmd"]
    if cmd == "faults":
        hold, dup = float(req.get("hold", 0)), float(req.get("dup", 0))
    elif cmd == "record":
        recorded[req["to"]].clear()
        record[req["to"]] = int(req["count"])
    elif cmd == "replay":
        side = req["to"]
        dest = a if side == "a" else b
        own = left if side == "a" else right  # the relay's address the peer knows
        out = own if req.get("source", "own") == "own" else (right if own is left else left)
        for data in recorded[side]:
            send(out, dest, data)
        stats["replayed"] += len(recorded[side])
        return {"replayed": len(recorded[side])}
    elif cmd != "stats":
        return {"error": f"unknown command {cmd!r}"}
    return dict(stats, recording={k: v for k, v in record.items()},
                recorded_now={k: len(v) for k, v in recorded.items()})

stdin = sys.stdin.fileno()
print(json.dumps({"ready": True}), flush=True)
buf = b""
while True:
    wait = idle if held["a"] or held["b"] else 1.0
    ready, _, _ = select.select([left, right, stdin], [], [], wait)
    now = time.monotonic()
    for s in ready:
        if s == stdin:
            chunk = sys.stdin.buffer.raw.read(65536)
            if not chunk:
                sys.exit(0)
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    print(json.dumps(command(line)), flush=True)
            continue
        fd = s.fileno()
        for _ in range(256):
            try:
                data = s.recv(65536)
            except BlockingIOError:
                break
            except OSError:  # an ICMP error queued on the socket
                continue
            forward(fd, data)
            last = now
    if (held["a"] or held["b"]) and (not ready or now - last >= idle):
        release("a", left, a, all_=True)
        release("b", right, b, all_=True)
"""


@dataclass(frozen=True)
class RelayEnds:
    """Where the relay listens (left for side A, right for side B) and where A and B are."""

    left: tuple[str, int]
    right: tuple[str, int]
    a: tuple[str, int]
    b: tuple[str, int]


class Relay:
    """The relay process in `host` between `ends.a` and `ends.b`; see the module docstring."""

    def __init__(
        self,
        host: Host,
        ends: RelayEnds,
        *,
        seed: int = 1,
        depth: int = 8,
        idle: float = 0.005,
    ) -> None:
        cfg = {
            "left": list(ends.left),
            "right": list(ends.right),
            "a": list(ends.a),
            "b": list(ends.b),
            "seed": seed,
            "depth": depth,
            "idle": idle,
        }
        pipes: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
        self.proc = host.popen(sys.executable, "-c", _RELAY, json.dumps(cfg), **pipes)
        self._lock = threading.Lock()
        if not self._read().get("ready"):
            raise LabError("the relay did not start")

    def _read(self) -> dict[str, Any]:
        stdout = self.proc.stdout
        assert stdout is not None
        line = _readline(stdout, COMMAND_TIMEOUT)
        if not line:
            raise LabError(f"the relay did not answer (exit status {self.proc.poll()})")
        result: dict[str, Any] = json.loads(line)
        return result

    def command(self, cmd: str, **args: object) -> dict[str, Any]:
        """Send one command, return the relay's answer."""
        stdin = self.proc.stdin
        assert stdin is not None
        with self._lock:
            stdin.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
            stdin.flush()
            answer = self._read()
        if "error" in answer:
            raise LabError(f"relay: {answer['error']}")
        return answer

    def faults(self, *, hold: float = 0.0, dup: float = 0.0) -> None:
        self.command("faults", hold=hold, dup=dup)

    def record(self, to: str, count: int) -> None:
        self.command("record", to=to, count=count)

    def replay(self, to: str, *, source: str = "own") -> int:
        return int(self.command("replay", to=to, source=source)["replayed"])

    def stats(self) -> dict[str, Any]:
        return self.command("stats")


def _readline(stream: IO[bytes], timeout: float) -> bytes:
    """One line from a pipe within `timeout` seconds (b"" if none)."""
    result: list[bytes] = []
    reader = threading.Thread(target=lambda: result.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0] if result else b""


# -- a UDP application behind the tunnel ---------------------------------------------------

_COUNTER = r"""
import json, select, socket, sys
addr, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind((addr, port))
print("ready", flush=True)
count, seen = 0, set()
while True:
    ready, _, _ = select.select([s, sys.stdin], [], [], 1.0)
    if sys.stdin in ready:
        break
    if s in ready:
        data = s.recv(65536)
        count += 1
        seen.add(data[:8])
print(json.dumps({"count": count, "distinct": len(seen)}), flush=True)
"""

_SENDER = r"""
import socket, sys, time
addr, port, count, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
start = time.monotonic()
for i in range(count):
    delay = start + i / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    s.sendto(i.to_bytes(8, "big") + b"pywg replay test datagram" * 8, (addr, port))
"""


class UdpCounter:
    """Counts the UDP datagrams an application receives on `address`:`port` in `host`."""

    def __init__(self, host: Host, address: str, port: int) -> None:
        pipes: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
        self.proc = host.popen(sys.executable, "-c", _COUNTER, address, str(port), **pipes)
        assert self.proc.stdout is not None
        if _readline(self.proc.stdout, COMMAND_TIMEOUT).strip() != b"ready":
            raise LabError("the UDP counter did not start")

    def result(self, timeout: float = COMMAND_TIMEOUT) -> dict[str, int]:
        """Stop counting: {"count": datagrams received, "distinct": different ones}."""
        out, _ = self.proc.communicate(b"stop\n", timeout=timeout)
        counted: dict[str, int] = json.loads(out.decode().strip().splitlines()[-1])
        return counted


def udp_send(host: Host, address: str, port: int, count: int, rate: float = 1000.0) -> None:
    """Send `count` numbered datagrams from `host` to `address`:`port` at `rate` per second."""
    host.run(
        sys.executable,
        "-c",
        _SENDER,
        address,
        str(port),
        str(count),
        str(rate),
        timeout=count / rate + 30,
    )


def wait_until(check: Any, deadline: float, step: float = 0.1) -> bool:
    """Poll `check()` until true or `deadline` seconds pass (bounded in count too)."""
    end = time.monotonic() + deadline
    for _ in range(int(deadline / step) + 2):
        if check():
            return True
        if time.monotonic() >= end:
            break
        time.sleep(step)
    return False
