"""Who a datagram or connection comes from, for the per-source limits: an IPv4 address, an
IPv6 /64 (as `pywg.ratelimiter` keys them), and the count of unauthenticated connections."""

from __future__ import annotations

import ipaddress

from ...endpoint import AddressLike, normalize_endpoint


def source_key(address: AddressLike | tuple[object, ...]) -> bytes:
    """The packed address of a socket address (IPv4-mapped IPv6 as IPv4), for limits."""
    host = normalize_endpoint(address)[0]
    return ipaddress.ip_address(host.partition("%")[0]).packed


class PreauthSlot:
    """One unauthenticated connection, counted until `release` (idempotent)."""

    def __init__(self, owner: PreauthSlots, key: bytes) -> None:
        self._owner: PreauthSlots | None = owner
        self._key = key

    def release(self) -> None:
        if self._owner is not None:
            self._owner._release(self._key)
            self._owner = None


class PreauthSlots:
    """At most `total` unauthenticated connections, `per_source` from one source."""

    def __init__(self, total: int, per_source: int) -> None:
        self._total = total
        self._per_source = per_source
        self._counts: dict[bytes, int] = {}
        self.taken = 0

    @staticmethod
    def _group(key: bytes) -> bytes:
        return key if len(key) == 4 else key[:8]  # IPv6: the /64

    def acquire(self, key: bytes) -> PreauthSlot | None:
        group = self._group(key)
        count = self._counts.get(group, 0)
        if self.taken >= self._total or count >= self._per_source:
            return None
        self._counts[group] = count + 1
        self.taken += 1
        return PreauthSlot(self, group)

    def _release(self, group: bytes) -> None:
        self.taken -= 1
        count = self._counts[group] - 1
        if count:
            self._counts[group] = count
        else:
            del self._counts[group]
