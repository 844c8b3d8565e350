"""Native anti-replay window: a thin wrapper over ``replay.c``.

Same API and verdicts as :class:`pywg.replay.PureReplayWindow`. The C state
(``struct pywg_replay``, 1 KiB ring) is allocated once per window with
``ffi.new`` and freed with the wrapper; calls pass plain ints, so no call
allocates.

Not thread-safe: cffi releases the GIL around each C call, so two threads
must not use one window at once (the owner of a keypair serialises receives).
"""

from __future__ import annotations

from typing import Any, Final

from pywg import _fast
from pywg.constants import REJECT_AFTER_MESSAGES

__all__ = ["NativeReplayWindow"]

_U64_MAX: Final = (1 << 64) - 1

# Bound once: a module global is cheaper to reach than lib's attributes.
_lib: Any = _fast.lib
_check: Any = None if _lib is None else _lib.pywg_replay_check
_would_accept: Any = None if _lib is None else _lib.pywg_replay_would_accept


def _out_of_range(counter: int) -> bool:
    """Verdict for a counter the C side cannot take (outside uint64)."""
    if counter < 0:
        raise ValueError(f"counter must be >= 0, got {counter}")
    return False  # >= 2**64: past any reject_after


class NativeReplayWindow:
    """RFC 6479 anti-replay window in C; see :class:`pywg.replay.PureReplayWindow`."""

    __slots__ = ("_state",)

    def __init__(self, reject_after: int = REJECT_AFTER_MESSAGES) -> None:
        ffi, lib = _fast.require()
        if not 0 <= reject_after <= _U64_MAX:
            raise ValueError(f"reject_after must be in [0, 2**64 - 1], got {reject_after}")
        self._state: Any = ffi.new("struct pywg_replay *")
        lib.pywg_replay_init(self._state, reject_after)

    def check(self, counter: int) -> bool:
        """Validate and mark *counter*; call only after the AEAD open succeeded."""
        try:
            verdict: bool = _check(self._state, counter)
        except OverflowError:
            return _out_of_range(counter)
        return verdict

    def would_accept(self, counter: int) -> bool:
        """The verdict :meth:`check` would give, without changing the window."""
        try:
            verdict: bool = _would_accept(self._state, counter)
        except OverflowError:
            return _out_of_range(counter)
        return verdict

    def reset(self) -> None:
        """Forget every counter (a new keypair starts from nothing)."""
        _lib.pywg_replay_reset(self._state)

    @property
    def greatest(self) -> int:
        """The highest counter accepted so far, or -1 before the first."""
        next_position: int = self._state.next
        return next_position - 1

    @property
    def reject_after(self) -> int:
        """Counters at or beyond this are always rejected."""
        limit: int = self._state.reject_after
        return limit

    def __repr__(self) -> str:
        return f"{type(self).__name__}(greatest={self.greatest}, reject_after={self.reject_after})"
