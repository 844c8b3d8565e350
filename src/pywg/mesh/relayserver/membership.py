"""Who may use the relay: the membership source it asks, and two implementations.

The relay asks a `Membership` for a WireGuard key ("is it a member, with
which control key and node id?") and for a node id. It asks from the
datagram path, so an implementation answers from memory; one that follows
an outside record (the coordinator's roster, a file) refreshes its copy
on its own time. `StaticMembership` is the in-memory one; `FileMembership`
follows a JSON file (`pywg relay serve --members`) in the format of the
coordinator's members list (`schema.MembersList`, the version optional):

    {"members": [{"public_key": "<base64>", "control_key": "<base64>", "node_id": 1}, ...]}

`relayserver.coordinated.CoordinatorMembership` follows the coordinator.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable
from typing import Protocol

from ..schema import Member, MembersList, SchemaError, decode

log = logging.getLogger(__name__)


class Membership(Protocol):
    """The relay's source of members; both answers come from memory."""

    def by_key(self, public_key: bytes) -> Member | None: ...

    def by_id(self, node_id: int) -> Member | None: ...


class StaticMembership:
    """Members held in memory; `replace` swaps them all at once."""

    def __init__(self, members: Iterable[Member] = ()) -> None:
        self._by_key: dict[bytes, Member] = {}
        self._by_id: dict[int, Member] = {}
        self.replace(members)

    def by_key(self, public_key: bytes) -> Member | None:
        return self._by_key.get(public_key)

    def by_id(self, node_id: int) -> Member | None:
        return self._by_id.get(node_id)

    def replace(self, members: Iterable[Member]) -> None:
        """Every member at once; ValueError (and nothing changed) if a key or id repeats."""
        by_key: dict[bytes, Member] = {}
        by_id: dict[int, Member] = {}
        for member in members:
            if member.public_key in by_key or member.node_id in by_id:
                raise ValueError(f"node id {member.node_id} or its key appears twice")
            by_key[member.public_key] = member
            by_id[member.node_id] = member
        self._by_key, self._by_id = by_key, by_id

    def add(self, member: Member) -> None:
        self.replace([*(m for m in self._by_key.values() if m.node_id != member.node_id), member])

    def remove(self, public_key: bytes) -> None:
        self.replace(m for m in self._by_key.values() if m.public_key != public_key)

    def __len__(self) -> int:
        return len(self._by_key)


def parse_members(text: str) -> list[Member]:
    """The members in a members file (`schema.MembersList`, the version optional);
    ValueError (saying where) if it is not one."""
    try:
        return list(MembersList.from_json(decode(text.encode("utf-8"))).members)
    except SchemaError as exc:
        raise ValueError(str(exc)) from None


class FileMembership(StaticMembership):
    """The members of a JSON file, read again when it changes (`follow`)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path
        self._stamp: tuple[int, int, int] | None = None
        if not self.reload():
            raise ValueError(f"cannot read the members file {path}")

    def reload(self) -> bool:
        """Read the file if it changed; False (members kept) if it cannot be read or parsed."""
        try:
            info = os.stat(self._path)
            stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
            if stamp == self._stamp:
                return True
            with open(self._path, encoding="utf-8") as handle:
                self.replace(parse_members(handle.read()))
        except (OSError, ValueError) as exc:
            log.warning("relay: members file %s not taken: %s", self._path, exc)
            return False
        self._stamp = stamp
        log.info("relay: %d members from %s", len(self), self._path)
        return True

    async def follow(self, interval: float = 1.0) -> None:
        """Reload every `interval` seconds, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.reload()
