"""Login attempts per source address: after MAX_FAILURES wrong ones within WINDOW, wait.

A source that failed MAX_FAILURES times in the last WINDOW seconds is
refused (without a check of what it sent) until the oldest of those
failures is WINDOW old. At most MAX_SOURCES addresses are tracked (the
oldest tracked goes first), so a flood of addresses costs bounded memory.
A successful login clears the source's failures.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Final

MAX_FAILURES: Final = 5
WINDOW: Final = 300.0  # seconds
MAX_SOURCES: Final = 4096


class LoginLimiter:
    """Failed logins by source address; `clock` is monotonic seconds (injectable)."""

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, source: str) -> float:
        """Seconds until `source` may try again; 0 if it may now."""
        failures = self._recent(source)
        if failures is None or len(failures) < self.max_failures:
            return 0.0
        return max(failures[0] + self.window - self.clock(), 0.0)

    def failed(self, source: str) -> None:
        failures = self._recent(source)
        if failures is None:
            while len(self._failures) >= MAX_SOURCES:
                del self._failures[next(iter(self._failures))]
            failures = self._failures[source] = deque(maxlen=self.max_failures)
        failures.append(self.clock())

    def succeeded(self, source: str) -> None:
        self._failures.pop(source, None)

    def clear(self) -> None:
        self._failures.clear()

    def _recent(self, source: str) -> deque[float] | None:
        """The failures of `source` within the window (older ones dropped)."""
        failures = self._failures.get(source)
        if failures is None:
            return None
        limit = self.clock() - self.window
        while failures and failures[0] <= limit:
            failures.popleft()
        if not failures:
            del self._failures[source]
            return None
        return failures
