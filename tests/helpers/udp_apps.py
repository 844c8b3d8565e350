"""UDP applications for the fault tests: a counting receiver, a paced sender, a poll helper.

Test-only helpers of ``tests/tunnel/test_hardening_net.py``; the UDP relay itself
(reordering, duplicates, delay, loss, record and replay) is lab material and
lives in :mod:`pywg.lab.relay`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from pywg.lab import Host, LabError
from pywg.lab.relay import COMMAND_TIMEOUT, read_line

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
        if read_line(self.proc.stdout, COMMAND_TIMEOUT).strip() != b"ready":
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
