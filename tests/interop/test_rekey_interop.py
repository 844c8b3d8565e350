"""A TCP stream between pywgd and wireguard-go across REKEY_AFTER_TIME loses nothing.

One test, about 140 s: pywgd initiates the session, so its REKEY_AFTER_TIME
timer starts the second handshake at 120 s (whitepaper §6.2: only the
initiator rekeys on send) while paced TCP streams run in both directions. Both
streams must arrive byte for byte without a stall, and both sides' `wg show
dump` must show a handshake at least 120 s after the first one.

Uses the interop tests' pair of nodes (tests/helpers/wg_nodes.py) and the lab's paced
streams (pywg.lab.PacedStream); skipped where the interop tests are.
"""

from __future__ import annotations

import time

import pytest

from helpers.wg_nodes import handshake_time, make_pair
from pywg.constants import REKEY_AFTER_TIME
from pywg.lab import Lab, PacedStream

pytestmark = pytest.mark.needs_lab("wireguard-go", "wg", "ping", "pywgd")

PREFIX = "pwi"
MB = 1_000_000

RATE = 1.5 * MB  # bytes/s in each direction
DURATION = REKEY_AFTER_TIME + 12  # seconds of streaming: the rekey happens well inside
MAX_STALL = 2.0  # seconds without data that count as a dropped connection


@pytest.mark.time_limit(DURATION + 60)
def test_tcp_streams_survive_rekey() -> None:
    with Lab(PREFIX) as lab:
        pair = make_pair(lab, family=4)
        pw, go = pair.pw, pair.go
        go.add_peer(pw)  # learns pywgd's endpoint from its initiation
        pw.add_peer(go, endpoint=pair.endpoint(go))
        assert pw.host.wait_ping(go.addr4, deadline=10), "no first handshake"
        first = {pw.impl: handshake_time(pw, go), go.impl: handshake_time(go, pw)}
        assert all(first.values()), first
        start = time.monotonic()

        up = PacedStream(pw.host, go.host, go.addr4, port=5401, rate=RATE, seconds=DURATION)
        try:
            down = PacedStream(
                go.host, pw.host, pw.addr6, port=5402, rate=RATE, seconds=DURATION, seed=1
            )
        except BaseException:
            up.kill()
            raise
        results = {}
        try:
            for name, stream in (("pywgd -> wireguard-go", up), ("wireguard-go -> pywgd", down)):
                left = DURATION + 30 - (time.monotonic() - start)
                results[name] = stream.result(deadline=left)
        finally:
            up.kill()
            down.kill()
        elapsed = time.monotonic() - start
        later = {pw.impl: handshake_time(pw, go), go.impl: handshake_time(go, pw)}

        for name, result in results.items():
            print(
                f"\nacross rekey, {name}: {result.received_bytes / MB:.0f} MB in "
                f"{result.seconds:.0f} s, longest stall {result.max_gap:.2f} s"
            )
            assert result.ok, (name, result)
            assert result.received_bytes == int(RATE * DURATION), (name, result)
            assert result.max_gap < MAX_STALL, f"{name} stalled for {result.max_gap:.1f} s"
        print(f"handshakes: first {first}, latest {later}, streams ran {elapsed:.0f} s")
        for impl in first:
            advanced = later[impl] - first[impl]
            # one rekey in this window, at REKEY_AFTER_TIME: not early, not late (the dump
            # has whole seconds, and wireguard-go stamps both when the data arrives)
            assert REKEY_AFTER_TIME - 1 <= advanced <= REKEY_AFTER_TIME + 10, (impl, first, later)
        assert abs(later[pw.impl] - later[go.impl]) <= 2, later
