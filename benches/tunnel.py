"""Tunnel throughput and latency: pywgd and wireguard-go, side by side, in one run.

    sudo python3 benches/tunnel.py [--seconds 5] [--runs 3] [--json]

For each pair (pywgd-pywgd, pywgd-wireguard-go, wireguard-go-wireguard-go) it
builds two lab namespaces joined by a veth (pywg.lab), starts the daemons,
connects them over IPv4, and measures with iperf3 one TCP stream each way
(A->B and B->A, -R) and the ping round trip through the tunnel. Medians of
`--runs`; ratios against wireguard-go-wireguard-go from the same run. Needs
root, iperf3, ping and wireguard-go (Debian packages).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

from pywg.lab import Host, Lab, LabError, require_root
from pywg.lab.wireguard import PYWGD, WIREGUARD_GO, Impl, connect, start_node, wait_handshake

PAIRS = ((PYWGD, PYWGD), (PYWGD, WIREGUARD_GO), (WIREGUARD_GO, WIREGUARD_GO))


@dataclass
class Result:
    pair: str
    forward_gbit: float  # A -> B
    reverse_gbit: float  # B -> A
    retransmits: int
    ping_ms: float


def iperf(client: Host, server: Host, address: str, seconds: float, reverse: bool) -> dict:
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


def measure(a_impl: Impl, b_impl: Impl, seconds: float) -> Result:
    with Lab("pwb") as lab:
        a, b = lab.host("a"), lab.host("b")
        link = lab.link(a, b)
        left = start_node(lab, a, a_impl, net=1, index=1)
        right = start_node(lab, b, b_impl, net=1, index=2)
        connect(left, right, link)
        if not wait_handshake(left, right):
            raise LabError(f"{a_impl.name} and {b_impl.name}: no handshake")
        fwd = iperf(a, b, right.addr4, seconds, reverse=False)
        rev = iperf(a, b, right.addr4, seconds, reverse=True)
        return Result(
            f"{a_impl.name}-{b_impl.name}",
            fwd["gbit"],
            rev["gbit"],
            fwd["retransmits"] + rev["retransmits"],
            ping_ms(a, right.addr4),
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    require_root()
    results: list[Result] = []
    for a_impl, b_impl in PAIRS:
        runs = [measure(a_impl, b_impl, args.seconds) for _ in range(args.runs)]
        results.append(
            Result(
                runs[0].pair,
                statistics.median(r.forward_gbit for r in runs),
                statistics.median(r.reverse_gbit for r in runs),
                int(statistics.median(r.retransmits for r in runs)),
                statistics.median(r.ping_ms for r in runs),
            )
        )
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
        return 0
    base = results[-1]
    print(
        f"{'pair':28} {'A->B Gbit/s':>12} {'B->A Gbit/s':>12} {'retrans':>8} {'ping ms':>8}"
        f" {'ratio vs wg-go':>15}"
    )
    for r in results:
        ratio = (r.forward_gbit + r.reverse_gbit) / (base.forward_gbit + base.reverse_gbit)
        print(
            f"{r.pair:28} {r.forward_gbit:12.3f} {r.reverse_gbit:12.3f} {r.retransmits:8d}"
            f" {r.ping_ms:8.3f} {ratio:14.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
