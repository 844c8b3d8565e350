"""A tunnel's packet filter: the access policy's inbound rules, enforced (docs/policy.md).

`TunnelFilter` picks the filter for the tunnel's data path: the C one
(`pywg._fast.filter.NativeFilter`) with the native plane, which its loops
consult per packet, or the Python one (`pywg.policy.model.PacketFilter`) on
the pure-Python path. The tunnel asks it about the packets its Python side
writes to or reads from the TUN, so that every path is held to the same
rules. Its clock is the monotonic clock, as the native plane's.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from ..constants import FILTER_PASS
from ..policy.model import FilterStats, PacketFilter
from ..policy.rules import InboundRule

if TYPE_CHECKING:
    from .._fast.plane import NativePlane

__all__ = ["FILTER_DROPS", "TunnelFilter"]

# The filter's drop counters as drop reasons (pywg.metrics: pywg_drops{reason=...}).
FILTER_DROPS = {
    "dropped_no_rule": "policy_denied",
    "dropped_malformed": "policy_malformed",
    "dropped_fragment": "policy_fragment",
}


class _Filter(Protocol):
    @property
    def active(self) -> bool: ...

    def set_rules(self, rules: Iterable[InboundRule] | None) -> None: ...
    def inbound(self, data: bytes, now: float) -> int: ...
    def outbound(self, data: bytes, now: float) -> None: ...

    @property
    def stats(self) -> FilterStats: ...


class TunnelFilter:
    """The filter of one tunnel; created when rules are first set, kept until it closes."""

    def __init__(self, native: bool) -> None:
        self.native = native
        self._impl: _Filter
        if native:
            from .._fast.filter import NativeFilter

            self._impl = NativeFilter()
        else:
            self._impl = PacketFilter()

    def attach(self, plane: NativePlane) -> None:
        """Let the plane's loops use this filter (native only)."""
        from .._fast.filter import NativeFilter

        assert isinstance(self._impl, NativeFilter)
        plane.set_filter(self._impl)

    def set_rules(self, rules: Iterable[InboundRule] | None) -> None:
        self._impl.set_rules(None if rules is None else list(rules))

    @property
    def active(self) -> bool:
        return self._impl.active

    def allows(self, packet: bytes) -> bool:
        """Whether `packet`, arriving through the tunnel, may go to the TUN."""
        return self._impl.inbound(packet, time.monotonic()) == FILTER_PASS

    def sent(self, packet: bytes) -> None:
        """Track `packet`, read from the TUN to send."""
        self._impl.outbound(packet, time.monotonic())

    @property
    def stats(self) -> FilterStats:
        return self._impl.stats

    def drops(self) -> dict[str, int]:
        """Dropped packets by reason (FILTER_DROPS' names)."""
        stats = self.stats
        return {reason: getattr(stats, name) for name, reason in FILTER_DROPS.items()}
