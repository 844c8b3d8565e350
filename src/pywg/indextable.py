"""Receiver index table (whitepaper §5.4.2: the sender index is random 32 bits).

Maps our random 32-bit local indices to what they stand for: a handshake in
progress (its Peer) or an established Session. Incoming responses, cookie
replies and transport messages are routed by the receiver index they carry.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class IndexTable(Generic[T]):
    def __init__(self, rng: Callable[[int], bytes] = os.urandom) -> None:
        self._rng = rng
        self._table: dict[int, T] = {}

    def allocate(self, entry: T) -> int:
        """A fresh random index, unique in the table, bound to entry."""
        while True:
            index = int.from_bytes(self._rng(4), "little")
            if index not in self._table:
                self._table[index] = entry
                return index

    def replace(self, index: int, entry: T) -> None:
        """Rebind an existing index (a handshake's index becomes its session's)."""
        if index in self._table:
            self._table[index] = entry

    def get(self, index: int) -> T | None:
        return self._table.get(index)

    def remove(self, index: int, entry: T | None = None) -> None:
        """Free the index; when entry is given, only if it is still bound to it."""
        if entry is None or self._table.get(index) is entry:
            self._table.pop(index, None)

    def __len__(self) -> int:
        return len(self._table)

    def __contains__(self, index: object) -> bool:
        return index in self._table
