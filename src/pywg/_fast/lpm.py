"""Native longest-prefix-match table: a thin wrapper over ``lpm.c``.

The C table is what the native data plane consults per packet (cryptokey
routing, whitepaper §3), and what the core's table is kept in with the
native backend (`pywg._fast.routes`, which maps its ids to peers); this
wrapper serves that, tests, benchmarks and tools. The bulk forms take and
give packed prefix records (`pywg.allowedips.PrefixList`).
Semantics match :class:`pywg.allowedips.AllowedIPs` except that values are
32-bit unsigned ints (peer ids) rather than objects, and ``remove`` deletes a
prefix whatever its value. See ``lpm.h`` for the structure and its costs.

One ``struct pywg_lpm`` per wrapper, freed with it. Not thread-safe: cffi
releases the GIL around each C call, so two threads must not use one table
at once if either of them changes it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, Final, Literal

from pywg import _fast
from pywg.constants import PREFIX_RECORD_SIZE

__all__ = ["UNMAPPED", "VALUE_MAX", "NativeLpm"]

VALUE_MAX: Final = (1 << 32) - 1
"""Values are uint32_t in C."""

UNMAPPED: Final = VALUE_MAX
"""What `NativeLpm.load_mapped` (``pywg_lpm_clone``) gives a value its map leaves out."""

_WHICH: Final = {"source": 0, "destination": 1}

# Bound once: a module global is cheaper to reach than lib's attributes.
_lib: Any = _fast.lib
_ffi: Any = _fast.ffi
_lookup: Any = None if _lib is None else _lib.pywg_lpm_lookup


def _record_count(records: bytes | bytearray) -> int:
    if len(records) % PREFIX_RECORD_SIZE:
        raise ValueError(f"prefix records are {PREFIX_RECORD_SIZE} bytes each")
    return len(records) // PREFIX_RECORD_SIZE


def _network(network: str | IPv4Network | IPv6Network) -> IPv4Network | IPv6Network:
    """Parse a prefix, host bits masked off; a bare address is a host route."""
    if isinstance(network, IPv4Network | IPv6Network):
        return network
    if isinstance(network, str):
        try:
            return ipaddress.ip_network(network.strip(), strict=False)
        except ValueError as exc:
            raise ValueError(f"invalid network {network!r}: {exc}") from None
    raise TypeError(
        f"network must be a str, IPv4Network or IPv6Network, not {type(network).__name__}"
    )


def _check_value(value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"value must be an int, not {type(value).__name__}")
    if not 0 <= value <= VALUE_MAX:
        raise ValueError(f"value must be in [0, 2**32 - 1], got {value}")
    return value


def _packed(address: str | bytes | bytearray | memoryview | IPv4Address | IPv6Address) -> bytes:
    """A 4- or 16-byte network-order address."""
    if isinstance(address, bytes | bytearray | memoryview):
        packed = bytes(address)
        if len(packed) not in (4, 16):
            raise ValueError(f"a packed address is 4 or 16 bytes, got {len(packed)}")
        return packed
    if isinstance(address, str):
        try:
            return ipaddress.ip_address(address.strip()).packed
        except ValueError as exc:
            raise ValueError(f"invalid IP address {address!r}: {exc}") from None
    if isinstance(address, IPv4Address | IPv6Address):
        return address.packed
    raise TypeError(
        f"address must be a str, bytes, IPv4Address or IPv6Address, not {type(address).__name__}"
    )


class NativeLpm:
    """Longest-prefix-match table in C mapping IPv4/IPv6 prefixes to uint32 values.

    >>> table = NativeLpm()
    >>> table.insert("10.0.0.0/8", 1)
    >>> table.insert("10.1.0.0/16", 2)
    >>> table.lookup("10.1.2.3"), table.lookup("10.2.0.1"), table.lookup("11.0.0.1")
    (2, 1, None)
    """

    __slots__ = ("_table",)

    def __init__(self) -> None:
        ffi, lib = _fast.require()
        table = lib.pywg_lpm_new()
        if table == ffi.NULL:
            raise MemoryError("pywg_lpm_new failed")
        self._table: Any = ffi.gc(table, lib.pywg_lpm_free)

    # -- mutation ---------------------------------------------------------

    def insert(self, network: str | IPv4Network | IPv6Network, value: int) -> None:
        """Route ``network`` (host bits masked off) to ``value``, replacing its old value."""
        net = _network(network)
        value = _check_value(value)
        packed = net.network_address.packed
        if _lib.pywg_lpm_insert(self._table, net.version, packed, net.prefixlen, value) != 0:
            raise MemoryError(f"pywg_lpm_insert({net}) failed: out of memory")

    def remove(self, network: str | IPv4Network | IPv6Network) -> bool:
        """Delete exactly ``network`` (host bits masked off); whether it was there."""
        net = _network(network)
        packed = net.network_address.packed
        removed: int = _lib.pywg_lpm_remove(self._table, net.version, packed, net.prefixlen)
        return removed == 1

    def remove_value(self, value: int) -> int:
        """Delete every prefix routed to ``value``; how many."""
        count: int = _lib.pywg_lpm_remove_value(self._table, _check_value(value))
        return count

    def clear(self) -> None:
        """Delete every prefix of both families and release their memory."""
        _lib.pywg_lpm_clear(self._table)

    # -- bulk forms, on packed records (pywg.allowedips.PrefixList) ---------

    def insert_records(self, records: bytes | bytearray, value: int) -> None:
        """`insert` of each record in order, all to ``value``; all or nothing."""
        count = _record_count(records)
        data = _ffi.from_buffer("uint8_t[]", records)
        if _lib.pywg_lpm_insert_many(self._table, data, count, _check_value(value)) != 0:
            raise MemoryError("pywg_lpm_insert_many failed: out of memory or a bad record")

    def remove_records(self, records: bytes | bytearray, value: int) -> int:
        """Delete each record's prefix if it has ``value``; how many were deleted."""
        count = _record_count(records)
        data = _ffi.from_buffer("uint8_t[]", records)
        removed: int = _lib.pywg_lpm_remove_many(self._table, data, count, _check_value(value))
        if removed < 0:
            raise ValueError("a malformed prefix record")
        return removed

    def value_count(self, value: int) -> int:
        """How many prefixes have ``value``."""
        count: int = _lib.pywg_lpm_value_count(self._table, _check_value(value))
        return count

    def records_of(self, value: int) -> bytes:
        """The prefixes of ``value`` as records, in the order they were assigned to it."""
        count = self.value_count(value)
        out = _ffi.new("uint8_t[]", max(count, 1) * PREFIX_RECORD_SIZE)
        _lib.pywg_lpm_prefixes_of(self._table, value, out, count)
        return bytes(_ffi.buffer(out, count * PREFIX_RECORD_SIZE))

    def dump(self) -> tuple[bytes, list[int]]:
        """Every prefix as a record, and their values: IPv4 then IPv6, in address order."""
        count = len(self)
        out = _ffi.new("uint8_t[]", max(count, 1) * PREFIX_RECORD_SIZE)
        values = _ffi.new("uint32_t[]", max(count, 1))
        written: int = _lib.pywg_lpm_dump(self._table, out, values, count)
        return bytes(_ffi.buffer(out, written * PREFIX_RECORD_SIZE)), list(values[0:written])

    @property
    def nodes(self) -> int:
        """Trie nodes in use: stored prefixes and forks (at most 2 * len - 1)."""
        count: int = _lib.pywg_lpm_nodes(self._table)
        return count

    @property
    def owners(self) -> int:
        """Values that hold at least one prefix."""
        count: int = _lib.pywg_lpm_owners(self._table)
        return count

    @property
    def handle(self) -> Any:
        """The ``struct pywg_lpm *`` (for the native plane's mirror; see `pywg_lpm_clone`)."""
        return self._table

    def copy(self, mapping: list[int] | None = None) -> NativeLpm:
        """A copy whose values go through ``mapping`` (value v -> mapping[v], UNMAPPED
        past its end); ``None`` keeps them."""
        ffi, lib = _fast.require()
        table = (
            lib.pywg_lpm_clone(self._table, ffi.NULL, 0)
            if mapping is None
            else lib.pywg_lpm_clone(self._table, ffi.new("uint32_t[]", mapping), len(mapping))
        )
        if table == ffi.NULL:
            raise MemoryError("pywg_lpm_clone failed")
        clone = NativeLpm.__new__(NativeLpm)
        clone._table = ffi.gc(table, lib.pywg_lpm_free)
        return clone

    # -- queries ----------------------------------------------------------

    def lookup(
        self, address: str | bytes | bytearray | memoryview | IPv4Address | IPv6Address
    ) -> int | None:
        """Value of the longest prefix containing ``address``, or ``None``.

        ``bytes`` are a packed address (4 or 16 bytes); anything malformed
        raises ``ValueError`` or ``TypeError``.
        """
        if type(address) is bytes:  # the fast path: no conversion
            size = len(address)
            if size == 4:
                found: int = _lookup(self._table, 4, address)
                return None if found < 0 else found
            if size == 16:
                found = _lookup(self._table, 6, address)
                return None if found < 0 else found
        packed = _packed(address)
        found = _lookup(self._table, 4 if len(packed) == 4 else 6, packed)
        return None if found < 0 else found

    def lookup_packet(
        self,
        packet: bytes | bytearray | memoryview,
        which: Literal["source", "destination"] = "destination",
    ) -> int | None:
        """Look up the source or destination address of an IPv4/IPv6 packet.

        ``None`` for no match and for anything that is not a well-formed
        IPv4 or IPv6 header (the data plane's answer for garbage).
        """
        if which not in _WHICH:
            raise ValueError(f"which must be 'source' or 'destination', got {which!r}")
        data = packet if type(packet) is bytes else bytes(packet)
        found: int = _lib.pywg_lpm_lookup_packet(self._table, data, len(data), _WHICH[which])
        return None if found < 0 else found

    def get(self, network: str | IPv4Network | IPv6Network) -> int | None:
        """The value of exactly ``network`` (host bits masked off), or ``None``."""
        net = _network(network)
        packed = net.network_address.packed
        found: int = _lib.pywg_lpm_get(self._table, net.version, packed, net.prefixlen)
        return None if found < 0 else found

    def __len__(self) -> int:
        """Number of stored prefixes (both families)."""
        count: int = _lib.pywg_lpm_count(self._table)
        return count

    @property
    def memory(self) -> int:
        """Bytes the C table has allocated."""
        size: int = _lib.pywg_lpm_memory(self._table)
        return size

    def __repr__(self) -> str:
        return f"<NativeLpm prefixes={len(self)} memory={self.memory}>"

    # -- tuning and tests ---------------------------------------------------

    def set_hash_lengths(self, max_lengths: int) -> None:
        """Probe the hash alone when a family uses at most this many prefix lengths.

        0 forces the trie, 129 the hash; answers are the same either way.
        """
        if not 0 <= max_lengths <= 129:
            raise ValueError(f"max_lengths must be in [0, 129], got {max_lengths}")
        _lib.pywg_lpm_set_hash_lengths(self._table, max_lengths)

    def bench(self, addresses: Iterable[bytes], version: Literal[4, 6], rounds: int) -> int:
        """Look ``addresses`` up ``rounds`` times in one C loop; a checksum of the answers."""
        size = 4 if version == 4 else 16
        blob = b"".join(addresses)
        if len(blob) % size:
            raise ValueError(f"IPv{version} addresses are {size} bytes each")
        if rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {rounds}")
        checksum: int = _lib.pywg_lpm_bench(self._table, version, blob, len(blob) // size, rounds)
        return checksum

    def _validate(self) -> None:
        """Check every invariant of the C structure (for tests); raises AssertionError."""
        code: int = _lib.pywg_lpm_validate(self._table)
        if code != 0:
            raise AssertionError(f"pywg_lpm_validate failed with code {code}")
