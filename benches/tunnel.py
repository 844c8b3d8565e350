"""Tunnel throughput, latency and CPU cost: pywgd and wireguard-go, side by side, in one run.

    sudo python3 benches/tunnel.py [--seconds 5] [--runs 3] [--udp-rate 200M] [--no-cpu] [--json]
    sudo python3 benches/tunnel.py --mtu 34000 [--seconds 5] [--runs 3] [--json]
    sudo python3 benches/tunnel.py ... [--upstream /path/to/wireguard-go] [--underlay 6]

For each pair (pywgd-pywgd, pywgd-wireguard-go, wireguard-go-wireguard-go) it
builds two lab namespaces joined by a veth (pywg.lab), starts the daemons,
connects them over IPv4, and measures with iperf3 one TCP stream each way
(A->B and B->A, -R) and the ping round trip through the tunnel. Medians of
`--runs`; ratios against wireguard-go-wireguard-go from the same run. Needs
root, iperf3, ping and wireguard-go (Debian packages).

`--upstream PATH` adds a second wireguard-go build (the newest upstream, built
from source; docs/benchmarks.md says how) as two more pairs,
upstream-upstream and pywgd-upstream, with ratios against both baselines.
`--underlay 6` connects the endpoints over the veth's IPv6 addresses instead
of IPv4 (the traffic inside the tunnel stays IPv4).

Access policy (`--policy [N]`, N 100 when not given): only pywgd-pywgd, the TCP
streams each way with no policy and with a policy of N inbound rules on both
nodes (PYWG_INBOUND_RULES, docs/policy.md), alternately, side by side, and
the ratio. Of the N rules, N - 3 match nothing the bench sends and come
first; the last three let the peer reach iperf3 (TCP and UDP) and ping, so
every new flow scans them all and every other packet is one flow lookup.

CPU cost (on by default, `--no-cpu` skips it): in the same lab, one iperf3
UDP stream A->B at a fixed offered rate (`-u -b RATE -l 1380 -t SECONDS`,
RATE from `--udp-rate`), and the CPU time the two WireGuard daemons used
during it: utime + stime from /proc/PID/stat (all threads of the process),
over every process in each namespace that is a daemon (comm `wireguard-go`,
or a cmdline naming `pywg.cmd.daemon` / `pywgd`), in clock ticks / SC_CLK_TCK.
It prints the packets delivered (iperf3's received packets minus lost ones)
per daemon-CPU-second, its ratio against wireguard-go-wireguard-go, the UDP
loss iperf3 reports. Kernel work done outside the daemons' own time (softirq
on the receive path, say) is not counted; the daemons' syscalls are (stime).

Jumbo MTU (`--mtu N`, N above the default 1420): the tunnel interfaces get MTU
N and the veth underneath N + 80 (the IPv6 + UDP + WireGuard overhead), the
same pairs run the TCP streams each way (retransmits counted), and instead of
the CPU cost one UDP stream A->B of N - 28 byte datagrams (one per tunnel
packet, IPv4 + UDP headers off) sent as fast as iperf3 can (`-b 0`): the
Gbit/s iperf3 received and its loss, the Gbit/s the tunnel delivered (the
bytes B's daemon wrote to its TUN, from the kernel's interface counters, the
same for every implementation) and that per daemon CPU-second. The two rates
differ by what iperf3's receiver, competing with the daemons and the sender
for the CPUs, fails to read in time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from pywg.lab import Host, Lab, LabError, require_root
from pywg.lab.wireguard import PYWGD, WIREGUARD_GO, Impl, connect, start_node, wait_handshake
from pywg.policy.rules import InboundRule, Proto, encode

PAIRS = ((PYWGD, PYWGD), (PYWGD, WIREGUARD_GO), (WIREGUARD_GO, WIREGUARD_GO))
BASE = f"{WIREGUARD_GO.name}-{WIREGUARD_GO.name}"  # every ratio's denominator
UPSTREAM = "upstream"  # the display name of an --upstream build
UDP_LEN = 1380  # iperf3 -l: datagram payload bytes
DEFAULT_MTU = 1420  # start_node's tunnel MTU
# bytes a tunnel packet grows by on the underlay: outer IPv6 (40) + UDP (8) +
# WireGuard transport header (16) + tag (16), whitepaper §5.4.6
UNDERLAY_OVERHEAD = 80
IPV4_UDP_HEADERS = 28
MAX_MTU = 65535 - UNDERLAY_OVERHEAD  # the underlay datagram is an IP packet too
CLK_TCK = os.sysconf("SC_CLK_TCK")
NETNS_DIR = Path("/run/netns")


@dataclass
class Result:
    pair: str
    forward_gbit: float  # A -> B
    reverse_gbit: float  # B -> A
    retransmits: int
    ping_ms: float


@dataclass
class CpuResult:
    """One UDP stream A->B at a fixed offered rate and what the two daemons spent on it."""

    pair: str
    offered: str  # iperf3 -b
    seconds: float
    packets_sent: int  # by iperf3 at A
    packets_delivered: int  # received by iperf3 at B (its count minus the lost ones)
    loss_percent: float
    cpu_a_s: float  # daemon CPU in A (the sending side)
    cpu_b_s: float  # daemon CPU in B (the receiving side)
    daemon_cpu_s: float
    packets_per_cpu_s: float  # packets_delivered / daemon_cpu_s


@dataclass
class UdpResult:
    """One UDP stream A->B at full speed, datagrams of one tunnel packet each."""

    pair: str
    datagram_bytes: int
    gbit: float  # delivered to the application (iperf3's receiver figure)
    loss_percent: float
    tunnel_gbit: float  # delivered by the tunnel: what B's daemon wrote to its TUN
    daemon_cpu_s: float  # both daemons, during the stream
    gbit_per_cpu_s: float  # tunnel-delivered Gbit per daemon CPU-second


def iperf(
    client: Host, server: Host, address: str, seconds: float, reverse: bool
) -> dict[str, Any]:
    srv = server.popen(
        "iperf3", "-s", "-1", "-B", address, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        time.sleep(0.3)
        argv = ["iperf3", "-c", address, "-t", str(seconds), "-J"]
        if reverse:
            argv.append("-R")
        out = client.run(*argv, timeout=seconds + 30).stdout
    finally:
        srv.kill()
        srv.wait()
    report = json.loads(out)
    end = report["end"]
    return {
        "gbit": end["sum_received"]["bits_per_second"] / 1e9,
        "retransmits": int(end["sum_sent"].get("retransmits", 0)),
    }


def ping_ms(client: Host, address: str) -> float:
    out = client.run("ping", "-n", "-q", "-c", "20", "-i", "0.05", address, check=False).stdout
    match = re.search(r"= [\d.]+/([\d.]+)/", out)
    return float(match.group(1)) if match else float("nan")


# ---------------------------------------------------------------- CPU cost


def _netns_id(path: str | Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _is_daemon(pid: int) -> bool:
    """wireguard-go (by comm or argv[0]) or pywgd (python with pywg.cmd.daemon / pywgd in argv)."""
    proc = Path(f"/proc/{pid}")
    comm = (proc / "comm").read_text().strip()
    if comm in ("wireguard-go", "pywgd"):
        return True
    argv = [arg.decode(errors="replace") for arg in (proc / "cmdline").read_bytes().split(b"\0")]
    if argv and os.path.basename(argv[0]) == "wireguard-go":
        return True
    return any("pywg.cmd.daemon" in arg or "pywgd" in arg for arg in argv)


def daemon_pids(host: Host) -> list[int]:
    """Every WireGuard daemon process whose network namespace is `host`'s."""
    netns = _netns_id(NETNS_DIR / host.netns)
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if _netns_id(entry / "ns" / "net") == netns and _is_daemon(pid):
                pids.append(pid)
        except OSError:  # gone meanwhile, or a kernel thread without a readable ns
            continue
    return sorted(pids)


def cpu_ticks(pid: int) -> int:
    """utime + stime of the whole process (every thread), in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    rest = stat[stat.rindex(")") + 2 :].split()  # rest[0] is field 3 (state)
    return int(rest[11]) + int(rest[12])  # fields 14 (utime) and 15 (stime)


def _sample(pids: list[int]) -> int:
    try:
        return sum(cpu_ticks(pid) for pid in pids)
    except OSError as exc:
        raise LabError(f"a daemon exited during the CPU measurement: {exc}") from exc


def udp_cpu(pair: str, a: Host, b: Host, address: str, seconds: float, rate: str) -> CpuResult:
    """iperf3 UDP A->B at `rate` through the tunnel; the daemons' CPU time meanwhile."""
    a_pids, b_pids = daemon_pids(a), daemon_pids(b)
    if not a_pids or not b_pids:
        raise LabError(f"{pair}: no daemon process found (A: {a_pids}, B: {b_pids})")
    srv = b.popen(
        "iperf3", "-s", "-1", "-B", address, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        time.sleep(0.3)
        argv = ["iperf3", "-c", address, "-u", "-b", rate, "-l", str(UDP_LEN)]
        argv += ["-t", str(seconds), "-J"]
        before = (_sample(a_pids), _sample(b_pids))
        out = a.run(*argv, timeout=seconds + 30).stdout
        after = (_sample(a_pids), _sample(b_pids))
    finally:
        srv.kill()
        srv.wait()
    end = json.loads(out)["end"]
    sent_sum = end.get("sum_sent", end["sum"])
    recv_sum = end.get("sum_received", end["sum"])
    sent = int(sent_sum.get("packets", round(sent_sum["bytes"] / UDP_LEN)))
    if "packets" in recv_sum:
        delivered = int(recv_sum["packets"]) - int(recv_sum.get("lost_packets", 0))
    else:
        delivered = round(recv_sum["bytes"] / UDP_LEN)
    delivered = max(delivered, 0)
    cpu_a, cpu_b = ((x - y) / CLK_TCK for x, y in zip(after, before, strict=True))
    daemon_cpu = cpu_a + cpu_b
    return CpuResult(
        pair,
        rate,
        seconds,
        sent,
        delivered,
        float(recv_sum.get("lost_percent", 0.0)),
        cpu_a,
        cpu_b,
        daemon_cpu,
        delivered / daemon_cpu if daemon_cpu > 0 else math.nan,
    )


def tun_rx_bytes(host: Host, ifname: str) -> int:
    """Bytes the kernel took in on a TUN interface: what its daemon wrote to it."""
    link = json.loads(host.run("ip", "-j", "-s", "link", "show", "dev", ifname).stdout)
    return int(link[0]["stats64"]["rx"]["bytes"])


def udp_stream(
    pair: str, ends: tuple[Host, Host], address: str, ifname: str, seconds: float, mtu: int
) -> UdpResult:
    """iperf3 UDP A->B through the tunnel, unlimited rate, `mtu` - 28 byte datagrams;
    what iperf3 received, what the tunnel delivered (B's TUN, `ifname`) and the daemons'
    CPU time meanwhile. On a small machine iperf3's receiver competes with the daemons
    for CPU and drops what it cannot read: the two rates differ by that."""
    a, b = ends
    length = mtu - IPV4_UDP_HEADERS
    pids = daemon_pids(a) + daemon_pids(b)
    srv = b.popen(
        "iperf3", "-s", "-1", "-B", address, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        time.sleep(0.3)
        argv = ["iperf3", "-c", address, "-u", "-b", "0", "-l", str(length), "-t", str(seconds)]
        cpu_before, rx_before = _sample(pids), tun_rx_bytes(b, ifname)
        out = a.run(*argv, "-J", timeout=seconds + 30).stdout
        cpu_s = (_sample(pids) - cpu_before) / CLK_TCK
        tunnel_bytes = tun_rx_bytes(b, ifname) - rx_before
    finally:
        srv.kill()
        srv.wait()
    end = json.loads(out)["end"]
    received = end.get("sum_received", end["sum"])
    # delivered datagrams (received minus lost), not iperf3's bits_per_second,
    # which for UDP can be the sender's rate
    delivered = int(received["packets"]) - int(received.get("lost_packets", 0))
    elapsed = float(received["seconds"])
    gbit = max(delivered, 0) * length * 8 / elapsed / 1e9
    tunnel_gbit = tunnel_bytes * 8 / elapsed / 1e9
    return UdpResult(
        pair,
        length,
        gbit,
        float(received.get("lost_percent", 0.0)),
        tunnel_gbit,
        cpu_s,
        tunnel_gbit * elapsed / cpu_s if cpu_s > 0 else math.nan,
    )


def median_cpu(runs: list[CpuResult]) -> CpuResult:
    """Field by field medians of several runs of one pair."""
    values: dict[str, Any] = {}
    for field in fields(CpuResult):
        column = [getattr(r, field.name) for r in runs]
        if isinstance(column[0], str):
            values[field.name] = column[0]
        elif isinstance(column[0], int):
            values[field.name] = int(statistics.median(column))
        else:
            values[field.name] = statistics.median(column)
    return CpuResult(**values)


def measure(
    a_impl: Impl,
    b_impl: Impl,
    seconds: float,
    udp_rate: str | None,
    mtu: int = DEFAULT_MTU,
    family: int = 4,
    rules: int = 0,
) -> tuple[Result, CpuResult | UdpResult | None]:
    """Throughput and ping of one pair in one lab, its endpoints on the veth's IPv4 or
    IPv6 addresses (`family`); with `udp_rate` the CPU cost, or at a jumbo `mtu` the
    full-speed UDP stream; with `rules`, a policy of that many rules on both (pywgd)."""
    with Lab("pwb") as lab, tempfile.TemporaryDirectory() as scratch:
        a, b = lab.host("a"), lab.host("b")
        link = lab.link(a, b, mtu=max(1500, mtu + UNDERLAY_OVERHEAD))
        envs = [policy_env(Path(scratch), rules, index) for index in (1, 2)]
        left = start_node(lab, a, a_impl, net=1, index=1, mtu=mtu, env=envs[0])
        right = start_node(lab, b, b_impl, net=1, index=2, mtu=mtu, env=envs[1])
        connect(left, right, link, family=family)
        pair = f"{a_impl.name}-{b_impl.name}"
        if not wait_handshake(left, right):
            raise LabError(f"{a_impl.name} and {b_impl.name}: no handshake")
        fwd = iperf(a, b, right.addr4, seconds, reverse=False)
        rev = iperf(a, b, right.addr4, seconds, reverse=True)
        result = Result(
            pair,
            fwd["gbit"],
            rev["gbit"],
            fwd["retransmits"] + rev["retransmits"],
            ping_ms(a, right.addr4),
        )
        if mtu != DEFAULT_MTU:
            return result, udp_stream(pair, (a, b), right.addr4, right.ifname, seconds, mtu)
        if udp_rate is not None:
            return result, udp_cpu(pair, a, b, right.addr4, seconds, udp_rate)
        return result, None


def policy_env(scratch: Path, rules: int, index: int) -> dict[str, str] | None:
    """The environment giving node 198.19.1.`index` a policy of `rules` rules (0: none)."""
    if rules == 0:
        return None
    me, peer = ip_network(f"198.19.1.{index}/32"), ip_network(f"198.19.1.{3 - index}/32")
    table = [
        InboundRule((ip_network(f"10.{i // 256}.{i % 256}.0/24"),), (me,), Proto.TCP, ((i, i),))
        for i in range(1, max(1, rules - 2))
    ]
    for proto in (Proto.TCP, Proto.UDP):
        table.append(InboundRule((peer,), (me,), proto, ((5201, 5201),)))
    table.append(InboundRule((peer,), (me,), Proto.ICMP))
    path = scratch / f"rules-{index}.json"
    path.write_text(encode(table))
    return {"PYWG_INBOUND_RULES": str(path)}


def policy_main(args: argparse.Namespace) -> int:
    """pywgd-pywgd with no policy and with `args.policy` rules, side by side."""
    label = f"{args.policy} rules"
    runs: dict[str, list[Result]] = {"none": [], label: []}
    for _ in range(args.runs):
        for name, rules in (("none", 0), (label, args.policy)):
            result, _ = measure(PYWGD, PYWGD, args.seconds, None, args.mtu, args.underlay, rules)
            runs[name].append(result)
    none, with_rules = median_result(runs["none"]), median_result(runs[label])
    print(f"pywgd-pywgd, TCP, {args.seconds:g} s each way, median of {args.runs}")
    print(f"{'policy':>12} {'A->B Gbit/s':>12} {'B->A Gbit/s':>12} {'retrans':>8} {'ping ms':>8}")
    for name, r in (("none", none), (label, with_rules)):
        row = f"{r.forward_gbit:12.2f} {r.reverse_gbit:12.2f} {r.retransmits:8d} {r.ping_ms:8.3f}"
        print(f"{name:>12} {row}")
    ratio = (with_rules.forward_gbit + with_rules.reverse_gbit) / (
        none.forward_gbit + none.reverse_gbit
    )
    print(f"throughput with {label} / none: {ratio:.3f}")
    return 0


def base_of(results: list[Any]) -> Any:
    """The wireguard-go-wireguard-go result: every ratio's denominator."""
    return next(r for r in results if r.pair == BASE)


def upstream_of(results: list[Any]) -> Any | None:
    """The upstream-upstream result, if an --upstream build ran."""
    return next((r for r in results if r.pair == f"{UPSTREAM}-{UPSTREAM}"), None)


def print_cpu(results: list[CpuResult]) -> None:
    base = base_of(results)
    first = results[0]
    print()
    print(
        f"CPU cost: iperf3 UDP A->B, {first.offered} offered, {UDP_LEN}-byte datagrams,"
        f" {first.seconds:g} s; daemon CPU = utime+stime of both daemons (/proc/PID/stat)"
    )
    print(
        f"{'pair':28} {'sent pkts':>10} {'delivered':>10} {'loss %':>7} {'A CPU s':>8}"
        f" {'B CPU s':>8} {'pkts/daemon-CPU-s':>18} {'ratio vs wg-go':>15}"
    )
    for r in results:
        ratio = r.packets_per_cpu_s / base.packets_per_cpu_s
        print(
            f"{r.pair:28} {r.packets_sent:10d} {r.packets_delivered:10d} {r.loss_percent:7.2f}"
            f" {r.cpu_a_s:8.2f} {r.cpu_b_s:8.2f} {r.packets_per_cpu_s:18,.0f} {ratio:14.2f}x"
        )


def _ratio(value: float, base: float | None, width: int = 15) -> str:
    return f"{value / base:{width - 1}.2f}x" if base else f"{'-':>{width}}"


def print_udp(results: list[UdpResult]) -> None:
    base, upstream = base_of(results), upstream_of(results)
    print()
    print(
        f"UDP: iperf3 -u -b 0 A->B, {results[0].datagram_bytes}-byte datagrams: received by"
        " iperf3; delivered by the tunnel (B's TUN); per daemon CPU-second"
    )
    print(
        f"{'pair':28} {'Gbit/s':>8} {'loss %':>7} {'vs wg-go':>9} {'tunnel Gbit/s':>14}"
        f" {'vs wg-go':>9} {'vs upstream':>12} {'Gbit/CPU-s':>11} {'vs wg-go':>9}"
    )
    for r in results:
        print(
            f"{r.pair:28} {r.gbit:8.3f} {r.loss_percent:7.2f} {_ratio(r.gbit, base.gbit, 9)}"
            f" {r.tunnel_gbit:14.3f} {_ratio(r.tunnel_gbit, base.tunnel_gbit, 9)}"
            f" {_ratio(r.tunnel_gbit, upstream.tunnel_gbit if upstream else None, 12)}"
            f" {r.gbit_per_cpu_s:11.3f} {_ratio(r.gbit_per_cpu_s, base.gbit_per_cpu_s, 9)}"
        )


def print_tcp(results: list[Result], mtu: int, seconds: float, family: int) -> None:
    base, upstream = base_of(results), upstream_of(results)

    def both(r: Result) -> float:
        return r.forward_gbit + r.reverse_gbit

    print(f"tunnel MTU {mtu}; underlay IPv{family}; iperf3 TCP, one stream each way, {seconds:g} s")
    print(
        f"{'pair':28} {'A->B Gbit/s':>12} {'B->A Gbit/s':>12} {'retrans':>8} {'ping ms':>8}"
        f" {'ratio vs wg-go':>15} {'vs upstream':>15}"
    )
    for r in results:
        print(
            f"{r.pair:28} {r.forward_gbit:12.3f} {r.reverse_gbit:12.3f} {r.retransmits:8d}"
            f" {r.ping_ms:8.3f} {_ratio(both(r), both(base))}"
            f" {_ratio(both(r), both(upstream) if upstream else None)}"
        )


def median_udp(runs: list[UdpResult]) -> UdpResult:
    def median(name: str) -> float:
        return float(statistics.median(getattr(r, name) for r in runs))

    return UdpResult(
        runs[0].pair,
        runs[0].datagram_bytes,
        *(median(f.name) for f in fields(UdpResult)[2:]),
    )


def median_result(runs: list[Result]) -> Result:
    return Result(
        runs[0].pair,
        statistics.median(r.forward_gbit for r in runs),
        statistics.median(r.reverse_gbit for r in runs),
        int(statistics.median(r.retransmits for r in runs)),
        statistics.median(r.ping_ms for r in runs),
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--udp-rate", default="200M", help="offered rate of the CPU-cost UDP stream (iperf3 -b)"
    )
    parser.add_argument(
        "--no-cpu", dest="cpu", action="store_false", help="skip the CPU-cost measurement"
    )
    parser.add_argument(
        "--mtu",
        type=int,
        default=DEFAULT_MTU,
        help=f"tunnel MTU (up to {MAX_MTU}); another than {DEFAULT_MTU} measures jumbo MTU",
    )
    parser.add_argument(
        "--upstream", metavar="PATH", help="another wireguard-go binary (the newest upstream)"
    )
    parser.add_argument(
        "--underlay", type=int, choices=(4, 6), default=4, help="the endpoints' address family"
    )
    parser.add_argument(
        "--policy",
        type=int,
        nargs="?",
        const=100,
        metavar="N",
        help="pywgd-pywgd without and with a policy of N rules (default 100), side by side",
    )
    args = parser.parse_args()
    if not 1280 <= args.mtu <= MAX_MTU:
        parser.error(f"--mtu must be 1280..{MAX_MTU}")
    if args.upstream and not os.access(args.upstream, os.X_OK):
        parser.error(f"--upstream {args.upstream}: not an executable")
    return args


def pairs_to_run(upstream: str | None) -> list[tuple[Impl, Impl]]:
    """The pairs, wireguard-go-wireguard-go last; with an upstream build, its two pairs."""
    if upstream is None:
        return list(PAIRS)
    newest = Impl(UPSTREAM, (os.path.abspath(upstream),))
    return [*PAIRS[:2], (PYWGD, newest), (newest, newest), PAIRS[2]]


def json_report(
    args: argparse.Namespace,
    results: list[Result],
    cpu_results: list[CpuResult],
    udp_results: list[UdpResult],
) -> list[dict[str, Any]]:
    report: list[dict[str, Any]] = [asdict(r) for r in results]
    for entry in report:
        entry["mtu"], entry["underlay"] = args.mtu, args.underlay
    for entry, udp in zip(report, udp_results, strict=False):
        entry["udp"] = asdict(udp)
    if cpu_results:
        base_pps = base_of(cpu_results).packets_per_cpu_s
        for entry, cpu in zip(report, cpu_results, strict=True):
            entry["cpu"] = {
                **asdict(cpu),
                "datagram_bytes": UDP_LEN,
                "ratio_vs_wireguard_go": cpu.packets_per_cpu_s / base_pps,
            }
    return report


def main() -> int:
    args = parse_args()
    require_root()
    if args.policy is not None:
        return policy_main(args)
    results: list[Result] = []
    cpu_results: list[CpuResult] = []
    udp_results: list[UdpResult] = []
    udp_rate = args.udp_rate if args.cpu else None
    for a_impl, b_impl in pairs_to_run(args.upstream):
        measured = [
            measure(a_impl, b_impl, args.seconds, udp_rate, args.mtu, args.underlay)
            for _ in range(args.runs)
        ]
        results.append(median_result([r for r, _ in measured]))
        cpu_runs = [c for _, c in measured if isinstance(c, CpuResult)]
        if cpu_runs:
            cpu_results.append(median_cpu(cpu_runs))
        udp_runs = [u for _, u in measured if isinstance(u, UdpResult)]
        if udp_runs:
            udp_results.append(median_udp(udp_runs))
    if args.json:
        print(json.dumps(json_report(args, results, cpu_results, udp_results), indent=2))
        return 0
    print_tcp(results, args.mtu, args.seconds, args.underlay)
    if cpu_results:
        print_cpu(cpu_results)
    if udp_results:
        print_udp(udp_results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
