"""Exit nodes without a network: the plan (`pywg.mesh.exits`), the roster's mark, the store's
rules for default routes, the control socket and the commands' argument errors."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import stat
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

import pytest

from pywg.cmd import coordinator as coordinator_cli
from pywg.cmd import join as join_cli
from pywg.cmd.main import main as pywg_main
from pywg.mesh.agent import JoinOptions, MeshError
from pywg.mesh.control import ControlError, ControlServer, parse_request, set_exit_node
from pywg.mesh.coordinator import Coordinator
from pywg.mesh.exits import (
    EXIT_ROUTES,
    ExitChoice,
    ExitPlan,
    PolicyRoutes,
    check_choice,
    exit_names,
    nft_ruleset,
    offers_exit,
    plan,
    subnets,
    undo,
)
from pywg.mesh.schema import Networks, NodeInfo, PeerEntry, Roster, SchemaError
from pywg.mesh.store import StoreError, check_routes, now_ms, parse_prefix

NETWORKS = Networks(IPv4Network("198.19.5.0/24"), IPv6Network("fd19:5::/64"))
KEYS = {name: bytes([i + 1]) * 32 for i, name in enumerate(("me", "x1", "x2", "nas"))}


def peer(name: str, *, exit_node: bool = False, routes: tuple[str, ...] = ()) -> PeerEntry:
    n = list(KEYS).index(name) + 1
    return PeerEntry(
        name=name,
        public_key=KEYS[name],
        control_key=bytes([50 + n]) * 32,
        addresses=(f"198.19.5.{n}", f"fd19:5::{n}"),
        routes=routes,
        endpoints=(),
        exit_node=exit_node,
    )


def roster(*peers: PeerEntry) -> Roster:
    me = NodeInfo("me", KEYS["me"], ("198.19.5.1", "fd19:5::1"), (), ())
    return Roster(7, NETWORKS, me, tuple(peers))


MESH = roster(peer("x1", exit_node=True), peer("x2", exit_node=True), peer("nas"))


def test_the_chosen_exit_alone_gets_the_default_routes() -> None:
    assert plan(MESH, ExitChoice()) == ExitPlan(None, False, "no exit node")
    chosen = plan(MESH, ExitChoice("x2"))
    assert chosen.exit_key == KEYS["x2"] and chosen.route_all
    assert "through exit node x2" in chosen.why
    assert exit_names(MESH) == ["x1", "x2"]


@pytest.mark.parametrize(
    "mesh",
    [
        roster(peer("x1", exit_node=True)),  # x2 removed
        roster(peer("x1", exit_node=True), peer("x2")),  # x2 not (or no longer) approved
    ],
)
def test_a_gone_exit_stops_traffic_unless_leaking_is_allowed(mesh: Roster) -> None:
    stopped = plan(mesh, ExitChoice("x2"))
    assert stopped.exit_key is None and stopped.route_all  # the kill switch
    assert "stopped" in stopped.why
    leaking = plan(mesh, ExitChoice("x2", allow_leak=True))
    assert leaking.exit_key is None and not leaking.route_all
    assert "directly" in leaking.why


def test_run_time_choices_are_checked() -> None:
    assert check_choice(MESH, "x1", "me") is None
    assert check_choice(MESH, None, "me") is None
    assert check_choice(MESH, "me", "me") == "me is this node itself"
    why = check_choice(MESH, "nas", "me")
    assert why == "nas is not an approved exit node (exit nodes: x1, x2)"
    assert "exit nodes: none" in str(check_choice(None, "x1", None))


def test_policy_routes_as_wg_quick_makes_them() -> None:
    routes = PolicyRoutes("pywg0", 51821)
    commands = routes.commands(["198.18.1.2", "2001:db8::7", "198.18.1.2"])
    assert commands == [
        ["-4", "route", "add", "0.0.0.0/0", "dev", "pywg0", "table", "51821"],
        ["-4", "rule", "add", "not", "fwmark", "51821", "table", "51821"],
        ["-4", "rule", "add", "table", "main", "suppress_prefixlength", "0"],
        ["-6", "route", "add", "::/0", "dev", "pywg0", "table", "51821"],
        ["-6", "rule", "add", "not", "fwmark", "51821", "table", "51821"],
        ["-6", "rule", "add", "table", "main", "suppress_prefixlength", "0"],
        # the coordinator and the relays: consulted first (added last), by the main table
        ["-4", "rule", "add", "to", "198.18.1.2/32", "table", "main"],
        ["-6", "rule", "add", "to", "2001:db8::7/128", "table", "main"],
    ]
    assert undo(commands[1]) == ["-4", "rule", "del", "not", "fwmark", "51821", "table", "51821"]
    assert routes.commands([]) == commands[:6]


def test_nft_ruleset_guards_the_tunnel_addresses_and_keeps_the_mark() -> None:
    text = nft_ruleset("pywg_exit_pywg0", "pywg0", 51820, ["198.19.5.1", "fd19:5::1"])
    assert text.startswith("table inet pywg_exit_pywg0 {")
    assert 'iifname != "pywg0" ip daddr 198.19.5.1 fib saddr type != local drop' in text
    assert 'iifname != "pywg0" ip6 daddr fd19:5::1 fib saddr type != local drop' in text
    assert "meta l4proto udp mark 51820 ct mark set mark" in text
    assert "meta l4proto udp meta mark set ct mark" in text


def test_routes_split_into_subnets_and_the_exit_offer() -> None:
    assert offers_exit(["198.18.50.0/24", "::/0", "0.0.0.0/0"])
    assert not offers_exit(["0.0.0.0/0"])
    assert subnets(["0.0.0.0/0", "198.18.50.0/24", "::/0"]) == ("198.18.50.0/24",)


def test_the_roster_mark_travels_only_when_set() -> None:
    entry = peer("x1", exit_node=True)
    data = entry.to_json()
    assert data["exit_node"] is True
    back = Roster.from_json(json.loads(json.dumps(roster(entry).to_json())))
    assert back.peers[0].exit_node
    assert "exit_node" not in peer("nas").to_json()
    old = roster(peer("nas")).to_json()  # a coordinator that knows no exits
    assert not Roster.from_json(old).peers[0].exit_node
    bad = roster(entry).to_json()
    bad["peers"][0]["exit_node"] = "yes"  # type: ignore[index]
    with pytest.raises(SchemaError, match=r"peers\[0\]\.exit_node must be true or false"):
        Roster.from_json(bad)


def test_default_routes_only_as_an_exit_offer() -> None:
    for lone in ("0.0.0.0/0", "::/0"):
        with pytest.raises(StoreError, match="an exit node offers both"):
            parse_prefix(lone)
        with pytest.raises(StoreError):
            check_routes([lone, "198.18.50.0/24"])
    offer = check_routes(["0.0.0.0/0", "198.18.50.0/24", "::/0"], NETWORKS)
    assert offer == ["0.0.0.0/0", "198.18.50.0/24", "::/0"]


def test_an_exit_is_pending_until_approved_then_marked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = str(tmp_path / "coord")
    coordinator = Coordinator(state, ipv4="198.19.5.0/24", ipv6="fd19:5::/64")
    try:
        store = coordinator.store
        store.add_token("a" * 64, now_ms() + 60_000, reusable=True)
        routes = ["198.18.50.0/24", *EXIT_ROUTES]
        x, _ = store.join("a" * 64, "x", KEYS["x1"], bytes(32), routes, time_ms=now_ms())
        me, _ = store.join("a" * 64, "me", KEYS["me"], bytes([9]) * 32, [], time_ms=now_ms())
        seen = coordinator.roster(me.id)
        assert seen is not None and not seen.peers[0].exit_node
        assert pywg_main(["coordinator", "approve", "x", "--exit-node", "--state", state]) == 0
        seen = coordinator.roster(me.id)
        assert seen is not None and seen.peers[0].exit_node
        assert seen.peers[0].routes == ()  # the subnet is still pending; no /0 for everyone
        x_roster = coordinator.roster(x.id)
        assert x_roster is not None and x_roster.me.routes == EXIT_ROUTES
        node = store.node_by_name("x")
        assert node is not None
        table = coordinator_cli.format_nodes([node])
        assert table.splitlines()[1].split()[4:6] == ["exit", "198.18.50.0/24"]
    finally:
        store.close()
    assert pywg_main(["coordinator", "approve", "x", "--state", state]) == 2
    assert "or --exit-node" in capsys.readouterr().err


def join_options(*argv: str) -> JoinOptions:
    parser = argparse.ArgumentParser()
    join_cli.register(parser.add_subparsers())
    return join_cli._options(parser.parse_args(["join", "https://c.example", *argv]))


def test_join_arguments() -> None:
    options = join_options("--advertise-exit-node", "--advertise-routes", "198.18.50.0/24")
    assert options.advertise_routes == ["198.18.50.0/24", *EXIT_ROUTES]
    chosen = join_options("--exit-node", "x1", "--exit-node-allow-leak")
    assert chosen.exit_node == "x1" and chosen.exit_allow_leak
    for argv, why in (
        (("--advertise-routes", "0.0.0.0/0"), "use --advertise-exit-node"),
        (("--advertise-routes", "::/0"), "use --advertise-exit-node"),
        (("--exit-node-allow-leak",), "needs --exit-node"),
        (("--name", "x1", "--exit-node", "x1"), "another node"),
        (("--exit-node", ""), "another node"),
    ):
        with pytest.raises(MeshError, match=why):
            join_options(*argv)


def test_set_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as usage:
        pywg_main(["set"])
    assert usage.value.code == 2
    assert pywg_main(["set", "--exit-node", "x1", "--state", str(tmp_path)]) == 1
    assert "no pywg join runs" in capsys.readouterr().err
    assert pywg_main(["set", "--exit-node", "", "--state", str(tmp_path)]) == 2


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"nope\n", "not JSON"),
        (b"[]\n", "names no"),
        (b'{"exit": "x1"}\n', "names no"),
        (b'{"exit_node": 7}\n', "a node name or null"),
        (b'{"exit_node": ""}\n', "a node name or null"),
    ],
)
def test_bad_control_requests(line: bytes, why: str) -> None:
    with pytest.raises(ControlError, match=why):
        parse_request(line)


def test_control_socket_round_trip(tmp_path: Path) -> None:
    asked: list[str | None] = []

    async def set_exit(name: str | None) -> str:
        if name == "nas":
            raise ControlError("nas is not an approved exit node")
        asked.append(name)
        return f"now {name}"

    async def scenario() -> None:
        server = ControlServer(str(tmp_path / "control.sock"), set_exit)
        await server.start()
        try:
            assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o600
            assert await asyncio.to_thread(set_exit_node, str(tmp_path), "x1") == "now x1"
            assert await asyncio.to_thread(set_exit_node, str(tmp_path), None) == "now None"
            with pytest.raises(ControlError, match="not an approved exit"):
                await asyncio.to_thread(set_exit_node, str(tmp_path), "nas")
            second = ControlServer(server.path, set_exit)
            with pytest.raises(ControlError, match="another pywg join"):
                await second.start()
        finally:
            server.close()
        assert not os.path.exists(server.path)

    asyncio.run(scenario())
    assert asked == ["x1", None]
