"""The allowed-IPs table on the C table of ``lpm.c``, for the native backend.

:class:`NativeAllowedIPs` has the API and the semantics of
:class:`pywg.allowedips.AllowedIPs` (the pure-Python trie, the reference):
longest-prefix match per family, one owner per prefix (inserting moves it),
each value's prefixes in the order they were assigned to it, values compared
by identity. The prefixes live in C (``NativeLpm``) with a uint32 id per
value; this class maps ids to the value objects and back. Nothing per prefix
lives in Python, so a table of 130,000 prefixes costs about 18 MiB and a
bulk insert of them (`insert_many`, one C call on a `PrefixList`) about 40 ms.

`pywg.device.Device` uses it when `pywg.backend` selects native; the native
plane copies it into its own table in one C call (``pywg_plane_routes_load``).

Ids: a value gets one when it first receives a prefix and keeps it while it
owns any; ids of values that own nothing are taken back when they are as
many as the owners (so the value objects are not kept alive for long), and
reused. Not thread-safe, like the pure table.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Generic, TypeVar

from pywg.allowedips import Network, Prefix, PrefixList, parse_prefix
from pywg.constants import PREFIX_RECORD_SIZE
from pywg.exceptions import LocalProtocolError
from pywg.redact import quote

from .lpm import NativeLpm

__all__ = ["NativeAllowedIPs"]

T = TypeVar("T")

_SPARE_IDS = 16  # ids of values without prefixes kept before a sweep, beyond one per owner


class NativeAllowedIPs(Generic[T]):
    """`pywg.allowedips.AllowedIPs`, stored in C.

    >>> table: NativeAllowedIPs[str] = NativeAllowedIPs()
    >>> table.insert("10.0.0.0/8", "peer-a")
    >>> table.insert("10.1.0.0/16", "peer-b")
    >>> table.lookup("10.1.2.3"), table.lookup("10.2.0.1"), table.lookup("11.0.0.1")
    ('peer-b', 'peer-a', None)
    """

    __slots__ = ("_free", "_ids", "_lpm", "_values", "version")

    def __init__(self) -> None:
        self._lpm = NativeLpm()
        self._ids: dict[int, int] = {}  # id(value) -> its id in C
        self._values: list[T | None] = []  # id in C -> value; None: free
        self._free: list[int] = []
        self.version = 0  # changes with every insert, remove and clear

    # -- mutation ---------------------------------------------------------

    def insert(self, network: str | IPv4Network | IPv6Network | Prefix, value: T) -> None:
        """Route ``network`` to ``value`` (see `pywg.allowedips.AllowedIPs.insert`)."""
        self._insert(parse_prefix(network).record(), value)

    def insert_many(self, prefixes: PrefixList, value: T) -> None:
        """`insert` of each prefix in order, all to ``value``, in one C call."""
        if len(prefixes):
            self._insert(prefixes.records, value)

    def remove(self, network: str | IPv4Network | IPv6Network | Prefix, value: T | None) -> bool:
        """Delete exactly ``network`` if ``value`` owns it; whether it did."""
        record = parse_prefix(network).record()
        return self._remove(record, value) > 0

    def remove_many(self, prefixes: PrefixList, value: T | None) -> int:
        """`remove` of each prefix; how many were removed."""
        return self._remove(prefixes.records, value) if len(prefixes) else 0

    def remove_by_value(self, value: T) -> int:
        """Delete every prefix owned by ``value``; how many."""
        ident = self._ids.get(id(value))
        if ident is None:
            return 0
        removed = self._lpm.remove_value(ident)
        self._release(ident)
        if removed:
            self.version += 1
        return removed

    def clear(self) -> None:
        """Remove every prefix of both families."""
        self._lpm.clear()
        self._ids.clear()
        self._values.clear()
        self._free.clear()
        self.version += 1

    # -- queries ----------------------------------------------------------

    def lookup(self, address: str | bytes | IPv4Address | IPv6Address) -> T | None:
        """Value of the longest prefix containing ``address``, or ``None``."""
        if isinstance(address, bytes | bytearray | memoryview):
            return self.lookup_packed(address)
        if isinstance(address, str):
            try:
                address = ipaddress.ip_address(address.strip())
            except ValueError:
                raise LocalProtocolError(f"invalid IP address {quote(address)}") from None
        if isinstance(address, IPv4Address | IPv6Address):
            return self.lookup_packed(address.packed)
        raise LocalProtocolError(
            "address must be a str, bytes, IPv4Address or IPv6Address, "
            f"not {type(address).__name__}"
        )

    def lookup_packed(self, address: bytes | bytearray | memoryview) -> T | None:
        """Look up a 4- or 16-byte address; any other length gives ``None``."""
        if len(address) not in (4, 16):
            return None
        found = self._lpm.lookup(bytes(address))
        return None if found is None else self._values[found]

    def networks_of(self, value: T) -> list[Network]:
        """The prefixes owned by ``value``, in the order they were assigned to it."""
        return [prefix.network() for prefix in self.prefixes_of(value)]

    def prefixes_of(self, value: T) -> list[Prefix]:
        """`networks_of`, as `Prefix`es."""
        ident = self._ids.get(id(value))
        if ident is None:
            return []
        return list(_decode(self._lpm.records_of(ident)))

    def records_of(self, value: T) -> PrefixList:
        """`prefixes_of`, packed."""
        ident = self._ids.get(id(value))
        found = PrefixList()
        if ident is not None:
            found.extend_records(self._lpm.records_of(ident))
        return found

    def items(self) -> Iterator[tuple[Network, T]]:
        """Every ``(network, value)``: IPv4 first, then IPv6, each sorted by address then length."""
        return iter([(prefix.network(), value) for prefix, value in self.prefixes()])

    def prefixes(self) -> Iterator[tuple[Prefix, T]]:
        """`items`, as ``(Prefix, value)``."""
        records, idents = self._lpm.dump()
        values = self._values
        return iter(
            [(prefix, values[i]) for prefix, i in zip(_decode(records), idents, strict=True)]  # type: ignore[misc]
        )

    def node_count(self) -> int:
        """Number of trie nodes, stored prefixes plus intermediate forks (at most ``2*len - 1``)."""
        return self._lpm.nodes

    def owner_count(self) -> int:
        """Number of distinct values that own at least one prefix."""
        return self._lpm.owners

    @property
    def native(self) -> NativeLpm:
        """The C table, whose values are the ids `values_by_id` names."""
        return self._lpm

    def values_by_id(self) -> list[T | None]:
        """The value of each id in the C table (None: unused)."""
        return list(self._values)

    def __len__(self) -> int:
        return len(self._lpm)

    def __repr__(self) -> str:
        return f"<AllowedIPs prefixes={len(self)} owners={self.owner_count()}>"

    # -- internals --------------------------------------------------------

    def _insert(self, records: bytes | bytearray, value: T) -> None:
        if value is None:
            raise LocalProtocolError("None cannot be stored in AllowedIPs (it means 'no route')")
        ident = self._ids.get(id(value))
        if ident is None:
            ident = self._free.pop() if self._free else len(self._values)
            if ident == len(self._values):
                self._values.append(None)
            self._values[ident] = value
            self._ids[id(value)] = ident
        try:
            self._lpm.insert_records(records, ident)
        finally:
            self.version += 1
            if len(self._ids) > 2 * self._lpm.owners + _SPARE_IDS:
                self._sweep()

    def _remove(self, records: bytes | bytearray, value: T | None) -> int:
        ident = None if value is None else self._ids.get(id(value))
        if ident is None:
            return 0
        removed = self._lpm.remove_records(records, ident)
        if removed:
            self.version += 1
            self._release(ident)
        return removed

    def _release(self, ident: int) -> None:
        """Take the id back if its value owns nothing any more."""
        if self._lpm.value_count(ident) == 0:
            value = self._values[ident]
            self._values[ident] = None
            del self._ids[id(value)]
            self._free.append(ident)

    def _sweep(self) -> None:
        for ident in [i for i, v in enumerate(self._values) if v is not None]:
            self._release(ident)

    def _validate(self) -> None:
        """Check the C structure and the id maps (for tests); raises AssertionError."""
        self._lpm._validate()
        live = {i for i, v in enumerate(self._values) if v is not None}
        assert live == set(self._ids.values()), "id maps out of step"
        assert all(self._ids[id(self._values[i])] == i for i in live), "id maps out of step"
        assert not live & set(self._free), "a free id is in use"
        assert sum(self._lpm.value_count(i) for i in live) == len(self), "a prefix without id"


def _decode(records: bytes) -> Iterator[Prefix]:
    for offset in range(0, len(records), PREFIX_RECORD_SIZE):
        yield Prefix.from_record(records, offset)
