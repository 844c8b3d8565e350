"""A UDP relay in a lab host: delay, loss, reordering, duplicates, recording and replays.

The relay runs as its own process (this interpreter, :meth:`Host.popen`) in
a middle lab host with one socket on each side: what arrives on the left
socket goes out of the right one to side B, what arrives on the right goes
out of the left one to side A. Two peers that use the relay's addresses as
each other's endpoints send every datagram through it, and each sees the
other at the relay's address (which is where replays come from too)::

    ends = RelayEnds(left=(left.b_addr4, 51820), right=(right.a_addr4, 51820),
                     a=(left.a_addr4, 51820), b=(right.b_addr4, 51820))
    relay = Relay(r, ends)                   # the lab kills it at close
    relay.faults(delay=0.05)                 # 50 ms each way: a 100 ms round trip
    relay.faults(to="b", loss=0.1, hold=0.03, dup=0.03)   # only towards B
    relay.stats()["lost"]

Faults, per direction (datagrams going to side A, or to side B), random but
seeded:

- `loss`: the probability that a datagram is dropped;
- `hold`: the probability that a datagram is held back and sent after 1 to
  `depth` later ones (or after `idle` seconds of quiet), so that it arrives
  out of order; `dup`: the probability that a copy is sent as well, itself
  held back the same way;
- `delay` (seconds) and `jitter`: every datagram leaves `delay` plus a
  uniformly random 0 to `jitter` seconds after it arrived (so jitter can
  reorder too). Delay is done here, in user space, because these kernels
  have no ``sch_netem`` (``tc qdisc add ... netem`` fails with "Specified
  qdisc kind is unknown") and nftables can drop or mark a packet but never
  hold it back. Loss on a lab interface without a relay is
  :meth:`pywg.lab.Host.loss` (nftables).

In that order: a lost datagram is neither held nor duplicated, and held
and duplicated ones are delayed too when they go.

Recording keeps copies of the next `count` WireGuard transport data messages
(type 4, longer than a keepalive) going to one side; a replay sends them
again at once, undelayed, from the relay's address that side knows
(``"own"``) or from its other one (``"other"``: a stranger's address).

The relay speaks JSON lines on its stdin/stdout, one answer per command
(``{"cmd": "faults", "to": "b", "delay": 0.1}``, ``record``, ``replay``,
``stats``; an error is ``{"error": ...}``), and exits at the end of its
input; :class:`Relay` wraps them. :func:`read_line` is the bounded pipe
reader it uses.
"""

from __future__ import annotations

import heapq
import json
import os
import random
import select
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import IO, Any, Final, Literal, TypedDict, cast

from .hosts import Closing, Host, LabError

Side = Literal["a", "b"]
COMMAND_TIMEOUT: Final = 10.0  # seconds the relay has to answer a command
STOP_GRACE: Final = 5.0  # seconds Relay.close waits for the process to end
_BUFFER: Final = 1 << 23  # socket buffers of the relay process
_BATCH: Final = 256  # datagrams read from one socket per wakeup


@dataclass(frozen=True)
class RelayEnds:
    """Where the relay listens (left for side A, right for side B) and where A and B are."""

    left: tuple[str, int]
    right: tuple[str, int]
    a: tuple[str, int]
    b: tuple[str, int]


@dataclass(frozen=True)
class Faults:
    """What the relay does to the datagrams of one direction (see the module docstring)."""

    loss: float = 0.0  # probability
    hold: float = 0.0  # probability
    dup: float = 0.0  # probability
    delay: float = 0.0  # seconds
    jitter: float = 0.0  # seconds, added: uniform in [0, jitter]

    def __post_init__(self) -> None:
        for name in ("loss", "hold", "dup"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise LabError(f"relay: {name} is a probability, not {getattr(self, name)!r}")
        if not (0.0 <= self.delay <= 60.0 and 0.0 <= self.jitter <= 60.0):
            raise LabError(f"relay: delay and jitter must be 0-60 s: {self}")


class RelayStats(TypedDict):
    """The relay's counters since it started."""

    to_a: int  # datagrams that arrived for side A
    to_b: int
    lost: int  # dropped for `loss`
    held: int  # held back for `hold`
    duplicated: int
    duplicated_to_a: int
    duplicated_to_b: int
    delayed: int  # queued for `delay`/`jitter`
    recorded: int
    replayed: int
    send_errors: int
    recording: dict[str, int]  # transport messages still to record, per side
    recorded_now: dict[str, int]  # recorded and kept for a replay, per side


class Relay(Closing):
    """The relay process in `host` between `ends.a` and `ends.b`; see the module docstring.

    `seed` makes the faults repeatable, `depth` is how many later datagrams
    at most overtake a held one, `idle` how long a held datagram waits for
    them. Starts with no faults.
    """

    def __init__(
        self,
        host: Host,
        ends: RelayEnds,
        *,
        seed: int = 1,
        depth: int = 8,
        idle: float = 0.005,
    ) -> None:
        if depth < 1 or idle <= 0:
            raise LabError("relay: depth must be >= 1 and idle > 0")
        self.host, self.ends = host, ends
        cfg = {**asdict(ends), "seed": seed, "depth": depth, "idle": idle}
        pipes: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
        self.proc = host.popen(sys.executable, "-c", _ENTRY, json.dumps(cfg), **pipes)
        self._lock = threading.Lock()
        if not self._read().get("ready"):
            raise LabError("the relay did not start")

    def __repr__(self) -> str:
        return f"Relay({self.host.name}, {self.ends})"

    def _read(self) -> dict[str, Any]:
        stdout = self.proc.stdout
        assert stdout is not None
        line = read_line(stdout, COMMAND_TIMEOUT)
        if not line:
            raise LabError(f"the relay did not answer (exit status {self.proc.poll()})")
        result: dict[str, Any] = json.loads(line)
        return result

    def command(self, cmd: str, **args: object) -> dict[str, Any]:
        """Send one command of the JSON protocol; return the relay's answer."""
        stdin = self.proc.stdin
        assert stdin is not None
        with self._lock:
            try:
                stdin.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
                stdin.flush()
            except OSError as exc:
                raise LabError(f"the relay is gone (exit status {self.proc.poll()})") from exc
            answer = self._read()
        if "error" in answer:
            raise LabError(f"relay: {answer['error']}")
        return answer

    def faults(
        self,
        *,
        loss: float = 0.0,
        hold: float = 0.0,
        dup: float = 0.0,
        delay: float = 0.0,
        jitter: float = 0.0,
        to: Side | None = None,
    ) -> None:
        """Set the faults of the direction towards `to` (None: both); unnamed ones are off.

        ``faults()`` turns everything off. Datagrams already delayed or held
        still go out when due.
        """
        faults = Faults(loss=loss, hold=hold, dup=dup, delay=delay, jitter=jitter)
        self.command("faults", to=to, **asdict(faults))

    def record(self, to: Side, count: int) -> None:
        """Keep copies of the next `count` transport data messages going to side `to`."""
        self.command("record", to=to, count=count)

    def replay(self, to: Side, *, source: Literal["own", "other"] = "own") -> int:
        """Send the recorded messages to `to` again now; returns how many."""
        return int(self.command("replay", to=to, source=source)["replayed"])

    def stats(self) -> RelayStats:
        return cast(RelayStats, self.command("stats"))

    def close(self) -> None:
        """Stop the relay now (else the lab stops it at close). Idempotent."""
        if self.proc.poll() is None:
            stdin = self.proc.stdin
            try:
                if stdin is not None:
                    stdin.close()  # the relay exits at the end of its input
                self.proc.wait(STOP_GRACE)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(STOP_GRACE)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def read_line(stream: IO[bytes], timeout: float) -> bytes:
    """One line from a pipe within `timeout` seconds (b"" if none came)."""
    result: list[bytes] = []
    reader = threading.Thread(target=lambda: result.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0] if result else b""


# -- the relay process ------------------------------------------------------------------------

_COUNTERS: Final = (
    *("to_a", "to_b", "lost", "held", "duplicated", "duplicated_to_a", "duplicated_to_b"),
    *("delayed", "recorded", "replayed", "send_errors"),
)  # the int fields of RelayStats
_ENTRY: Final = "import sys; from pywg.lab.relay import main; sys.exit(main(sys.argv[1:]))"


def _bind(addr: list[Any]) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUFFER)
    sock.bind((addr[0], addr[1]))
    sock.setblocking(False)
    return sock


def _is_transport_data(data: bytes) -> bool:
    """A WireGuard transport data message with a payload (not a keepalive): whitepaper §5.4.6."""
    return len(data) > 32 and data[:4] == b"\x04\x00\x00\x00"


class _Direction:
    """Everything about the datagrams going to one side, in one place for the hot path."""

    __slots__ = ("dest", "dup_key", "faults", "held", "record", "recorded", "sock", "to_key")

    def __init__(self, side: str, sock: socket.socket, dest: list[Any]) -> None:
        self.sock = sock  # the relay's socket this side knows
        self.dest: tuple[str, int] = (dest[0], dest[1])
        self.faults = Faults()
        self.held: list[list[Any]] = []  # [countdown, data]
        self.record = 0  # transport data messages still to record
        self.recorded: list[bytes] = []
        self.to_key, self.dup_key = f"to_{side}", f"duplicated_to_{side}"


class _Engine:
    """The relay's state and its loop (runs in the relay process, see :func:`main`)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.rng = random.Random(cfg["seed"])
        self.depth, self.idle = int(cfg["depth"]), float(cfg["idle"])
        self.left, self.right = _bind(cfg["left"]), _bind(cfg["right"])
        # towards A from the left socket, towards B from the right one
        self.to = {
            "a": _Direction("a", self.left, cfg["a"]),
            "b": _Direction("b", self.right, cfg["b"]),
        }
        self.delayed: list[tuple[float, int, _Direction, bytes]] = []  # heap: (due, n, to, data)
        self.sequence = 0
        self.stats = dict.fromkeys(_COUNTERS, 0)

    def send(self, to: _Direction, data: bytes, sock: socket.socket | None = None) -> None:
        try:
            (sock or to.sock).sendto(data, to.dest)
        except OSError:
            self.stats["send_errors"] += 1

    def emit(self, to: _Direction, data: bytes) -> None:
        """Send now, or queue until the direction's delay is up."""
        faults = to.faults
        if faults.delay or faults.jitter:
            due = time.monotonic() + faults.delay + self.rng.uniform(0.0, faults.jitter)
            self.sequence += 1  # equal due times leave in arrival order
            heapq.heappush(self.delayed, (due, self.sequence, to, data))
            self.stats["delayed"] += 1
        else:
            self.send(to, data)

    def release(self, to: _Direction, everything: bool = False) -> None:
        keep = []
        for item in to.held:
            item[0] -= 1
            if everything or item[0] <= 0:
                self.emit(to, item[1])
            else:
                keep.append(item)
        to.held = keep

    def forward(self, to: _Direction, data: bytes) -> None:
        stats, faults, rng = self.stats, to.faults, self.rng
        stats[to.to_key] += 1
        if to.record and _is_transport_data(data):
            to.recorded.append(data)
            to.record -= 1
            stats["recorded"] += 1
        if faults.loss and rng.random() < faults.loss:
            stats["lost"] += 1
            return
        if to.held:
            self.release(to)
        if faults.hold and rng.random() < faults.hold:
            to.held.append([rng.randint(1, self.depth), data])
            stats["held"] += 1
        elif faults.delay or faults.jitter:
            self.emit(to, data)
        else:  # the common case, inline
            try:
                to.sock.sendto(data, to.dest)
            except OSError:
                stats["send_errors"] += 1
        if faults.dup and rng.random() < faults.dup:
            to.held.append([rng.randint(0, self.depth), data])
            stats["duplicated"] += 1
            stats[to.dup_key] += 1

    def command(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
            cmd = req["cmd"]
            if cmd == "faults":
                names = ("loss", "hold", "dup", "delay", "jitter")
                faults = Faults(**{k: float(req.get(k, 0.0)) for k in names})
                for side in ("a", "b") if req.get("to") is None else (req["to"],):
                    self.to[_side(side)].faults = faults
            elif cmd == "record":
                to = self.to[_side(req["to"])]
                to.recorded.clear()
                to.record = int(req["count"])
            elif cmd == "replay":
                to = self.to[_side(req["to"])]
                # from the relay's address that side knows, or from its other one
                other = self.right if to.sock is self.left else self.left
                sock = to.sock if req.get("source", "own") == "own" else other
                for data in to.recorded:
                    self.send(to, data, sock)
                self.stats["replayed"] += len(to.recorded)
                return {"replayed": len(to.recorded)}
            elif cmd != "stats":
                return {"error": f"unknown command {cmd!r}"}
        except (ValueError, KeyError, TypeError, LabError) as exc:
            return {"error": f"bad command {line[:200]!r}: {exc}"}
        return dict(
            self.stats,
            recording={side: to.record for side, to in self.to.items()},
            recorded_now={side: len(to.recorded) for side, to in self.to.items()},
        )

    def run(self) -> int:
        stdin = sys.stdin.fileno()
        route = {self.left.fileno(): self.to["b"], self.right.fileno(): self.to["a"]}
        directions = tuple(self.to.values())
        print(json.dumps({"ready": True}), flush=True)
        buffered, last = b"", time.monotonic()
        while True:
            wait = self.idle if any(d.held for d in directions) else 1.0
            if self.delayed:
                wait = min(wait, max(0.0, self.delayed[0][0] - time.monotonic()))
            ready, _, _ = select.select([self.left, self.right, stdin], [], [], wait)
            arrived = False
            for sock in ready:
                if sock == stdin:
                    chunk = os.read(stdin, 65536)
                    if not chunk:
                        return 0
                    buffered += chunk
                    while b"\n" in buffered:
                        line, buffered = buffered.split(b"\n", 1)
                        if line.strip():
                            print(json.dumps(self.command(line)), flush=True)
                    continue
                assert isinstance(sock, socket.socket)
                to, recv, forward = route[sock.fileno()], sock.recv, self.forward
                for _ in range(_BATCH):
                    try:
                        data = recv(65536)
                    except BlockingIOError:
                        break
                    except OSError:  # an ICMP error queued on the socket
                        continue
                    forward(to, data)
                    arrived = True
            now = time.monotonic()
            if arrived:
                last = now
            elif now - last >= self.idle and any(d.held for d in directions):  # quiet
                for to in directions:
                    self.release(to, everything=True)
            while self.delayed and self.delayed[0][0] <= now:
                _, _, to, data = heapq.heappop(self.delayed)
                self.send(to, data)


def _side(value: object) -> str:
    if value not in ("a", "b"):
        raise ValueError(f"side must be 'a' or 'b', not {value!r}")
    return str(value)


def main(argv: list[str]) -> int:
    """The relay process: ``main([json config])``; :class:`Relay` starts it."""
    return _Engine(json.loads(argv[0])).run()
