"""Transport AEAD speed: native batched ChaCha20-Poly1305 against the pure path.

Run: python3 -m pytest benches/bench_aead.py --benchmark-enable

Groups (one table per operation and size, native next to pure)
--------------------------------------------------------------
aead-seal NB / aead-open NB
    native
        ``pywg._fast.lib.pywg_aead_seal_batch`` / ``pywg_aead_open_batch``:
        BATCH packets of N plaintext bytes per C call, sealed or opened in
        place in one buffer allocated once with ``ffi.new`` (each packet
        followed by room for its 16-byte tag), one EVP context per key and
        direction. Every round starts from the same buffer contents: the
        plaintext (seal) or the sealed packets (open) are copied back in the
        pedantic `setup`, outside the timed part, which also checks that the
        previous round's open produced the plaintext. Seal counters move on
        every round; open reuses the counters of its pre-sealed batch (the
        C AEAD has no replay window).
    pure
        ``Session.seal`` / ``Session.open`` from ``pywg.session`` (the
        `cryptography` package plus, for open, the replay window), one packet
        per call; open is fed one pre-sealed message per round, as in
        bench_core.

N is the padded plaintext size (64, 512, 1420: all already multiples of 16
or the MTU). ``extra_info`` holds ``pps`` = packets per round / mean round
time, ``pps_median``, ``ns_per_packet`` and ``gbit_per_s`` (plaintext), and a
compact packets-per-second table is printed at the end of the module.
The native cases skip when the extension is not built (``pywg._fast.AVAILABLE``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import pywg._fast as fast
from pywg.constants import DEFAULT_MTU, TRANSPORT_HEADER_SIZE
from pywg.messages import pad
from pywg.session import Session

SIZES = [64, 512, 1420]
BATCH = 64  # packets per native call
TAG = 16
NATIVE_ROUNDS = 2_000
PURE_ROUNDS = 20_000
WARMUP = 100
PREFILL = 4096  # pre-sealed messages per refill for the pure open

SEND_KEY = bytes(range(32))
RECEIVE_KEY = bytes(range(32, 64))

Args = tuple[tuple[Any, ...], dict[str, Any]]

# (operation, size, implementation) -> (pps from the mean, pps from the median)
_RESULTS: dict[tuple[str, int, str], tuple[float, float]] = {}


def _native_reason() -> str | None:
    if not fast.AVAILABLE:
        return f"native extension not built: {fast.IMPORT_ERROR}"
    for name in ("pywg_aead_new", "pywg_aead_seal_batch", "pywg_aead_open_batch"):
        if not hasattr(fast.lib, name):
            return f"native extension has no {name}"
    return None


NATIVE_SKIP = _native_reason()
IMPLEMENTATIONS = [
    pytest.param(
        "native",
        id="native",
        marks=pytest.mark.skipif(NATIVE_SKIP is not None, reason=NATIVE_SKIP or ""),
    ),
    pytest.param("pure", id="pure"),
]


def plaintext(size: int) -> bytes:
    """A padded inner packet of `size` bytes (pattern content; the AEAD does not parse it)."""
    padded = pad(bytes(i & 0xFF for i in range(size)), DEFAULT_MTU)
    assert len(padded) == size, "sizes are chosen to need no padding"
    return padded


def _record(benchmark: BenchmarkFixture, op: str, impl: str, size: int, per_round: int) -> None:
    benchmark.extra_info.update(
        {"impl": impl, "packet_bytes": size, "packets_per_round": per_round}
    )
    stats = getattr(benchmark, "stats", None)
    if stats is None:  # --benchmark-disable: ran once, nothing measured
        return
    mean, median = stats.stats.mean, stats.stats.median
    pps, pps_median = per_round / mean, per_round / median
    benchmark.extra_info["pps"] = round(pps)
    benchmark.extra_info["pps_median"] = round(pps_median)
    benchmark.extra_info["ns_per_packet"] = round(mean / per_round * 1e9, 1)
    benchmark.extra_info["gbit_per_s"] = round(pps * size * 8 / 1e9, 3)
    _RESULTS[(op, size, impl)] = (pps, pps_median)


def _table() -> list[str]:
    lines = [
        f"{'op':5} {'bytes':>5} {'native pps':>12} {'pure pps':>12} {'native/pure':>12}"
        "   [median native, pure]"
    ]
    for op in ("seal", "open"):
        for size in SIZES:
            native = _RESULTS.get((op, size, "native"))
            pure = _RESULTS.get((op, size, "pure"))
            if native is None and pure is None:
                continue
            cells = [f"{r[0]:12,.0f}" if r else f"{'-':>12}" for r in (native, pure)]
            ratio = f"{native[0] / pure[0]:11.1f}x" if native and pure else f"{'-':>12}"
            medians = ", ".join(f"{r[1]:,.0f}" if r else "-" for r in (native, pure))
            lines.append(f"{op:5} {size:5d} {cells[0]} {cells[1]} {ratio}   [{medians}]")
    return lines


class _PpsTable:
    """A plugin printing the packets-per-second table after pytest-benchmark's tables."""

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if _RESULTS:
            terminalreporter.write_sep("-", "AEAD packets per second (pps = packets / mean time)")
            for line in _table():
                terminalreporter.write_line(line)


@pytest.fixture(scope="module", autouse=True)
def pps_table(request: pytest.FixtureRequest) -> None:
    manager = request.config.pluginmanager
    if not manager.has_plugin("bench_aead_pps_table"):
        manager.register(_PpsTable(), "bench_aead_pps_table")


def _pedantic(
    benchmark: BenchmarkFixture, target: Callable[..., Any], setup: Callable[[], Args], rounds: int
) -> Any:
    """benchmark.pedantic, one call per round with fresh arguments from `setup`."""
    pedantic: Callable[..., Any] = benchmark.pedantic  # untyped in pytest-benchmark
    return pedantic(target, setup=setup, rounds=rounds, warmup_rounds=WARMUP)


# ---------------------------------------------------------------- native (batched, in place)


class NativeBatch:
    """BATCH packets of `size` bytes `stride` apart in one ffi buffer, and two EVP contexts."""

    def __init__(self, size: int) -> None:
        ffi, lib = fast.require()
        self.ffi, self.lib = ffi, lib
        self.size = size
        self.stride = size + TAG
        self.nbytes = self.stride * BATCH
        self.buf = ffi.new("uint8_t[]", self.nbytes)
        self.sealer = self._context(SEND_KEY, encrypt=True)
        self.opener = self._context(SEND_KEY, encrypt=False)  # the other end of the same key
        slot = plaintext(size) + bytes(TAG)
        self.plain = slot * BATCH  # every packet's plaintext, tag room zeroed

    def _context(self, key: bytes, *, encrypt: bool) -> Any:
        ctx = self.lib.pywg_aead_new(self.ffi.from_buffer(key), int(encrypt))
        if ctx == self.ffi.NULL:
            raise RuntimeError("pywg_aead_new failed")
        return self.ffi.gc(ctx, self.lib.pywg_aead_free)

    def load(self, data: bytes) -> None:
        self.ffi.memmove(self.buf, data, self.nbytes)

    def dump(self) -> bytes:
        return bytes(self.ffi.buffer(self.buf, self.nbytes))

    def seal(self, counter: int) -> int:
        return int(
            self.lib.pywg_aead_seal_batch(
                self.sealer, counter, self.buf, self.stride, self.size, BATCH
            )
        )

    def open(self, counter: int) -> int:
        return int(
            self.lib.pywg_aead_open_batch(
                self.opener, counter, self.buf, self.stride, self.size, BATCH
            )
        )

    def plaintexts_ok(self) -> bool:
        """Every packet in the buffer is the plaintext again (tag bytes not compared)."""
        data = self.dump()
        want = self.plain[: self.size]
        return all(
            data[i * self.stride : i * self.stride + self.size] == want for i in range(BATCH)
        )


def _native_seal(benchmark: BenchmarkFixture, size: int) -> None:
    batch = NativeBatch(size)
    lib, sealer, buf, stride = batch.lib, batch.sealer, batch.buf, batch.stride
    counters = iter(range(0, 1 << 62, BATCH))
    last = [0]

    def setup() -> Args:
        batch.load(batch.plain)
        last[0] = next(counters)
        return (sealer, last[0], buf, stride, size, BATCH), {}

    sealed = _pedantic(benchmark, lib.pywg_aead_seal_batch, setup, NATIVE_ROUNDS)
    assert sealed == BATCH, f"native seal: {sealed} of {BATCH} succeeded"
    assert batch.dump() != batch.plain  # it did encrypt
    opened = batch.open(last[0])  # the last round's output opens under its counters
    assert opened == BATCH and batch.plaintexts_ok()


def _native_open(benchmark: BenchmarkFixture, size: int) -> None:
    batch = NativeBatch(size)
    lib, opener, buf, stride = batch.lib, batch.opener, batch.buf, batch.stride
    first = 1_000_000
    batch.load(batch.plain)
    assert batch.seal(first) == BATCH
    sealed = batch.dump()
    # sanity outside the timed loop: opens, and a flipped tag bit is refused
    assert batch.open(first) == BATCH and batch.plaintexts_ok()
    batch.load(sealed)
    batch.buf[size] ^= 1
    assert batch.open(first) == BATCH - 1
    batch.load(sealed)
    rounds = [0]

    def setup() -> Args:
        if rounds[0]:  # the previous (timed) round really produced the plaintexts
            assert batch.plaintexts_ok(), "native open returned wrong plaintext"
        rounds[0] += 1
        batch.load(sealed)
        return (opener, first, buf, stride, size, BATCH), {}

    opened = _pedantic(benchmark, lib.pywg_aead_open_batch, setup, NATIVE_ROUNDS)
    assert opened == BATCH, f"native open: {opened} of {BATCH} succeeded"
    assert batch.plaintexts_ok()


# ---------------------------------------------------------------- pure (Session, one per call)


def _sessions() -> tuple[Session, Session]:
    sender = Session(SEND_KEY, RECEIVE_KEY, 1, 2, is_initiator=True, created=0.0)
    receiver = Session(RECEIVE_KEY, SEND_KEY, 2, 1, is_initiator=False, created=0.0)
    return sender, receiver


def _pure_seal(benchmark: BenchmarkFixture, size: int) -> None:
    sender, receiver = _sessions()
    padded = plaintext(size)
    message = benchmark(sender.seal, padded)
    assert len(message) == TRANSPORT_HEADER_SIZE + size + TAG
    counter = int.from_bytes(message[8:16], "little")
    assert counter == sender.send_counter - 1
    assert receiver.open(counter, message[TRANSPORT_HEADER_SIZE:]) == padded


def _feeder(refill: Callable[[], list[Any]]) -> Callable[[], Args]:
    queue: deque[Any] = deque()

    def setup() -> Args:
        if not queue:
            queue.extend(refill())
        return queue.popleft(), {}

    return setup


def _pure_open(benchmark: BenchmarkFixture, size: int) -> None:
    sender, receiver = _sessions()
    padded = plaintext(size)

    def refill() -> list[tuple[int, bytes]]:
        items = []
        for _ in range(PREFILL):
            counter = sender.send_counter
            items.append((counter, sender.seal(padded)[TRANSPORT_HEADER_SIZE:]))
        return items

    first = refill()
    assert receiver.open(*first[0]) == padded  # outside the timed loop
    assert receiver.open(*first[0]) is None  # and the replay window is live
    plain = _pedantic(benchmark, receiver.open, _feeder(refill), PURE_ROUNDS)
    assert plain == padded


# ---------------------------------------------------------------- the benchmarks


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_seal(benchmark: BenchmarkFixture, impl: str, size: int) -> None:
    benchmark.group = f"aead-seal {size}B"
    if impl == "native":
        _native_seal(benchmark, size)
    else:
        _pure_seal(benchmark, size)
    _record(benchmark, "seal", impl, size, BATCH if impl == "native" else 1)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_open(benchmark: BenchmarkFixture, impl: str, size: int) -> None:
    benchmark.group = f"aead-open {size}B"
    if impl == "native":
        _native_open(benchmark, size)
    else:
        _pure_open(benchmark, size)
    _record(benchmark, "open", impl, size, BATCH if impl == "native" else 1)
