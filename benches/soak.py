"""Real-time soak: pywgd against wireguard-go under continuous traffic, memory sampled.

    sudo python3 benches/soak.py [--minutes 10] [--rate 25] [--segment 60] [--bulk]
                                 [--backend native|pure] [--max-growth-mib 8] [--json FILE]

The real-time half of the soak (tests/core/test_soak.py is the virtual-time
half). Two lab namespaces joined by a veth (pywg.lab: underlay 198.18.1.0/24,
tunnel 198.19.1.0/24): pywgd in one (foreground, LOG_LEVEL=debug, its log in
a temporary file), Debian's wireguard-go in the other, peers over IPv4.

Traffic runs both ways for the whole time: each direction is a loop of TCP
streams of seeded data, `--segment` seconds each at `--rate` MB/s (or, with
`--bulk`, `--chunk` MB as fast as TCP goes), and every stream's SHA-256 and
byte count are compared at both ends (pywg.lab.PacedStream / tcp_transfer).

Every `--sample` seconds (10) it records pywgd's VmRSS and VmHWM
(/proc/PID/status), its CPU time, wireguard-go's VmRSS, and pywgd's view of
the peer over the UAPI (latest handshake, rx/tx bytes). At the end pywgd is
sent SIGUSR1 and its counters line (drops by reason, index table, staged
packets, native plane counters) is read from its log; "handshake completed"
log lines count the handshakes (rekeys every ~2 minutes under traffic).

It passes (exit 0) when no stream lost or changed a byte, both directions
moved data the whole time, and memory is flat: the median RSS of the last
three samples is at most `--max-growth-mib` above the median of the samples
in the minute after a one-minute warm-up. Needs root, wireguard-go and
iproute2; nothing outside the lab's namespaces is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pywg.keys import PrivateKey
from pywg.lab import Host, Lab, LabError, PacedStream, TransferResult, require_root, tcp_transfer
from pywg.lab.wireguard import PYWGD, WIREGUARD_GO, WgNode, connect, start_node, wait_handshake

CLK_TCK = os.sysconf("SC_CLK_TCK")
WARMUP = 60.0  # seconds before the memory baseline is taken
START_TIMEOUT = 20.0


@dataclass
class Sample:
    t: float  # seconds since the traffic started
    rss_kib: int
    hwm_kib: int
    cpu_s: float  # pywgd's utime + stime so far
    go_rss_kib: int
    last_handshake: float  # pywgd's latest handshake with the peer (unix time), 0 if none
    rx_bytes: int
    tx_bytes: int


@dataclass
class Direction:
    name: str
    streams: int = 0
    ok: int = 0
    bytes: int = 0
    max_gap: float = 0.0
    failures: list[str] = field(default_factory=list)


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    fields_ = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields_[11]) + int(fields_[12])) / CLK_TCK  # utime, stime


def netns_pid(host: Host, comm: str) -> int:
    """The pid of the process named `comm` inside `host`'s namespace."""
    out = subprocess.run(
        ["ip", "netns", "pids", host.netns], capture_output=True, text=True, timeout=10
    ).stdout
    for word in out.split():
        try:
            if Path(f"/proc/{word}/comm").read_text().strip() == comm:
                return int(word)
        except OSError:
            continue
    raise LabError(f"no {comm} process in {host.netns}")


def start_pywgd(
    lab: Lab, host: Host, log: Path, backend: str | None
) -> tuple[WgNode, subprocess.Popen[bytes]]:
    """pywgd in the foreground (so its pid is known), output to `log`; keyed, addressed, up."""
    ifname = lab.ifname("pw")
    env = {"LOG_LEVEL": "debug"}
    if backend is not None:
        env["PYWG_BACKEND"] = backend
    with log.open("wb") as out:
        proc = host.popen(*PYWGD.argv, "-f", ifname, env=env, stdout=out, stderr=subprocess.STDOUT)
    sock = Path(f"/var/run/wireguard/{ifname}.sock")
    end = time.monotonic() + START_TIMEOUT
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > end:
            raise LabError(f"pywgd did not start: {log.read_text()[-1000:]}")
        time.sleep(0.05)
    key = PrivateKey.generate()
    node = WgNode(lab, host, PYWGD, ifname, key, 51820, "198.19.1.1", "fd19::1:1")
    node.set(f"private_key={key.to_hex()}\nlisten_port=51820\n")
    host.addr(ifname, f"{node.addr4}/24")
    host.addr(ifname, f"{node.addr6}/112")
    host.link_up(ifname, mtu=1420)
    host.wait_ipv6_ready(ifname)
    return node, proc


def traffic(
    direction: Direction,
    sender: Host,
    receiver: Host,
    address: str,
    port: int,
    stop_at: float,
    args: argparse.Namespace,
) -> None:
    """Streams one after another until `stop_at` (monotonic); each one's hashes compared."""
    seed = 0
    while time.monotonic() < stop_at - 5:
        seed += 1
        try:
            if args.bulk:
                result: TransferResult = tcp_transfer(
                    sender, receiver, address, args.chunk << 20, port=port, seed=seed, timeout=300
                )
            else:
                seconds = min(args.segment, max(5.0, stop_at - time.monotonic()))
                stream = PacedStream(
                    sender,
                    receiver,
                    address,
                    port=port,
                    rate=args.rate * 1e6,
                    seconds=seconds,
                    seed=seed,
                    timeout=30,
                )
                result = stream.result(deadline=seconds + 120)
        except LabError as exc:
            direction.streams += 1
            direction.failures.append(f"stream {seed}: {exc}")
            time.sleep(1)
            continue
        direction.streams += 1
        direction.bytes += result.received_bytes
        direction.max_gap = max(direction.max_gap, result.max_gap)
        if result.ok:
            direction.ok += 1
        else:
            direction.failures.append(
                f"stream {seed}: sent {result.sent_bytes} B sha256 {result.sent_sha256[:16]}, "
                f"received {result.received_bytes} B sha256 {result.received_sha256[:16]}"
            )
        port = port + 1 if port % 2 == 0 else port - 1  # alternate: no TIME_WAIT questions


def sample(t: float, pid: int, go_pid: int, node: WgNode, peer: WgNode) -> Sample:
    status = proc_status(pid)
    try:
        peer_status = node.peer_status(peer)
        last, rx, tx = peer_status.last_handshake or 0.0, peer_status.rx_bytes, peer_status.tx_bytes
    except (OSError, LabError):
        last, rx, tx = 0.0, 0, 0
    return Sample(
        t=round(t, 1),
        rss_kib=status["VmRSS"],
        hwm_kib=status["VmHWM"],
        cpu_s=round(cpu_seconds(pid), 2),
        go_rss_kib=proc_status(go_pid)["VmRSS"],
        last_handshake=last,
        rx_bytes=rx,
        tx_bytes=tx,
    )


def counters(log: Path, pid: int) -> dict[str, Any]:
    """SIGUSR1: pywgd writes its health counters to the log; the last such line, parsed."""
    os.kill(pid, signal.SIGUSR1)
    for _ in range(50):
        time.sleep(0.1)
        found = re.findall(r"counters (\{.*\})", log.read_text(errors="replace"))
        if found:
            parsed: dict[str, Any] = json.loads(found[-1])
            return parsed
    return {}


def memory_verdict(samples: list[Sample], limit_mib: float) -> tuple[bool, dict[str, float]]:
    """Flat: the last samples' median RSS within `limit_mib` of the post-warm-up baseline."""
    base = [s.rss_kib for s in samples if WARMUP <= s.t < WARMUP + 60] or [samples[0].rss_kib]
    tail = [s.rss_kib for s in samples[-3:]]
    baseline, final = statistics.median(base), statistics.median(tail)
    after = [s for s in samples if s.t >= WARMUP]
    slope = 0.0
    if len(after) >= 3:
        ts = [s.t for s in after]
        mean_t = statistics.fmean(ts)
        mean_r = statistics.fmean(s.rss_kib for s in after)
        var = sum((x - mean_t) ** 2 for x in ts)
        if var > 0:
            cov = sum((s.t - mean_t) * (s.rss_kib - mean_r) for s in after)
            slope = cov / var * 3600 / 1024  # MiB per hour
    # growth over the second half of the run: a leak keeps going, a warm-up levels off
    half = samples[len(samples) // 2 :]
    second_half = (statistics.median(tail) - min(s.rss_kib for s in half[:3])) / 1024
    figures = {
        "start_mib": samples[0].rss_kib / 1024,
        "baseline_mib": baseline / 1024,
        "end_mib": final / 1024,
        "max_mib": max(s.rss_kib for s in samples) / 1024,
        "hwm_mib": samples[-1].hwm_kib / 1024,
        "growth_mib": (final - baseline) / 1024,
        "slope_mib_per_hour": slope,
        "second_half_growth_mib": second_half,
    }
    return (final - baseline) / 1024 <= limit_mib, figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="traffic time (10)")
    parser.add_argument("--rate", type=float, default=25.0, help="MB/s each way, paced (25)")
    parser.add_argument("--segment", type=float, default=60.0, help="seconds per stream (60)")
    parser.add_argument("--bulk", action="store_true", help="full-speed transfers instead")
    parser.add_argument("--chunk", type=int, default=512, help="MB per --bulk transfer (512)")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--backend", choices=("native", "pure"), help="pywgd's data plane")
    parser.add_argument("--max-growth-mib", type=float, default=8.0)
    parser.add_argument("--json", metavar="FILE", help="write every figure and sample here")
    args = parser.parse_args()
    require_root()

    with Lab("pwsoak") as lab, tempfile.TemporaryDirectory(prefix="pywg-soak-") as tmp:
        pw_host, go_host = lab.host("pw"), lab.host("go")
        link = lab.link(pw_host, go_host)
        log = Path(tmp) / "pywgd.log"
        pw, proc = start_pywgd(lab, pw_host, log, args.backend)
        pid = proc.pid
        go = start_node(lab, go_host, WIREGUARD_GO, net=1, index=2)
        go_pid = netns_pid(go_host, "wireguard-go")
        connect(pw, go, link)
        if not wait_handshake(pw, go, deadline=15):
            print("no handshake between pywgd and wireguard-go", file=sys.stderr)
            return 1
        duration = args.minutes * 60
        started = time.monotonic()
        stop_at = started + duration
        up, down = Direction("pywgd -> wireguard-go"), Direction("wireguard-go -> pywgd")
        threads = [
            threading.Thread(
                target=traffic, args=(up, pw_host, go_host, go.addr4, 5400, stop_at, args)
            ),
            threading.Thread(
                target=traffic, args=(down, go_host, pw_host, pw.addr4, 5500, stop_at, args)
            ),
        ]
        for thread in threads:
            thread.start()
        samples: list[Sample] = []
        next_sample = started
        while any(t.is_alive() for t in threads):
            now = time.monotonic()
            if now >= next_sample:
                samples.append(sample(now - started, pid, go_pid, pw, go))
                s = samples[-1]
                print(
                    f"{s.t:7.0f} s  pywgd RSS {s.rss_kib / 1024:6.1f} MiB  "
                    f"cpu {s.cpu_s:7.1f} s  wireguard-go RSS {s.go_rss_kib / 1024:6.1f} MiB  "
                    f"pywgd rx {s.rx_bytes / 1e9:6.2f} GB tx {s.tx_bytes / 1e9:6.2f} GB  "
                    f"streams {up.ok + down.ok} ok / {up.streams + down.streams}",
                    flush=True,
                )
                next_sample += args.sample
            if now > stop_at + 600:
                print("traffic threads did not finish", file=sys.stderr)
                break
            time.sleep(0.2)
        for thread in threads:
            thread.join(timeout=5)
        elapsed = time.monotonic() - started
        samples.append(sample(elapsed, pid, go_pid, pw, go))
        health = counters(log, pid)
        log_text = log.read_text(errors="replace")
        handshakes = len(re.findall(r"handshake completed", log_text))
        alive = proc.poll() is None

    flat, memory = memory_verdict(samples, args.max_growth_mib)
    distinct_handshakes = len({s.last_handshake for s in samples if s.last_handshake})
    lossless = all(d.streams and d.ok == d.streams and not d.failures for d in (up, down))
    summary = {
        "minutes": round(elapsed / 60, 2),
        "mode": f"bulk {args.chunk} MB" if args.bulk else f"paced {args.rate:g} MB/s each way",
        "backend": args.backend or "default",
        "directions": [asdict(d) for d in (up, down)],
        "bytes_moved": up.bytes + down.bytes,
        "handshakes_logged": handshakes,
        "handshake_times_seen": distinct_handshakes,
        "pywgd_cpu_s": samples[-1].cpu_s,
        "memory": memory,
        "wireguard_go_rss_mib": {
            "start": samples[0].go_rss_kib / 1024,
            "end": samples[-1].go_rss_kib / 1024,
            "max": max(s.go_rss_kib for s in samples) / 1024,
        },
        "counters": health,
        "pywgd_alive": alive,
        "lossless": lossless,
        "flat_memory": flat,
    }
    print()
    print(f"soak: {summary['minutes']} min, {summary['mode']}, backend {summary['backend']}")
    for d in (up, down):
        print(
            f"  {d.name}: {d.ok}/{d.streams} streams intact, {d.bytes / 1e9:.2f} GB, "
            f"longest stall {d.max_gap:.2f} s"
        )
        for failure in d.failures[:5]:
            print(f"    FAILED {failure}")
    print(
        f"  pywgd RSS: start {memory['start_mib']:.1f} MiB, baseline {memory['baseline_mib']:.1f}, "
        f"end {memory['end_mib']:.1f}, max {memory['max_mib']:.1f} (peak {memory['hwm_mib']:.1f}); "
        f"growth {memory['growth_mib']:+.2f} MiB "
        f"(second half {memory['second_half_growth_mib']:+.2f}), "
        f"slope {memory['slope_mib_per_hour']:+.2f} MiB/h"
    )
    go_mem = summary["wireguard_go_rss_mib"]
    print(
        f"  wireguard-go RSS: start {go_mem['start']:.1f} MiB, end {go_mem['end']:.1f}, "
        f"max {go_mem['max']:.1f}"
    )
    print(
        f"  handshakes: {handshakes} completed in pywgd's log, {distinct_handshakes} distinct "
        f"latest-handshake times sampled; pywgd CPU {samples[-1].cpu_s:.1f} s"
    )
    if health:
        print(
            f"  counters: index_table={health.get('index_table')} staged={health.get('staged')} "
            f"dropped={health.get('dropped')} plane={health.get('plane')}"
        )
    verdict = lossless and flat and alive
    print(
        f"  {'PASS' if verdict else 'FAIL'}: "
        f"{'no loss' if lossless else 'LOSS'}, {'flat memory' if flat else 'MEMORY GREW'}, "
        f"{'pywgd alive' if alive else 'PYWGD DIED'}"
    )
    if args.json:
        summary["samples"] = [asdict(s) for s in samples]
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
