"""`pywg demo`: a real tunnel between two network namespaces on this machine.

Two namespaces joined by a veth pair stand in for two hosts; a `pywgd` runs
in each with its own TUN interface and UDP socket, configured over the UAPI
socket exactly as `wg` would. The demo shows the handshake, a ping through the
tunnel, the status as `pywg show` prints it and a few seconds of TCP
throughput each way, then removes everything it made. It needs root and
iproute2; it touches nothing outside its namespaces (addresses from the
benchmarking range 198.18.0.0/15, RFC 2544).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from pywg.asyncio.uapi_server import socket_path
from pywg.cmd.show import format_status
from pywg.keys import PrivateKey
from pywg.lab import Host, Lab, LabError, tcp_transfer
from pywg.status import parse_get
from pywg.system import uapi_client

PORT = 51820


def _pywgd() -> list[str]:
    return [sys.executable, "-m", "pywg.cmd.daemon"]


def _start(lab: Lab, host: Host, name: str) -> None:
    proc = host.popen(*_pywgd(), name)
    try:
        code = proc.wait(timeout=20)
    except Exception as exc:  # a hung daemon start: report it as the demo's error
        raise LabError(f"pywgd {name} did not start in 20 s") from exc
    if code != 0 or not os.path.exists(socket_path(name)):
        raise LabError(f"pywgd {name} failed to start (exit {code})")


def run(out: Callable[[str], None] = print, *, megabytes: int = 100) -> int:
    if os.geteuid() != 0:
        out("pywg demo: needs root to create network namespaces (or: pywg demo --in-memory)")
        return 1
    started = time.monotonic()
    out("pywg demo: a real WireGuard tunnel (pywgd: TUN + UDP) between two network namespaces")
    with Lab("pwdemo") as lab:
        left, right = lab.host("left"), lab.host("right")
        link = lab.link(left, right)
        out(f"[1/5] two namespaces joined by a veth: {link.a_addr4} <-> {link.b_addr4}")
        names = lab.ifname("wgl"), lab.ifname("wgr")
        keys = PrivateKey.generate(), PrivateKey.generate()
        tunnel = ("198.19.1.1", "198.19.1.2")
        underlay = (link.a_addr4, link.b_addr4)
        for i, (host, name) in enumerate(zip((left, right), names, strict=True)):
            _start(lab, host, name)
            other = 1 - i
            body = (
                f"private_key={keys[i].to_hex()}\nlisten_port={PORT}\n"
                f"public_key={keys[other].public_key.to_hex()}\n"
                f"endpoint={underlay[other]}:{PORT}\nallowed_ip={tunnel[other]}/32\n"
            )
            if uapi_client.set_(name, body) != 0:
                raise LabError(f"configuring {name} failed")
            host.addr(name, f"{tunnel[i]}/24")
            host.link_up(name)
        out(f"[2/5] pywgd in each: {names[0]} {tunnel[0]}  <->  {names[1]} {tunnel[1]}")
        t0 = time.monotonic()
        if not left.wait_ping(tunnel[1], deadline=10):
            out("pywg demo: no answer through the tunnel")
            return 1
        out(f"[3/5] handshake and first ping through the tunnel: {time.monotonic() - t0:.3f} s")
        ok = left.ping(tunnel[1], count=3)
        out(f"      3 more pings {tunnel[0]} -> {tunnel[1]}: {'all answered' if ok else 'LOST'}")
        status = parse_get(names[0], uapi_client.get(names[0]))
        out("[4/5] status of the left end (as `pywg show` prints it):")
        for line in format_status(status, now=time.time()).splitlines():
            out(f"      {line}" if line else "")
        out(f"[5/5] TCP throughput, {megabytes} MB each way (SHA-256 compared):")
        for sender, receiver, address, label in (
            (left, right, tunnel[1], "left -> right"),
            (right, left, tunnel[0], "right -> left"),
        ):
            result = tcp_transfer(sender, receiver, address, megabytes << 20)
            verdict = "intact" if result.ok else "CORRUPTED"
            rate = f"{result.mbit_per_s:.0f} Mbit/s in {result.seconds:.2f} s"
            out(f"      {label}: {rate}, {verdict}")
            if not result.ok:
                return 1
    out(f"done in {time.monotonic() - started:.1f} s; namespaces, interfaces and sockets removed")
    return 0
