"""Time bounds for tests that drive real networks: a test that hangs fails instead, a wait ends."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the test (main thread) once `seconds` have passed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"test exceeded its time limit of {seconds:g} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def wait_for(predicate: Callable[[], bool], deadline: float = 10.0, step: float = 0.02) -> bool:
    """Poll `predicate` until it is true or `deadline` seconds pass (bounded in count too)."""
    end = time.monotonic() + deadline
    for _ in range(int(deadline / step) + 2):
        if predicate():
            return True
        if time.monotonic() >= end:
            break
        time.sleep(step)
    return predicate()
