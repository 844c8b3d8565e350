"""Anti-replay window (pywg.replay, pywg._fast.replay) and backend selection.

Known answers: vectors/replay_counter.json (Linux counter selftest and
wireguard-go replay tests, outcomes only), run on both backends and with both
REJECT_AFTER_MESSAGES values; then a property test that the C and Python
windows agree on arbitrary sequences.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.known_answers import load
from pywg import _fast, backend
from pywg._fast.replay import NativeReplayWindow
from pywg.constants import (
    REJECT_AFTER_MESSAGES,
    REPLAY_BITS_PER_WORD,
    REPLAY_BITS_TOTAL,
    REPLAY_WINDOW_SIZE,
)
from pywg.replay import PureReplayWindow, ReplayFilter, ReplayWindow

VECTORS = load("replay_counter.json")
U64 = 1 << 64
# The Linux kernel rejects from U64_MAX - COUNTER_WINDOW_SIZE - 1 on; wireguard-go
# and the whitepaper from 2**64 - 2**13 - 1 (= pywg's REJECT_AFTER_MESSAGES).
REJECT_LINUX = VECTORS["constants"]["REJECT_AFTER_MESSAGES_linux"]
REJECT_GO = VECTORS["constants"]["REJECT_AFTER_MESSAGES_go_and_whitepaper"]
REJECT_AFTER = {"linux": REJECT_LINUX, "go": REJECT_GO}

NATIVE_SKIP = pytest.mark.skipif(
    not backend.native_available(),
    reason=f"native extension not importable: {backend.native_unavailable_reason()}",
)
BACKENDS = [pytest.param("pure", id="pure"), pytest.param("native", id="native", marks=NATIVE_SKIP)]
WINDOW_CLASSES: dict[str, Callable[..., ReplayFilter]] = {
    "pure": PureReplayWindow,
    "native": NativeReplayWindow,
}


@pytest.fixture(params=BACKENDS)
def make_window(request: pytest.FixtureRequest) -> Callable[..., ReplayFilter]:
    return WINDOW_CLASSES[request.param]


def expand(sequence: list[Any]) -> Iterator[tuple[int, bool]]:
    """[counter, accept] pairs, with {"range": [first, last_inclusive, step], "expect": b} runs."""
    for item in sequence:
        if isinstance(item, dict):
            first, last, step = item["range"]
            for counter in range(first, last + (1 if step > 0 else -1), step):
                yield counter, item["expect"]
        else:
            counter, accept = item
            yield counter, accept


def vector_cases() -> Iterator[Any]:
    for name, sequence in VECTORS["tests"].items():
        if name.startswith("main_sequence_"):
            # main_sequence_linux_reject / main_sequence_go_reject: one limit each
            variant = name.removeprefix("main_sequence_").removesuffix("_reject")
            yield pytest.param(name, variant, sequence, id=f"{name}")
        else:
            for variant in REJECT_AFTER:  # the others hold under either limit
                yield pytest.param(name, variant, sequence, id=f"{name}-{variant}")


# --- known answers ---------------------------------------------------------


def test_vector_constants_match_ours() -> None:
    c = VECTORS["constants"]
    assert c["COUNTER_BITS_TOTAL"] == REPLAY_BITS_TOTAL
    assert c["BITS_PER_LONG"] == REPLAY_BITS_PER_WORD
    assert c["COUNTER_WINDOW_SIZE"] == REPLAY_WINDOW_SIZE
    assert REJECT_GO == REJECT_AFTER_MESSAGES
    assert REJECT_LINUX == U64 - 1 - REPLAY_WINDOW_SIZE - 1
    assert {n.removeprefix("main_sequence_") for n in VECTORS["tests"] if "main" in n} == {
        "linux_reject",
        "go_reject",
    }


@pytest.mark.parametrize(("name", "variant", "sequence"), list(vector_cases()))
def test_vectors(
    make_window: Callable[..., ReplayFilter], name: str, variant: str, sequence: list[Any]
) -> None:
    window = make_window(reject_after=REJECT_AFTER[variant])
    greatest = -1
    for step, (counter, expected) in enumerate(expand(sequence)):
        where = f"{name} step {step}: counter {counter}"
        assert window.would_accept(counter) is expected, where
        assert window.check(counter) is expected, where
        if expected:
            greatest = max(greatest, counter)
        assert window.greatest == greatest, where


# --- behaviour ------------------------------------------------------------


def test_fresh_window(make_window: Callable[..., ReplayFilter]) -> None:
    window = make_window()
    assert window.greatest == -1
    assert window.reject_after == REJECT_AFTER_MESSAGES
    assert window.would_accept(0)
    assert window.greatest == -1
    assert window.check(0)
    assert window.greatest == 0
    assert not window.check(0)


def test_reset_forgets_everything(make_window: Callable[..., ReplayFilter]) -> None:
    window = make_window(reject_after=1000)
    for counter in (5, 3, 999):
        assert window.check(counter)
    window.reset()
    assert window.greatest == -1
    assert window.reject_after == 1000
    for counter in (3, 5, 999):
        assert window.check(counter)
    assert not window.check(1000)


def test_window_edge(make_window: Callable[..., ReplayFilter]) -> None:
    # Exactly REPLAY_WINDOW_SIZE behind the high mark is in, one more is out,
    # wherever the high mark sits in its word.
    for top in range(100_000, 100_000 + 2 * REPLAY_BITS_PER_WORD + 1):
        window = make_window()
        assert window.check(top)
        assert not window.would_accept(top - REPLAY_WINDOW_SIZE - 1)
        assert not window.check(top - REPLAY_WINDOW_SIZE - 1)
        assert window.would_accept(top - REPLAY_WINDOW_SIZE)
        assert window.check(top - REPLAY_WINDOW_SIZE)
        assert not window.check(top - REPLAY_WINDOW_SIZE)


def test_jump_past_the_ring_forgets_old_bits(make_window: Callable[..., ReplayFilter]) -> None:
    window = make_window()
    for counter in range(200):
        assert window.check(counter)
    # One lap of the ring later, the same ring positions are fresh again.
    for jump in (REPLAY_BITS_TOTAL, 3 * REPLAY_BITS_TOTAL + 17, 1 << 40):
        top = window.greatest + jump
        assert window.check(top)
        for back in range(0, 200):
            assert window.check(top - 1 - back), back
        assert not window.check(top)


def test_near_the_top_of_u64(make_window: Callable[..., ReplayFilter]) -> None:
    window = make_window(reject_after=U64 - 1)
    assert window.check(U64 - 2)
    assert not window.check(U64 - 1)
    assert not window.check(U64)
    assert not window.would_accept(U64 + 12345)
    assert window.check(U64 - 2 - REPLAY_WINDOW_SIZE)
    assert not window.check(U64 - 3 - REPLAY_WINDOW_SIZE)
    assert window.greatest == U64 - 2


def test_reject_after_zero_rejects_all(make_window: Callable[..., ReplayFilter]) -> None:
    window = make_window(reject_after=0)
    assert not window.check(0)
    assert not window.would_accept(1)
    assert window.greatest == -1


def test_bad_arguments(make_window: Callable[..., ReplayFilter]) -> None:
    with pytest.raises(ValueError):
        make_window(reject_after=-1)
    with pytest.raises(ValueError):
        make_window(reject_after=U64)
    window = make_window()
    with pytest.raises(ValueError):
        window.check(-1)
    with pytest.raises(ValueError):
        window.would_accept(-1)
    assert window.greatest == -1


def test_greatest_is_read_only(make_window: Callable[..., ReplayFilter]) -> None:
    window = make_window()
    with pytest.raises(AttributeError):
        window.greatest = 5  # type: ignore[misc]
    assert "greatest=-1" in repr(window)


# --- against a model, and C against Python -----------------------------------


class SetModel:
    """The specification without the ring: accept a counter below the limit,
    at most REPLAY_WINDOW_SIZE behind the highest accepted one, and unseen."""

    def __init__(self, reject_after: int) -> None:
        self.reject_after = reject_after
        self.greatest = -1
        self.seen: set[int] = set()

    def check(self, counter: int) -> bool:
        if counter >= self.reject_after or counter < self.greatest - REPLAY_WINDOW_SIZE:
            return False
        if counter in self.seen:
            return False
        self.seen.add(counter)
        if counter > self.greatest:
            self.greatest = counter
            if len(self.seen) > 4 * REPLAY_BITS_TOTAL:
                self.seen = {c for c in self.seen if c >= counter - REPLAY_WINDOW_SIZE}
        return True


def test_in_order_over_several_laps(make_window: Callable[..., ReplayFilter]) -> None:
    # Each ring word is reused every 8192 counters and must be cleared first.
    window = make_window()
    for counter in range(3 * REPLAY_BITS_TOTAL + 100):
        assert window.check(counter), counter
        assert not window.would_accept(counter), counter


def test_every_jump_length(make_window: Callable[..., ReplayFilter]) -> None:
    # Jumps of 0..130 ring words (plus odd offsets) after a full ring of history.
    for words in range(131):
        for offset in (-1, 0, 37):
            window, model = make_window(), SetModel(REJECT_AFTER_MESSAGES)
            history = range(REPLAY_BITS_TOTAL + 500)
            assert all(map(window.check, history))
            model.seen, model.greatest = set(history), history[-1]
            top = model.greatest + max(1, words * REPLAY_BITS_PER_WORD + offset)
            for counter in [top, *range(top - REPLAY_BITS_TOTAL - 70, top + 70, 61)]:
                assert window.check(counter) == model.check(counter), (words, offset, counter)


_INTERESTING = [
    0,
    1,
    63,
    64,
    65,
    REPLAY_WINDOW_SIZE,
    REPLAY_WINDOW_SIZE + 1,
    REPLAY_BITS_TOTAL,
    REPLAY_BITS_TOTAL + 1,
    REJECT_GO - 1,
    REJECT_GO,
    REJECT_LINUX - 1,
    REJECT_LINUX,
    U64 - 2,
    U64 - 1,
    U64,
    U64 + 1,
]

# An op is ("abs", counter); ("rel", delta from the current greatest);
# ("run", n): the next n counters in order; ("probe", counter) / ("probe_rel",
# delta): a would_accept only, which must change nothing.
_counter = st.one_of(
    st.sampled_from(_INTERESTING),
    st.integers(0, U64 - 1),
    st.integers(U64 - 3 * REPLAY_BITS_TOTAL, U64 + 2),
    st.integers(0, 3 * REPLAY_BITS_TOTAL),
)
_delta = st.one_of(
    st.integers(-REPLAY_BITS_TOTAL - 70, 130),
    st.sampled_from(
        [
            -REPLAY_WINDOW_SIZE - 1,
            -REPLAY_WINDOW_SIZE,
            -REPLAY_WINDOW_SIZE + 1,
            REPLAY_BITS_TOTAL,
            REPLAY_BITS_TOTAL + 64,
        ]
    ),
    # whole ring words, a little off: every clearing length
    st.builds(
        lambda w, o: w * REPLAY_BITS_PER_WORD + o, st.integers(-130, 130), st.integers(-3, 3)
    ),
    st.integers(-(1 << 62), 1 << 62),
)
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("abs"), _counter),
        st.tuples(st.just("rel"), _delta),
        st.tuples(st.just("rel"), _delta),
        st.tuples(st.just("run"), st.integers(1, 3 * REPLAY_BITS_PER_WORD)),
        st.tuples(st.just("probe"), _counter),
        st.tuples(st.just("probe_rel"), _delta),
    ),
    max_size=100,
)
_reject_after = st.one_of(
    st.sampled_from([REJECT_GO, REJECT_LINUX, U64 - 1, 0, 1, 100, 20_000]),
    st.integers(0, U64 - 1),
)


def _counters(kind: str, value: int, greatest: int) -> list[int]:
    if kind == "run":
        return list(range(greatest + 1, greatest + 1 + value))
    if kind.endswith("rel"):
        return [max(0, greatest + value)]
    return [value]


@settings(max_examples=300, deadline=None)
@given(reject_after=_reject_after, ops=_ops)
def test_pure_matches_model(reject_after: int, ops: list[tuple[str, int]]) -> None:
    window, model = PureReplayWindow(reject_after), SetModel(reject_after)
    for kind, value in ops:
        for counter in _counters(kind, value, model.greatest):
            if kind.startswith("probe"):
                window.would_accept(counter)
                continue
            assert window.check(counter) == model.check(counter), counter
            assert window.greatest == model.greatest


@NATIVE_SKIP
@settings(max_examples=300, deadline=None)
@given(reject_after=_reject_after, ops=_ops)
def test_native_matches_pure(reject_after: int, ops: list[tuple[str, int]]) -> None:
    pure, native = PureReplayWindow(reject_after), NativeReplayWindow(reject_after)
    # The same checks without any probes in between: probes must change nothing.
    pure_plain, native_plain = PureReplayWindow(reject_after), NativeReplayWindow(reject_after)
    windows = (pure, native, pure_plain, native_plain)
    model = SetModel(reject_after)
    for kind, value in ops:
        for counter in _counters(kind, value, pure.greatest):
            if kind.startswith("probe"):
                before = (pure.greatest, native.greatest)
                assert pure.would_accept(counter) == native.would_accept(counter), counter
                assert (pure.greatest, native.greatest) == before
                continue
            predicted = [w.would_accept(counter) for w in windows]
            verdicts = [w.check(counter) for w in windows]
            expected = model.check(counter)
            assert predicted == verdicts == [expected] * 4, (counter, verdicts, expected)
            assert {w.greatest for w in windows} == {model.greatest}
            # A counter just checked is never accepted again.
            assert not any(w.would_accept(counter) for w in windows)


# --- backend selection -------------------------------------------------------


def test_replay_window_is_the_selected_backend() -> None:
    expected = NativeReplayWindow if backend.BACKEND == "native" else PureReplayWindow
    assert ReplayWindow is expected
    assert backend.BACKEND in ("native", "pure")
    if os.environ.get(backend.ENV_VAR, "auto") in ("", "auto"):
        assert ("native" if backend.native_available() else "pure") == backend.BACKEND


def test_select_backend_values() -> None:
    assert backend.select_backend("pure") == "pure"
    assert backend.select_backend(" PURE ") == "pure"
    auto = "native" if backend.native_available() else "pure"
    assert backend.select_backend(None) == auto
    assert backend.select_backend("") == auto
    assert backend.select_backend("auto") == auto
    with pytest.raises(ValueError, match="PYWG_BACKEND"):
        backend.select_backend("fast")


def test_native_requested_but_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_fast, "AVAILABLE", False)
    monkeypatch.setattr(_fast, "IMPORT_ERROR", ModuleNotFoundError("No module named 'x'"))
    assert not backend.native_available()
    assert backend.select_backend("auto") == "pure"
    with pytest.raises(backend.BackendUnavailableError, match=r"apt install gcc python3-dev"):
        backend.select_backend("native")
    assert issubclass(backend.BackendUnavailableError, ImportError)


@pytest.mark.parametrize("choice", ["pure", pytest.param("native", marks=NATIVE_SKIP)])
def test_env_var_selects_in_a_fresh_process(choice: str) -> None:
    code = "import pywg.replay as r, pywg.backend as b; print(b.BACKEND, r.ReplayWindow.__name__)"
    env = {**os.environ, backend.ENV_VAR: choice}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [choice, f"{choice.capitalize()}ReplayWindow"]


def test_env_var_rejects_unknown_value() -> None:
    env = {**os.environ, backend.ENV_VAR: "turbo"}
    proc = subprocess.run(
        [sys.executable, "-c", "import pywg.backend"], env=env, capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert "PYWG_BACKEND='turbo'" in proc.stderr
