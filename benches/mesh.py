"""The mesh end to end: how fast `pywg join` nodes find each other, and what they carry.

    sudo python3 benches/mesh.py [--runs N] [--json] [--seconds 5] [--only SCENARIO]

Every scenario builds its own lab (`pywg.lab.mesh.MeshLab`): an internet of
network namespaces, `pywg coordinator serve` (coordinator and relay) on a
public host "hub", and two nodes "a" and "b", each a real `pywg join`
process behind its own nftables NAT (`pywg.lab.nat`). Nothing is configured
per pair; everything is read from outside, as the mesh tests do: `wg show`,
pings through the tunnel, iperf3, packets captured on the relay's link.
The state directories live in a `tempfile.TemporaryDirectory()`; the lab
(namespaces, processes, UAPI sockets) is torn down after every scenario,
also on failure or Ctrl-C / SIGTERM.

1. Direct pair: a and b behind separate endpoint-independent NATs. From
   starting both `pywg join` processes (tokens made beforehand): seconds
   until the first ping a -> b through the tunnel is answered, and until
   each node's `wg show` endpoint for the other is the other's NAT public
   address (a direct path, hole-punched). Then TCP throughput each way
   (iperf3, `--seconds` per direction; without iperf3 the lab's
   `tcp_transfer` of a fixed size), the ping round trip (average of 20),
   and, as a check, the WireGuard transport datagrams (first 4 bytes
   04 00 00 00) seen on the relay host's link during the transfers and the
   pings: expected 0.
2. Relayed pair: a and b behind symmetric NATs, so only the relay joins
   them. Seconds to the first ping, TCP throughput each way and ping round
   trip through the relay, and the relay's CPU use during the transfers:
   utime + stime of the coordinator process (the relay runs in it) from
   /proc/PID/stat, as a share of one core over the transfers' wall time, and
   the UDP datagrams dropped for want of socket buffer (RcvbufErrors and
   SndbufErrors of /proc/net/snmp and snmp6, per namespace) at the relay and
   at the nodes during the transfers.
3. NAT reboot: a behind an endpoint-independent NAT with a port window
   (20000-20999), b behind a plain one. Once the direct path is up, a's
   NAT reboots (`Nat.reboot`: conntrack flushed, the next port window);
   seconds until a ping b -> a gets through again, until b's endpoint for a
   moves to the relay (if it does), and until it is direct again, at a's
   new mapping.

Medians over `--runs` (default 1); `--only` picks scenarios (direct,
relayed, nat-reboot). Endpoint reports the coordinator refused ("cannot
report endpoints" in a node's log) are counted and noted under the table:
they delay the direct path. Every wait has a deadline: a time that
did not come within it is shown as "-" (JSON null). The default run takes
about 1.5-2 minutes. Needs root, iproute2, nftables, wg (wireguard-tools),
ping; iperf3 if present. Both nodes, the relay and the traffic generators
share this machine's CPUs: the figures are for this lab, not for a network.
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

from pywg.lab import Host, Lab, LabError, require_root, tcp_transfer
from pywg.lab.capture import UdpCapture
from pywg.lab.mesh import MeshLab, Node, dump

LAB_PREFIX = "pwmb"
POLL = 0.1  # seconds between two looks at `wg show`
UP_DEADLINE = 60.0  # seconds for a first ping / a direct path after the nodes start
REBOOT_DEADLINE = 60.0  # seconds for a ping to get through after the NAT reboot
REDIRECT_DEADLINE = 90.0  # seconds for the direct path at the new mapping
PING_COUNT = 20
FALLBACK_BYTES = 48 << 20  # per direction, when iperf3 is missing
CLK_TCK = os.sysconf("SC_CLK_TCK")
WG_TRANSPORT = b"\x04\x00\x00\x00"  # whitepaper §5.4.6: type 4 and three reserved zero bytes
REBOOT_PORTS = (20000, 20999)


class BenchError(RuntimeError):
    """A scenario could not be measured (its premise failed); the message says why."""


@dataclass
class DirectRun:
    first_ping_s: float | None  # both `pywg join` started -> first ping a -> b answered
    a_direct_s: float | None  # ... -> a's endpoint for b is b's NAT
    b_direct_s: float | None  # ... -> b's endpoint for a is a's NAT
    a_to_b_mbit: float
    b_to_a_mbit: float
    retransmits: int | None  # both directions (iperf3)
    ping_ms: float | None
    relayed_transport: int  # WireGuard type-4 datagrams on the relay's link (expected 0)
    refused_reports: int  # "cannot report endpoints" in the nodes' logs


@dataclass
class RelayedRun:
    first_ping_s: float | None
    a_to_b_mbit: float
    b_to_a_mbit: float
    retransmits: int | None
    ping_ms: float | None
    relay_cpu_s: float  # coordinator process utime + stime during both transfers
    relay_cpu_pct: float  # ... as a share of one core over the transfers' wall time
    relay_udp_drops: int  # UDP buffer errors in the relay's namespace during the transfers
    node_udp_drops: int  # ... in the two nodes' namespaces
    via_relay: bool  # both endpoints were the relay's before and after the transfers
    refused_reports: int


@dataclass
class RebootRun:
    reachable_s: float | None  # NAT reboot -> first ping b -> a answered
    relay_s: float | None  # ... -> b's endpoint for a is the relay (None: never seen there)
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
    cpu_ticks: int  # of `cpu_pid` over `wall_s` (0 without one)


def cpu_ticks(pid: int) -> int:
    """utime + stime of process `pid` (all its threads), in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    rest = stat[stat.rindex(")") + 2 :].split()  # rest[0] is field 3 (state)
    return int(rest[11]) + int(rest[12])  # fields 14 (utime) and 15 (stime)


def tcp(sender: Node, receiver: Node, seconds: int, cpu_pid: int | None = None) -> Transfer:
    """One TCP stream sender -> receiver's tunnel IPv4 address, iperf3 or the lab's transfer."""
    address = receiver.addr4()
    sample: Callable[[], int] = (lambda: cpu_ticks(cpu_pid)) if cpu_pid else (lambda: 0)
    if shutil.which("iperf3") is None:
        start, ticks = time.monotonic(), sample()
        result = tcp_transfer(
            sender.host, receiver.host, address, FALLBACK_BYTES, timeout=seconds + 120
        )
        ticks, wall = sample() - ticks, time.monotonic() - start
        if not result.ok:
            raise BenchError(f"{sender.name} -> {receiver.name}: the transfer was corrupted")
        return Transfer(result.mbit_per_s, None, wall, ticks)
    server = receiver.host.popen(
        "iperf3", "-s", "-1", "-B", address, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        time.sleep(0.3)
        start, ticks = time.monotonic(), sample()
        done = sender.host.run(
            "iperf3", "-c", address, "-t", str(seconds), "-J", check=False, timeout=seconds + 30
        )
        ticks, wall = sample() - ticks, time.monotonic() - start
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


def ping_ms(src: Node, dst: Node) -> float | None:
    """Average round trip of PING_COUNT pings src -> dst through the tunnel (ms)."""
    argv = ["ping", "-4", "-n", "-q", "-c", str(PING_COUNT), "-i", "0.05", "-w", "15"]
    out = src.host.run(*argv, dst.addr4(), check=False, timeout=30).stdout
    match = re.search(r"= [\d.]+/([\d.]+)/", out)
    return float(match.group(1)) if match else None


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


def start_pair(mesh: MeshLab, a_site: Any, b_site: Any) -> tuple[Node, Node, float]:
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


# ---------------------------------------------------------------- the scenarios


def direct_pair(mesh: MeshLab, seconds: int) -> DirectRun:
    a_site = mesh.net.behind_nat("a", "endpoint-independent")
    b_site = mesh.net.behind_nat("b", "endpoint-independent")
    a, b, started = start_pair(mesh, a_site, b_site)
    a_view, b_view = PeerView(a, b), PeerView(b, a)
    with waiters() as (pool, stop):
        ping = pool.submit(poll_until, answers(a, b), UP_DEADLINE, stop, started)
        a_direct = pool.submit(
            poll_until, a_view.at(b_site.public_addr4), UP_DEADLINE, stop, started
        )
        b_direct = pool.submit(
            poll_until, b_view.at(a_site.public_addr4), UP_DEADLINE, stop, started
        )
        first_ping, a_s, b_s = ping.result(), a_direct.result(), b_direct.result()
    alive(mesh, a, b)
    if first_ping is None or a_s is None or b_s is None:
        raise BenchError(
            f"no direct path within {UP_DEADLINE:g} s: first ping {first_ping}, "
            f"a direct {a_s}, b direct {b_s} (endpoints {a_view.endpoint()!r}, "
            f"{b_view.endpoint()!r})"
        )
    with UdpCapture(mesh.hub.host, mesh.hub.link.b_if) as capture:
        since = time.monotonic()
        forward = tcp(a, b, seconds)
        reverse = tcp(b, a, seconds)
        rtt = ping_ms(a, b)
        time.sleep(0.5)  # stragglers
        relayed = sum(1 for d in capture.datagrams(since=since) if d.payload[:4] == WG_TRANSPORT)
    alive(mesh, a, b)
    return DirectRun(
        first_ping_s=first_ping,
        a_direct_s=a_s,
        b_direct_s=b_s,
        a_to_b_mbit=forward.mbit,
        b_to_a_mbit=reverse.mbit,
        retransmits=_sum(forward.retransmits, reverse.retransmits),
        ping_ms=rtt,
        relayed_transport=relayed,
        refused_reports=refused_reports(a, b),
    )


def relayed_pair(mesh: MeshLab, seconds: int) -> RelayedRun:
    a_site = mesh.net.behind_nat("a", "symmetric")
    b_site = mesh.net.behind_nat("b", "symmetric")
    a, b, started = start_pair(mesh, a_site, b_site)
    a_view, b_view = PeerView(a, b), PeerView(b, a)
    relay = mesh.hub.addr4
    with waiters() as (pool, stop):
        ping = pool.submit(poll_until, answers(a, b), UP_DEADLINE, stop, started)
        a_relay = pool.submit(poll_until, a_view.at(relay), UP_DEADLINE, stop, started)
        b_relay = pool.submit(poll_until, b_view.at(relay), UP_DEADLINE, stop, started)
        first_ping, a_s, b_s = ping.result(), a_relay.result(), b_relay.result()
    alive(mesh, a, b)
    if first_ping is None or a_s is None or b_s is None:
        raise BenchError(
            f"no relayed path within {UP_DEADLINE:g} s: first ping {first_ping}, "
            f"a on the relay {a_s}, b on the relay {b_s}"
        )
    assert mesh.coordinator is not None
    pid = mesh.coordinator.pid  # `ip netns exec` execs the coordinator: this is its process
    drops = udp_drops(mesh.hub.host), udp_drops(a.host, b.host)
    forward = tcp(a, b, seconds, cpu_pid=pid)
    reverse = tcp(b, a, seconds, cpu_pid=pid)
    relay_drops = udp_drops(mesh.hub.host) - drops[0]
    node_drops = udp_drops(a.host, b.host) - drops[1]
    rtt = ping_ms(a, b)
    via_relay = all(
        endpoint_host(view.endpoint()) == relay for view in (a_view, b_view)
    )  # still: no direct path opened meanwhile
    alive(mesh, a, b)
    cpu_s = (forward.cpu_ticks + reverse.cpu_ticks) / CLK_TCK
    wall = forward.wall_s + reverse.wall_s
    return RelayedRun(
        first_ping_s=first_ping,
        a_to_b_mbit=forward.mbit,
        b_to_a_mbit=reverse.mbit,
        retransmits=_sum(forward.retransmits, reverse.retransmits),
        ping_ms=rtt,
        relay_cpu_s=cpu_s,
        relay_cpu_pct=100 * cpu_s / wall if wall > 0 else math.nan,
        relay_udp_drops=relay_drops,
        node_udp_drops=node_drops,
        via_relay=via_relay,
        refused_reports=refused_reports(a, b),
    )


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
            if endpoint_host(endpoint) == mesh.hub.addr4 and not relay_s:
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


# ---------------------------------------------------------------- running and reporting

Scenario = Callable[[MeshLab, int], Any]
SCENARIOS: dict[str, Scenario] = {
    "direct": direct_pair,
    "relayed": relayed_pair,
    "nat-reboot": nat_reboot,
}

# (scenario, field, label, format); formats apply to the median and to every run
ROWS: list[tuple[str, str, str, str]] = [
    ("direct", "first_ping_s", "first ping a->b after both joins started (s)", ".2f"),
    ("direct", "a_direct_s", "a's endpoint for b = b's NAT (direct) (s)", ".2f"),
    ("direct", "b_direct_s", "b's endpoint for a = a's NAT (direct) (s)", ".2f"),
    ("direct", "a_to_b_mbit", "TCP a->b (Mbit/s)", ".0f"),
    ("direct", "b_to_a_mbit", "TCP b->a (Mbit/s)", ".0f"),
    ("direct", "retransmits", "TCP retransmits, both ways", "d"),
    ("direct", "ping_ms", f"ping RTT, average of {PING_COUNT} (ms)", ".3f"),
    ("direct", "relayed_transport", "WG transport datagrams at the relay (want 0)", "d"),
    ("relayed", "first_ping_s", "first ping a->b after both joins started (s)", ".2f"),
    ("relayed", "a_to_b_mbit", "TCP a->b via the relay (Mbit/s)", ".0f"),
    ("relayed", "b_to_a_mbit", "TCP b->a via the relay (Mbit/s)", ".0f"),
    ("relayed", "retransmits", "TCP retransmits, both ways", "d"),
    ("relayed", "ping_ms", f"ping RTT, average of {PING_COUNT} (ms)", ".3f"),
    ("relayed", "relay_cpu_s", "relay process CPU during the transfers (s)", ".2f"),
    ("relayed", "relay_cpu_pct", "... as % of one core", ".0f"),
    ("relayed", "relay_udp_drops", "UDP buffer drops in the relay's namespace", "d"),
    ("relayed", "node_udp_drops", "UDP buffer drops in the nodes' namespaces", "d"),
    ("nat-reboot", "reachable_s", "ping b->a gets through again after (s)", ".2f"),
    ("nat-reboot", "relay_s", "b's endpoint for a on the relay after (s)", ".2f"),
    ("nat-reboot", "direct_s", "b's endpoint for a direct, new mapping (s)", ".2f"),
]


@contextlib.contextmanager
def mesh_lab() -> Iterator[MeshLab]:
    """A fresh MeshLab (its state in a temporary directory), torn down at the end."""
    with tempfile.TemporaryDirectory(prefix="pywg-mesh-bench-") as tmp, Lab(LAB_PREFIX) as lab:
        mesh = MeshLab(lab, Path(tmp))
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
    except (LabError, AssertionError, OSError) as exc:  # the lab or the coordinator failed
        return {"error": f"{type(exc).__name__}: {exc}", "logs": ""}


def median(values: list[Any]) -> float | int | None:
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    numbers = [v for v in numbers if not (isinstance(v, float) and math.isnan(v))]
    if not numbers:
        return None
    middle = statistics.median(numbers)
    return middle if any(isinstance(v, float) for v in numbers) else round(middle)


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


def _cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if fmt == "d":
        return str(round(value))
    return format(value, fmt)


def print_table(
    facts: dict[str, Any], results: dict[str, list[dict[str, Any]]], args: Any, wanted: list[str]
) -> None:
    how = f"iperf3, {args.seconds} s per direction" if facts["iperf3"] else "lab tcp_transfer"
    print(
        f"pywg mesh: {facts['nproc']} CPUs ({facts['cpu'] or 'unknown CPU'}), "
        f"Linux {facts['kernel']}, Python {facts['python']}, load {facts['load_1min']} at start; "
        f"{args.runs} run(s); TCP: {how}"
    )
    runs = args.runs
    head = f"{'scenario':11} {'measure':46} {'median' if runs > 1 else 'value':>9}"
    if runs > 1:
        head += "".join(f" {'run ' + str(i + 1):>9}" for i in range(runs))
    print(head)
    for scenario, field, label, fmt in ROWS:
        if scenario not in wanted:
            continue
        column = [r.get(field) for r in results[scenario]]
        failed = ["failed" if "error" in r else None for r in results[scenario]]
        line = f"{scenario:11} {label:46} {_cell(median(column), fmt):>9}"
        if runs > 1:
            line += "".join(
                f" {f or _cell(v, fmt):>9}" for v, f in zip(column, failed, strict=True)
            )
        print(line)
    print("(-: not within the deadline, or the run failed)")
    for i, run in enumerate(results["relayed"], 1):
        if "via_relay" in run and not run["via_relay"]:
            print(f"note: relayed run {i}: an endpoint was not the relay's after the transfers")
    for name in wanted:
        for i, run in enumerate(results[name], 1):
            if run.get("refused_reports"):
                print(
                    f"note: {name} run {i}: the coordinator refused {run['refused_reports']}"
                    ' endpoint report(s) ("cannot report endpoints" in the node logs)'
                )
    for i, run in enumerate(results["nat-reboot"], 1):
        if "path" in run:
            print(
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


def _terminate(signum: int, frame: FrameType | None) -> None:
    del frame
    raise SystemExit(128 + signum)  # unwinds the `with` blocks: the lab is torn down


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="runs of every scenario (medians)")
    parser.add_argument("--seconds", type=int, default=5, help="iperf3 time per direction")
    parser.add_argument(
        "--only", choices=sorted(SCENARIOS), action="append", help="run only these scenarios"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args()
    if args.runs < 1 or args.seconds < 1:
        parser.error("--runs and --seconds must be at least 1")
    require_root()
    signal.signal(signal.SIGTERM, _terminate)
    facts = machine()
    wanted = args.only or list(SCENARIOS)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in SCENARIOS}
    for name in wanted:
        for i in range(args.runs):
            print(f"[{name} run {i + 1}/{args.runs}]", file=sys.stderr, flush=True)
            results[name].append(run_scenario(name, args.seconds))
    failures = [(n, i, r) for n in wanted for i, r in enumerate(results[n], 1) if "error" in r]
    if args.json:
        report: dict[str, Any] = {"machine": facts, "runs": args.runs, "seconds": args.seconds}
        for name in wanted:
            medians = {
                field: median([r.get(field) for r in results[name]])
                for scenario, field, _, _ in ROWS
                if scenario == name
            }
            report[name] = {"median": medians, "runs": results[name]}
        print(json.dumps(_jsonable(report), indent=2))
    else:
        print_table(facts, results, args, wanted)
    for name, i, run in failures:
        print(f"\n{name} run {i} failed: {run['error']}", file=sys.stderr)
        if run.get("logs"):
            print(run["logs"], file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
