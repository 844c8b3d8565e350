"""The native packet filter (``filter.c``): a thin wrapper.

`NativeFilter` has the interface of `pywg.policy.model.PacketFilter` (rules,
``inbound``/``outbound`` with the caller's monotonic time, stats) over one
``struct pywg_filter``. Attached to a `NativePlane` (`NativePlane.set_filter`)
its C loops consult it on every packet; Python can consult the same object
for the packets it writes to the TUN itself. It is freed with the wrapper,
which the plane keeps alive for as long as its loops run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pywg import _fast
from pywg.constants import FLOW_TABLE_SIZE
from pywg.policy.model import FilterStats
from pywg.policy.rules import InboundRule, RuleRow, flatten

__all__ = ["NativeFilter"]


class NativeFilter:
    """Rules and connection tracking in C; see filter.h for the semantics."""

    def __init__(self, capacity: int = FLOW_TABLE_SIZE) -> None:
        self.ffi, self.lib = _fast.require()
        self.handle: Any = self.lib.pywg_filter_new(capacity)
        if self.handle == self.ffi.NULL:
            raise MemoryError("cannot create the packet filter")
        self._stats = self.ffi.new("struct pywg_filter_stats *")

    def __del__(self) -> None:
        handle, self.handle = getattr(self, "handle", None), None
        if handle is not None:
            self.lib.pywg_filter_free(handle)

    @property
    def active(self) -> bool:
        return bool(self.lib.pywg_filter_active(self.handle))

    def set_rules(self, rules: Iterable[InboundRule] | Iterable[RuleRow] | None) -> None:
        """Replace the rules at once; ``None``: none (everything passes)."""
        if rules is None:
            if self.lib.pywg_filter_set_rules(self.handle, self.ffi.NULL, 0) != 0:
                raise MemoryError("cannot clear the rules")
            return
        items = list(rules)
        rows = [r for r in items if isinstance(r, RuleRow)]
        rows += flatten(r for r in items if isinstance(r, InboundRule))
        table = self.ffi.new("struct pywg_filter_rule[]", max(len(rows), 1))
        for slot, row in zip(table, rows, strict=False):
            slot.family, slot.proto = row.family, row.proto
            slot.src_len, slot.dst_len = row.source.prefixlen, row.destination.prefixlen
            slot.port_lo, slot.port_hi = row.port_lo, row.port_hi
            slot.src[0 : len(row.source.network_address.packed)] = row.source.network_address.packed
            slot.dst[0 : len(row.destination.network_address.packed)] = (
                row.destination.network_address.packed
            )
        if self.lib.pywg_filter_set_rules(self.handle, table, len(rows)) != 0:
            raise ValueError(f"the filter refused {len(rows)} rule rows")

    def inbound(self, data: bytes, now: float) -> int:
        """FILTER_PASS, or why packet `data` must be dropped (FILTER_DROP_*)."""
        return int(self.lib.pywg_filter_inbound(self.handle, self.ffi.from_buffer(data),
                                                len(data), now))  # fmt: skip

    def outbound(self, data: bytes, now: float) -> None:
        self.lib.pywg_filter_outbound(self.handle, self.ffi.from_buffer(data), len(data), now)

    def flush(self) -> None:
        self.lib.pywg_filter_flush(self.handle)

    @property
    def stats(self) -> FilterStats:
        self.lib.pywg_filter_stats(self.handle, self._stats)
        return FilterStats(**{name: int(getattr(self._stats, name)) for name in
                              FilterStats.__dataclass_fields__})  # fmt: skip
