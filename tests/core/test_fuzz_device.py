"""receive_datagram on random and mutated datagrams: never raises, never changes a session."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.device_pair import make_pair, session_snapshot
from helpers.ip_packets import ip4
from helpers.virtual_network import Network


def _established() -> tuple[Any, Any, list[bytes], Network]:
    net = Network()
    a, b = make_pair(net, psk=True)
    seen: list[bytes] = []
    net.tap = lambda t, data, src, dst: seen.append(data)
    net.send(a, ip4("198.19.0.1", "198.19.0.2", b"hello"))
    net.run_until(1.0)
    net.send(b, ip4("198.19.0.2", "198.19.0.1", b"back"))
    net.run_until(2.0)
    assert len(b.received) == 1 and len(a.received) == 1
    return a, b, seen, net


A, B, SEEN, NET = _established()
VALID = sorted(SEEN, key=lambda d: d[0])  # one of each of types 1, 2 and 4 at least


def _check_unchanged(data: bytes) -> None:
    dev = B.device
    before = session_snapshot(dev, A.device.public_key)
    dev.receive_datagram(data, ("198.18.0.1", 51820), 2.5)
    assert dev.packets_to_write() == []
    dev.datagrams_to_send()  # a cookie reply would be fine; nothing else can be produced
    while dev.next_event() is not None:
        raise AssertionError("an event from invalid input")
    assert session_snapshot(dev, A.device.public_key) == before


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    _check_unchanged(data)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([4, 1, 2, 3]),
    st.binary(min_size=0, max_size=200),
)
def test_random_bytes_with_valid_type_header(mtype: int, body: bytes) -> None:
    _check_unchanged(bytes([mtype, 0, 0, 0]) + body)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=4),
    st.integers(-8, 8),
)
def test_mutated_valid_datagrams(
    original: bytes, flips: list[tuple[int, int]], resize: int
) -> None:
    """Bit flips and truncation/extension of real handshake and transport messages.

    Replays of the exact originals are rejected too (stale timestamp, replay
    window, no pending handshake), so any change at all is a bug.
    """
    data = bytearray(original)
    for pos, mask in flips:
        if data:
            data[pos % len(data)] ^= mask
    if resize < 0:
        del data[resize:]
    else:
        data += bytes(resize)
    _check_unchanged(bytes(data))


def test_exact_replays_change_nothing() -> None:
    for data in VALID:
        _check_unchanged(data)
