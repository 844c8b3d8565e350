"""The access policy in the mesh, without a network: the store, the rosters, the CLI.

`pywg coordinator policy check|set|show|clear` on a state directory, the
rosters a `Coordinator` builds under a policy (each node's rules, the peers
and devices left out), the roster's ``rules`` field on the wire, and the
refusals (line and reason; the policy in force stays). Real processes
enforcing it: tests/mesh/test_mesh_policy.py.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from pywg.cmd import coordinator as coordinator_cli
from pywg.mesh import access
from pywg.mesh.coordinator import Coordinator
from pywg.mesh.schema import Roster, SchemaError
from pywg.mesh.store import Store, StoreError, now_ms
from pywg.policy import InboundRule, Member, PolicyError, Proto

V4, V6 = "198.19.9.0/24", "fd19:9::/64"
TOKEN = "b" * 64

# nas routes 10.9.0.0/24 and carries the plain device "phone"; camera is in no rule
NODES = ("nas", "laptop", "guest", "camera")
POLICY = """{
  "groups": {"group:family": ["laptop"]},
  "hosts": {"lan": "10.9.0.0/24"},
  "rules": [
    {"from": ["group:family"], "to": ["nas:*", "lan:*"]},
    {"from": ["guest"], "to": ["nas:8096/tcp"]},
    {"from": ["phone"], "to": ["laptop:22/tcp"]},
  ],
}
"""


def make_mesh(tmp_path: Path) -> str:
    state = str(tmp_path / "coord")
    store = Store(state)
    try:
        store.init_networks(V4, V6)
        store.add_token(TOKEN, now_ms() + 60_000, reusable=True)
        for index, name in enumerate(NODES, 1):
            routes = ["10.9.0.0/24"] if name == "nas" else []
            node, _ = store.join(
                TOKEN, name, bytes([index]) * 32, bytes([index + 100]) * 32, routes,
                time_ms=now_ms(), auto_approve=True,
            )  # fmt: skip
            store.update(node.id, endpoints=[f"192.0.2.{index}:51820"])
        store.add_device("phone", bytes([50]) * 32, "nas")
    finally:
        store.close()
    return state


def cli(state: str, *argv: str) -> int:
    return coordinator_cli.main(["coordinator", *argv, "--state", state])


@pytest.fixture
def coordinator(tmp_path: Path) -> Coordinator:
    coordinator = Coordinator(make_mesh(tmp_path))
    yield coordinator  # type: ignore[misc]
    coordinator.store.close()


def rosters(coordinator: Coordinator) -> dict[str, Roster]:
    found = {}
    for node in coordinator.store.nodes():
        roster = coordinator.roster(node.id)
        assert roster is not None
        found[node.name] = roster
    return found


def hosts(coordinator: Coordinator, name: str) -> tuple[ipaddress.IPv4Network, ...]:
    for member in access.members(coordinator.store.nodes(), coordinator.store.devices()):
        if member.name == name:
            return member.addresses  # type: ignore[return-value]
    raise KeyError(name)


def test_no_policy_everyone_sees_everyone(coordinator: Coordinator) -> None:
    for name, roster in rosters(coordinator).items():
        assert roster.rules is None and "rules" not in roster.to_json()
        assert {p.name for p in roster.peers} == set(NODES) - {name}
        assert [d.name for d in roster.devices] == ["phone"]


def test_rosters_under_a_policy(coordinator: Coordinator) -> None:
    before = coordinator.store.version()
    coordinator.set_policy(POLICY)
    assert coordinator.store.version() == before + 1 and coordinator.policy() == POLICY
    got = rosters(coordinator)
    seen = {name: {p.name for p in r.peers} for name, r in got.items()}
    # nobody talks to the camera; the guest only to nas; the phone's gateway sees its peers
    assert seen == {
        "nas": {"laptop", "guest"},
        "laptop": {"nas"},
        "guest": {"nas"},
        "camera": set(),
    }
    devices = {name: [d.name for d in r.devices] for name, r in got.items()}
    assert devices == {"nas": ["phone"], "laptop": ["phone"], "guest": [], "camera": []}
    # the phone's addresses are among nas's routes only where the phone is in the roster
    phone = {str(p) for p in hosts(coordinator, "phone")}
    routes = {name: {str(r) for p in r.peers for r in p.routes} for name, r in got.items()}
    assert phone <= routes["laptop"] and not phone & routes["guest"]
    assert "10.9.0.0/24" in routes["laptop"] and "10.9.0.0/24" in routes["guest"]

    laptop, guest, nas, phone_hosts = (
        hosts(coordinator, n) for n in ("laptop", "guest", "nas", "phone")
    )
    assert got["camera"].rules == ()  # a policy, nothing for it: only replies enter
    assert got["laptop"].rules == (InboundRule(phone_hosts, laptop, Proto.TCP, ((22, 22),)),)
    nas_rules = got["nas"].rules
    assert nas_rules is not None
    lan = (ipaddress.ip_network("10.9.0.0/24"),)
    assert InboundRule(laptop, nas, Proto.ANY, ((0, 65535),)) in nas_rules
    assert InboundRule(laptop, lan, Proto.ANY, ((0, 65535),)) in nas_rules
    assert InboundRule(guest, nas, Proto.TCP, ((8096, 8096),)) in nas_rules
    # the gateway holds its device to the rules from it (its packets enter at nas)
    assert InboundRule(phone_hosts, laptop, Proto.TCP, ((22, 22),)) in nas_rules
    assert len(nas_rules) == 4


def test_roster_rules_on_the_wire(coordinator: Coordinator) -> None:
    coordinator.set_policy(POLICY)
    for roster in rosters(coordinator).values():
        wire = json.loads(json.dumps(roster.to_json()))
        assert isinstance(wire["rules"], list)
        assert Roster.from_json(wire) == roster
    camera = rosters(coordinator)["camera"].to_json()
    assert camera["rules"] == []  # a policy with nothing for it: not the same as none
    bad = dict(camera, rules=[["100.64.0.1/32", "nowhere", "tcp", "22"]])
    with pytest.raises(SchemaError, match="roster: rules rule 0"):
        Roster.from_json(bad)
    assert Roster.from_json(dict(camera, rules=None)).rules is None


def test_a_refused_policy_keeps_the_old_one(coordinator: Coordinator) -> None:
    coordinator.set_policy(POLICY)
    version = coordinator.store.version()
    bad_name = POLICY.replace('["guest"]', '["gues"]')
    with pytest.raises(PolicyError) as refused:
        coordinator.set_policy(bad_name)
    assert refused.value.line == 6 and "'gues'" in refused.value.reason
    with pytest.raises(PolicyError) as refused:
        coordinator.set_policy(POLICY.replace("8096/tcp", "8096/tpc"))
    assert refused.value.line == 6 and "tpc" in refused.value.reason
    with pytest.raises(PolicyError) as refused:
        coordinator.check_policy('{\n  "rules": [\n    {"from": ["*"]}\n  ]\n}\n')
    assert refused.value.line == 3
    assert coordinator.policy() == POLICY and coordinator.store.version() == version
    coordinator.set_policy(None)
    assert coordinator.policy() is None and coordinator.store.version() == version + 1
    assert all(r.rules is None for r in rosters(coordinator).values())


def test_a_stored_policy_that_does_not_read_fails_closed(coordinator: Coordinator) -> None:
    coordinator.store.set_policy("{ not a policy")  # behind the checks' back
    for roster in rosters(coordinator).values():
        assert roster.rules == () and roster.peers == ()
    with pytest.raises(StoreError):
        coordinator.store.set_policy("x" * (2 << 20))


def test_the_view_is_compiled_once_per_version(coordinator: Coordinator) -> None:
    store, cache = coordinator.store, coordinator.access
    gathered: list[int] = []

    def mesh() -> tuple[Member, ...]:
        gathered.append(store.version())
        return access.members(store.nodes(), store.devices(), store.tags())

    assert cache.view(store.version(), None, mesh) is access.NO_POLICY and not gathered
    coordinator.set_policy(POLICY)
    view = cache.view(store.version(), POLICY, mesh)
    assert view.rules("camera") == () and len(gathered) == 1
    assert cache.view(store.version(), POLICY, mesh) is view and len(gathered) == 1
    store.remove_device("phone")  # a change: the version moves, compiled afresh
    again = cache.view(store.version(), POLICY, mesh)
    assert again is not view and len(gathered) == 2 and "phone" not in again.mesh


# -- the command ---------------------------------------------------------------------------


def test_policy_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = make_mesh(tmp_path)
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(POLICY)
    bad.write_text(POLICY.replace('"laptop:22/tcp"', '"laptop:99999/tcp"'))
    assert cli(state, "policy", "show") == 0
    assert "no policy" in capsys.readouterr().err
    assert cli(state, "policy", "check", str(good)) == 0
    assert "a good policy (3 rules)" in capsys.readouterr().out
    assert cli(state, "policy", "set", str(good)) == 0
    assert "policy set" in capsys.readouterr().out
    for command in ("check", "set"):
        assert cli(state, "policy", command, str(bad)) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"pywg coordinator: {bad}:7: ") and "99999" in err, err
    assert cli(state, "policy", "set", str(tmp_path / "missing.json")) == 1
    assert "cannot read" in capsys.readouterr().err
    assert cli(state, "policy", "show") == 0
    assert capsys.readouterr().out == POLICY  # the old one stayed
    assert cli(state, "policy", "clear") == 0
    assert "policy cleared" in capsys.readouterr().out
    store = Store(state, create=False)
    try:
        assert store.policy() is None
    finally:
        store.close()


def test_tags_the_coordinator_gives(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = make_mesh(tmp_path)
    assert cli(state, "policy", "tag", "camera", "tag:camera", "tag:iot") == 0
    assert "camera: tag:camera, tag:iot" in capsys.readouterr().out
    assert cli(state, "policy", "tag", "camera", "camera") == 2  # not tag:NAME
    assert cli(state, "policy", "tag", "nobody", "tag:camera") == 1
    coordinator = Coordinator(state)
    try:
        text = (
            '{"tags": ["tag:camera"], "rules": [{"from": ["tag:camera"], "to": ["nas:554/tcp"]}]}'
        )
        coordinator.set_policy(text)
        assert coordinator.store.tags() == {"camera": frozenset({"tag:camera", "tag:iot"})}
        got = rosters(coordinator)
        assert [p.name for p in got["camera"].peers] == ["nas"]
        camera, nas = hosts(coordinator, "camera"), hosts(coordinator, "nas")
        assert got["nas"].rules == (InboundRule(camera, nas, Proto.TCP, ((554, 554),)),)
        version = coordinator.store.version()
        coordinator.store.set_tags("camera", [])  # untagged: the rule names nobody
        assert coordinator.store.version() == version + 1
        got = rosters(coordinator)
        assert got["camera"].peers == () and got["nas"].rules == ()
        coordinator.store.set_tags("camera", ["tag:camera"])
        coordinator.store.remove("camera")
        assert coordinator.store.tags() == {}  # the tags went with the node
    finally:
        coordinator.store.close()


def test_a_roster_served_under_a_policy_is_followed_whole_after_it(
    coordinator: Coordinator,
) -> None:
    """Deltas tell what changed, not what a policy hid: a member whose roster was filtered
    gets a whole roster once the policy is gone, never a delta from its filtered one."""
    guest = coordinator.store.node_by_name("guest")
    assert guest is not None
    assert coordinator.roster(guest.id) is not None  # the view follows the store from here
    coordinator.set_policy(POLICY)
    filtered = coordinator.roster(guest.id)
    assert filtered is not None and {p.name for p in filtered.peers} == {"nas"}
    assert isinstance(coordinator.roster_since(guest.id, filtered.version), Roster)
    coordinator.set_policy(None)
    after = coordinator.roster_since(guest.id, filtered.version)
    assert isinstance(after, Roster) and after.rules is None
    assert {p.name for p in after.peers} == set(NODES) - {"guest"}
    # from the whole roster served after it, deltas again
    assert not isinstance(coordinator.roster_since(guest.id, after.version), Roster)
