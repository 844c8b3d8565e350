"""`pywg.asyncio.offload` on the loopback: GSO runs out, GRO runs in, datagrams unchanged.

A `GsoSender` gives a run of same-size datagrams to one destination (the
last may be shorter) to the kernel as one send; the receiver sees the
datagrams one by one, byte for byte and in order, or, with UDP GRO on,
as one receive whose segment size cuts them apart again. A datagram of
another size or for another destination starts a new run; refused sends are
counted.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator

import pytest

from pywg.asyncio.offload import GSO_MAX_SEGMENTS, GsoSender, enable_gro, receive, segments

TIMEOUT = 2.0


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket, socket.socket]]:
    """A sending socket and two receivers on 127.0.0.1."""
    made = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    for sock in made:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(TIMEOUT)
    made[0].setblocking(False)
    yield made[0], made[1], made[2]
    for sock in made:
        sock.close()


def send_all(sock: socket.socket, items: list[tuple[bytes, tuple[str, int]]]) -> list[int]:
    """Send `items` through a GsoSender on a loop; the drop counts it reported."""
    drops: list[int] = []

    async def main() -> None:
        sender = GsoSender(sock, asyncio.get_running_loop(), drops.append)
        for data, to in items:
            sender.send(data, to)
        await asyncio.sleep(0)  # the run goes at the loop's next turn
        await asyncio.sleep(0)

    asyncio.run(main())
    return drops


def test_runs_arrive_as_the_datagrams_sent(
    pair: tuple[socket.socket, socket.socket, socket.socket],
) -> None:
    sender, one, two = pair
    to_one, to_two = one.getsockname(), two.getsockname()
    full = [os.urandom(1200) for _ in range(GSO_MAX_SEGMENTS + 5)]  # more than one run
    items = [(d, to_one) for d in full] + [(b"x" * 1200, to_two), (b"short", to_one)]
    items += [(b"y" * 1200, to_one), (b"z" * 100, to_one), (b"w" * 100, to_one)]
    assert send_all(sender, items) == []
    for data, to in items:
        receiver = one if to == to_one else two
        assert receiver.recv(2000) == data


def test_a_gro_receiver_gets_a_run_in_one_receive(
    pair: tuple[socket.socket, socket.socket, socket.socket],
) -> None:
    sender, one, _ = pair
    if not enable_gro(one):
        pytest.skip("no UDP GRO in this kernel")
    run = [os.urandom(1000) for _ in range(10)] + [os.urandom(400)]
    assert send_all(sender, [(d, one.getsockname()) for d in run]) == []
    buffer = bytearray(1 << 16)
    got: list[bytes] = []
    while len(got) < len(run):
        size, segment, source = receive(one, buffer)
        assert source == sender.getsockname()
        got += [bytes(d) for d in segments(memoryview(buffer), size, segment)]
    assert got == run


def test_refused_sends_are_counted(
    pair: tuple[socket.socket, socket.socket, socket.socket],
) -> None:
    sender, one, _ = pair
    to = one.getsockname()
    sender.close()  # every send fails (EBADF)
    assert sum(send_all(sender, [(b"a" * 100, to)] * 3 + [(b"b" * 50, to)])) == 4
