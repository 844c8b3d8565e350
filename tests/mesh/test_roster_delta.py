"""Rosters from the coordinator's view in memory (pywg.mesh.meshview) and roster deltas.

The property: after any sequence of changes to the store (joins, endpoint and
route reports, approvals, refusals, devices, removals, expiry by time and by
the admin, revocations, rotations), the roster the view gives each member is
the roster defined from the whole store (`meshview.roster_of`), and a delta
from any earlier version, applied to that version's roster after a trip over
the wire, is the roster now (`rosterdelta.apply`).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pywg.mesh import auth, rosterdelta
from pywg.mesh.coordinator import Coordinator
from pywg.mesh.exits import EXIT_ROUTES
from pywg.mesh.meshview import roster_of
from pywg.mesh.schema import Roster, RosterDelta, decode, encode, roster_answer
from pywg.mesh.store import NotFound, StoreError

pytestmark = pytest.mark.time_limit(60)

DAY_MS = 86_400_000
NAMES = ("alpha", "Beta", "gamma", "delta_1", "e.x", "Zed")
ROUTES = ("198.18.1.0/24", "198.18.2.0/24", "fd42::/64", *EXIT_ROUTES)


@dataclass
class Mesh:
    """A coordinator (not serving) over a store in a fresh directory, its clock by hand."""

    directory: tempfile.TemporaryDirectory[str]
    now: list[int]
    coordinator: Coordinator
    token: str = ""
    keys: dict[str, bytes] = field(default_factory=dict)  # node name -> its WireGuard key
    serial: int = 0

    @classmethod
    def make(cls) -> Mesh:
        directory = tempfile.TemporaryDirectory()
        now = [1_800_000_000_000]
        coordinator = Coordinator(
            directory.name,
            ipv4="100.64.0.0/24",
            clock_ms=lambda: now[0],
            key_expiry_days=3,
        )
        mesh = cls(directory, now, coordinator)
        token = coordinator.new_token(10 * 365 * 86400, reusable=True)
        mesh.token = auth.token_hash(auth.parse_token(token).secret)
        return mesh

    def close(self) -> None:
        self.coordinator.store.close()
        self.directory.cleanup()

    def key(self) -> bytes:
        self.serial += 1
        return self.serial.to_bytes(32, "big")

    def apply(self, op: tuple[str, int, int]) -> None:
        """One change; refusals by the store are part of the game."""
        kind, a, b = op
        name = NAMES[a % len(NAMES)]
        store = self.coordinator.store
        node = store.node_by_name(name)
        try:
            if kind == "join":
                routes = [r for i, r in enumerate(ROUTES) if b >> i & 1]
                key = self.keys.get(name) if node is None and b & 64 else None
                key = key or self.key()
                store.join(
                    self.token, name, key, self.key(), routes, time_ms=self.now[0], now=self.now[0]
                )
                self.keys[name] = key
            elif node is None:
                return
            elif kind == "endpoints":
                store.update(node.id, endpoints=[f"203.0.113.{b % 250 + 1}:{51820 + a}"])
            elif kind == "routes":
                store.update(node.id, routes=[r for i, r in enumerate(ROUTES) if b >> i & 1])
            elif kind == "home":
                store.update(node.id, home_relay=b % 3)
            elif kind == "approve" and node.pending_routes:
                pending = node.pending_routes
                store.approve(name, pending if b % 2 else pending[:1])
            elif kind == "refuse" and node.pending_routes:
                store.refuse(name, node.pending_routes[:1])
            elif kind == "device":
                store.add_device(f"dev{b % 4}", self.key(), name, exit=bool(b & 8))
            elif kind == "undevice":
                store.remove_device(f"dev{b % 4}")
            elif kind == "remove":
                store.remove(name)
            elif kind == "expire":
                store.expire(name, now=self.now[0])
            elif kind == "revoke":
                store.revoke(name, now=self.now[0])
            elif kind == "rotate":
                store.rotate(node.id, node.public_key, (self.key(), self.key()), now=self.now[0])
        except (StoreError, NotFound):
            pass
        if kind == "time":
            before = self.now[0]
            self.now[0] += (b % 5) * DAY_MS // 2
            store.note_expiries(before, self.now[0])

    def reference(self, node_id: int) -> Roster | None:
        """The roster defined from the whole store."""
        coordinator = self.coordinator
        version, nodes = coordinator.store.snapshot()
        context = (coordinator.view.frame, coordinator._node_info, self.now[0])
        return roster_of(version, nodes, coordinator.store.devices(), node_id, context)


def over_the_wire(answer: Roster | RosterDelta) -> Roster | RosterDelta:
    return roster_answer(json.loads(encode(answer)))


OPS = st.tuples(
    st.sampled_from(
        [
            *["join"] * 5,
            *["endpoints"] * 3,
            "routes",
            "home",
            "approve",
            "refuse",
            "device",
            "undevice",
            "remove",
            "expire",
            "revoke",
            "rotate",
            "time",
        ]
    ),
    st.integers(0, 5),
    st.integers(0, 127),
)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(st.lists(OPS, min_size=1, max_size=40), st.lists(OPS, max_size=6))
def test_a_delta_applied_to_the_roster_of_its_base_is_the_roster_now(
    ops: list[tuple[str, int, int]], first: list[tuple[str, int, int]]
) -> None:
    mesh = Mesh.make()
    try:
        for op in [("join", 0, 1), ("join", 1, 0), ("join", 2, 3), *first]:  # before the view
            mesh.apply(op)
        coordinator = mesh.coordinator
        coordinator.current_view()
        seen: dict[int, dict[int, Roster]] = {}  # version -> node id -> its roster then
        for op in ops:
            mesh.apply(op)
            view = coordinator.current_view()
            assert view.version == coordinator.store.version()
            now: dict[int, Roster] = {}
            for node in coordinator.store.nodes():
                full = coordinator.roster(node.id)
                assert full == mesh.reference(node.id)
                if full is None:
                    continue
                assert over_the_wire(full) == full
                assert coordinator.view.roster_body(node.id) == encode(full)
                now[node.id] = full
                for version, rosters in seen.items():
                    before = rosters.get(node.id)
                    if before is None:
                        continue
                    answer = coordinator.roster_since(node.id, version)
                    assert answer is not None
                    if isinstance(answer, Roster):  # only for a version the view never had
                        assert version < view.floor and answer == full
                        continue
                    delta = over_the_wire(answer)
                    assert isinstance(delta, RosterDelta)
                    assert rosterdelta.apply(before, delta) == full
            seen[view.version] = now
    finally:
        mesh.close()


def test_a_delta_carries_only_what_changed() -> None:
    mesh = Mesh.make()
    try:
        for b in range(6):
            mesh.apply(("join", b, 0))
        coordinator = mesh.coordinator
        coordinator.current_view()
        alpha = coordinator.store.node_by_name("alpha")
        beta = coordinator.store.node_by_name("Beta")
        assert alpha is not None and beta is not None
        start = coordinator.store.version()
        mesh.apply(("endpoints", 1, 7))  # Beta moves
        first = coordinator.roster_since(alpha.id, start)
        assert isinstance(first, Roster)  # the version it was loaded at: a whole roster
        v1 = coordinator.store.version()
        mesh.apply(("endpoints", 1, 9))
        mesh.apply(("remove", 2, 0))  # gamma leaves
        delta = coordinator.roster_since(alpha.id, v1)
        assert isinstance(delta, RosterDelta)
        assert [p.name for p in delta.peers] == ["Beta"]
        assert delta.peers[0].endpoints == (("203.0.113.10", 51821),)
        assert len(delta.removed) == 1 and delta.base == v1
        assert delta.version == coordinator.store.version()
        idle = coordinator.roster_since(alpha.id, delta.version)
        assert isinstance(idle, RosterDelta) and not idle.peers and not idle.removed
        # Beta's own delta leaves itself out of the peers
        own = coordinator.roster_since(beta.id, v1)
        assert isinstance(own, RosterDelta) and not own.peers and own.me.name == "Beta"
        # a version ahead of the coordinator's (another database, a restore): whole
        assert isinstance(coordinator.roster_since(alpha.id, delta.version + 5), Roster)
        assert len(encode(delta)) < len(encode(first)) / 2
    finally:
        mesh.close()


def test_a_delta_for_another_version_does_not_apply() -> None:
    mesh = Mesh.make()
    try:
        mesh.apply(("join", 0, 0))
        mesh.apply(("join", 1, 0))
        coordinator = mesh.coordinator
        node = coordinator.store.node_by_name("alpha")
        assert node is not None
        roster = coordinator.roster(node.id)
        assert roster is not None
        mesh.apply(("endpoints", 1, 3))
        mesh.apply(("endpoints", 1, 4))
        delta = coordinator.roster_since(node.id, roster.version + 1)
        assert isinstance(delta, RosterDelta)
        with pytest.raises(rosterdelta.DeltaMismatch):
            rosterdelta.apply(roster, delta)
    finally:
        mesh.close()


def test_the_view_keeps_a_bounded_log_and_sends_whole_rosters_behind_it() -> None:
    mesh = Mesh.make()
    try:
        mesh.apply(("join", 0, 0))
        mesh.apply(("join", 1, 0))
        coordinator = mesh.coordinator
        coordinator.view.log_limit = 4
        coordinator.current_view()
        node = coordinator.store.node_by_name("alpha")
        assert node is not None
        mesh.apply(("endpoints", 1, 0))
        v1 = coordinator.store.version()
        for b in range(1, 8):
            mesh.apply(("endpoints", 1, b))
            coordinator.current_view()
        assert isinstance(coordinator.roster_since(node.id, v1), Roster)
        recent = coordinator.store.version() - 2
        assert isinstance(coordinator.roster_since(node.id, recent), RosterDelta)
    finally:
        mesh.close()


def test_a_bare_version_bump_reloads_everything() -> None:
    """A change that marks no node (another writer's) is not missed: a full reload."""
    mesh = Mesh.make()
    try:
        mesh.apply(("join", 0, 0))
        mesh.apply(("join", 1, 0))
        coordinator = mesh.coordinator
        v1 = coordinator.current_view().version
        store = coordinator.store
        with store._write() as db:  # an endpoint written without a mark
            db.execute("UPDATE nodes SET endpoints = '[\"203.0.113.77:1\"]' WHERE name = 'Beta'")
            store._bump(db)
        node = store.node_by_name("alpha")
        assert node is not None
        assert store.changes_since(v1).complete
        delta = coordinator.roster_since(node.id, v1 + 0)
        roster = coordinator.roster(node.id)
        assert roster is not None and roster == mesh.reference(node.id)
        assert [p.endpoints for p in roster.peers] == [(("203.0.113.77", 1),)]
        assert delta is not None and decode(encode(delta))
    finally:
        mesh.close()
