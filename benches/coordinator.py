"""The coordinator under load: joins, long polls and endpoint changes of up to 2,000 nodes.

    python3 benches/coordinator.py [--nodes 100,500,1000,2000] [--workers 3] [--changes 6]
        [--sustained-seconds 20] [--join-rate 500] [--full-rosters] [--json]

For each node count: a real `pywg coordinator serve` process (plain HTTP, no
relay) on 127.0.0.1 with a fresh state directory, its per-source limits
raised (every simulated node comes from 127.0.0.1: docs/mesh.md, "Facing the
internet") and the file descriptor soft limit raised to the hard one. The
simulated nodes are spread over `--workers` processes, each node with its own
X25519 and Ed25519 keys and its own `CoordinatorClient` (its own HTTP
connection; every request signed, every answer's signature checked):

1. join: all nodes join with one reusable token, as fast as the coordinator
   takes them (each worker keeps 16 joins in flight): joins per second.
2. sync: each node reports an endpoint and asks for its whole roster.
3. changes: every node long-polls from its roster version with ``delta=1``
   (without it with `--full-rosters`: the whole roster each time); a node
   in this process ("mover") reports a new endpoint once to warm up, then
   `--changes` times, and each time the time until every node has seen it is
   taken (p50, p99, max over all nodes and changes) with the bytes of roster
   answers the nodes received for it (bodies as sent, the HTTP headers not
   counted).
4. sustained: while every node keeps long-polling, new nodes join at
   `--join-rate` a minute for `--sustained-seconds`: the rate reached and
   the join latency (p50, p99).

The coordinator's CPU (utime + stime, /proc/PID/stat) as a share of one core
in each phase, its VmRSS at the end and its VmHWM. The simulated nodes, this
process and the coordinator share this machine's CPUs: the figures are for
this machine (2 vCPUs in docs/scale.md). A node only keeps what it needs to
see the change (its roster version, the mover's endpoint): the JSON is
parsed, not checked field by field, so the nodes' CPU goes to HTTP and
signatures like a real node's and the rest is the coordinator's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import select
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

from nacl.public import PrivateKey
from nacl.signing import SigningKey

from pywg.endpoint import parse_endpoint
from pywg.mesh import auth
from pywg.mesh.client import CoordinatorClient, _long_poll
from pywg.mesh.coordinator import load_or_create_key, new_token
from pywg.mesh.schema import ROSTER_PATH
from pywg.mesh.store import Store

MOVER = "mover"
MOVER_HOST = "203.0.113.1"
FIRST_PORT = 2000
JOINS_IN_FLIGHT = 16  # per worker
POLL_WAIT = 50.0
CHANGE_TIMEOUT = 60.0


class CountingClient(CoordinatorClient):
    """A node's client that counts the bytes of the answers it received."""

    received = 0

    async def _send(self, request: Any, path: str, body: bytes, headers: dict[str, str]) -> Any:
        answer = await super()._send(request, path, body, headers)
        self.received += len(answer.body)
        return answer


def new_client(url: str) -> CountingClient:
    """A node's client with new keys (X25519: its WireGuard key; Ed25519: its control key)."""
    return CountingClient(
        url, auth.b64(bytes(PrivateKey.generate().public_key)), SigningKey.generate()
    )


def _raw(data: object) -> Any:
    return data


@dataclass
class Sim:
    """One simulated node: its client, its roster version, the mover's port it last saw."""

    name: str
    client: CountingClient
    version: int = -1
    seen_port: int = 0
    seen_at: float = 0.0
    wholes: int = 0  # whole rosters received while long-polling with deltas

    def take(self, answer: Any) -> None:
        self.version = int(answer["version"])
        self.wholes += "base" not in answer
        for peer in answer.get("peers", ()):
            if peer["name"] == MOVER and peer["endpoints"]:
                port = parse_endpoint(peer["endpoints"][0])[1]
                if port > self.seen_port:
                    self.seen_port, self.seen_at = port, time.monotonic()

    async def poll(self, delta: bool) -> None:
        request = _long_poll(ROSTER_PATH, self.version, POLL_WAIT, delta=delta)
        self.take(await self.client._call(request, _raw))


# -- workers -----------------------------------------------------------------------------------


async def _join_all(sims: list[Sim], token: str) -> tuple[float, float]:
    gate = asyncio.Semaphore(JOINS_IN_FLIGHT)

    async def join(sim: Sim) -> None:
        async with gate:
            await sim.client.join(token, sim.name, [])

    started = time.monotonic()
    await asyncio.gather(*(join(s) for s in sims))
    return started, time.monotonic()


async def _sync(sims: list[Sim], index: int) -> None:
    gate = asyncio.Semaphore(JOINS_IN_FLIGHT)

    async def sync(sim: Sim, number: int) -> None:
        async with gate:
            endpoint = parse_endpoint(f"198.51.{index}.{number % 250 + 1}:{10000 + number}")
            await sim.client.update([endpoint], [])
            sim.take(await sim.client._call(_long_poll(ROSTER_PATH, -1, 0), _raw))

    await asyncio.gather(*(sync(s, n) for n, s in enumerate(sims)))


async def _keep_polling(sim: Sim, delta: bool) -> None:
    while True:
        try:
            await sim.poll(delta)
        except Exception:  # a node retries, as the agent does
            await asyncio.sleep(1)


async def _worker(config: dict[str, Any], queue: Any, orders: Any) -> None:
    index = config["index"]
    sims = [Sim(f"w{index}n{i}", new_client(config["url"])) for i in range(config["count"])]
    started, ended = await _join_all(sims, config["token"])
    queue.put(("joined", index, started, ended))
    await _sync(sims, index)
    queue.put(("synced", index))
    pollers = [asyncio.create_task(_keep_polling(s, config["delta"])) for s in sims]
    loop = asyncio.get_running_loop()
    for change in range(config["changes"] + 1):
        port = FIRST_PORT + change + 1
        deadline = time.monotonic() + CHANGE_TIMEOUT
        while min(s.seen_port for s in sims) < port and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        times = [s.seen_at if s.seen_port >= port else float("nan") for s in sims]
        received = sum(s.client.received for s in sims)
        queue.put(("seen", index, change, times, received, sum(s.wholes for s in sims)))
    await loop.run_in_executor(None, orders.get)  # until the sustained joins are done
    for task in pollers:
        task.cancel()
    for sim in sims:
        await sim.client.close()


def worker_main(config: dict[str, Any], queue: Any, orders: Any) -> None:
    asyncio.run(_worker(config, queue, orders))


# -- the coordinator ---------------------------------------------------------------------------


def raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_coordinator(state: str) -> tuple[subprocess.Popen[bytes], str]:
    profile = os.environ.get("PYWG_BENCH_PROFILE")  # a file: the coordinator under cProfile
    python = [sys.executable, *(["-m", "cProfile", "-o", profile] if profile else [])]
    argv = [*python, "-m", "pywg", "coordinator", "serve", "--state", state]
    argv += ["--listen", "127.0.0.1:0", "--plain-http", "--no-relay"]
    argv += ["--connections-per-source", "100000", "--refusal-burst", "100000"]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stderr is not None
    line, end = "", time.monotonic() + 30
    while "listening on" not in line and time.monotonic() < end:
        ready, _, _ = select.select([proc.stderr], [], [], 1)
        line = proc.stderr.readline().decode() if ready else ""
    if "listening on" not in line:
        proc.kill()
        raise RuntimeError("the coordinator did not start")
    stream = proc.stderr
    threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()  # its log
    port = int(line.split("listening on ")[1].split()[0].rstrip(",").rsplit(":", 1)[1])
    return proc, f"http://127.0.0.1:{port}"


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int) -> dict[str, float]:
    found = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) / 1024
    return found


def progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# -- one run -----------------------------------------------------------------------------------


async def _mover(url: str, token: str) -> CountingClient:
    """The node whose endpoint changes, joined first."""
    mover = new_client(url)
    await mover.join(token, MOVER, [])
    await mover.update([parse_endpoint(f"{MOVER_HOST}:{FIRST_PORT}")], [])
    return mover


def run(nodes: int, args: argparse.Namespace) -> dict[str, Any]:
    state = tempfile.mkdtemp(prefix="pywg-bench-coord-")
    store = Store(state)
    token = new_token(store, load_or_create_key(state), 3600, reusable=True)
    store.close()
    proc, url = start_coordinator(state)
    try:
        return asyncio.run(_run(nodes, args, proc, url, token))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        subprocess.run(["rm", "-rf", state], check=False)


_early: list[Any] = []  # messages that came before they were waited for


async def _wait_for(queue: Any, kind: str, count: int) -> list[Any]:
    """`count` messages of `kind` from the workers (one worker may be a phase ahead)."""
    loop = asyncio.get_running_loop()
    found = [m for m in _early if m[0] == kind][:count]
    for message in found:
        _early.remove(message)
    while len(found) < count:
        message = await loop.run_in_executor(None, queue.get, True, 600)
        (found if message[0] == kind else _early).append(message)
    return found


async def _run(
    nodes: int, args: argparse.Namespace, proc: subprocess.Popen[bytes], url: str, token: str
) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    orders = [context.Queue() for _ in range(args.workers)]
    mover = await _mover(url, token)
    shares = [nodes // args.workers + (i < nodes % args.workers) for i in range(args.workers)]
    workers = [
        context.Process(
            target=worker_main,
            args=(
                {
                    "index": i,
                    "count": shares[i],
                    "url": url,
                    "token": token,
                    "changes": args.changes,
                    "delta": not args.full_rosters,
                },
                queue,
                orders[i],
            ),
        )
        for i in range(args.workers)
    ]
    for w in workers:
        w.start()
    result: dict[str, Any] = {"nodes": nodes}
    try:
        cpu0 = cpu_seconds(proc.pid)
        joined = await _wait_for(queue, "joined", args.workers)
        span = max(m[3] for m in joined) - min(m[2] for m in joined)
        cpu1 = cpu_seconds(proc.pid)
        result["joins_per_s"] = round(nodes / span, 1)
        progress(f"{nodes} joined in {span:.1f} s")
        result["join_cpu"] = round((cpu1 - cpu0) / span, 2)
        t0 = time.monotonic()
        await _wait_for(queue, "synced", args.workers)
        result["sync_s"] = round(time.monotonic() - t0, 2)
        result["sync_VmHWM"] = round(memory_mib(proc.pid)["VmHWM"], 1)
        progress(f"synced in {result['sync_s']} s, {memory_mib(proc.pid)}")
        await asyncio.sleep(3.0)  # every node is in its long poll
        result.update(await _changes(mover, proc, args, queue))
        result.update(await _sustained(url, token, proc, args))
        result.update({k: round(v, 1) for k, v in memory_mib(proc.pid).items()})
    finally:
        for order in orders:
            order.put("done")
        for w in workers:
            w.join(30)
            if w.is_alive():
                w.kill()
        await mover.close()
    return result


async def _changes(
    mover: CountingClient, proc: subprocess.Popen[bytes], args: argparse.Namespace, queue: Any
) -> dict[str, Any]:
    latencies: list[float] = []
    bytes_per_change: list[int] = []
    missed = 0
    received_before: dict[int, int] = {}
    cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
    for change in range(args.changes + 1):
        await asyncio.sleep(0.5)
        started = time.monotonic()
        await mover.update([parse_endpoint(f"{MOVER_HOST}:{FIRST_PORT + change + 1}")], [])
        seen = await _wait_for(queue, "seen", args.workers)
        total = wholes = 0
        these: list[float] = []
        for _, index, _, times, received, whole in seen:
            these += [t - started for t in times if t == t]
            wholes += whole
            missed += sum(1 for t in times if t != t)
            total += received - received_before.get(index, received)
            received_before[index] = received
        if change:  # the first one is a warm-up: some nodes may not be polling yet
            latencies += these
        p99 = percentile(these, 0.99) if these else float("nan")
        progress(f"change {change}: {total} bytes, p99 {p99:.3f} s, {wholes} whole rosters so far")
        if change:  # the first one has no "before"
            bytes_per_change.append(total)
    cpu = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
    return {
        "change_p50_s": round(percentile(latencies, 0.5), 3),
        "change_p99_s": round(percentile(latencies, 0.99), 3),
        "change_max_s": round(max(latencies), 3),
        "missed": missed,
        "bytes_per_change": int(statistics.mean(bytes_per_change)) if bytes_per_change else 0,
        "change_cpu": round(cpu, 2),
    }


async def _sustained(
    url: str, token: str, proc: subprocess.Popen[bytes], args: argparse.Namespace
) -> dict[str, Any]:
    """Join new nodes at `--join-rate` a minute while every node long-polls."""
    if args.sustained_seconds <= 0:
        return {}
    interval = 60.0 / args.join_rate
    count = int(args.sustained_seconds / interval)
    durations: list[float] = []

    async def one(number: int) -> None:
        client = new_client(url)
        try:
            started = time.monotonic()
            await client.join(token, f"late{number}", [])
            durations.append(time.monotonic() - started)
        finally:
            await client.close()

    cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
    tasks = []
    for number in range(count):
        await asyncio.sleep(max(0.0, t0 + number * interval - time.monotonic()))
        tasks.append(asyncio.create_task(one(number)))
    offered = time.monotonic() - t0 + interval  # the time the joins were sent over
    await asyncio.gather(*tasks)
    span = time.monotonic() - t0
    return {
        "sustained_joins_per_min": round(len(durations) / offered * 60, 1),
        "sustained_join_p50_s": round(percentile(durations, 0.5), 3),
        "sustained_join_p99_s": round(percentile(durations, 0.99), 3),
        "sustained_cpu": round((cpu_seconds(proc.pid) - cpu0) / span, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="100,500,1000,2000")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--changes", type=int, default=6)
    parser.add_argument("--sustained-seconds", type=float, default=20.0)
    parser.add_argument("--join-rate", type=float, default=500.0, help="joins a minute")
    parser.add_argument("--full-rosters", action="store_true", help="long-poll without deltas")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    raise_fd_limit()
    rows = []
    for nodes in [int(n) for n in args.nodes.split(",")]:
        row = run(nodes, args)
        rows.append(row)
        print(json.dumps(row) if args.json else row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
