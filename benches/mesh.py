"""The mesh end to end: direct, through the home relay over UDP, and over TCP/TLS.

    sudo python3 benches/mesh.py [--runs N] [--json] [--seconds 5] [--only SCENARIO]

Every scenario builds its own lab (`pywg.lab.mesh.MeshLab` with one home
relay): an internet of network namespaces, `pywg coordinator serve` on a
public host "hub", `pywg relay serve` (the home relay, docs/relay.md) on a
public host "relay1", and two nodes "a" and "b", each a real `pywg join`
process behind its own nftables NAT (`pywg.lab.nat`). Nothing is configured
per pair; everything is read from outside, as the mesh tests do: `wg show`,
the nodes' logs, pings through the tunnel, iperf3, the relay process's CPU
time, packets captured on the relay's link. The state directories live in a
`tempfile.TemporaryDirectory()`; the lab (namespaces, processes, UAPI
sockets) is torn down after every scenario, also on failure or Ctrl-C /
SIGTERM.

The three path scenarios measure the same things, so they print side by side:

- direct: a and b behind separate endpoint-independent NATs; each node's
  `wg show` endpoint for the other becomes the other's NAT public address
  (hole-punched). The WireGuard transport datagrams (type 4, tagged or not)
  seen on the relay's link during the transfers and the pings are counted:
  expected 0.
- relay-udp: a and b behind symmetric NATs, so only the relay joins them;
  both reach it over UDP (the native forwarding loop) and hold each other
  at the relayed endpoint ``[100::ID]:1``.
- relay-tcp: as relay-udp, but a's NAT router drops all UDP, so a reaches
  the relay over TCP/TLS (its log says ``home relay relay1: tcp``), b over
  UDP.

For each: seconds from starting both `pywg join` processes (tokens made
beforehand) until the first ping a -> b is answered and until each node's
endpoint for the other is on the scenario's path; TCP throughput each way
(iperf3, `--seconds` per direction; without iperf3 the lab's
`tcp_transfer` of a fixed size) and its retransmits; the ping round trip,
p50 and p90 of PING_COUNT pings; for the relayed paths, the throughput as a
share of the same run's direct path and the added latency (p50 relayed - p50
direct); the relay's CPU during the transfers (utime + stime of the `pywg
relay serve` process from /proc/PID/stat, as a share of one core over the
transfers' wall time); the UDP datagrams dropped for want of socket buffer
(RcvbufErrors and SndbufErrors of /proc/net/snmp and snmp6, per namespace)
at the relay and at the nodes during the transfers.

nat-reboot: a behind an endpoint-independent NAT with a port window
(20000-20999), b behind a plain one. Once the direct path is up, a's NAT
reboots (`Nat.reboot`: conntrack flushed, the next port window); seconds
until a ping b -> a gets through again, until b's endpoint for a moves to
the relay (if it does), and until it is direct again, at a's new mapping.

Runs go round the scenarios (run 1 of each, then run 2 ...), so the
ratios compare runs taken close together; medians over `--runs` (default
1), with the range when there are several. `--only` picks scenarios.
The table is Markdown, ready for docs/mesh.md. Endpoint reports the
coordinator refused ("cannot report endpoints" in a node's log) are counted
and noted under it: they delay the direct path. Every wait has a deadline:
a time that did not come within it is shown as "-" (JSON null). The default
run takes about 2 minutes. Needs root, iproute2, nftables, wg
(wireguard-tools), ping; iperf3 if present. Both nodes, the relay and the
traffic generators share this machine's CPUs: the figures are for this lab,
not for a network.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from pywg import relayed
from pywg.endpoint import parse_endpoint
from pywg.lab import Host, Lab, LabError, require_root, tcp_transfer
from pywg.lab.capture import UdpCapture
from pywg.lab.mesh import HomeRelayProcess, MeshLab, Node, dump
from pywg.lab.nat import Site

LAB_PREFIX = "pwmb"
POLL = 0.1  # seconds between two looks at `wg show`
UP_DEADLINE = 60.0  # seconds for a first ping / the path after the nodes start
REBOOT_DEADLINE = 60.0  # seconds for a ping to get through after the NAT reboot
REDIRECT_DEADLINE = 90.0  # seconds for the direct path at the new mapping
PING_COUNT = 100
PING_INTERVAL = "0.02"  # seconds between pings (root may go below 0.2)
FALLBACK_BYTES = 48 << 20  # per direction, when iperf3 is missing
CLK_TCK = os.sysconf("SC_CLK_TCK")
WG_TRANSPORT = 4  # whitepaper §5.4.6: message type 4; bytes 1..3 carry the relay's tag
REBOOT_PORTS = (20000, 20999)
RELAY_NUMBER = 1  # the mesh's one home relay
TRANSPORT_LOG = re.compile(rf"home relay relay{RELAY_NUMBER}: (udp|tcp|no transport)")


class BenchError(RuntimeError):
    """A scenario could not be measured (its premise failed); the message says why."""


@dataclass
class PathRun:
    first_ping_s: float | None  # both `pywg join` started -> first ping a -> b answered
    a_path_s: float | None  # ... -> a's endpoint for b is on the scenario's path
    b_path_s: float | None  # ... -> b's endpoint for a is
    a_to_b_mbit: float
    b_to_a_mbit: float
    retransmits: int | None  # both directions (iperf3)
    ping_p50_ms: float | None
    ping_p90_ms: float | None
    pings_answered: int
    relay_cpu_s: float  # `pywg relay serve` utime + stime during both transfers
    relay_cpu_pct: float  # ... as a share of one core over the transfers' wall time
    relay_udp_drops: int  # UDP buffer errors in the relay's namespace during the transfers
    node_udp_drops: int  # ... in the two nodes' namespaces
    relay_transport: int | None  # WG transport datagrams on the relay's link (direct only)
    a_transport: str  # a's link to the relay at the end, as its log last said
    b_transport: str
    path_held: bool  # both endpoints were on the path before and after the transfers
    refused_reports: int  # "cannot report endpoints" in the nodes' logs


@dataclass
class RebootRun:
    reachable_s: float | None  # NAT reboot -> first ping b -> a answered
    relay_s: float | None  # ... -> b's endpoint for a is relayed (None: never seen there)
    direct_s: float | None  # ... -> b's endpoint for a is a's NAT at a new mapping
    endpoint_before: str
    endpoint_after: str
    path: list[str]  # b's endpoints for a after the reboot: "+SECONDS ENDPOINT"
    refused_reports: int


# ---------------------------------------------------------------- waiting


def poll_until(
    check: Callable[[], bool], seconds: float, stop: threading.Event, since: float
) -> float | None:
    """Seconds from `since` until `check()` first holds; None if not within `seconds`.

    `check` may fail while the nodes are still coming up (no interface, no
    address yet): that counts as not yet. Bounded in time and in count.
    """
    end = time.monotonic() + seconds
    for _ in range(int(seconds / POLL) + 2):
        if stop.is_set() or time.monotonic() >= end:
            break
        try:
            if check():
                return time.monotonic() - since
        except (LabError, StopIteration, ValueError, KeyError):
            pass
        stop.wait(POLL)
    return None


def endpoint_host(endpoint: str) -> str:
    """The address of a `wg show` endpoint ("198.18.3.1:51820", "[fd18::1]:9")."""
    return endpoint.rpartition(":")[0].strip("[]")


def is_relayed(endpoint: str) -> bool:
    """Whether a `wg show` endpoint is a peer behind the home relay (``[100::ID]:1``)."""
    try:
        found = relayed.parse(parse_endpoint(endpoint))
    except ValueError:
        return False
    return found is not None and found[0] == RELAY_NUMBER


class PeerView:
    """`node`'s WireGuard endpoint for `peer`, by `wg show` (the peer's key looked up once)."""

    def __init__(self, node: Node, peer: Node) -> None:
        self.node, self.peer = node, peer
        self._key = ""

    def endpoint(self) -> str:
        if not self._key:
            self._key = self.peer.public_key()  # LabError until its interface is up
            if not self._key:
                raise LabError(f"{self.peer.name} has no key yet")
        return self.node.endpoints().get(self._key, "")

    def at(self, host: str, *, other_than: str = "") -> Callable[[], bool]:
        def check() -> bool:
            endpoint = self.endpoint()
            return endpoint_host(endpoint) == host and endpoint != other_than

        return check

    def relayed(self) -> Callable[[], bool]:
        return lambda: is_relayed(self.endpoint())


def answers(src: Node, dst: Node) -> Callable[[], bool]:
    """One ping src -> dst's tunnel IPv4 address, answered within a second."""
    return lambda: src.host.ping(dst.addr4(), count=1, timeout=1.0)


@contextlib.contextmanager
def waiters() -> Iterator[tuple[ThreadPoolExecutor, threading.Event]]:
    """Threads for concurrent waits; they are told to stop when the block ends."""
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="mesh-bench") as pool:
        try:
            yield pool, stop
        finally:
            stop.set()


# ---------------------------------------------------------------- measuring


@dataclass
class Transfer:
    mbit: float
    retransmits: int | None
    wall_s: float  # around the sending client only
    cpu_ticks: int  # of `cpu_pid` over `wall_s`


def cpu_ticks(pid: int) -> int:
    """utime + stime of process `pid` (all its threads), in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    rest = stat[stat.rindex(")") + 2 :].split()  # rest[0] is field 3 (state)
    return int(rest[11]) + int(rest[12])  # fields 14 (utime) and 15 (stime)


def tcp(sender: Node, receiver: Node, seconds: int, cpu_pid: int) -> Transfer:
    """One TCP stream sender -> receiver's tunnel IPv4 address, iperf3 or the lab's transfer."""
    address = receiver.addr4()
    if shutil.which("iperf3") is None:
        start, ticks = time.monotonic(), cpu_ticks(cpu_pid)
        result = tcp_transfer(
            sender.host, receiver.host, address, FALLBACK_BYTES, timeout=seconds + 120
        )
        ticks, wall = cpu_ticks(cpu_pid) - ticks, time.monotonic() - start
        if not result.ok:
            raise BenchError(f"{sender.name} -> {receiver.name}: the transfer was corrupted")
        return Transfer(result.mbit_per_s, None, wall, ticks)
    server = receiver.host.popen(
        "iperf3", "-s", "-1", "-B", address, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        time.sleep(0.3)
        start, ticks = time.monotonic(), cpu_ticks(cpu_pid)
        done = sender.host.run(
            "iperf3", "-c", address, "-t", str(seconds), "-J", check=False, timeout=seconds + 30
        )
        ticks, wall = cpu_ticks(cpu_pid) - ticks, time.monotonic() - start
    finally:
        server.kill()
        server.wait(5)
    try:
        end = json.loads(done.stdout)["end"]
        bits = float(end["sum_received"]["bits_per_second"])
        retransmits = int(end["sum_sent"].get("retransmits", 0))
    except (ValueError, KeyError, TypeError) as exc:
        detail = (done.stdout + done.stderr).strip()[-800:]
        raise BenchError(f"iperf3 {sender.name} -> {receiver.name} failed: {detail}") from exc
    return Transfer(bits / 1e6, retransmits, wall, ticks)


def ping_times(src: Node, dst: Node) -> list[float]:
    """Round trips (ms) of the answered ones of PING_COUNT pings src -> dst through the tunnel."""
    argv = ["ping", "-4", "-n", "-c", str(PING_COUNT), "-i", PING_INTERVAL, "-w", "30"]
    out = src.host.run(*argv, dst.addr4(), check=False, timeout=40).stdout
    return [float(ms) for ms in re.findall(r"time=([\d.]+) ms", out)]


def percentile(values: list[float], share: float) -> float | None:
    """The `share` quantile (0..1) of `values`, interpolated; None for none."""
    if not values:
        return None
    ordered = sorted(values)
    position = share * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def udp_drops(*hosts: Host) -> int:
    """UDP datagrams dropped for want of socket buffer (RcvbufErrors + SndbufErrors, IPv4
    and IPv6) in the hosts' namespaces so far: /proc/net/snmp and snmp6 are per namespace."""
    total = 0
    for host in hosts:
        out = host.run("cat", "/proc/net/snmp", "/proc/net/snmp6").stdout
        udp = [line.split()[1:] for line in out.splitlines() if line.startswith("Udp:")]
        if len(udp) >= 2:
            counters = dict(zip(udp[0], udp[1], strict=False))
            total += sum(int(counters.get(k, 0)) for k in ("RcvbufErrors", "SndbufErrors"))
        for words in (line.split() for line in out.splitlines()):
            if len(words) == 2 and words[0] in ("Udp6RcvbufErrors", "Udp6SndbufErrors"):
                total += int(words[1])
    return total


def refused_reports(*nodes: Node) -> int:
    """Endpoint reports the coordinator refused, as the nodes logged them."""
    return sum(node.log_text().count("cannot report endpoints") for node in nodes)


def transport(node: Node) -> str:
    """The node's link to the home relay as its log last said: "udp", "tcp", or "?"."""
    seen = TRANSPORT_LOG.findall(node.log_text())
    return seen[-1] if seen else "?"


def home_relay(mesh: MeshLab) -> HomeRelayProcess:
    relay = mesh.relays[RELAY_NUMBER - 1]
    if relay.proc is None:
        raise BenchError("the home relay is not running")
    return relay


def start_pair(mesh: MeshLab, a_site: Site, b_site: Site) -> tuple[Node, Node, float]:
    """Start `pywg join` for a and b (tokens made first); the monotonic time they started."""
    tokens = mesh.token(), mesh.token()
    started = time.monotonic()
    a = mesh.node("a", a_site, token=tokens[0])
    b = mesh.node("b", b_site, token=tokens[1])
    return a, b, started


def alive(mesh: MeshLab, *nodes: Node) -> None:
    for node in nodes:
        if node.proc is not None and node.proc.poll() is not None:
            raise BenchError(f"`pywg join` of {node.name} exited ({node.proc.returncode})")
    if mesh.coordinator is None or mesh.coordinator.poll() is not None:
        raise BenchError("the coordinator exited")
    relay = home_relay(mesh).proc
    if relay is not None and relay.poll() is not None:
        raise BenchError(f"the home relay exited ({relay.returncode})")


# ---------------------------------------------------------------- the path scenarios


@dataclass
class Pair:
    """Two nodes up on the scenario's path, and how long that took."""

    a: Node
    b: Node
    views: tuple[PeerView, PeerView]
    on_path: tuple[Callable[[], bool], Callable[[], bool]]
    first_ping_s: float
    a_path_s: float
    b_path_s: float


def bring_up(mesh: MeshLab, a_site: Site, b_site: Site, direct: bool) -> Pair:
    """Start both nodes; wait for the first ping and for both endpoints on the path (direct:
    the other's NAT; else relayed); BenchError if that does not come within UP_DEADLINE."""
    a, b, started = start_pair(mesh, a_site, b_site)
    views = PeerView(a, b), PeerView(b, a)
    if direct:
        on_path = views[0].at(b_site.public_addr4), views[1].at(a_site.public_addr4)
    else:
        on_path = views[0].relayed(), views[1].relayed()
    with waiters() as (pool, stop):
        ping = pool.submit(poll_until, answers(a, b), UP_DEADLINE, stop, started)
        paths = [pool.submit(poll_until, check, UP_DEADLINE, stop, started) for check in on_path]
        first_ping, a_s, b_s = ping.result(), paths[0].result(), paths[1].result()
    alive(mesh, a, b)
    if first_ping is None or a_s is None or b_s is None:
        raise BenchError(
            f"no {'direct' if direct else 'relayed'} path within {UP_DEADLINE:g} s: first ping "
            f"{first_ping}, a on it {a_s}, b on it {b_s} (endpoints {views[0].endpoint()!r}, "
            f"{views[1].endpoint()!r})"
        )
    return Pair(a, b, views, on_path, first_ping, a_s, b_s)


def measure_pair(mesh: MeshLab, pair: Pair, seconds: int, capture: bool) -> PathRun:
    """Transfers each way, then pings, with the relay's CPU and the UDP drops around the
    transfers; with `capture`, the WireGuard transport datagrams on the relay's link."""
    a, b = pair.a, pair.b
    relay = home_relay(mesh)
    assert relay.proc is not None  # `ip netns exec` execs the relay: this is its process
    with contextlib.ExitStack() as stack:
        watch = None
        if capture:
            watch = stack.enter_context(UdpCapture(relay.site.host, relay.site.link.b_if))
        since = time.monotonic()
        drops = udp_drops(relay.site.host), udp_drops(a.host, b.host)
        forward = tcp(a, b, seconds, relay.proc.pid)
        reverse = tcp(b, a, seconds, relay.proc.pid)
        relay_drops = udp_drops(relay.site.host) - drops[0]
        node_drops = udp_drops(a.host, b.host) - drops[1]
        rtts = ping_times(a, b)
        seen = None
        if watch is not None:
            time.sleep(0.5)  # stragglers
            datagrams = watch.datagrams(since=since)
            seen = sum(1 for d in datagrams if d.payload[:1] == bytes([WG_TRANSPORT]))
    held = all(check() for check in pair.on_path)  # no other path opened meanwhile
    alive(mesh, a, b)
    cpu_s = (forward.cpu_ticks + reverse.cpu_ticks) / CLK_TCK
    wall = forward.wall_s + reverse.wall_s
    return PathRun(
        first_ping_s=pair.first_ping_s,
        a_path_s=pair.a_path_s,
        b_path_s=pair.b_path_s,
        a_to_b_mbit=forward.mbit,
        b_to_a_mbit=reverse.mbit,
        retransmits=_sum(forward.retransmits, reverse.retransmits),
        ping_p50_ms=percentile(rtts, 0.5),
        ping_p90_ms=percentile(rtts, 0.9),
        pings_answered=len(rtts),
        relay_cpu_s=cpu_s,
        relay_cpu_pct=100 * cpu_s / wall if wall > 0 else math.nan,
        relay_udp_drops=relay_drops,
        node_udp_drops=node_drops,
        relay_transport=seen,
        a_transport=transport(a),
        b_transport=transport(b),
        path_held=held,
        refused_reports=refused_reports(a, b),
    )


def direct_pair(mesh: MeshLab, seconds: int) -> PathRun:
    a_site = mesh.net.behind_nat("a", "endpoint-independent")
    b_site = mesh.net.behind_nat("b", "endpoint-independent")
    return measure_pair(mesh, bring_up(mesh, a_site, b_site, direct=True), seconds, True)


def relay_udp(mesh: MeshLab, seconds: int) -> PathRun:
    a_site = mesh.net.behind_nat("a", "symmetric")
    b_site = mesh.net.behind_nat("b", "symmetric")
    return measure_pair(mesh, bring_up(mesh, a_site, b_site, direct=False), seconds, False)


def relay_tcp(mesh: MeshLab, seconds: int) -> PathRun:
    a_site = mesh.net.behind_nat("a", "symmetric")
    assert a_site.nat is not None
    a_site.nat.block_udp()  # a reaches the relay over TCP/TLS only
    b_site = mesh.net.behind_nat("b", "symmetric")
    return measure_pair(mesh, bring_up(mesh, a_site, b_site, direct=False), seconds, False)


# ---------------------------------------------------------------- NAT reboot


def nat_reboot(mesh: MeshLab, seconds: int) -> RebootRun:
    del seconds  # no transfer here
    a_site = mesh.net.behind_nat("a", "endpoint-independent", ports=REBOOT_PORTS)
    b_site = mesh.net.behind_nat("b", "endpoint-independent")
    a, b, started = start_pair(mesh, a_site, b_site)
    a_view, b_view = PeerView(a, b), PeerView(b, a)
    with waiters() as (pool, stop):
        waits = [
            pool.submit(poll_until, answers(b, a), UP_DEADLINE, stop, started),
            pool.submit(poll_until, a_view.at(b_site.public_addr4), UP_DEADLINE, stop, started),
            pool.submit(poll_until, b_view.at(a_site.public_addr4), UP_DEADLINE, stop, started),
        ]
        if any(w.result() is None for w in waits):
            raise BenchError(f"no direct path within {UP_DEADLINE:g} s before the reboot")
    alive(mesh, a, b)
    before = b_view.endpoint()
    assert a_site.nat is not None
    path: list[str] = []
    relay_s: list[float] = []

    def redirected() -> bool:
        """b's endpoint for a at a's NAT, not at the mapping from before the reboot."""
        endpoint = b_view.endpoint()
        if not path or not path[-1].endswith(" " + endpoint):
            elapsed = time.monotonic() - rebooted
            path.append(f"+{elapsed:.1f}s {endpoint}")
            if is_relayed(endpoint) and not relay_s:
                relay_s.append(elapsed)
        return endpoint_host(endpoint) == a_site.public_addr4 and endpoint != before

    a_site.nat.reboot()  # every mapping forgotten; new ones from the next port window
    rebooted = time.monotonic()
    with waiters() as (pool, stop):
        ping = pool.submit(poll_until, answers(b, a), REBOOT_DEADLINE, stop, rebooted)
        direct = pool.submit(poll_until, redirected, REDIRECT_DEADLINE, stop, rebooted)
        reachable_s, direct_s = ping.result(), direct.result()
    alive(mesh, a, b)
    return RebootRun(
        reachable_s=reachable_s,
        relay_s=relay_s[0] if relay_s else None,
        direct_s=direct_s,
        endpoint_before=before,
        endpoint_after=b_view.endpoint(),
        path=path,
        refused_reports=refused_reports(a, b),
    )


def _sum(*values: int | None) -> int | None:
    return None if any(v is None for v in values) else sum(v or 0 for v in values)


# ---------------------------------------------------------------- running

Scenario = Callable[[MeshLab, int], Any]
SCENARIOS: dict[str, Scenario] = {
    "direct": direct_pair,
    "relay-udp": relay_udp,
    "relay-tcp": relay_tcp,
    "nat-reboot": nat_reboot,
}
PATHS = ("direct", "relay-udp", "relay-tcp")  # the scenarios of the side-by-side table
# the path each relayed scenario must have kept: (a's transport, b's transport)
TRANSPORTS = {"relay-udp": ("udp", "udp"), "relay-tcp": ("tcp", "udp")}


@contextlib.contextmanager
def mesh_lab() -> Iterator[MeshLab]:
    """A fresh MeshLab with one home relay (its state in a temporary directory), torn
    down at the end."""
    with tempfile.TemporaryDirectory(prefix="pywg-mesh-bench-") as tmp, Lab(LAB_PREFIX) as lab:
        mesh = MeshLab(lab, Path(tmp), home_relays=1)
        try:
            yield mesh
        finally:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                mesh.close()


def run_scenario(name: str, seconds: int) -> dict[str, Any]:
    """One run of scenario `name`: its fields, or {"error": ..., "logs": ...}."""
    try:
        with mesh_lab() as mesh:
            try:
                return asdict(SCENARIOS[name](mesh, seconds))
            except (BenchError, LabError, AssertionError, OSError) as exc:
                return {"error": f"{type(exc).__name__}: {exc}", "logs": dump(mesh)}
    except (LabError, AssertionError, OSError) as exc:  # the lab or a server failed
        return {"error": f"{type(exc).__name__}: {exc}", "logs": ""}


def _ratio(value: Any, base: Any) -> float | None:
    ok = isinstance(value, int | float) and isinstance(base, int | float) and base > 0
    return value / base if ok else None


def compare(results: dict[str, list[dict[str, Any]]]) -> None:
    """Add to each relayed run its throughput as a share of the same run's direct one, and
    its added latency (p50 relayed - p50 direct)."""
    for name in PATHS[1:]:
        for i, run in enumerate(results[name]):
            base = results["direct"][i] if i < len(results["direct"]) else {}
            run["a_to_b_ratio"] = _ratio(run.get("a_to_b_mbit"), base.get("a_to_b_mbit"))
            run["b_to_a_ratio"] = _ratio(run.get("b_to_a_mbit"), base.get("b_to_a_mbit"))
            p50, direct_p50 = run.get("ping_p50_ms"), base.get("ping_p50_ms")
            added = p50 - direct_p50 if p50 is not None and direct_p50 is not None else None
            run["added_p50_ms"] = added


# ---------------------------------------------------------------- reporting

# (label, fields joined by " / ", format); every cell is the median over the runs
PATH_ROWS: list[tuple[str, tuple[str, ...], str]] = [
    ("first ping a→b after both joins started (s)", ("first_ping_s",), ".2f"),
    ("a / b endpoint on the path after (s)", ("a_path_s", "b_path_s"), ".2f"),
    ("TCP a→b / b→a (Mbit/s)", ("a_to_b_mbit", "b_to_a_mbit"), ".0f"),
    ("… as a share of direct, same run", ("a_to_b_ratio", "b_to_a_ratio"), ".2f"),
    ("TCP retransmits, both ways", ("retransmits",), "d"),
    (f"ping RTT p50 / p90, {PING_COUNT} pings (ms)", ("ping_p50_ms", "ping_p90_ms"), ".3f"),
    ("added latency, p50 − direct p50 (ms)", ("added_p50_ms",), ".3f"),
    ("relay process CPU during the transfers (% of one core)", ("relay_cpu_pct",), ".0f"),
    ("WG transport datagrams at the relay (want 0)", ("relay_transport",), "d"),
    ("UDP buffer drops: relay / nodes", ("relay_udp_drops", "node_udp_drops"), "d"),
]
REBOOT_ROWS: list[tuple[str, str, str]] = [
    ("reachable_s", "ping b→a gets through again after (s)", ".2f"),
    ("relay_s", "b's endpoint for a relayed after (s)", ".2f"),
    ("direct_s", "b's endpoint for a direct, new mapping (s)", ".2f"),
]


def median(values: list[Any]) -> float | int | None:
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    numbers = [v for v in numbers if not (isinstance(v, float) and math.isnan(v))]
    if not numbers:
        return None
    middle = statistics.median(numbers)
    return middle if any(isinstance(v, float) for v in numbers) else round(middle)


def _format(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if fmt == "d":
        return str(round(value))
    return format(value, fmt)


def cell(runs: list[dict[str, Any]], fields: tuple[str, ...], fmt: str) -> str:
    """The fields' medians over `runs`, " / " between; with several runs, their range."""
    columns = [[r.get(f) for r in runs] for f in fields]
    text = " / ".join(_format(median(column), fmt) for column in columns)
    every = [v for column in columns for v in column if isinstance(v, int | float)]
    if len(runs) > 1 and every and min(every) != max(every):
        text += f" ({_format(min(every), fmt)}–{_format(max(every), fmt)})"
    return text


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_1min": round(os.getloadavg()[0], 2),
        "iperf3": shutil.which("iperf3") is not None,
    }


def print_table(
    facts: dict[str, Any], results: dict[str, list[dict[str, Any]]], args: Any, wanted: list[str]
) -> None:
    how = f"iperf3, {args.seconds} s per direction" if facts["iperf3"] else "lab tcp_transfer"
    print(
        f"`sudo python3 benches/mesh.py --runs {args.runs} --seconds {args.seconds}`: "
        f"{facts['nproc']} CPUs ({facts['cpu'] or 'unknown CPU'}), Linux {facts['kernel']}, "
        f"Python {facts['python']}, load {facts['load_1min']} at start; TCP: {how}; "
        f"{'medians (range) of ' + str(args.runs) + ' runs' if args.runs > 1 else 'one run'}.\n"
    )
    paths = [name for name in PATHS if name in wanted]
    if paths:
        print("| measure | " + " | ".join(paths) + " |")
        print("|---" * (len(paths) + 1) + "|")
        for label, fields, fmt in PATH_ROWS:
            cells = [cell(_ok(results[name]), fields, fmt) for name in paths]
            print(f"| {label} | " + " | ".join(cells) + " |")
        print()
    if "nat-reboot" in wanted:
        print("| NAT reboot (new port window) | |\n|---|---|")
        for field, label, fmt in REBOOT_ROWS:
            print(f"| {label} | {cell(_ok(results['nat-reboot']), (field,), fmt)} |")
        print()
    for line in notes(results, wanted):
        print(line)


def _ok(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [run for run in runs if "error" not in run]


def notes(results: dict[str, list[dict[str, Any]]], wanted: list[str]) -> Iterator[str]:
    """What a reader of the table must know: failed runs, paths not held, refused reports."""
    yield "(-: none, not within the deadline, or every run failed)"
    for name in wanted:
        for i, run in enumerate(results[name], 1):
            if "error" in run:
                yield f"note: {name} run {i} failed (left out of the table)"
                continue
            if run.get("path_held") is False:
                yield f"note: {name} run {i}: an endpoint left the path during the transfers"
            want = TRANSPORTS.get(name)
            have = (run.get("a_transport"), run.get("b_transport"))
            if want is not None and have != want:
                yield f"note: {name} run {i}: links to the relay a / b were {have}, not {want}"
            if run.get("refused_reports"):
                yield (
                    f"note: {name} run {i}: the coordinator refused {run['refused_reports']}"
                    ' endpoint report(s) ("cannot report endpoints" in the node logs)'
                )
            if "path" in run:
                yield (
                    f"nat-reboot run {i}: b's endpoint for a {run['endpoint_before']} -> "
                    f"{run['endpoint_after']}; after the reboot: {', '.join(run['path'])}"
                )


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def json_report(
    facts: dict[str, Any], results: dict[str, list[dict[str, Any]]], args: Any, wanted: list[str]
) -> dict[str, Any]:
    report: dict[str, Any] = {"machine": facts, "runs": args.runs, "seconds": args.seconds}
    for name in wanted:
        fields = [k for run in _ok(results[name])[:1] for k, v in run.items()]
        medians = {field: median([r.get(field) for r in _ok(results[name])]) for field in fields}
        report[name] = {"median": medians, "runs": results[name]}
    return _jsonable(report)  # type: ignore[no-any-return]


def _terminate(signum: int, frame: FrameType | None) -> None:
    del frame
    raise SystemExit(128 + signum)  # unwinds the `with` blocks: the lab is torn down


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="runs of every scenario (medians)")
    parser.add_argument("--seconds", type=int, default=5, help="iperf3 time per direction")
    parser.add_argument(
        "--only", choices=list(SCENARIOS), action="append", help="run only these scenarios"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args()
    if args.runs < 1 or args.seconds < 1:
        parser.error("--runs and --seconds must be at least 1")
    require_root()
    signal.signal(signal.SIGTERM, _terminate)
    facts = machine()
    wanted = [name for name in SCENARIOS if name in (args.only or SCENARIOS)]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in SCENARIOS}
    for i in range(args.runs):
        for name in wanted:
            print(f"[{name} run {i + 1}/{args.runs}]", file=sys.stderr, flush=True)
            results[name].append(run_scenario(name, args.seconds))
    compare(results)
    failures = [(n, i, r) for n in wanted for i, r in enumerate(results[n], 1) if "error" in r]
    if args.json:
        print(json.dumps(json_report(facts, results, args, wanted), indent=2))
    else:
        print_table(facts, results, args, wanted)
    for name, i, run in failures:
        print(f"\n{name} run {i} failed: {run['error']}", file=sys.stderr)
        if run.get("logs"):
            print(run["logs"], file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
