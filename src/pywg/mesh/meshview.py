"""The coordinator's view of the mesh in memory: rosters and roster deltas built from it.

The store is the durable copy; this view follows it by what changed
(`Store.changes_since`: the nodes marked with a later version, the nodes
removed, the devices of the changed nodes), so a change costs the view the
nodes it touched, not a reload. A roster peer entry is the same for every
member (`peer_entry`), so it is built once a change; a member's roster is
its own entry (`describe`) and every other active node's entry.

Every entry that changed, appeared or left at a version is logged under that
version (a peer by its WireGuard key, a device by its name): the delta from
version V to the view's version is the current state of what the log holds
after V, which is exactly what differs between the two rosters. The log keeps
at most `log_limit` entries; a member behind what it keeps, or at a version
the view never had (before it was loaded: the relays and domain of the
roster it holds may be another process's), gets a whole roster.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from ..endpoint import parse_endpoint
from . import exits
from .devices import device_entries
from .rosterdelta import device_order, peer_order
from .schema import (
    DeviceEntry,
    HomeRelay,
    Networks,
    NodeInfo,
    PeerEntry,
    Roster,
    RosterDelta,
    encode,
)
from .store import Changes, Device, Node, Store

LOG_LIMIT: Final = 65536  # logged entry changes kept for deltas (a few per node)


@dataclass(frozen=True, slots=True)
class Frame:
    """What every roster of one coordinator carries besides its nodes and devices."""

    networks: Networks
    relays: tuple[HomeRelay, ...]
    domain: str

    def home_of(self, node: Node) -> int | None:
        """The node's home relay, if the relay map has it."""
        numbers = {relay.number for relay in self.relays}
        return node.home_relay if node.home_relay in numbers else None


def peer_entry(node: Node, carried: Iterable[Device], frame: Frame) -> PeerEntry:
    """A member as every other member's roster names it (`carried`: its devices)."""
    approved = node.approved_routes
    return PeerEntry(
        name=node.name,
        public_key=node.public_key,
        control_key=node.control_key,
        addresses=(node.ipv4, node.ipv6),
        routes=(*exits.subnets(approved), *(p for d in carried for p in d.prefixes)),
        endpoints=tuple(parse_endpoint(e) for e in node.endpoints),  # stored canonical
        node_id=node.id,
        home_relay=frame.home_of(node),
        exit_node=exits.offers_exit(approved),
        rotated_from=node.previous_key,
    )


def roster_of(
    version: int,
    nodes: Iterable[Node],
    devices: Iterable[Device],
    node_id: int,
    context: tuple[Frame, Callable[[Node], NodeInfo], int],
) -> Roster | None:
    """The roster of member `node_id` from the whole state (`context`: the frame, how a
    member is described to itself, the time in ms); None if it is not an active member.
    The definition the view keeps to, change by change."""
    frame, describe, now = context
    active = sorted((n for n in nodes if n.active(now)), key=lambda n: n.name.lower())
    me = next((n for n in active if n.id == node_id), None)
    if me is None:
        return None
    ordered = sorted(devices, key=lambda d: d.name.lower())
    peers = tuple(
        peer_entry(n, [d for d in ordered if d.gateway == n.name], frame)
        for n in active
        if n.id != node_id
    )
    return Roster(
        version,
        frame.networks,
        describe(me),
        peers,
        frame.relays,
        devices=device_entries(ordered),
        domain=frame.domain,
    )


class MeshView:
    """The mesh as the store holds it, at `version`, followed by `refresh`."""

    def __init__(
        self,
        store: Store,
        frame: Frame,
        describe: Callable[[Node], NodeInfo],
        clock_ms: Callable[[], int],
        *,
        log_limit: int = LOG_LIMIT,
    ) -> None:
        self.store = store
        self.frame = frame
        self.describe = describe
        self.clock_ms = clock_ms
        self.log_limit = log_limit
        self.version = -1
        self.floor = 0  # the oldest version a delta starts from
        self.nodes: dict[int, Node] = {}
        self.carried: dict[str, list[Device]] = {}  # gateway name -> its devices, by name
        self.peers: dict[bytes, PeerEntry] = {}  # active nodes' entries, by WireGuard key
        self.devices: dict[str, DeviceEntry] = {}
        self._log: list[tuple[int, bool, bytes | str]] = []  # (version, is a peer, key)
        self._ordered: tuple[PeerEntry, ...] | None = None
        self._encoded: dict[bytes, bytes] = {}  # peer entries as they travel, by key
        self._ordered_devices: tuple[DeviceEntry, ...] | None = None

    def refresh(self) -> int:
        """Take in what changed in the store since the view's version; the version."""
        changes = self.store.changes_since(self.version)
        if changes.version != self.version:
            first = self.version < 0
            self._absorb(changes)
            if first:
                self.floor = changes.version + 1
        return self.version

    # -- following the store ---------------------------------------------------------------

    def _absorb(self, changes: Changes) -> None:
        version = changes.version
        changed = {n.id: n for n in changes.nodes}
        gone = set(changes.removed)
        if changes.complete:
            gone |= set(self.nodes) - set(changed)
        touched = {i: self.nodes.get(i) for i in (*changed, *gone)}
        for node_id in gone:
            old = self.nodes.pop(node_id, None)
            if old is not None:
                self._set_devices(version, old.name, [])
        fresh: dict[str, list[Device]] = {n.name: [] for n in changed.values()}
        for device in changes.devices:
            fresh.setdefault(device.gateway, []).append(device)
        self.nodes.update(changed)
        for name, carried in fresh.items():
            self._set_devices(version, name, sorted(carried, key=lambda d: d.name.lower()))
        now = self.clock_ms()
        for node_id, old in touched.items():
            self._set_peer(version, old, self.nodes.get(node_id), now)
        self.version = version
        self._trim()

    def _set_devices(self, version: int, gateway: str, carried: list[Device]) -> None:
        """Gateway `gateway` carries `carried` now: log the device entries that changed."""
        before = {d.name for d in self.carried.pop(gateway, [])}
        if carried:
            self.carried[gateway] = carried
        after = {e.name: e for e in device_entries(carried)}
        for name in before - set(after):
            self._log_change(version, False, name, self.devices.pop(name, None) is not None)
        for name, entry in after.items():
            differs = self.devices.get(name) != entry
            self.devices[name] = entry
            self._log_change(version, False, name, differs)

    def _set_peer(self, version: int, old: Node | None, new: Node | None, now: int) -> None:
        """Node `old` is `new` now (None: not there): log its entries that changed."""
        entry = None
        if new is not None and new.active(now):
            entry = peer_entry(new, self.carried.get(new.name, ()), self.frame)
        if old is not None and (entry is None or entry.public_key != old.public_key):
            self._log_change(version, True, old.public_key, self.peers.pop(old.public_key, None))
            self._encoded.pop(old.public_key, None)
        if entry is not None:
            differs = self.peers.get(entry.public_key) != entry
            self.peers[entry.public_key] = entry
            if differs:
                self._encoded[entry.public_key] = encode(entry)
            self._log_change(version, True, entry.public_key, differs)

    def _log_change(self, version: int, peer: bool, key: bytes | str, changed: object) -> None:
        if not changed:
            return
        self._log.append((version, peer, key))
        if peer:
            self._ordered = None
        else:
            self._ordered_devices = None

    def _trim(self) -> None:
        """Keep at most `log_limit` logged changes; deltas start after what was dropped."""
        excess = len(self._log) - self.log_limit
        if excess > 0:
            self.floor = max(self.floor, self._log[excess - 1][0])
            del self._log[:excess]

    # -- rosters ---------------------------------------------------------------------------

    def ordered_peers(self) -> tuple[PeerEntry, ...]:
        if self._ordered is None:
            self._ordered = tuple(sorted(self.peers.values(), key=peer_order))
        return self._ordered

    def ordered_devices(self) -> tuple[DeviceEntry, ...]:
        if self._ordered_devices is None:
            self._ordered_devices = tuple(sorted(self.devices.values(), key=device_order))
        return self._ordered_devices

    def me(self, node_id: int) -> Node | None:
        """The active member `node_id` (None: not one, or its keys no longer good)."""
        node = self.nodes.get(node_id)
        return node if node is not None and node.public_key in self.peers else None

    def roster(self, node_id: int) -> Roster | None:
        """The whole roster of member `node_id` at the view's version (None: not one)."""
        me = self.me(node_id)
        if me is None:
            return None
        frame = self.frame
        peers = tuple(p for p in self.ordered_peers() if p.public_key != me.public_key)
        return Roster(
            self.version,
            frame.networks,
            self.describe(me),
            peers,
            frame.relays,
            devices=self.ordered_devices(),
            domain=frame.domain,
        )

    def roster_body(self, node_id: int) -> bytes | None:
        """`encode(self.roster(node_id))`, from the peer entries encoded once a change."""
        me = self.me(node_id)
        if me is None:
            return None
        frame = self.frame
        bare = Roster(
            self.version,
            frame.networks,
            self.describe(me),
            (),
            frame.relays,
            devices=self.ordered_devices(),
            domain=frame.domain,
        )
        # '"peers":[]' is found once: a quote inside a string value travels escaped
        head, tail = encode(bare).split(b'"peers":[]', 1)
        own = me.public_key
        peers = b",".join(
            self._encoded[p.public_key] for p in self.ordered_peers() if p.public_key != own
        )
        return b"".join((head, b'"peers":[', peers, b"]", tail))

    def delta(self, node_id: int, since: int) -> RosterDelta | Roster | None:
        """What changed in member `node_id`'s roster since version `since`: a delta, or the
        whole roster when the view cannot tell (None: not a member)."""
        me = self.me(node_id)
        if me is None:
            return None
        if not self.floor <= since <= self.version:
            return self.roster(node_id)
        start = bisect.bisect_right(self._log, since, key=lambda item: item[0])
        keys = dict.fromkeys(key for _, _, key in self._log[start:])
        peers = [k for k in keys if isinstance(k, bytes) and k != me.public_key]
        devices = [k for k in keys if isinstance(k, str)]
        return RosterDelta(
            version=self.version,
            base=since,
            me=self.describe(me),
            peers=tuple(self.peers[k] for k in peers if k in self.peers),
            removed=tuple(k for k in peers if k not in self.peers),
            devices=tuple(self.devices[k] for k in devices if k in self.devices),
            removed_devices=tuple(k for k in devices if k not in self.devices),
        )
