"""Roster deltas on a node's side: a `RosterDelta` applied to the roster it was made from.

A roster lists its peers ordered by name, case-insensitively (names are ASCII:
`store.check_name`), and its devices the same way; `peer_order`/`device_order`
say that order once, for the coordinator's builder (`pywg.mesh.meshview`) and
for `apply`, so that a delta applied to the roster of its base version gives
the roster of its version, equal in every field and in order.
"""

from __future__ import annotations

from .schema import DeviceEntry, PeerEntry, Roster, RosterDelta


class DeltaMismatch(ValueError):
    """The delta is not from the roster's version: ask for a whole roster."""


def peer_order(peer: PeerEntry) -> str:
    return peer.name.lower()


def device_order(device: DeviceEntry) -> str:
    return device.name.lower()


def apply(roster: Roster, delta: RosterDelta) -> Roster:
    """`roster` with `delta` applied; DeltaMismatch unless the delta's base is its version."""
    if delta.base != roster.version:
        raise DeltaMismatch(f"a delta from version {delta.base} to a roster at {roster.version}")
    if roster.rules is not None:  # under an access policy rosters come whole
        raise DeltaMismatch("a delta to a roster under an access policy")
    gone = set(delta.removed)
    peers = {p.public_key: p for p in roster.peers if p.public_key not in gone}
    peers.update((p.public_key, p) for p in delta.peers)
    gone_devices = set(delta.removed_devices)
    devices = {d.name: d for d in roster.devices if d.name not in gone_devices}
    devices.update((d.name, d) for d in delta.devices)
    return Roster(
        delta.version,
        roster.network,
        delta.me,
        tuple(sorted(peers.values(), key=peer_order)),
        roster.relays if delta.relays is None else delta.relays,
        tuple(sorted(devices.values(), key=device_order)),
        roster.domain if delta.domain is None else delta.domain,
    )
