"""Protocol-core speed: handshakes, and per-packet seal/open on the pure path.

Run: python -m pytest benches/bench_core.py --benchmark-enable -q

Groups
------
handshake
    A full WireGuard handshake between two sans-IO Devices: A gets an IPv4
    packet for B (stages it, sends message 1), B consumes message 1 and sends
    message 2, A consumes it, installs its keypair and flushes the staged
    packet. Each round uses a fresh pair of Devices (built in `setup`, outside
    the timed part); "fixed" reuses one pair of static keys (the steady state,
    Ci/Hi cached), "fresh" generates new keys for every round. Also the four
    raw functions of `pywg.handshake` alone (no mac1/mac2, no Device).
seal / open
    `Session.seal` / `Session.open` on a padded IPv4 packet of 64, 512 and
    1420 bytes. open is fed one pre-sealed message per round (counters
    increasing, so the replay window accepts every one); the batch is refilled
    in `setup`, outside the timed part.
device-send / device-receive
    The whole Device path on an established pair: `send_packet` +
    `datagrams_to_send` on A, and `receive_datagram` + `packets_to_write` on B
    (one pre-generated datagram per round, as for open).

`extra_info` holds the rate (handshakes/s or packets/s) and Mbit/s of inner
IP packets (goodput, not wire bytes) from the median, which is robust on a
busy machine, and from the mean (pytest-benchmark's OPS), plus the
replay-window backend in use.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest

from pywg import Device, PrivateKey
from pywg.backend import BACKEND
from pywg.constants import DEFAULT_MTU, TRANSPORT_HEADER_SIZE
from pywg.crypto import tai64n
from pywg.handshake import (
    consume_initiation,
    consume_response,
    create_initiation,
    create_response,
)
from pywg.messages import pad, parse_initiation, parse_response
from pywg.noise import DhKeyPair
from pywg.session import Session

SIZES = [64, 512, 1420]
BATCH = 4096  # pre-generated messages per refill
ROUNDS = 20_000  # per-packet pedantic benchmarks (one message per round)
WARMUP = 1_000
HANDSHAKE_ROUNDS = 300

ADDR_A = ("198.18.0.1", 51820)
ADDR_B = ("198.18.0.2", 51820)
INNER_A = "198.19.0.1"
INNER_B = "198.19.0.2"

Args = tuple[tuple[Any, ...], dict[str, Any]]


def ip4(src: str, dst: str, size: int) -> bytes:
    """An IPv4/UDP packet of exactly `size` bytes (no checksums: the core ignores them)."""
    assert size >= 20
    header = bytes([0x45, 0, size >> 8, size & 0xFF, 0, 0, 0, 0, 64, 17, 0, 0])
    payload = bytes(i & 0xFF for i in range(size - 20))
    return header + ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed + payload


def _record(benchmark: Any, size: int | None = None) -> None:
    """packets/s (or handshakes/s) and Mbit/s from the measured mean, when enabled."""
    benchmark.extra_info["backend"] = BACKEND
    if size is not None:
        benchmark.extra_info["packet_bytes"] = size
    stats = getattr(benchmark, "stats", None)
    if stats is None:  # --benchmark-disable: ran once, nothing measured
        return
    median, mean = stats.stats.median, stats.stats.mean
    benchmark.extra_info["per_s_median"] = round(1.0 / median)
    benchmark.extra_info["per_s_mean"] = round(1.0 / mean)
    if size is not None:
        benchmark.extra_info["packets_per_s"] = round(1.0 / median)
        benchmark.extra_info["mbit_per_s"] = round(size * 8 / median / 1e6, 1)
        benchmark.extra_info["mbit_per_s_mean"] = round(size * 8 / mean / 1e6, 1)


def _devices(ka: PrivateKey, kb: PrivateKey) -> tuple[Device, Device]:
    a = Device(ka, ADDR_A[1])
    b = Device(kb, ADDR_B[1])
    a.add_peer(kb.public_key, [f"{INNER_B}/32"], endpoint=ADDR_B)
    b.add_peer(ka.public_key, [f"{INNER_A}/32"], endpoint=ADDR_A)
    return a, b


def _handshake(a: Device, b: Device, packet: bytes, now: float) -> list[tuple[bytes, Any]]:
    """A sends a packet → initiation → B → response → A. Returns A's output after it."""
    a.send_packet(packet, now)
    ((initiation, _),) = a.datagrams_to_send()
    b.receive_datagram(initiation, ADDR_A, now)
    ((response, _),) = b.datagrams_to_send()
    a.receive_datagram(response, ADDR_B, now)
    return a.datagrams_to_send()


def _established(size: int) -> tuple[Device, Device, bytes]:
    """A and B after a handshake, B's session confirmed; `packet` goes A → B."""
    a, b = _devices(PrivateKey.generate(), PrivateKey.generate())
    packet = ip4(INNER_A, INNER_B, size)
    out = _handshake(a, b, packet, 0.0)
    for data, _ in out:  # keepalive / staged packet: confirms B's session
        b.receive_datagram(data, ADDR_A, 0.0)
    assert b.packets_to_write() == [packet]
    while a.next_event() is not None or b.next_event() is not None:
        pass
    peer_a = a.peer(b.public_key)
    peer_b = b.peer(a.public_key)
    assert peer_a.current is not None and peer_b.current is not None
    assert not a.dropped and not b.dropped
    return a, b, packet


def _feeder(refill: Callable[[], list[Any]]) -> Callable[[], Args]:
    """A pedantic setup handing out one pre-generated item per round, refilling when empty."""
    queue: deque[Any] = deque()

    def setup() -> Args:
        if not queue:
            queue.extend(refill())
        return (queue.popleft(),), {}

    return setup


# ---------------------------------------------------------------- handshake


@pytest.mark.benchmark(group="handshake")
@pytest.mark.parametrize("keys", ["fixed", "fresh"])
def test_device_handshake(benchmark: Any, keys: str) -> None:
    fixed = (PrivateKey.generate(), PrivateKey.generate())
    packet = ip4(INNER_A, INNER_B, 64)

    def setup() -> Args:
        ka, kb = fixed if keys == "fixed" else (PrivateKey.generate(), PrivateKey.generate())
        return _devices(ka, kb), {}

    def handshake(a: Device, b: Device) -> tuple[Device, Device, list[tuple[bytes, Any]]]:
        return a, b, _handshake(a, b, packet, 0.0)

    a, b, out = benchmark.pedantic(
        handshake, setup=setup, rounds=HANDSHAKE_ROUNDS, warmup_rounds=10
    )
    # A: keypair installed and current; B: keypair waiting in `next` for confirmation
    peer_a = a.peer(b.public_key)
    peer_b = b.peer(a.public_key)
    assert peer_a.current is not None and peer_a.handshake is None
    assert peer_b.next is not None
    assert len(out) == 1 and len(out[0][0]) == TRANSPORT_HEADER_SIZE + 64 + 16
    b.receive_datagram(out[0][0], ADDR_A, 0.0)
    assert b.packets_to_write() == [packet]
    assert not a.dropped and not b.dropped
    _record(benchmark)


@pytest.mark.benchmark(group="handshake")
def test_raw_handshake(benchmark: Any) -> None:
    initiator = DhKeyPair.from_private(bytes(PrivateKey.generate()))
    responder = DhKeyPair.from_private(bytes(PrivateKey.generate()))
    stamp = tai64n(1_700_000_000.0)

    def handshake() -> tuple[bytes | None, bytes | None]:
        created = create_initiation(initiator, responder.public, 1, stamp)
        consumed = consume_initiation(responder, parse_initiation(created.message))
        response, r_send, _ = create_response(consumed, 2, None)
        i_send, _ = consume_response(created.state, parse_response(response), None)
        return i_send.k, r_send.k

    i_key, r_key = benchmark(handshake)
    assert i_key is not None and r_key is not None and i_key != r_key
    _record(benchmark)


# ---------------------------------------------------------------- Session seal / open


def _sessions() -> tuple[Session, Session]:
    k1, k2 = bytes(range(32)), bytes(range(32, 64))
    sender = Session(k1, k2, 1, 2, is_initiator=True, created=0.0)
    receiver = Session(k2, k1, 2, 1, is_initiator=False, created=0.0)
    return sender, receiver


@pytest.mark.benchmark(group="seal")
@pytest.mark.parametrize("size", SIZES)
def test_seal(benchmark: Any, size: int) -> None:
    sender, receiver = _sessions()
    padded = pad(ip4(INNER_A, INNER_B, size), DEFAULT_MTU)
    message = benchmark(sender.seal, padded)
    assert len(message) == TRANSPORT_HEADER_SIZE + len(padded) + 16
    counter = sender.send_counter - 1
    assert int.from_bytes(message[8:16], "little") == counter
    assert receiver.open(counter, message[TRANSPORT_HEADER_SIZE:]) == padded
    _record(benchmark, size)


@pytest.mark.benchmark(group="open")
@pytest.mark.parametrize("size", SIZES)
def test_open(benchmark: Any, size: int) -> None:
    sender, receiver = _sessions()
    padded = pad(ip4(INNER_A, INNER_B, size), DEFAULT_MTU)

    def refill() -> list[tuple[int, bytes]]:
        batch = []
        for _ in range(BATCH):
            counter = sender.send_counter
            batch.append((counter, sender.seal(padded)[TRANSPORT_HEADER_SIZE:]))
        return batch

    first = refill()
    assert receiver.open(*first[0]) == padded  # outside the timed loop
    assert receiver.open(*first[0]) is None  # and the replay window is live
    setup = _feeder(refill)

    def open_one(item: tuple[int, bytes]) -> bytes | None:
        return receiver.open(item[0], item[1])

    plain = benchmark.pedantic(open_one, setup=setup, rounds=ROUNDS, warmup_rounds=WARMUP)
    assert plain == padded
    _record(benchmark, size)


# ---------------------------------------------------------------- whole Device path


@pytest.mark.benchmark(group="device-send")
@pytest.mark.parametrize("size", SIZES)
def test_device_send(benchmark: Any, size: int) -> None:
    a, b, packet = _established(size)
    now = 1.0

    def send() -> list[tuple[bytes, Any]]:
        a.send_packet(packet, now)
        return a.datagrams_to_send()

    out = benchmark(send)
    assert len(out) == 1 and out[0][1] == ADDR_B
    assert not a.dropped
    b.receive_datagram(out[0][0], ADDR_A, now)
    assert b.packets_to_write() == [packet]
    _record(benchmark, size)


@pytest.mark.benchmark(group="device-receive")
@pytest.mark.parametrize("size", SIZES)
def test_device_receive(benchmark: Any, size: int) -> None:
    a, b, packet = _established(size)
    now = 1.0

    def refill() -> list[bytes]:
        for _ in range(BATCH):
            a.send_packet(packet, now)
        batch = [data for data, _ in a.datagrams_to_send()]
        assert len(batch) == BATCH
        return batch

    setup = _feeder(refill)

    def receive(data: bytes) -> list[bytes]:
        b.receive_datagram(data, ADDR_A, now)
        return b.packets_to_write()

    written = benchmark.pedantic(receive, setup=setup, rounds=ROUNDS, warmup_rounds=WARMUP)
    assert written == [packet]
    assert not b.dropped
    assert b.next_event() is None  # no roaming or rekey noise in the loop
    _record(benchmark, size)
