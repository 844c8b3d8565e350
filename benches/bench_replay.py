"""Replay-window check() speed, pure Python vs native (C via cffi).

Run: python -m pytest benches/bench_replay.py --benchmark-enable -q

Each round checks BATCH fresh counters, continuing the stream of the previous
round, so every round does the same work on a window in steady state:
in order; out of order (each block of BATCH shuffled, as after reordering on
the path, all within the window); and replays (counters already seen).
Per-call cost is the reported time divided by BATCH.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from pywg import backend
from pywg._fast.replay import NativeReplayWindow
from pywg.replay import PureReplayWindow, ReplayFilter

BATCH = 1024

IMPLEMENTATIONS = [
    pytest.param(PureReplayWindow, id="pure"),
    pytest.param(
        NativeReplayWindow,
        id="native",
        marks=pytest.mark.skipif(
            not backend.native_available(), reason="native extension not importable"
        ),
    ),
]


def _run(
    benchmark: BenchmarkFixture, window: ReplayFilter, next_batch: Callable[[], list[int]]
) -> None:
    def rounds() -> int:
        check = window.check
        accepted = 0
        for counter in next_batch():
            accepted += check(counter)
        return accepted

    benchmark.extra_info["calls_per_round"] = BATCH
    benchmark(rounds)


@pytest.mark.parametrize("make_window", IMPLEMENTATIONS)
def test_check_in_order(
    benchmark: BenchmarkFixture, make_window: Callable[[], ReplayFilter]
) -> None:
    window = make_window()
    base = [0]

    def next_batch() -> list[int]:
        start = base[0]
        base[0] += BATCH
        return list(range(start, start + BATCH))

    _run(benchmark, window, next_batch)
    assert window.greatest == base[0] - 1


@pytest.mark.parametrize("make_window", IMPLEMENTATIONS)
def test_check_out_of_order(
    benchmark: BenchmarkFixture, make_window: Callable[[], ReplayFilter]
) -> None:
    window = make_window()
    rng = random.Random(6479)
    pattern = list(range(BATCH))
    rng.shuffle(pattern)
    base = [0]

    def next_batch() -> list[int]:
        start = base[0]
        base[0] += BATCH
        return [start + i for i in pattern]

    _run(benchmark, window, next_batch)
    assert window.greatest == base[0] - 1


@pytest.mark.parametrize("make_window", IMPLEMENTATIONS)
def test_check_replayed(
    benchmark: BenchmarkFixture, make_window: Callable[[], ReplayFilter]
) -> None:
    window = make_window()
    seen = list(range(10_000, 10_000 + BATCH))
    for counter in seen:
        window.check(counter)

    _run(benchmark, window, lambda: seen)
    assert window.greatest == seen[-1]
