"""The home relay's data path: WireGuard between two nodes, direct and through a relay.

    sudo python3 benches/relay.py [--seconds 5] [--runs 3] [--json]

One lab (pywg.lab): an internet router, a public host "hub" and two public
hosts "a" and "b", each a `pywg.asyncio.Tunnel` process (the C plane). For
each mode the tunnels are set up afresh and iperf3 moves one TCP stream
each way between their tunnel addresses, then ping measures the round trip:

- direct: each holds the other at its underlay address;
- relay-native: each holds the other at its relayed endpoint [100::ID]:1
  (`pywg.relayed`) and the hub runs the relay's native forwarding loop
  (`pywg._fast.relay.NativeRelay`), the one `pywg relay serve` uses for UDP;
- relay-python: the same with a relay that forwards each datagram in
  Python (recvfrom, rewrite the tag, sendto): the per-datagram way of the
  relay before it had the native loop, for comparison.

The relay here (`pywg.lab.standin_relay`) learns each node's address from a
plain hello the node sends from its WireGuard socket; `pywg relay serve`
takes only signed associations (docs/relay.md), which cost nothing per
datagram, so the data path measured is the same. Medians of `--runs`; ratios against direct
from the same run. Needs root, iperf3 and ping. The nodes, the relay and
iperf3 share this machine's CPUs: the figures are for this lab.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

from pywg.keys import PrivateKey
from pywg.lab import Host, Internet, Lab, require_root
from pywg.lab.standin_relay import NodeEnd, node_up, start_node, start_standin_relay

RELAY_PORT = 3478
IDS = {"a": 0x0A0001, "b": 0x0B0002}
TUNNEL = {"a": "198.19.9.1", "b": "198.19.9.2"}
MODES = ("direct", "relay-native", "relay-python")


@dataclass
class Result:
    mode: str
    forward_gbit: float
    reverse_gbit: float
    retransmits: int
    ping_ms: float


def iperf(a: Host, b: Host, address: str, seconds: float, reverse: bool) -> tuple[float, int]:
    server = b.popen("iperf3", "-s", "-1", "-B", address, stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        argv = ["iperf3", "-c", address, "-t", str(seconds), "-J", *(["-R"] * reverse)]
        end = json.loads(a.run(*argv, timeout=seconds + 30).stdout)["end"]
    finally:
        server.kill()
        server.wait()
    sent = end["sum_sent"]
    return end["sum_received"]["bits_per_second"] / 1e9, int(sent.get("retransmits", 0))


def ping_ms(a: Host, address: str) -> float:
    out = a.run("ping", "-c", "20", "-i", "0.05", "-q", address, timeout=30).stdout
    return float(out.rsplit("=", 1)[1].split("/")[1])


def measure(mode: str, seconds: float) -> Result:
    with Lab("pwrb") as lab:
        net = Internet(lab)
        hub, sites = net.public("hub"), {name: net.public(name) for name in IDS}
        procs = []
        try:
            if mode != "direct":
                relay = start_standin_relay(hub.host, RELAY_PORT, native=mode == "relay-native")
                procs.append(relay)
            keys = {name: PrivateKey.generate() for name in IDS}
            ends = {n: NodeEnd(IDS[n], str(keys[n]), TUNNEL[n]) for n in IDS}
            for name, other in (("a", "b"), ("b", "a")):
                procs.append(
                    start_node(
                        sites[name].host,
                        lab.ifname("r"),
                        ends[name],
                        ends[other],
                        str(keys[other].public_key),
                        (hub.addr4, RELAY_PORT),
                        peer_host=None if mode != "direct" else sites[other].addr4,
                    )
                )
            for node in procs[-2:]:
                node_up(node)
            a, b = sites["a"].host, sites["b"].host
            fwd, fwd_retrans = iperf(a, b, TUNNEL["b"], seconds, reverse=False)
            rev, rev_retrans = iperf(a, b, TUNNEL["b"], seconds, reverse=True)
            return Result(mode, fwd, rev, fwd_retrans + rev_retrans, ping_ms(a, TUNNEL["b"]))
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    require_root()
    results = []
    for mode in MODES:
        runs = [measure(mode, args.seconds) for _ in range(args.runs)]
        results.append(
            Result(
                mode,
                statistics.median(r.forward_gbit for r in runs),
                statistics.median(r.reverse_gbit for r in runs),
                int(statistics.median(r.retransmits for r in runs)),
                statistics.median(r.ping_ms for r in runs),
            )
        )
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
        return 0
    direct = results[0]
    print(f"iperf3 TCP, one stream each way, {args.seconds:g} s; medians of {args.runs}")
    print(f"{'mode':14} {'A->B Gbit/s':>12} {'B->A Gbit/s':>12} {'retrans':>8} {'ping ms':>8} "
          f"{'vs direct':>10}")  # fmt: skip
    for r in results:
        ratio = (r.forward_gbit + r.reverse_gbit) / (direct.forward_gbit + direct.reverse_gbit)
        print(f"{r.mode:14} {r.forward_gbit:12.3f} {r.reverse_gbit:12.3f} {r.retransmits:8d} "
              f"{r.ping_ms:8.3f} {ratio:9.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
