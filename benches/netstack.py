"""The user-space stack (pywg.netstack) alone: two stacks in one process over an
in-memory link (`pywg.lab.memlink`), no tunnel, no kernel.

    python3 benches/netstack.py [--mbytes 64] [--connections 1000] [--json]

- throughput: one TCP stream from A to B (clean link, then 5 % loss + 5 % held back +
  5 % duplicated each way), the receiver reading as fast as it can;
- memory per idle connection: `tracemalloc` growth with N idle connections open
  (asyncio StreamReader/StreamWriter and both ends' stack state), divided by 2N ends.

Both stacks and the application share one CPU (one event loop), so a stream's figure is
the cost of sender and receiver together.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
import tracemalloc

from pywg.lab.memlink import link_pair
from pywg.lab.relay import Faults
from pywg.netstack import Stack, TcpConfig

CONFIG = TcpConfig(rto_min=0.03, delayed_ack=0.005)


def stacks() -> tuple[Stack, Stack, object, object]:
    a, b = link_pair(1420)
    return Stack(a, ["10.0.0.1"], tcp=CONFIG), Stack(b, ["10.0.0.2"], tcp=CONFIG), a, b


async def throughput(mbytes: int, faults: Faults) -> float:
    """MB/s of one stream of `mbytes` MiB."""
    a, b, link_a, link_b = stacks()
    link_a.faults = link_b.faults = faults  # type: ignore[attr-defined]
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        total = 0
        while chunk := await reader.read(1 << 20):
            total += len(chunk)
        done.set_result(total)
        writer.close()

    await b.start_server(sink, 5001)
    _reader, writer = await a.open_connection("10.0.0.2", 5001)
    block = bytes(1 << 20)
    started = time.perf_counter()
    for _ in range(mbytes):
        writer.write(block)
        await writer.drain()
    writer.write_eof()
    total = await done
    elapsed = time.perf_counter() - started
    assert total == mbytes << 20
    return total / elapsed / 1e6


async def idle_bytes(count: int) -> float:
    """Bytes of memory per idle connection end."""
    a, b, _, _ = stacks()
    held = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append((reader, writer))

    await b.start_server(hold, 80, backlog=count)
    await a.open_connection("10.0.0.2", 80)  # warm caches and lazily built objects
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    opened = [await a.open_connection("10.0.0.2", 80) for _ in range(count)]
    await asyncio.sleep(0.1)  # delayed ACKs out, the servers' callbacks run
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(held) == count + 1 and len(opened) == count
    return (after - before) / (2 * count)


async def main(args: argparse.Namespace) -> dict[str, float]:
    return {
        "throughput_mb_s": await throughput(args.mbytes, Faults()),
        "lossy_throughput_mb_s": await throughput(
            max(args.mbytes // 8, 1), Faults(loss=0.05, hold=0.05, dup=0.05)
        ),
        "bytes_per_idle_connection_end": await idle_bytes(args.connections),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mbytes", type=int, default=64)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(main(args))
    if args.json:
        print(json.dumps(result))
    else:
        for name, value in result.items():
            print(f"{name:32} {value:12.1f}")
