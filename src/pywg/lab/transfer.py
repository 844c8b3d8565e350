"""TCP streams between lab hosts, hashed at both ends: bulk or paced.

One receiver script and one sender script serve both kinds, run with this
interpreter inside the hosts' namespaces (:meth:`Host.popen`, so the lab
kills them if the caller does not):

- the receiver listens on an address it owns, prints ``ready``, accepts one
  connection and reads it to EOF, hashing everything (SHA-256) and timing
  the longest wait between two reads;
- the sender connects, writes seeded pseudo-random data (every chunk starts
  with its own counter, so no two chunks are alike), as fast as it can or at
  a fixed rate, hashes what it wrote, shuts down its side and waits for the
  receiver to close.

Each prints one JSON line at the end; :class:`TransferResult` puts the two
together. :func:`tcp_transfer` is the blocking bulk form; :class:`TcpStream`
and :class:`PacedStream` run in the background while the caller changes the
network under them (roaming, rekeying), then :meth:`TcpStream.result`
collects the outcome.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import selectors
import signal
import subprocess
import sys
import time
from typing import Any

from .hosts import Host, LabError, _signal

__all__ = ["PacedStream", "TcpStream", "TransferResult", "tcp_transfer"]

BLOCK = 1 << 20  # bytes of seeded data the sender draws its chunks from
BULK_CHUNK = BLOCK  # bytes per write at full speed
PACED_CHUNK = 16384  # bytes per write when paced: small enough to keep the rate smooth
READY_TIMEOUT = 10.0  # seconds a stream's receiver has to start listening

_RECEIVER = r"""
import hashlib, json, socket, sys, time
addr, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
srv = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((addr, port))
srv.listen(1)
srv.settimeout(timeout)
print("ready", flush=True)
conn, _ = srv.accept()
conn.settimeout(timeout)
digest, total, buf = hashlib.sha256(), 0, bytearray(1 << 20)
view = memoryview(buf)
start = last = None
max_gap = 0.0
while True:
    n = conn.recv_into(buf)
    now = time.monotonic()
    if start is None:
        start = now
    else:
        max_gap = max(max_gap, now - last)
    last = now
    if not n:
        break
    digest.update(view[:n])
    total += n
conn.close()
print(json.dumps({"sha256": digest.hexdigest(), "bytes": total,
                  "seconds": last - start, "max_gap": max_gap}), flush=True)
"""

_SENDER = r"""
import hashlib, json, random, socket, sys, time
addr, port, nbytes, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
timeout, rate, chunk = float(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
block = bytearray(random.Random(seed).randbytes(1 << 20))
view = memoryview(block)
sock = socket.create_connection((addr, port), timeout=timeout)
digest, sent, counter = hashlib.sha256(), 0, 0
start = time.monotonic()
while sent < nbytes:
    if rate > 0:
        delay = start + sent / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    size = min(chunk, nbytes - sent)
    offset = (counter * 7919) % (len(block) - chunk + 1)  # always 0 for whole-block chunks
    block[offset:offset + 8] = counter.to_bytes(8, "big")  # every chunk differs
    counter += 1
    sock.sendall(view[offset:offset + size])
    digest.update(view[offset:offset + size])
    sent += size
sock.shutdown(socket.SHUT_WR)
sock.recv(1)  # the receiver closes once it has read everything
print(json.dumps({"sha256": digest.hexdigest(), "bytes": sent,
                  "seconds": time.monotonic() - start}), flush=True)
"""


@dataclasses.dataclass(frozen=True)
class TransferResult:
    """What a transfer measured at both ends.

    ``seconds`` is the receiver's first byte to EOF; ``max_gap`` the longest
    the receiver waited between two reads (a stall: a lost connection, a
    handshake the data had to wait for).
    """

    sent_sha256: str
    received_sha256: str
    sent_bytes: int
    received_bytes: int
    seconds: float
    max_gap: float = 0.0

    @property
    def ok(self) -> bool:
        """Everything sent arrived, byte for byte."""
        return self.sent_bytes == self.received_bytes and self.sent_sha256 == self.received_sha256

    @property
    def mbit_per_s(self) -> float:
        return self.received_bytes * 8 / 1e6 / self.seconds if self.seconds > 0 else math.inf


class TcpStream:
    """`nbytes` of seeded data over one TCP connection, sender -> `address` on `receiver`.

    Starts at once and runs in the background: the receiver listens on
    `address`:`port` (an IPv4 or IPv6 literal it owns) and the sender connects
    once it is listening (within `ready` seconds). `rate` (bytes/s) paces the
    sender; None sends as fast as TCP takes it. A stall longer than `timeout`
    seconds fails either end. :meth:`result` waits for both; :meth:`kill`
    stops them early. Failures raise :class:`LabError`.
    """

    def __init__(
        self,
        sender: Host,
        receiver: Host,
        address: str,
        nbytes: int,
        *,
        port: int = 5201,
        rate: float | None = None,
        seed: int = 0,
        timeout: float = 30.0,
        ready: float = READY_TIMEOUT,
    ) -> None:
        if rate is not None and not rate > 0:
            raise LabError(f"a stream's rate must be positive, not {rate!r}")
        chunk = BULK_CHUNK if rate is None else PACED_CHUNK
        self.label = f"TCP stream of {nbytes} bytes to {address}:{port}"
        pipes: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        rx_argv = (address, str(port), str(timeout))
        self.rx = receiver.popen(sys.executable, "-c", _RECEIVER, *rx_argv, **pipes)
        self.tx: subprocess.Popen[bytes] | None = None
        try:
            self._wait_ready(time.monotonic() + ready)
            tx_argv = [address, str(port), str(nbytes), str(seed), str(timeout)]
            tx_argv += [str(rate or 0), str(chunk)]
            self.tx = sender.popen(sys.executable, "-c", _SENDER, *tx_argv, **pipes)
        except BaseException:
            self.kill()
            raise

    def sending(self) -> bool:
        """The sender is still at it."""
        return self.tx is not None and self.tx.poll() is None

    def kill(self) -> None:
        """Stop both ends (and whatever they started); harmless once they are done."""
        for proc in (self.tx, self.rx):
            if proc is not None and proc.poll() is None:
                _signal(proc, True, signal.SIGKILL)
                proc.wait(5)

    def result(self, deadline: float) -> TransferResult:
        """Wait at most `deadline` seconds for both ends and what they measured.

        Both ends are stopped when this returns or raises.
        """
        end = time.monotonic() + deadline
        try:
            if self.tx is None:
                raise LabError(f"{self.label}: the sender never started")
            sent = self._finish(self.tx, "sender", end)
            received = self._finish(self.rx, "receiver", end)
        finally:
            self.kill()
        return TransferResult(
            sent_sha256=sent["sha256"],
            received_sha256=received["sha256"],
            sent_bytes=int(sent["bytes"]),
            received_bytes=int(received["bytes"]),
            seconds=float(received["seconds"]),
            max_gap=float(received["max_gap"]),
        )

    def _wait_ready(self, end: float) -> None:
        stdout = self.rx.stdout
        assert stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(stdout, selectors.EVENT_READ)
            if not sel.select(max(0.0, end - time.monotonic())):
                raise LabError(f"{self.label}: the receiver did not get ready in time")
        if stdout.readline().strip() != b"ready":
            raise LabError(f"{self.label}: the receiver failed: {_stderr(self.rx)}")

    def _finish(self, proc: subprocess.Popen[bytes], what: str, end: float) -> dict[str, Any]:
        try:
            out, err = proc.communicate(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"{self.label}: the {what} timed out") from exc
        if proc.returncode != 0:
            raise LabError(
                f"{self.label}: the {what} failed (exit {proc.returncode}): {_text(err)}"
            )
        try:
            result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError) as exc:
            raise LabError(f"{self.label}: the {what} printed no result: {_text(out)}") from exc
        return result


class PacedStream(TcpStream):
    """`rate` bytes/s of seeded data for `seconds`, sender -> `address` on `receiver`.

    A :class:`TcpStream` that lasts: the caller changes the network while it
    runs (moves an endpoint, waits out a rekey), then reads
    :attr:`TransferResult.max_gap` to see whether the connection stalled.
    """

    def __init__(
        self,
        sender: Host,
        receiver: Host,
        address: str,
        *,
        port: int,
        rate: float,
        seconds: float,
        seed: int = 0,
        timeout: float = 30.0,
    ) -> None:
        nbytes = int(rate * seconds)
        super().__init__(
            sender, receiver, address, nbytes, port=port, rate=rate, seed=seed, timeout=timeout
        )


def tcp_transfer(
    sender: Host,
    receiver: Host,
    address: str,
    nbytes: int,
    *,
    port: int = 5201,
    timeout: float = 120,
    seed: int = 0,
) -> TransferResult:
    """Stream `nbytes` of seeded pseudo-random data over TCP as fast as it goes; hash both ends.

    `receiver` listens on `address`:`port` (an IPv4 or IPv6 literal it owns);
    `sender` connects once it is listening. Everything is bounded by `timeout`
    seconds: past it both sides are killed and :class:`LabError` is raised.
    """
    end = time.monotonic() + timeout
    stream = TcpStream(
        sender, receiver, address, nbytes, port=port, seed=seed, timeout=timeout, ready=timeout
    )
    return stream.result(max(0.0, end - time.monotonic()))


def _text(data: bytes | None) -> str:
    return (data or b"").decode(errors="replace").strip()[-2000:] or "(no output)"


def _stderr(proc: subprocess.Popen[bytes]) -> str:
    with contextlib.suppress(subprocess.TimeoutExpired):
        _, err = proc.communicate(timeout=5)
        return _text(err)
    return "(no output)"
