"""Anti-replay window for transport-data counters (whitepaper §5.4.6, RFC 6479).

Theory of operation
-------------------
Every transport message carries a 64-bit counter, used once per session. The
receiver remembers the highest counter it accepted and which of the recent
ones it has seen, in a ring of 128 words of 64 bits (8192 bits; Linux and
wireguard-go use the same sizes). A counter is accepted when it is

- below ``reject_after`` (``REJECT_AFTER_MESSAGES``; the Linux kernel's own
  limit is 2**64 - 8130, which tests pass explicitly),
- at most ``REPLAY_WINDOW_SIZE`` (8128) behind the highest accepted counter,
- and not seen before.

A new highest counter first zeroes the ring words between the old and the new
high mark (all of them when it jumps further than the ring), then moves the
mark. The ring keeps one word more than the window so that a whole word can be
zeroed at once without forgetting a counter still inside the window.

:meth:`~PureReplayWindow.check` must run only after the AEAD open succeeded:
a forged packet must never move the window. :meth:`~PureReplayWindow.would_accept`
gives the same verdict without changing anything, to drop obvious replays
before paying for a decryption.

Positions in the ring are ``counter + 1`` (as in the Linux kernel), so that 0
can mean "nothing accepted yet"; the verdicts do not depend on that choice.

Two implementations share this API and give identical verdicts:
:class:`PureReplayWindow` (this module, the reference) and
:class:`pywg._fast.replay.NativeReplayWindow` (C). :data:`ReplayWindow` is the
one :mod:`pywg.backend` selected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol

from pywg.backend import BACKEND
from pywg.constants import (
    REJECT_AFTER_MESSAGES,
    REPLAY_BITS_PER_WORD,
    REPLAY_BITS_TOTAL,
    REPLAY_WINDOW_SIZE,
)

__all__ = ["PureReplayWindow", "ReplayFilter", "ReplayWindow"]

_U64_MAX: Final = (1 << 64) - 1
_WORDS: Final = REPLAY_BITS_TOTAL // REPLAY_BITS_PER_WORD  # 128
_WORD_SHIFT: Final = REPLAY_BITS_PER_WORD.bit_length() - 1  # 6
_RING_MASK: Final = _WORDS - 1
_BIT_MASK: Final = REPLAY_BITS_PER_WORD - 1

_EMPTY_RING: Final = (0,) * _WORDS

# PureReplayWindow.check spells these as literals for speed.
assert (_WORD_SHIFT, _RING_MASK, _BIT_MASK) == (6, 127, 63)
assert REPLAY_WINDOW_SIZE == REPLAY_BITS_TOTAL - REPLAY_BITS_PER_WORD


class ReplayFilter(Protocol):
    """What both implementations offer; use it to annotate a window."""

    def check(self, counter: int) -> bool: ...

    def would_accept(self, counter: int) -> bool: ...

    def reset(self) -> None: ...

    @property
    def greatest(self) -> int: ...

    @property
    def reject_after(self) -> int: ...


class PureReplayWindow:
    """RFC 6479 anti-replay window in pure Python (the reference).

    *reject_after*: counters at or beyond it are rejected; defaults to
    ``REJECT_AFTER_MESSAGES`` (whitepaper, wireguard-go), must be in
    ``[0, 2**64 - 1]``. Counters are unsigned 64-bit values: a negative one
    raises ``ValueError``, one of 2**64 or more is rejected.
    """

    __slots__ = ("_next", "_reject_after", "_ring")

    def __init__(self, reject_after: int = REJECT_AFTER_MESSAGES) -> None:
        if not 0 <= reject_after <= _U64_MAX:
            raise ValueError(f"reject_after must be in [0, 2**64 - 1], got {reject_after}")
        self._reject_after = reject_after
        self._next = 0  # greatest accepted + 1; 0 before the first
        self._ring = [0] * _WORDS

    def check(self, counter: int) -> bool:
        """Validate and mark *counter*; call only after the AEAD open succeeded.

        True if *counter* is new and inside the window: it is then recorded,
        and if it is the highest so far the window moves up to it.
        """
        # Hot path: 6, 127 and 63 are _WORD_SHIFT, _RING_MASK and _BIT_MASK
        # (checked at import), as literals to save a global lookup each.
        if counter >= self._reject_after:
            return False
        if counter < 0:
            raise ValueError(f"counter must be >= 0, got {counter}")
        pos = counter + 1
        ring = self._ring
        top = self._next
        if pos > top:
            # RFC 6479: zero the words after the old high mark's, up to the new one's.
            old_word = top >> 6
            new_word = pos >> 6
            if new_word != old_word:
                if new_word - old_word >= _WORDS:
                    ring[:] = _EMPTY_RING
                else:
                    for i in range(old_word + 1, new_word + 1):
                        ring[i & 127] = 0
            self._next = pos
        elif top - pos > REPLAY_WINDOW_SIZE:
            return False  # too old
        index = (pos >> 6) & 127
        bit = 1 << (pos & 63)
        word = ring[index]
        if word & bit:
            return False  # seen
        ring[index] = word | bit
        return True

    def would_accept(self, counter: int) -> bool:
        """The verdict :meth:`check` would give, without changing the window."""
        if counter >= self._reject_after:
            return False
        if counter < 0:
            raise ValueError(f"counter must be >= 0, got {counter}")
        pos = counter + 1
        top = self._next
        if pos > top:
            return True  # a new high: nothing is recorded above the high mark
        if top - pos > REPLAY_WINDOW_SIZE:
            return False  # too old
        return not self._ring[(pos >> 6) & 127] & (1 << (pos & 63))

    def reset(self) -> None:
        """Forget every counter (a new session starts from nothing)."""
        self._next = 0
        self._ring[:] = _EMPTY_RING

    @property
    def greatest(self) -> int:
        """The highest counter accepted so far, or -1 before the first."""
        return self._next - 1

    @property
    def reject_after(self) -> int:
        """Counters at or beyond this are always rejected."""
        return self._reject_after

    def __repr__(self) -> str:
        return f"{type(self).__name__}(greatest={self.greatest}, reject_after={self.reject_after})"


if TYPE_CHECKING:
    # For the type checker both are one API; this alias keeps ReplayWindow
    # usable in annotations. The assignment below checks the native class.
    from pywg._fast.replay import NativeReplayWindow

    ReplayWindow = PureReplayWindow
    _native_conforms: type[ReplayFilter] = NativeReplayWindow
    _pure_conforms: type[ReplayFilter] = PureReplayWindow
elif BACKEND == "native":
    from pywg._fast.replay import NativeReplayWindow as ReplayWindow
else:
    ReplayWindow = PureReplayWindow
