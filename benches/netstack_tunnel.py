"""The rootless path against the TUN data plane, measured in one run (namespace lab).

    python3 benches/netstack_tunnel.py [--mbytes 256] [--seconds 5] [--runs 3]
                                       [--connections 1000] [--json]

- TUN plane: pywgd <-> pywgd on TUNs in two namespaces, iperf3 one TCP stream each
  way for SECONDS (as benches/tunnel.py measures it).
- Rootless: this process holds a `UserspaceTunnel` with a `pywg.netstack` stack in
  namespace a (`pywg.lab.userspace.StackPath`), to pywgd on a TUN in namespace b with
  kernel TCP servers behind it: one stream of MBYTES from the stack to the kernel
  (upload: the kernel hashes it and answers the SHA-256, compared) and one from the
  kernel to the stack (download); the ratio of each to the TUN figure of the same
  direction is the goal (>= 25 %, stretch 50 %).
- Memory per idle connection: `tracemalloc` growth of this process while N idle
  connections through the tunnel to the kernel are open, divided by N (our end only:
  the stack's state and asyncio's StreamReader/StreamWriter).
- Concurrency: N connections opened at once through the tunnel, each sending 1 KiB to
  the kernel's echo and reading it back, then closing; seconds for all of them.

Medians of RUNS, the TUN plane and the rootless path alternately. Needs root and iperf3.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import statistics
import sys
import time
import tracemalloc

from pywg.lab import Lab
from pywg.lab.userspace import StackPath, start_kernel_server
from pywg.lab.wireguard import PYWGD, connect, start_node, wait_handshake
from pywg.netstack import Stack
from tunnel import iperf  # benches/tunnel.py: the TUN plane measured as it measures it

SINK, SOURCE, ECHO, IDLE = 5001, 5002, 5003, 5004
BLOCK = 1 << 20


def tun_plane(seconds: float) -> tuple[float, float]:
    """MB/s of one kernel TCP stream through pywgd <-> pywgd, A->B and B->A (iperf3)."""
    with Lab("pwbt") as lab:
        a, b = lab.host("a"), lab.host("b")
        link = lab.link(a, b, v6=False)
        left = start_node(lab, a, PYWGD, net=1, index=1)
        right = start_node(lab, b, PYWGD, net=1, index=2)
        connect(left, right, link)
        assert wait_handshake(left, right), "pywgd: no handshake"
        forward = iperf(a, b, right.addr4, seconds, reverse=False)["gbit"] * 1e3 / 8
        reverse = iperf(a, b, right.addr4, seconds, reverse=True)["gbit"] * 1e3 / 8
        return forward, reverse


async def upload(stack: Stack, address: str, mbytes: int) -> float:
    reader, writer = await stack.open_connection(address, SINK)
    block = bytes(BLOCK)
    started = time.perf_counter()
    for _ in range(mbytes):
        writer.write(block)
        await writer.drain()
    writer.write_eof()
    answer = await reader.read()
    elapsed = time.perf_counter() - started
    writer.close()
    digest = hashlib.sha256()
    for _ in range(mbytes):
        digest.update(block)
    assert answer == digest.digest() + (mbytes * BLOCK).to_bytes(8, "big"), "upload corrupted"
    return mbytes * BLOCK / elapsed / 1e6


async def download(stack: Stack, address: str, mbytes: int) -> float:
    reader, writer = await stack.open_connection(address, SOURCE)
    started = time.perf_counter()
    writer.write((mbytes * BLOCK).to_bytes(8, "big"))
    total = 0
    while chunk := await reader.read(1 << 18):
        total += len(chunk)
    elapsed = time.perf_counter() - started
    writer.close()
    assert total == mbytes * BLOCK, f"download: {total} bytes"
    return total / elapsed / 1e6


async def idle_bytes(stack: Stack, address: str, count: int) -> float:
    held = [await stack.open_connection(address, IDLE)]  # warms lazily built objects
    await asyncio.sleep(0.2)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    held += [await stack.open_connection(address, IDLE) for _ in range(count)]
    await asyncio.sleep(0.5)  # the last ACKs in and out
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    for _, writer in held:
        writer.close()
    return (after - before) / count


async def concurrent(stack: Stack, address: str, count: int) -> float:
    async def one(index: int) -> None:
        reader, writer = await stack.open_connection(address, ECHO)
        data = index.to_bytes(4, "big") * 256
        writer.write(data)
        writer.write_eof()
        assert await reader.read() == data
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return time.perf_counter() - started


def rootless(mbytes: int, connections: int) -> dict[str, float]:
    with Lab("pwbr") as lab:
        path = StackPath.build(lab)
        address = path.peer.addr4
        for mode, port in (("sink", SINK), ("source", SOURCE), ("echo", ECHO), ("echo", IDLE)):
            start_kernel_server(path.server, mode, address, port)  # type: ignore[arg-type]

        async def main() -> dict[str, float]:
            async with path.userspace() as stack:
                await stack.ping(address, timeout=5)  # the handshake, before the clocks
                return {
                    "upload_mb_s": await upload(stack, address, mbytes),
                    "download_mb_s": await download(stack, address, mbytes),
                    "bytes_per_idle_connection": await idle_bytes(stack, address, connections),
                    "concurrent_seconds": await concurrent(stack, address, connections),
                }

        return path.client.call(lambda: asyncio.run(main()))


def run(args: argparse.Namespace) -> dict[str, float]:
    runs: list[dict[str, float]] = []
    for _ in range(args.runs):
        up, down = tun_plane(args.seconds)
        result = {"tun_up_mb_s": up, "tun_down_mb_s": down}
        result.update(rootless(args.mbytes, args.connections))
        result["upload_ratio"] = result["upload_mb_s"] / up
        result["download_ratio"] = result["download_mb_s"] / down
        runs.append(result)
        print(" ".join(f"{name}={value:.3f}" for name, value in result.items()), file=sys.stderr)
    return {name: statistics.median(run[name] for run in runs) for name in runs[0]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mbytes", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        for name, value in result.items():
            print(f"{name:28} {value:12.3f}")
