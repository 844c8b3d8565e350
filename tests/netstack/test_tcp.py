"""TCP between two netstacks over an in-memory link: transfers (clean and under loss,
reordering and duplication), every kind of close, timeouts, zero windows, keep-alives."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Awaitable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.packet_links import stack_pair
from pywg.lab.relay import Faults
from pywg.netstack import Stack, ip, tcpwire
from pywg.netstack.tcb import State

pytestmark = pytest.mark.time_limit(60)

LOSSY = Faults(loss=0.05, hold=0.05, dup=0.05)


def run(coro: Awaitable[Any], timeout: float = 30.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def hash_server(stack: Stack, port: int = 80) -> Any:
    """A server that reads to EOF and answers with the SHA-256 of what it read, then closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        digest = hashlib.sha256()
        while chunk := await reader.read(1 << 16):
            digest.update(chunk)
        writer.write(digest.digest())
        await writer.drain()
        writer.close()

    return await stack.start_server(handle, port)


async def echo_server(stack: Stack, port: int = 7) -> Any:
    """A server that sends back what it reads while it reads it (both directions at once)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(1 << 16):
            writer.write(chunk)
            await writer.drain()
        writer.close()

    return await stack.start_server(handle, port)


async def send_and_hash(stack: Stack, host: str, data: bytes, port: int = 80) -> bytes:
    reader, writer = await stack.open_connection(host, port)
    writer.write(data)
    await writer.drain()
    writer.write_eof()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return answer


async def echo_through(stack: Stack, host: str, data: bytes, port: int = 7) -> bytes:
    reader, writer = await stack.open_connection(host, port)

    async def send() -> None:
        for i in range(0, len(data), 1 << 16):
            writer.write(data[i : i + (1 << 16)])
            await writer.drain()
        writer.write_eof()

    sender = asyncio.ensure_future(send())
    got = await reader.read()
    await sender
    writer.close()
    await writer.wait_closed()
    return got


@pytest.mark.parametrize("host", ["10.0.0.2", "fd00::2"])
def test_transfer_is_intact_and_segments_fit_the_mtu(host: str) -> None:
    async def main() -> None:
        a, b, link_a, link_b = stack_pair(mtu=1280)
        link_a.tap = []
        await hash_server(b)
        data = os.urandom(2 << 20)
        assert await send_and_hash(a, host, data) == hashlib.sha256(data).digest()
        assert link_a.oversize == link_b.oversize == 0
        assert max(len(p) for p in link_a.tap or [b""]) <= 1280

    run(main())


def test_segments_are_full_sized_for_the_mtu() -> None:
    async def main() -> None:
        a, b, link_a, _ = stack_pair(mtu=1280)
        link_a.tap = []
        await hash_server(b)
        await send_and_hash(a, "fd00::2", bytes(200_000))
        assert max(len(p) for p in link_a.tap) == 1280  # MSS = MTU - 60 over IPv6

    run(main())


def test_both_directions_at_once_under_loss_reordering_and_duplication() -> None:
    async def main() -> None:
        a, b, link_a, link_b = stack_pair(seed=7)
        link_a.faults = link_b.faults = LOSSY
        await echo_server(b)
        data = os.urandom(3 << 20)
        got4, got6 = await asyncio.gather(
            echo_through(a, "10.0.0.2", data), echo_through(a, "fd00::2", data[::-1])
        )
        assert got4 == data and got6 == data[::-1]
        assert link_a.lost and link_b.lost

    run(main())


@pytest.mark.parametrize("seed", [1, 5, 6, 8, 9, 11])
def test_full_buffers_both_ways_under_faults(seed: int) -> None:
    """Small buffers, so that both ends' windows close and reopen all the time while
    segments are lost, held back and duplicated: nothing may stall."""

    async def main() -> None:
        a, b, link_a, link_b = stack_pair(seed=seed, rcv_buffer=65536, snd_buffer=65536)
        link_a.faults = link_b.faults = LOSSY
        await echo_server(b)
        data = os.urandom(1 << 20)
        assert await echo_through(a, "10.0.0.2", data) == data

    run(main(), timeout=10)


@pytest.mark.slow
@pytest.mark.time_limit(600)
def test_100_mb_each_way_under_loss_reordering_and_duplication() -> None:
    async def main() -> None:
        a, b, link_a, link_b = stack_pair(seed=11)
        link_a.faults = link_b.faults = LOSSY
        await echo_server(b)
        data = os.urandom(100 << 20)
        assert await echo_through(a, "10.0.0.2", data) == data

    run(main(), timeout=580)


def test_connecting_to_a_closed_port_is_refused() -> None:
    async def main() -> None:
        a, _b, _, _ = stack_pair()
        with pytest.raises(ConnectionRefusedError):
            await a.open_connection("10.0.0.2", 81)

    run(main())


def test_abort_resets_the_peer() -> None:
    async def main() -> None:
        a, b, _, _ = stack_pair()
        accepted: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()

        async def handle(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set_result(writer)

        await b.start_server(handle, 80)
        reader, _writer = await a.open_connection("10.0.0.2", 80)
        (await accepted).transport.abort()
        with pytest.raises(ConnectionResetError):
            await reader.read()
        await asyncio.sleep(0.05)
        assert not a.connections and not b.connections

    run(main())


def test_simultaneous_close_ends_both_sides() -> None:
    async def main() -> None:
        a, b, _, _ = stack_pair(msl=0.05)
        accepted: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()

        async def handle(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set_result(writer)

        await b.start_server(handle, 80)
        _reader, writer = await a.open_connection("10.0.0.2", 80)
        other = await accepted
        writer.close()
        other.close()  # both FINs cross: FIN-WAIT-1 -> CLOSING -> TIME-WAIT on each side
        await asyncio.gather(writer.wait_closed(), other.wait_closed())
        states = {c.state for c in [*a.connections.values(), *b.connections.values()]}
        assert states <= {State.TIME_WAIT, State.CLOSING, State.FIN_WAIT_2}
        await asyncio.sleep(0.3)  # 2 MSL
        assert not a.connections and not b.connections

    run(main())


def test_time_wait_is_bounded() -> None:
    async def main() -> None:
        a, b, _, _ = stack_pair()
        a.max_time_wait = 5
        await hash_server(b)
        for _ in range(20):
            await send_and_hash(a, "10.0.0.2", b"x")
        assert sum(c.state == State.TIME_WAIT for c in a.connections.values()) == 5
        assert len(a.connections) <= 6

    run(main())


def test_a_peer_that_vanishes_times_the_connection_out() -> None:
    async def main() -> None:
        a, b, link_a, _ = stack_pair(retries=3)
        await hash_server(b)
        reader, writer = await a.open_connection("10.0.0.2", 80)
        link_a.faults = Faults(loss=1.0)
        writer.write(b"into the void")
        with pytest.raises(TimeoutError):
            await reader.read()
        assert not a.connections

    run(main())


def test_a_syn_without_answer_times_out() -> None:
    async def main() -> None:
        a, _b, link_a, _ = stack_pair(rto_initial=0.02, syn_retries=2)
        link_a.faults = Faults(loss=1.0)
        with pytest.raises(TimeoutError):
            await a.open_connection("10.0.0.2", 80)
        assert link_a.sent == 3  # the SYN and its two retransmissions
        assert not a.connections

    run(main())


def test_zero_window_is_probed_and_reopens() -> None:
    async def main() -> None:
        a, b, _, _ = stack_pair(rcv_buffer=16384)
        readers: asyncio.Queue[asyncio.StreamReader] = asyncio.Queue()

        async def handle(reader: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
            reader._transport.pause_reading()  # type: ignore[attr-defined]  # a reader that stalls
            await readers.put(reader)

        await b.start_server(handle, 80, limit=1024)
        _r, writer = await a.open_connection("10.0.0.2", 80)
        data = os.urandom(200_000)
        writer.write(data)
        writer.write_eof()
        reader = await readers.get()
        await asyncio.sleep(0.3)
        (conn,) = a.connections.values()
        assert conn.snd_wnd == 0 and conn.snd_una < conn.data_end  # stalled on the window
        probes_before = conn.rtt.backoffs
        reader._transport.resume_reading()  # type: ignore[attr-defined]
        assert await reader.read() == data
        assert probes_before >= 1  # the persist timer ran

    run(main())


def test_keepalive_keeps_a_live_peer_and_drops_a_dead_one() -> None:
    async def main() -> None:
        a, b, link_a, _ = stack_pair(
            keepalive_idle=0.05, keepalive_interval=0.02, keepalive_count=3
        )
        await hash_server(b)
        reader, _writer = await a.open_connection("10.0.0.2", 80)
        await asyncio.sleep(0.3)  # idle: several probes, all answered
        assert len(a.connections) == 1
        link_a.faults = Faults(loss=1.0)
        with pytest.raises(TimeoutError):
            await reader.read()

    run(main())


def test_window_scaling_and_sack_are_negotiated_or_not() -> None:
    async def main() -> None:
        a, b, _, _ = stack_pair()
        await hash_server(b)
        _r, w = await a.open_connection("10.0.0.2", 80)
        (conn,) = a.connections.values()
        assert conn.sack_ok and conn.snd_wscale == conn.rcv_wscale == 5  # 1 MiB window
        w.close()
        a2, b2, _, _ = stack_pair(sack=False, window_scaling=False)
        await hash_server(b2)
        await b2.start_server(lambda r, w: None, 81)
        _r, w = await a2.open_connection("10.0.0.2", 80)
        (conn,) = a2.connections.values()
        assert not conn.sack_ok and conn.snd_wscale == conn.rcv_wscale == 0

    run(main())


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-70000, 70000),
            st.integers(-70000, 70000),
            st.integers(0, 0x3F),
            st.integers(0, 65535),
            st.binary(max_size=64),
        ),
        max_size=12,
    )
)
def test_forged_segments_never_break_the_stack(
    forged: list[tuple[int, int, int, int, bytes]],
) -> None:
    """Valid-checksum segments with any flags and numbers near the connection's own."""

    async def main() -> None:
        a, b, _, link_b = stack_pair()
        errors: list[object] = []
        asyncio.get_running_loop().set_exception_handler(lambda _l, ctx: errors.append(ctx))
        await echo_server(b)
        reader, writer = await a.open_connection("10.0.0.2", 7)
        (conn,) = a.connections.values()
        packets = []
        for dseq, dack, flags, window, payload in forged:
            fields = (
                7,
                conn.local_port,
                (conn.rcv_nxt + dseq) & 0xFFFFFFFF,
                (conn.snd_nxt + dack) & 0xFFFFFFFF,
                flags,
                window,
            )
            segment = tcpwire.build(conn.remote_addr, conn.local_addr, fields, b"", payload)
            packets.append(ip.build(conn.remote_addr, conn.local_addr, ip.PROTO_TCP, segment))
        assert link_b.peer is not None and link_b.peer.receiver is not None
        link_b.peer.receiver(packets)
        await asyncio.sleep(0.01)
        assert not errors
        if a.connections:  # whatever survived still works or ends cleanly
            writer.write(b"ping")
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(reader.read(4), 2)

    run(main())


def test_callback_errors_go_to_the_loop_not_the_link() -> None:
    async def main() -> None:
        a, b, _, _ = stack_pair()
        errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _l, ctx: errors.append(ctx))

        class Broken(asyncio.Protocol):
            def data_received(self, data: bytes) -> None:
                raise RuntimeError("user bug")

        await b.create_server(Broken, 80)
        _r, w = await a.open_connection("10.0.0.2", 80)
        w.write(b"x")
        await asyncio.sleep(0.05)
        assert [type(e.get("exception")) for e in errors] == [RuntimeError]

    run(main())
