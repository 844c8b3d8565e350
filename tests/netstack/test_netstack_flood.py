"""Floods against a netstack listener: SYNs from spoofed sources and handshakes completed
then abandoned leave what the stack holds bounded, and real clients still get through;
a thousand connections open at once."""

from __future__ import annotations

import asyncio
import gc
import random
import tracemalloc
from typing import Any

import pytest

from helpers.packet_links import MemoryLink, stack_pair
from pywg.netstack import Stack, ip, tcpwire

pytestmark = pytest.mark.time_limit(60)

SERVER = bytes([10, 0, 0, 2])


def run(coro: Any, timeout: float = 40.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def syn(rng: random.Random) -> tuple[bytes, int, int, bytes]:
    """A SYN from a random spoofed source: (source, port, ISN, packet)."""
    src = bytes([10, 1, rng.randrange(256), rng.randrange(1, 255)])
    port, isn = rng.randrange(1024, 65536), rng.randrange(1 << 32)
    options = tcpwire.syn_options(1380, 7, True)
    segment = tcpwire.build(src, SERVER, (port, 80, isn, 0, tcpwire.SYN, 65535), options, b"")
    return src, port, isn, ip.build(src, SERVER, ip.PROTO_TCP, segment)


def inject(link: MemoryLink, packets: list[bytes]) -> None:
    """Hand packets to the stack on `link` as if they came over the tunnel."""
    assert link.receiver is not None
    link.receiver(packets)


async def echo_once(stack: Stack, data: bytes) -> bytes:
    reader, writer = await stack.open_connection("10.0.0.2", 80)
    writer.write(data)
    writer.write_eof()
    got = await reader.read()
    writer.close()
    return got


async def serve_echo(stack: Stack, backlog: int = 64) -> list[asyncio.StreamWriter]:
    held: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while chunk := await reader.read(1 << 16):
            writer.write(chunk)
        writer.close()

    await stack.start_server(handle, 80, backlog=backlog)
    return held


def test_a_syn_flood_is_bounded_by_the_backlog_and_cookies_let_clients_in() -> None:
    async def main() -> None:
        a, b, _, link_b = stack_pair(rto_initial=0.01, syn_retries=2)
        await serve_echo(b, backlog=64)
        rng = random.Random(5)
        gc.collect()
        tracemalloc.start()
        for _ in range(4):
            inject(link_b, [syn(rng)[3] for _ in range(500)])
        await asyncio.sleep(0)
        after_2k = tracemalloc.get_traced_memory()[0]
        for _ in range(36):
            inject(link_b, [syn(rng)[3] for _ in range(500)])
        await asyncio.sleep(0)
        after_20k = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert len(b.connections) == b.stats()["syn_received"] == 64
        assert b.listeners[80].cookies_sent == 20_000 - 64
        assert after_20k - after_2k < 256 * 1024, (after_2k, after_20k)
        # the backlog is full, yet a real client gets in (through a cookie) and is served
        data = bytes(range(256)) * 1000
        assert await echo_once(a, data) == data
        await asyncio.sleep(0.2)  # the unanswered SYN-ACKs give up after their retries
        assert b.stats()["syn_received"] == 0

    run(main())


def test_abandoned_handshakes_are_bounded_by_max_connections() -> None:
    async def main() -> None:
        _a, b, _, link_b = stack_pair()
        b.max_connections = 300
        await serve_echo(b, backlog=16)
        link_b.tap = []
        rng = random.Random(9)
        syns = [syn(rng) for _ in range(1000)]
        inject(link_b, [packet for *_, packet in syns])
        await asyncio.sleep(0.01)
        acks = []
        for raw in link_b.tap:  # complete every handshake answered, then go silent
            packet = ip.parse(raw)
            assert packet is not None
            seg = tcpwire.parse(packet.src, packet.dst, packet.payload)
            if seg is None or seg.flags & (tcpwire.SYN | tcpwire.ACK) != tcpwire.SYN | tcpwire.ACK:
                continue
            fields = (seg.dport, 80, seg.ack, (seg.seq + 1) & 0xFFFFFFFF, tcpwire.ACK, 65535)
            segment = tcpwire.build(packet.dst, SERVER, fields, b"", b"")
            acks.append(ip.build(packet.dst, SERVER, ip.PROTO_TCP, segment))
        assert len(acks) >= 900  # answered: 16 with state, the rest with cookies
        inject(link_b, acks)
        await asyncio.sleep(0.01)
        assert len(b.connections) <= 300
        assert sum(c.state.name == "ESTABLISHED" for c in b.connections.values()) >= 280

    run(main())


def test_a_thousand_concurrent_connections() -> None:
    async def main() -> None:
        a, b, _, _ = stack_pair()
        held = await serve_echo(b, backlog=1024)
        opened = await asyncio.gather(*(a.open_connection("10.0.0.2", 80) for _ in range(1000)))
        assert len(a.connections) == len(b.connections) == 1000
        for i, (_r, w) in enumerate(opened):
            w.write(i.to_bytes(4, "big"))
        answers = await asyncio.gather(*(r.readexactly(4) for r, _w in opened))
        assert [int.from_bytes(x, "big") for x in answers] == list(range(1000))
        assert len(held) == 1000
        for _r, w in opened:
            w.close()
        await asyncio.gather(*(w.wait_closed() for _r, w in opened))

    run(main())
