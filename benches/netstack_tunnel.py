"""The rootless path against the TUN data plane, measured in one run (namespace lab).

    python3 benches/netstack_tunnel.py [--mbytes 256] [--connections 1000] [--json]

- TUN plane: pywgd <-> pywgd on TUNs in two namespaces, one kernel TCP stream
  (`pywg.lab.transfer`, seeded data hashed at both ends) of MBYTES.
- Rootless: this process holds a `UserspaceTunnel` with a `pywg.netstack` stack in
  namespace a (`pywg.lab.userspace.StackPath`), to pywgd on a TUN in namespace b with
  kernel TCP servers behind it: one stream of MBYTES from the stack to the kernel
  (upload: the kernel answers the hash) and one from the kernel to the stack
  (download); their ratio to the TUN figure is the goal (>= 25 %, stretch 50 %).
- Memory per idle connection: `tracemalloc` growth of this process while N idle
  connections through the tunnel to the kernel are open, divided by N (our end only:
  the stack's state and asyncio's StreamReader/StreamWriter).
- Concurrency: N connections opened at once through the tunnel, each sending 1 KiB to
  the kernel's echo and reading it back, then closing; seconds for all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import time
import tracemalloc

from pywg.lab import Lab
from pywg.lab.transfer import tcp_transfer
from pywg.lab.userspace import StackPath, start_kernel_server
from pywg.lab.wireguard import PYWGD, connect, start_node, wait_handshake
from pywg.netstack import Stack

SINK, SOURCE, ECHO, IDLE = 5001, 5002, 5003, 5004
BLOCK = 1 << 20


def tun_plane(mbytes: int) -> float:
    """MB/s of one kernel TCP stream through pywgd <-> pywgd."""
    with Lab("pwbt") as lab:
        a, b = lab.host("a"), lab.host("b")
        link = lab.link(a, b, v6=False)
        left = start_node(lab, a, PYWGD, net=1, index=1)
        right = start_node(lab, b, PYWGD, net=1, index=2)
        connect(left, right, link)
        assert wait_handshake(left, right), "pywgd: no handshake"
        result = tcp_transfer(a, b, right.addr4, mbytes * BLOCK, timeout=300)
        assert result.ok, result
        return result.received_bytes / result.seconds / 1e6


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
    tun = tun_plane(args.mbytes)
    result = {"tun_mb_s": tun, **rootless(args.mbytes, args.connections)}
    result["upload_ratio"] = result["upload_mb_s"] / tun
    result["download_ratio"] = result["download_mb_s"] / tun
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mbytes", type=int, default=256)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        for name, value in result.items():
            print(f"{name:28} {value:12.3f}")
