"""The mesh coordinator (pywg.mesh.coordinator), its store, its client and `pywg coordinator`.

Server and clients run on an event loop inside a lab namespace (its own
loopback), so nothing touches the root namespace's network: the `coordinator`
fixture (tests/mesh/conftest.py) starts them inside each scenario, without
a relay of its own unless a test says otherwise. Tunnel networks
198.19.5.0/24, fd19:5::/64 (helpers.mesh_harness.V4, V6).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import select
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nacl.signing import SigningKey

from helpers.mesh_harness import V4, V6, Coordinators, Member, make_coordinator
from pywg import stun
from pywg.cmd import coordinator as coordinator_cli
from pywg.endpoint import parse_endpoint
from pywg.lab import Host
from pywg.mesh import auth, relaychild, tls, wire
from pywg.mesh.client import CoordinatorClient, CoordinatorError
from pywg.mesh.coordinator import Coordinator
from pywg.mesh.relaychild import OwnRelay
from pywg.mesh.relayserver import CoordinatorMembership
from pywg.mesh.schema import HomeRelay, Networks
from pywg.mesh.store import (
    Conflict,
    Store,
    StoreError,
    check_endpoints,
    check_routes,
    generate_ula,
    parse_prefix,
)
from pywg.system.secretfile import read_or_create_secret

needs_lab = pytest.mark.needs_lab  # the server and its clients run in a lab host (`host`)

PREFIX = "pwc"  # of the `host` fixture's lab
SCENARIO_DEADLINE = 60.0


# -- helpers -----------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def coordinator(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Coordinators]:
    """The coordinators of these tests, on each store: SQLite, then PostgreSQL (a database
    for each mesh, which `cli` names with its --state)."""
    new_database = None
    if request.param == "postgresql":
        new_database = request.getfixturevalue("postgres").new_database
    running = Coordinators(tmp_path, new_database)
    _ON_POSTGRES[:] = [running] if new_database else []
    yield running
    _ON_POSTGRES.clear()


_ON_POSTGRES: list[Coordinators] = []  # the test's, when its meshes are on PostgreSQL


def run_in(host: Host, scenario: Callable[[], Awaitable[None]]) -> None:
    """Run `scenario` on an event loop inside the host's namespace, bounded in time."""
    host.ip("link", "set", "lo", "up")

    async def bounded() -> None:
        await asyncio.wait_for(scenario(), SCENARIO_DEADLINE)

    host.call(lambda: asyncio.run(bounded()))


@dataclass
class Raw:
    status: int
    data: Any
    headers: Any
    body: bytes


def now_ms() -> int:
    return int(time.time() * 1000)


async def raw_request(
    url: str,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    control: SigningKey | None = None,
    node: str | None = None,
    time_ms: int | None = None,
    authorization: str | None = None,
) -> tuple[Raw, bytes | None]:
    """One request as any client could send it; the answer and the request's signature."""
    headers = {"Content-Type": "application/json"}
    signature = None
    if control is not None and node is not None:
        authorization, signature = auth.sign_request(
            control, node, method, path, body, time_ms or now_ms()
        )
    if authorization is not None:
        headers["Authorization"] = authorization
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url + path, data=body, headers=headers) as response,
    ):
        answer = await response.read()
        try:
            data = json.loads(answer)
        except ValueError:
            data = None
        return Raw(response.status, data, response.headers, answer), signature


def join_body(token: str, name: str, member: Member, **override: Any) -> bytes:
    body = {
        "token": token,
        "name": name,
        "public_key": member.public_b64,
        "control_key": member.control_b64,
        "routes": [],
    }
    body.update(override)
    return json.dumps(body).encode()


def cli(*argv: str) -> int:
    """`pywg coordinator ARGV`, with --database for the mesh of its --state on PostgreSQL."""
    extra = []
    if _ON_POSTGRES and argv[0] != "serve":
        extra = ["--database", str(_ON_POSTGRES[0].database(argv[argv.index("--state") + 1]))]
    return coordinator_cli.main(["coordinator", *argv, *extra])


def peers_by_name(roster: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in roster["peers"]}


# -- store: no network -------------------------------------------------------------------------


def test_store_files_addresses_and_validation(tmp_path: Any) -> None:
    state = str(tmp_path / "coord")
    store = Store(state)
    try:
        assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
        nets = store.init_networks("198.19.5.0/30", V6)
        assert str(nets.ipv4) == "198.19.5.0/30"
        # fixed at first start
        assert store.init_networks() == nets
        with pytest.raises(Conflict, match="fixed at first start"):
            store.init_networks("198.19.6.0/24")
        now = now_ms()
        store.add_token("a" * 64, now + 60_000, reusable=True)
        keys = [(bytes([i]) * 32, bytes([100 + i]) * 32) for i in range(3)]
        a, _ = store.join("a" * 64, "a", *keys[0], [], time_ms=now)
        b, _ = store.join("a" * 64, "b", *keys[1], [], time_ms=now)
        # .1 and .2; .0 is the network, .3 the broadcast: the /30 is full
        assert (a.ipv4, a.ipv6, b.ipv4, b.ipv6) == (
            "198.19.5.1",
            "fd19:5::1",
            "198.19.5.2",
            "fd19:5::2",
        )
        with pytest.raises(Conflict, match="no free address"):
            store.join("a" * 64, "c", *keys[2], [], time_ms=now)
        with pytest.raises(Conflict, match="taken"):
            store.join("a" * 64, "A", *keys[2], [], time_ms=now)  # names ignore case
        version = store.version()
        store.remove("a")
        assert store.version() == version + 1
        c, _ = store.join("a" * 64, "c", *keys[2], [], time_ms=now)
        assert c.ipv4 == "198.19.5.1"  # the lowest free address again
        assert store.accept_request(c.id, now + 1)
        assert not store.accept_request(c.id, now + 1)  # not newer: a replay
    finally:
        store.close()
    with pytest.raises(StoreError, match="no coordinator state"):
        Store(str(tmp_path / "absent"), create=False)


def test_validation() -> None:
    assert check_endpoints(["203.0.113.7:51820", "[FD18::0002]:51820", "203.0.113.7:51820"]) == [
        "203.0.113.7:51820",
        "[fd18::2]:51820",
    ]
    for bad in (
        ["203.0.113.7"],
        ["203.0.113.7:0"],
        ["203.0.113.7:65536"],
        ["fd18::2:51820"],
        ["host.example:80"],
        ["[fe80::1%eth0]:1"],
        ["0.0.0.0:1"],
        ["256.1.1.1:1"],
        [7],
        "203.0.113.7:1",
        [f"203.0.113.{i}:1" for i in range(1, 10)],
    ):
        with pytest.raises(StoreError):
            check_endpoints(bad)
    assert parse_prefix("198.18.50.0/24") == "198.18.50.0/24"
    assert parse_prefix("FD18:50::/64") == "fd18:50::/64"
    for bad in (
        "0.0.0.0/0",
        "::/0",
        "198.18.50.1/24",
        "224.0.0.0/4",
        "127.0.0.0/8",
        "x",
        "1.2.3.4",
    ):
        with pytest.raises(StoreError):
            parse_prefix(bad)
    mesh = Networks(IPv4Network(V4), IPv6Network(V6))
    for inside in ("198.19.5.0/25", "198.19.0.0/16", "fd19:5::/80", "fd19::/16"):
        with pytest.raises(StoreError, match="overlaps the mesh"):
            parse_prefix(inside, mesh)
    assert parse_prefix("198.19.6.0/24", mesh) == "198.19.6.0/24"
    with pytest.raises(StoreError, match="at most"):
        check_routes([f"198.18.{i}.0/24" for i in range(65)])
    ula = generate_ula()
    assert ula.prefixlen == 64 and str(ula).startswith("fd")
    assert generate_ula(1, 2) == generate_ula(1, 2) != generate_ula(2, 2)


# -- the API -----------------------------------------------------------------------------------


@needs_lab
def test_join_rosters_and_long_poll(host: Host, coordinator: Coordinators) -> None:
    async def scenario() -> None:
        async with coordinator(("nas", "pi", "laptop")) as running:
            coord = running.coordinator
            nas, pi, laptop = running.members
            token = coord.new_token(600, reusable=True)
            answer = await nas.join(token, ["198.18.50.0/24"])
            me = answer["self"]
            assert answer["coordinator_key"] == auth.b64(coord.public_key)
            assert nas.client.coordinator_key == coord.public_key
            issued, expires = me.pop("keys_ms"), me.pop("expires_ms")  # pywg.mesh.expiry
            assert abs(issued - now_ms()) < 60_000 and expires - issued == 180 * 86_400_000
            assert me == {
                "name": "nas",
                "public_key": nas.public_b64,
                "addresses": ["198.19.5.1", "fd19:5::1"],
                "routes": [],
                "pending_routes": ["198.18.50.0/24"],
                "node_id": 1,  # the first node's id on the home relays
                "network": {"ipv4": V4, "ipv6": V6},
            }
            assert (await pi.join(token))["self"]["addresses"] == ["198.19.5.2", "fd19:5::2"]
            assert (await laptop.join(token))["self"]["addresses"] == ["198.19.5.3", "fd19:5::3"]
            v1 = await nas.update(["203.0.113.7:51820", "[fd18::2]:51820"], ["198.18.50.0/24"])
            again = await nas.update(["203.0.113.7:51820", "[fd18::2]:51820"], ["198.18.50.0/24"])
            assert again == v1  # nothing changed: the version stays
            node_ids: dict[str, dict[str, int]] = {}
            for member in (nas, pi, laptop):
                roster = await member.roster(0, 0)
                assert roster["version"] == v1
                assert roster["network"] == {"ipv4": V4, "ipv6": V6}
                assert "relays" not in roster  # no relay map: no relay
                assert roster["self"]["name"] == member.name
                peers = peers_by_name(roster)
                assert set(peers) == {"nas", "pi", "laptop"} - {member.name}
                for name, peer in peers.items():
                    other = {"nas": nas, "pi": pi, "laptop": laptop}[name]
                    assert peer["public_key"] == other.public_b64
                    assert peer["control_key"] == other.control_b64
                    assert peer["routes"] == []  # pending routes reach nobody
                # node ids: each node's own is the one its peers see, unique, 1..2^24-1
                ids = {name: peer["node_id"] for name, peer in peers.items()}
                ids[member.name] = roster["self"]["node_id"]
                assert len(set(ids.values())) == len(ids)
                assert all(1 <= i < 1 << 24 for i in ids.values())
                assert ids == node_ids.setdefault("all", ids)
                if member is not nas:
                    assert peers["nas"]["endpoints"] == ["203.0.113.7:51820", "[fd18::2]:51820"]
                    assert peers["nas"]["addresses"] == ["198.19.5.1", "fd19:5::1"]
            # a long-poll returns at its deadline when nothing changes ...
            started = time.monotonic()
            same = await pi.roster(v1, 0.5)
            assert same["version"] == v1 and 0.4 < time.monotonic() - started < 2
            # ... and at once when the roster changes
            poll = asyncio.create_task(pi.roster(v1, 30))
            await asyncio.sleep(0.3)
            assert not poll.done()
            started = time.monotonic()
            v2 = await nas.update(["203.0.113.9:51820"], ["198.18.50.0/24"])
            roster = await poll
            assert time.monotonic() - started < 2
            assert v2 == v1 + 1 and roster["version"] == v2
            assert peers_by_name(roster)["nas"]["endpoints"] == ["203.0.113.9:51820"]
            # a long-poll ends (with the roster) when the coordinator closes
            poll = asyncio.create_task(laptop.roster(v2, 30))
            await asyncio.sleep(0.2)
            started = time.monotonic()
            await coord.close()
            assert (await poll)["version"] == v2
            assert time.monotonic() - started < 1.5

    run_in(host, scenario)


RELAY_SIGNER = SigningKey(bytes(range(32)))
HOME_RELAYS = (
    HomeRelay(1, "fra", bytes(RELAY_SIGNER.verify_key), "relay1.example.org"),
    HomeRelay(2, "nyc", bytes([7]) * 32, "198.18.9.7", 3479, 8443, bytes([0xAB]) * 32),
)


@needs_lab
def test_home_relays_in_rosters(host: Host, coordinator: Coordinators) -> None:
    """The relay map in every roster; a node's home relay as it reported it, to its peers
    and itself; a number outside the map refused; the map's relays read the members."""

    async def scenario() -> None:
        async with coordinator(("a", "b"), home_relays=HOME_RELAYS) as running:
            a, b = running.members
            await running.join(a, b)
            roster = await b.roster(0, 0)
            assert roster["relays"] == [relay.to_json() for relay in HOME_RELAYS]
            assert roster["relays"][1]["pin"] == "ab" * 32
            assert "home_relay" not in peers_by_name(roster)["a"]  # none reported yet
            endpoints = [parse_endpoint("203.0.113.7:51820")]
            v1 = await a.client.update(endpoints, [], home_relay=2)
            assert peers_by_name(await b.roster(0, 0))["a"]["home_relay"] == 2
            assert (await a.roster(0, 0))["self"]["home_relay"] == 2
            assert await a.client.update(endpoints, [], home_relay=2) == v1  # no change
            with pytest.raises(CoordinatorError, match="home_relay 3 is not a relay") as bad:
                await a.client.update(endpoints, [], home_relay=3)
            assert bad.value.status == 400
            assert await a.client.update(endpoints, []) == v1  # left out: kept
            v2 = await a.client.update(endpoints, [], home_relay=0)  # none
            assert v2 == v1 + 1
            assert "home_relay" not in peers_by_name(await b.roster(0, 0))["a"]
            # relay 1 of the map reads the members without --relay-key
            coordinator_key = running.coordinator.public_key
            members = CoordinatorMembership(running.url, RELAY_SIGNER, coordinator_key)
            try:
                await members.refresh(0)
            finally:
                await members.close()
            assert members.by_key(a.public_raw) is not None
            assert len(members) == 2

    run_in(host, scenario)


def test_relay_maps_are_refused_with_a_number_name_or_key_twice(tmp_path: Any) -> None:
    one, two = HOME_RELAYS
    for twice in (
        HomeRelay(1, "other", two.key, "h"),
        HomeRelay(3, "fra", two.key, "h"),
        HomeRelay(3, "other", one.key, "h"),
    ):
        with pytest.raises(ValueError, match="same"):
            make_coordinator(str(tmp_path), home_relays=[one, twice])


def test_a_store_with_tables_nothing_reads_opens_without_them(tmp_path: Any) -> None:
    import sqlite3

    store = Store(str(tmp_path))
    store.init_networks(V4, V6)
    store.close()
    db = sqlite3.connect(str(tmp_path / "coordinator.db"))
    db.execute("CREATE TABLE removals (public_key BLOB PRIMARY KEY)")
    db.execute("CREATE TABLE relay_pairs (sender BLOB, receiver BLOB, port INTEGER)")
    db.execute("INSERT INTO removals VALUES (?)", (bytes(32),))
    db.commit()
    db.close()
    store = Store(str(tmp_path))
    try:
        assert str(store.networks().ipv4) == V4  # type: ignore[union-attr]
        tables = {row[0] for row in store._db.execute("SELECT name FROM sqlite_master")}
        assert not tables & {"removals", "relay_pairs"}, tables
    finally:
        store.close()


def test_a_store_from_before_home_relays_gets_the_column(tmp_path: Any) -> None:
    import sqlite3

    store = Store(str(tmp_path))
    store.init_networks(V4, V6)
    store.close()
    db = sqlite3.connect(str(tmp_path / "coordinator.db"))
    db.execute("ALTER TABLE nodes DROP COLUMN home_relay")  # as an older pywg made it
    db.commit()
    db.close()
    store = Store(str(tmp_path))
    try:
        token = "a" * 64
        store.add_token(token, now_ms() + 60_000, now=now_ms())
        node, _ = store.join(token, "n", bytes(32), bytes(32), [], time_ms=now_ms(), now=now_ms())
        assert node.home_relay is None
        store.update(node.id, home_relay=5)
        assert store.node_by_id(node.id) is not None
        assert store.node_by_id(node.id).home_relay == 5  # type: ignore[union-attr]
        with pytest.raises(StoreError, match="home relay"):
            store.update(node.id, home_relay=16)
    finally:
        store.close()


@needs_lab
def test_tokens(host: Host, coordinator: Coordinators) -> None:
    async def scenario() -> None:
        async with coordinator([f"n{i}" for i in range(6)]) as running:
            coord, url, members = running.coordinator, running.url, running.members
            once = coord.new_token(600)
            await members[0].join(once)
            # the node it admitted may repeat its join (a lost answer), nobody else
            again = await members[0].join(once)
            assert again["self"]["addresses"] == ["198.19.5.1", "fd19:5::1"]
            with pytest.raises(CoordinatorError) as refused:
                await members[1].join(once)
            assert refused.value.status == 401 and "used" in refused.value.message
            # expired
            secret, expired = auth.new_token(coord.public_key)
            coord.store.add_token(expired, now_ms() - 1, now=now_ms() - 60_000)
            with pytest.raises(CoordinatorError) as refused:
                await members[1].join(secret)
            assert refused.value.status == 401 and "expired" in refused.value.message
            # unknown secret with the right fingerprint; a token for another coordinator
            unknown, _ = auth.new_token(coord.public_key)
            with pytest.raises(CoordinatorError) as refused:
                await members[1].join(unknown)
            assert refused.value.status == 401 and "unknown" in refused.value.message
            with pytest.raises(CoordinatorError, match="not a pywg join token"):
                await members[1].join("not-a-token")
            # the server refuses them too, whatever a client does
            for token in ("garbage", unknown, once):
                body = join_body(token, "n1", members[1])
                answer, _ = await raw_request(
                    url,
                    "POST",
                    "/v1/join",
                    body,
                    control=members[1].control,
                    node=members[1].public_b64,
                )
                assert answer.status == 401, token
            assert coord.store.node_by_name("n1") is None
            # reusable tokens: many nodes; a taken name or key is a conflict
            many = coord.new_token(600, reusable=True)
            await members[1].join(many)
            await members[2].join(many)
            with pytest.raises(CoordinatorError) as refused:
                await members[3].client.join(many, "N1", [])
            assert refused.value.status == 409
            impostor = Member("n3", url, wg=members[2].wg)  # n2's WireGuard key, own control key
            with pytest.raises(CoordinatorError) as refused:
                await impostor.join(many)
            assert refused.value.status == 409
            await impostor.client.close()
            assert [t.uses for t in coord.store.tokens()] == [1, 2]
            assert len(coord.store.nodes()) == 3

    run_in(host, scenario)


@needs_lab
def test_client_refuses_another_coordinator(
    host: Host, tmp_path: Any, coordinator: Coordinators
) -> None:
    """The key in the answer must match the token's fingerprint, and sign the answer."""

    async def scenario() -> None:
        async with (
            coordinator(state=tmp_path / "real") as real,
            coordinator(state=tmp_path / "other") as other,
        ):
            await against_others(real.coordinator, real.url, other.url)

    async def against_others(real: Coordinator, real_url: str, other_url: str) -> None:
        # a hostile coordinator that takes any token and signs with its own key
        hostile_key = SigningKey.generate()

        async def accept_all(request: aiohttp.web.Request) -> aiohttp.web.Response:
            parsed = auth.parse_authorization(request.headers.get("Authorization"))
            body = json.dumps(
                {
                    "self": {"name": "x"},
                    "coordinator_key": auth.b64(bytes(hostile_key.verify_key.encode())),
                }
            ).encode()
            response = aiohttp.web.Response(body=body, content_type="application/json")
            response.headers[auth.SIGNATURE_HEADER] = auth.sign_response(
                hostile_key, parsed.signature, body
            )
            response.headers["X-Pywg-Coordinator-Key"] = auth.b64(
                bytes(hostile_key.verify_key.encode())
            )
            return response

        app = aiohttp.web.Application()
        app.router.add_post("/v1/join", accept_all)
        runner = aiohttp.web.AppRunner(app)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        hostile_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            token = real.new_token(600, reusable=True)
            for url in (other_url, hostile_url):
                member = Member("n", url)
                with pytest.raises(CoordinatorError, match="fingerprint") as refused:
                    await member.join(token)
                assert refused.value.status is None
                assert member.client.coordinator_key is None
                await member.client.close()
            # a known coordinator key pins every answer
            member = Member("n", real_url)
            await member.join(token)
            pinned = CoordinatorClient(
                other_url, member.public_b64, member.control, coordinator_key=real.public_key
            )
            # another coordinator refuses a stranger unsigned: a refusal, nothing more
            with pytest.raises(CoordinatorError) as refused:
                await pinned.roster(0, 0)
            assert refused.value.status == 401
            await pinned.close()
            # an answer signed by another key is refused
            pinned = CoordinatorClient(
                hostile_url, member.public_b64, member.control, coordinator_key=real.public_key
            )
            with pytest.raises(CoordinatorError, match="not signed by the coordinator"):
                await pinned.join(token, "n", [])
            await pinned.close()
            await member.client.close()
        finally:
            await runner.cleanup()

    run_in(host, scenario)


@needs_lab
def test_join_signature_must_match(host: Host, coordinator: Coordinators) -> None:
    async def scenario() -> None:
        async with coordinator(("n", "s")) as running:
            coord, url = running.coordinator, running.url
            member, stranger = running.members
            token = coord.new_token(600, reusable=True)
            body = join_body(token, "n", member)
            cases: dict[str, dict[str, Any]] = {
                "another control key": {"control": stranger.control, "node": member.public_b64},
                "another node": {"control": member.control, "node": stranger.public_b64},
                "stale": {
                    "control": member.control,
                    "node": member.public_b64,
                    "time_ms": now_ms() - 600_000,
                },
            }
            for what, kwargs in cases.items():
                answer, signature = await raw_request(url, "POST", "/v1/join", body, **kwargs)
                assert answer.status == 401, what
                assert "error" in answer.data
                # not authenticated: not signed (no signature made for a stranger)
                assert auth.SIGNATURE_HEADER not in answer.headers, what
            answer, _ = await raw_request(url, "POST", "/v1/join", body)
            assert answer.status == 401 and auth.SIGNATURE_HEADER not in answer.headers
            assert coord.store.nodes() == []
            answer, signature = await raw_request(
                url, "POST", "/v1/join", body, control=member.control, node=member.public_b64
            )
            assert answer.status == 200
            assert answer.headers["X-Pywg-Coordinator-Key"] == auth.b64(coord.public_key)
            # authenticated: signed, for the request it answers
            auth.verify_response(
                coord.public_key,
                signature or b"",
                answer.body,
                answer.headers.get(auth.SIGNATURE_HEADER),
            )
            # the exact request again: a replay
            answer, _ = await raw_request(
                url,
                "POST",
                "/v1/join",
                body,
                authorization=auth.sign_request(
                    member.control, member.public_b64, "POST", "/v1/join", body, 1
                )[0],
            )
            assert answer.status == 401

    run_in(host, scenario)


@needs_lab
def test_forged_updates_are_refused(host: Host, coordinator: Coordinators) -> None:
    async def scenario() -> None:
        async with coordinator(("a", "b")) as running:
            url = running.url
            a, b = running.members
            await running.join(a, b)
            await a.update(["203.0.113.7:51820"], [])
            before = await b.roster(0, 0)
            forged = json.dumps({"endpoints": ["198.51.100.66:666"]}).encode()
            # signed by b's control key, claiming to be a
            answer, _ = await raw_request(
                url, "POST", "/v1/update", forged, control=b.control, node=a.public_b64
            )
            assert answer.status == 401
            # not signed at all; a malformed Authorization
            answer, _ = await raw_request(url, "POST", "/v1/update", forged)
            assert answer.status == 401
            answer, _ = await raw_request(
                url, "POST", "/v1/update", forged, authorization="PYWG-Ed25519 node=x"
            )
            assert answer.status == 401
            # signed for another path or body
            header, _ = auth.sign_request(
                a.control, a.public_b64, "POST", "/v1/join", forged, now_ms()
            )
            answer, _ = await raw_request(url, "POST", "/v1/update", forged, authorization=header)
            assert answer.status == 401
            # a real request of a, replayed exactly
            genuine = json.dumps({"endpoints": ["203.0.113.8:51820"]}).encode()
            header, _ = auth.sign_request(
                a.control, a.public_b64, "POST", "/v1/update", genuine, now_ms() + 5000
            )
            answer, _ = await raw_request(url, "POST", "/v1/update", genuine, authorization=header)
            assert answer.status == 200
            header2, _ = auth.sign_request(
                a.control,
                a.public_b64,
                "POST",
                "/v1/update",
                forged,
                now_ms() + 5000 - auth.REORDER_MS - 1000,
            )
            # the same request again; a request signed long before it (a request
            # overtaken by at most REORDER_MS is taken: test_mesh_wire's ReplayGuard tests)
            for replay, body in ((header, genuine), (header2, forged)):
                answer, _ = await raw_request(url, "POST", "/v1/update", body, authorization=replay)
                assert answer.status == 401
            after = await b.roster(0, 0)
            assert peers_by_name(after)["a"]["endpoints"] == ["203.0.113.8:51820"]
            assert after["version"] == before["version"] + 1
            # a's own client goes on (its clock is behind the replayed request's)
            a.client._last_ms = now_ms() + 6000
            assert await a.update(["203.0.113.7:51820"], []) == after["version"] + 1

    run_in(host, scenario)


@needs_lab
def test_routes_need_approval(host: Host, tmp_path: Any, coordinator: Coordinators) -> None:
    async def scenario() -> None:
        state = str(tmp_path)
        async with coordinator(("gw", "pi"), poll_interval=0.5) as running:
            coord = running.coordinator
            gw, pi = running.members
            token = coord.new_token(600, reusable=True)
            await gw.join(token, ["198.18.50.0/24", "fd18:50::/64"])
            await pi.join(token)
            roster = await pi.roster(0, 0)
            assert peers_by_name(roster)["gw"]["routes"] == []
            # approved from the command line (its own connection, as another process)
            poll = asyncio.create_task(pi.roster(roster["version"], 30))
            await asyncio.sleep(0.2)
            started = time.monotonic()
            assert cli("approve", "--state", state, "gw", "198.18.50.0/24") == 0
            roster = await poll
            assert time.monotonic() - started < 2
            assert peers_by_name(roster)["gw"]["routes"] == ["198.18.50.0/24"]
            me = (await gw.roster(0, 0))["self"]
            assert me["routes"] == ["198.18.50.0/24"] and me["pending_routes"] == ["fd18:50::/64"]
            # still advertised: still approved; withdrawn and advertised again: pending again
            await gw.update([], ["198.18.50.0/24", "fd18:50::/64", "198.18.51.0/24"])
            me = (await gw.roster(0, 0))["self"]
            assert me["routes"] == ["198.18.50.0/24"]
            assert me["pending_routes"] == ["fd18:50::/64", "198.18.51.0/24"]
            await gw.update([], [])
            await gw.update([], ["198.18.50.0/24"])
            me = (await gw.roster(0, 0))["self"]
            assert me["routes"] == [] and me["pending_routes"] == ["198.18.50.0/24"]
            # routes the coordinator refuses
            for bad in (
                ["0.0.0.0/0"],
                ["198.19.5.0/25"],  # inside the mesh
                ["198.18.50.1/24"],
                ["fd19:5::/80"],
                [f"198.18.{i}.0/24" for i in range(65)],
                "198.18.50.0/24",
                [1],
            ):
                with pytest.raises(CoordinatorError) as refused:
                    await gw.client.update([], bad)  # type: ignore[arg-type]
                assert refused.value.status == 400, bad
        # with --auto-approve-routes advertised routes are approved at once
        auto = coordinator(("gw",), state=tmp_path / "auto", auto_approve_routes=True)
        async with auto as running:
            (node,) = running.members
            answer = await node.join(running.coordinator.new_token(60), ["198.18.50.0/24"])
            assert answer["self"]["routes"] == ["198.18.50.0/24"]
            await node.update([], ["198.18.50.0/24", "198.18.52.0/24"])
            me = (await node.roster(0, 0))["self"]
            assert me["routes"] == ["198.18.50.0/24", "198.18.52.0/24"]

    run_in(host, scenario)


@needs_lab
def test_restart_keeps_the_mesh(host: Host, tmp_path: Any, coordinator: Coordinators) -> None:
    async def scenario() -> None:
        state = str(tmp_path)
        async with coordinator(("a", "b", "c")) as running:
            coord, url = running.coordinator, running.url
            port = coord.port
            a, b, c = running.members
            token = coord.new_token(600, reusable=True)
            spare = coord.new_token(600)
            await a.join(token)
            await b.join(token)
            await a.update(["203.0.113.7:51820"], [])
            version = (await a.roster(0, 0))["version"]
            body = json.dumps({"endpoints": []}).encode()
            old, _ = auth.sign_request(
                b.control, b.public_b64, "POST", "/v1/update", body, now_ms()
            )
            answer, _ = await raw_request(url, "POST", "/v1/update", body, authorization=old)
            assert answer.status == 200
            key = coord.public_key

            assert await running.restart(port) == port  # a new Coordinator on the same state
            coord = running.coordinator
            assert coord.public_key == key
            roster = await a.roster(0, 0)
            assert roster["version"] == version
            assert roster["self"]["addresses"] == ["198.19.5.1", "fd19:5::1"]
            assert peers_by_name(roster)["b"]["addresses"] == ["198.19.5.2", "fd19:5::2"]
            roster = await b.roster(0, 0)
            assert peers_by_name(roster)["a"]["endpoints"] == ["203.0.113.7:51820"]
            # the last request times survived: a request taken before the restart is a replay
            answer, _ = await raw_request(url, "POST", "/v1/update", body, authorization=old)
            assert answer.status == 401
            # tokens survived: the single-use one works once
            await c.join(spare)
            assert (await c.roster(0, 0))["self"]["addresses"][0] == "198.19.5.3"
        # the networks are fixed
        with pytest.raises(Conflict, match="fixed at first start"):
            make_coordinator(state, ipv4="198.19.6.0/24", database=coordinator.database(state))

    run_in(host, scenario)


@needs_lab
def test_removed_node_leaves_rosters(host: Host, tmp_path: Any, coordinator: Coordinators) -> None:
    async def scenario() -> None:
        state = str(tmp_path)
        async with coordinator(("a", "b", "c"), poll_interval=0.5) as running:
            coord = running.coordinator
            a, b, c = running.members
            await running.join(a, b, c)
            roster = await a.roster(0, 0)
            poll = asyncio.create_task(a.roster(roster["version"], 30))
            await asyncio.sleep(0.2)
            started = time.monotonic()
            assert cli("remove", "--state", state, "b") == 0  # another connection
            roster = await poll
            assert time.monotonic() - started < 2
            assert set(peers_by_name(roster)) == {"c"}
            with pytest.raises(CoordinatorError) as refused:
                await b.roster(0, 0)
            assert refused.value.status == 401
            # in this process too
            coord.remove("c")
            assert (await a.roster(0, 0))["peers"] == []
            assert cli("remove", "--state", state, "b") == 1

    run_in(host, scenario)


@needs_lab
def test_garbage_is_400_never_500(host: Host, coordinator: Coordinators) -> None:
    async def scenario() -> None:
        async with coordinator(("m", "new")) as running:
            coord, url = running.coordinator, running.url
            member, newcomer = running.members
            token = await running.join(member)
            good = json.loads(join_body(token, "new", newcomer))
            join_cases: list[bytes] = [
                b"",
                b"not json",
                b"\xff\xfe",
                b"[1, 2]",
                b"null",
                b"[" * 50_000 + b"]" * 50_000,
                b"1" * 60_000,
                b" " * (2 << 20),
                json.dumps({**good, "name": 7}).encode(),
                json.dumps({**good, "name": "bad name!"}).encode(),
                json.dumps({**good, "name": "x" * 64}).encode(),
                json.dumps({**good, "routes": "198.18.50.0/24"}).encode(),
                json.dumps({**good, "routes": [None]}).encode(),
                json.dumps({**good, "token": ["x"]}).encode(),
                json.dumps({**good, "public_key": "AAAA"}).encode(),
                json.dumps({**good, "control_key": None}).encode(),
                json.dumps({k: v for k, v in good.items() if k != "name"}).encode(),
            ]
            for body in join_cases:
                answer, _ = await raw_request(
                    url,
                    "POST",
                    "/v1/join",
                    body,
                    control=newcomer.control,
                    node=newcomer.public_b64,
                )
                assert answer.status == 400, body[:40]
                assert isinstance(answer.data["error"], str)
            update_cases = [
                b"not json",
                b"[]",
                b"[" * 50_000 + b"]" * 50_000,
                json.dumps({"endpoints": "1.2.3.4:5"}).encode(),
                json.dumps({"endpoints": ["1.2.3.4"]}).encode(),
                json.dumps({"endpoints": [f"198.51.100.{i}:1" for i in range(9)]}).encode(),
                json.dumps({"endpoints": [{"a": 1}]}).encode(),
                json.dumps({"routes": {"a": 1}}).encode(),
            ]
            for body in update_cases:
                answer, _ = await raw_request(
                    url, "POST", "/v1/update", body, control=member.control, node=member.public_b64
                )
                assert answer.status == 400, body[:40]
            for query in (
                "since=x",
                "wait=nan",
                "wait=-1",
                "since=99999999999999999999",
                "wait=1e999",
            ):
                path = f"/v1/roster?{query}"
                answer, _ = await raw_request(
                    url, "GET", path, control=member.control, node=member.public_b64
                )
                assert answer.status == 400, query
            answer, signature = await raw_request(
                url, "GET", "/v1/nothing", control=member.control, node=member.public_b64
            )
            assert answer.status == 404 and answer.data == {"error": "not found"}
            auth.verify_response(
                coord.public_key,
                signature or b"",
                answer.body,
                answer.headers[auth.SIGNATURE_HEADER],
            )
            answer, _ = await raw_request(url, "DELETE", "/v1/roster")
            assert answer.status == 405 and "error" in answer.data
            answer, _ = await raw_request(url, "GET", "/v1/health")
            assert answer.status == 200 and answer.data == {"ok": True}  # no node count
            # the member is unharmed
            roster = await member.roster(0, 0)
            assert roster["self"]["name"] == "m" and roster["self"]["addresses"][0] == "198.19.5.1"
            assert len(coord.store.nodes()) == 1

    run_in(host, scenario)


async def associated(relay: HomeRelay, member: Member, seconds: float = 15) -> int:
    """The node id relay `relay` answers `member`'s UDP association with (docs/relay.md),
    once it has the member (it reads the members from the coordinator)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        while True:
            request = wire.association_request(
                stun.new_transaction_id(),
                member.public_raw,
                member.control,
                relay.key,
                int(time.time() * 1000),
            )
            await loop.sock_sendto(sock, request, (relay.host, relay.udp_port))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.3):
                    answer = stun.parse_binding_response(await loop.sock_recv(sock, 2048))
                    node_id = wire.answered_node_id(answer)
                    if node_id is not None:
                        return node_id
            assert loop.time() < deadline, f"relay {relay.number} never took {member.name}"


@needs_lab
@pytest.mark.time_limit(60)
@pytest.mark.parametrize("https", [False, True])
def test_own_relay_is_a_supervised_child_reading_the_members(
    host: Host, tmp_path: Any, coordinator: Coordinators, https: bool
) -> None:
    """The own relay: relay 1 of the map (its key and pin made in STATE/relay, kept across
    restarts), a child process that reads the members over loopback (over HTTPS pinning
    the coordinator's certificate), started again when killed, ended when the coordinator
    closes."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    certificate = tls.load_or_make(str(state), ["127.0.0.1"]) if https else None
    own = OwnRelay("127.0.0.1", "vps", "127.0.0.1", 3478, 8443)
    other = HomeRelay(2, "nyc", bytes(RELAY_SIGNER.verify_key), "198.18.9.7")

    async def scenario() -> None:
        async with coordinator(
            ("a",), state=state, relay=own, home_relays=[other], certificate=certificate
        ) as running:
            (a,) = running.members
            await running.join(a)
            relays = (await a.roster(0, 0))["relays"]
            key = SigningKey(read_or_create_secret(str(state / "relay" / "relay.key")))
            pin = tls.load_or_make(str(state / "relay")).pin
            assert (
                relays[0]
                == HomeRelay(
                    1, "vps", bytes(key.verify_key), "127.0.0.1", 3478, 8443, pin
                ).to_json()
            )
            assert relays[1] == other.to_json()
            entry = running.coordinator.home_relays[0]
            node_id = (await a.roster(0, 0))["self"]["node_id"]
            assert await associated(entry, a) == node_id
            supervisor = running.coordinator.relay
            assert supervisor is not None and supervisor.process is not None
            assert supervisor.argv.count("--coordinator-pin") == https
            first = supervisor.process
            first.kill()
            await first.wait()
            deadline = time.monotonic() + 10
            while supervisor.process is first or supervisor.starts < 2:
                assert time.monotonic() < deadline, "the relay was not started again"
                await asyncio.sleep(0.1)
            assert await associated(entry, a) == node_id
            # a restarted coordinator keeps its relay's key and pin
            await running.restart()
            assert running.coordinator.home_relays[0] == entry
            second = running.coordinator.relay
            assert second is not None
            await asyncio.sleep(0.5)
            process = second.process
            assert process is not None and process.returncode is None
        assert process.returncode is not None  # the relay ends with the coordinator

    run_in(host, scenario)


# -- the command line --------------------------------------------------------------------------


@needs_lab
def test_cli_token_nodes_approve(
    host: Host, tmp_path: Any, coordinator: Coordinators, capsys: pytest.CaptureFixture[str]
) -> None:
    state = str(tmp_path / "state")
    assert cli("nodes", "--state", state) == 1
    assert "no coordinator state" in capsys.readouterr().err
    assert not os.path.exists(state)

    async def scenario() -> None:
        async with coordinator(("gw", "pi"), state=state) as running:
            url = running.url
            gw, pi = running.members
            capsys.readouterr()
            assert cli("token", "--state", state, "--ttl", "600", "--url", url) == 0
            out, err = capsys.readouterr()
            token = out.strip()
            assert f"pywg join {url} --token {token}" in err and "single-use" in err
            await gw.join(token, ["198.18.50.0/24"])
            with pytest.raises(CoordinatorError):
                await pi.join(token)
            assert cli("token", "--state", state, "--reusable") == 0
            await pi.join(capsys.readouterr().out.strip())
            await gw.update(["203.0.113.7:51820"], ["198.18.50.0/24"])

            assert cli("nodes", "--state", state) == 0
            lines = capsys.readouterr().out.splitlines()
            header = ["NAME", "ADDRESSES", "ENDPOINTS", "ROUTES", "PENDING", "LAST", "SEEN"]
            assert lines[0].split() == [*header, "EXPIRES"]
            expires = time.strftime("%Y-%m-%d", time.localtime(time.time() + 180 * 86400))
            assert lines[1].split()[-1] == expires  # the default key expiry
            gw_line = ["gw", "198.19.5.1", "fd19:5::1", "203.0.113.7:51820", "-", "198.18.50.0/24"]
            assert lines[1].split()[:6] == gw_line
            assert lines[2].split()[:6] == ["pi", "198.19.5.2", "fd19:5::2", "-", "-", "-"]
            assert cli("nodes", "--state", state, "--json") == 0
            listing = json.loads(capsys.readouterr().out)
            assert listing["network"] == {"ipv4": V4, "ipv6": V6}
            assert [n["name"] for n in listing["nodes"]] == ["gw", "pi"]
            assert listing["nodes"][0]["pending_routes"] == ["198.18.50.0/24"]
            assert listing["nodes"][0]["home_relay"] is None

            assert cli("approve", "--state", state, "gw", "198.18.50.0/24") == 0
            assert "approved for gw: 198.18.50.0/24" in capsys.readouterr().out
            assert cli("approve", "--state", state, "gw", "198.18.50.0/24") == 0
            assert "already" in capsys.readouterr().out
            assert cli("approve", "--state", state, "nobody", "198.18.50.0/24") == 1
            assert cli("approve", "--state", state, "gw", "198.18.99.0/24") == 1
            assert "does not advertise" in capsys.readouterr().err
            assert cli("approve", "--state", state, "gw", "not-a-prefix") == 2
            assert cli("token", "--state", state, "--ttl", "-5") == 2
            err = capsys.readouterr().err
            assert "Traceback" not in err and err.count("\n") == 2
            roster = await pi.roster(0, 0)
            assert peers_by_name(roster)["gw"]["routes"] == ["198.18.50.0/24"]

    run_in(host, scenario)


def test_cli_serve_arguments(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    state = str(tmp_path)
    key = auth.b64(bytes([7]) * 32)
    for argv, message in (
        (["--listen", "8580"], "HOST:PORT"),
        (["--listen", "fd18::1:8580"], "brackets"),
        (["--listen", "0.0.0.0:99999"], "HOST:PORT"),
        ([], "--relay-host"),
        (["--relay-listen", "relay.example", "--relay-host", "r"], "not an IP address"),
        (["--relay-host", "bad host!"], "not a host name"),
        (["--relay-host", "r", "--relay-port", "0"], "--relay-port must be 1..65535"),
        (["--relay-host", "r", "--relay-tcp-port", "65536"], "--relay-tcp-port must be"),
        (["--relay-host", "r", "--relay-name", ""], "--relay-name"),
        (["--relay-host", "r", "--home-relay", f"relay={key}@h"], "the own relay's name"),
    ):
        assert cli("serve", "--state", state, *argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)
    assert os.listdir(state) == []  # nothing was started
    args = argparse.Namespace(
        no_relay=False,
        relay_listen="198.18.9.2",
        relay_host=None,
        relay_name="relay",
        relay_port=3478,
        relay_tcp_port=443,
        relay_metrics_listen=None,
        listen=":8580",
    )
    assert coordinator_cli.relay_config(args) == OwnRelay("198.18.9.2", "relay", "198.18.9.2")
    args.relay_listen, args.listen = "::", "[2001:db8::5]:8580"  # the API's address, then
    assert coordinator_cli.relay_config(args) == OwnRelay("2001:db8::5")
    args.relay_host, args.relay_name, args.relay_port = "vps.example.org", "fra", 3479
    assert coordinator_cli.relay_config(args) == OwnRelay("vps.example.org", "fra", "::", 3479)
    # its metrics: the address checked here, handed to the child as its --metrics-listen
    args.relay_metrics_listen = "127.0.0.1:9587"
    own = coordinator_cli.relay_config(args)
    assert own is not None and own.metrics_listen == "127.0.0.1:9587"
    where = relaychild.Coordinates("http://127.0.0.1:8580", bytes(32), None)
    argv = relaychild.command("/state", own, where)
    assert argv[argv.index("--metrics-listen") + 1] == "127.0.0.1:9587"
    assert "--metrics-listen" not in relaychild.command("/state", OwnRelay("h"), where)
    args.relay_metrics_listen = "9587"
    with pytest.raises(coordinator_cli.UsageError, match="--relay-metrics-listen"):
        coordinator_cli.relay_config(args)
    args.no_relay = True
    assert coordinator_cli.relay_config(args) is None


@needs_lab
def test_cli_serve_process(host: Host, tmp_path: Any) -> None:
    """`pywg coordinator serve` as a process: serves, notices admin commands, stops on SIGTERM."""
    state = str(tmp_path / "state")
    code = "import sys; from pywg.cmd.coordinator import main; sys.exit(main(sys.argv[1:]))"
    argv = [sys.executable, "-c", code, "coordinator", "serve", "--state", state]
    common = ["--listen", "127.0.0.1:8580", "--ipv4", V4, "--ipv6", V6, "--no-relay"]
    host.ip("link", "set", "lo", "up")
    proc = host.popen(*argv, *common, "--plain-http", stderr=subprocess.PIPE)
    try:

        async def scenario() -> None:
            url = "http://127.0.0.1:8580"
            deadline = time.monotonic() + 20
            while True:
                try:
                    answer, _ = await raw_request(url, "GET", "/v1/health")
                    break
                except aiohttp.ClientError:
                    assert time.monotonic() < deadline and proc.poll() is None
                    await asyncio.sleep(0.1)
            assert answer.data == {"ok": True}
            token = await asyncio.to_thread(_token_from_cli, state)
            async with Member("n", url) as member:
                answer_self = (await member.join(token))["self"]
                assert answer_self["network"] == {"ipv4": V4, "ipv6": V6}
                roster = await member.roster(0, 0)
                assert "relays" not in roster and roster["peers"] == []

        run_in(host, scenario)
        # the mesh has a node that knows it at http://: HTTPS (the default) is refused
        https = host.run(*argv, "--no-relay", check=False)
        assert https.returncode == 2 and "--plain-http" in https.stderr, https.stderr
        assert not os.path.exists(os.path.join(state, "tls.crt"))
        # a second server on the same state with other networks refuses to start
        other = host.run(
            *argv, "--ipv4", "198.19.6.0/24", "--no-relay", "--plain-http", check=False
        )
        assert other.returncode == 1
        assert "fixed at first start" in other.stderr and "Traceback" not in other.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        assert "listening on 127.0.0.1:8580" in err and "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()
    key_file = os.path.join(state, "coordinator.key")
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    with open(key_file) as handle:
        assert len(auth.unb64(handle.read().strip(), 32)) == 32


def _relay_child(pid: int, seconds: float = 15, not_pid: int | None = None) -> int:
    """The pid of the `pywg relay serve` child of process `pid` (other than `not_pid`),
    once there is one."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        children: list[str] = []
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as handle:
                    children += handle.read().split()
        for child in map(int, children):
            with contextlib.suppress(OSError), open(f"/proc/{child}/cmdline", "rb") as handle:
                if b"\0relay\0serve\0" in handle.read() and child != not_pid:
                    return child
        time.sleep(0.1)
    raise AssertionError(f"process {pid} has no relay child")


def _gone(pid: int, seconds: float = 10) -> bool:
    """Whether process `pid` ended (or became a zombie, its exit not yet collected) in time."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
                if handle.read().rpartition(")")[2].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


def _listening(log: Path, starts: int, seconds: float = 15) -> None:
    """Until the coordinator's log has its relay's start-up line `starts` times."""
    deadline = time.monotonic() + seconds
    while log.read_text().count("relay: relay ") < starts:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


@needs_lab
def test_cli_serve_is_https_by_default(host: Host, tmp_path: Any) -> None:
    """`pywg coordinator serve` with no TLS option serves HTTPS with a certificate it makes
    and names it in its start-up line (the pin tokens carry, in hex); `--plain-http` does
    not go with `--tls`."""
    state = str(tmp_path / "state")
    assert cli("serve", "--state", state, "--plain-http", "--tls") == 2
    assert not os.path.exists(state)
    argv = [sys.executable, "-m", "pywg", "coordinator", "serve", "--state", state]
    argv += ["--listen", "127.0.0.1:8580", "--ipv4", V4, "--ipv6", V6, "--no-relay"]
    host.ip("link", "set", "lo", "up")
    proc = host.popen(*argv, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        line, end = "", time.monotonic() + 20
        while "listening on" not in line and time.monotonic() < end:
            ready, _, _ = select.select([proc.stderr], [], [], max(0.0, end - time.monotonic()))
            line = proc.stderr.readline().decode() if ready else ""
        made = tls.self_made(state)
        assert made is not None, line
        assert f"(HTTPS, certificate-sha256 {made.pin.hex()})" in line, line
        fetch = (
            "import ssl, urllib.request; ctx = ssl._create_unverified_context(); "
            "print(urllib.request.urlopen('https://127.0.0.1:8580/v1/health', context=ctx)"
            ".read().decode())"
        )
        answer = host.run(sys.executable, "-c", fetch, timeout=20)
        assert json.loads(answer.stdout) == {"ok": True}
        plain = host.run(
            sys.executable, "-c",
            "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8580/v1/health')",
            check=False, timeout=20,
        )  # fmt: skip
        assert plain.returncode != 0  # no plain HTTP on the API's port
    finally:
        proc.terminate()
        proc.wait(10)


@needs_lab
@pytest.mark.time_limit(90)
def test_cli_serve_runs_its_relay_restarts_it_and_takes_it_along(host: Host, tmp_path: Any) -> None:
    """`pywg coordinator serve` (default: with its own relay) as a process: the relay is its
    child, started again when killed, ended when the coordinator stops (SIGTERM) and when
    the coordinator is killed (SIGKILL: the kernel's parent-death signal)."""
    state = str(tmp_path / "state")
    argv = [
        *(sys.executable, "-m", "pywg", "coordinator", "serve", "--state", state),
        *("--listen", "127.0.0.1:8580", "--ipv4", V4, "--ipv6", V6),
        *("--relay-host", "127.0.0.1", "--relay-port", "3478", "--relay-tcp-port", "8443"),
    ]
    host.ip("link", "set", "lo", "up")
    log = tmp_path / "coordinator.log"
    log.touch()
    starts = 0  # start-up lines of relays in the log
    for stop in (signal.SIGTERM, signal.SIGKILL):
        with open(log, "ab") as output:
            proc = host.popen(*argv, stdout=output, stderr=output)
        try:
            relay = _relay_child(proc.pid)
            _listening(log, starts := starts + 1)  # past its start-up
            if stop == signal.SIGTERM:  # killed: started again
                os.kill(relay, signal.SIGKILL)
                relay = _relay_child(proc.pid, not_pid=relay)
                _listening(log, starts := starts + 1)
                assert proc.poll() is None
            proc.send_signal(stop)
            proc.wait(15)
            assert _gone(relay), f"the relay outlived the coordinator ({stop!r})"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    text = log.read_text()
    assert text.count("relays 1 relay at 127.0.0.1 udp 3478 tcp 8443 (1: own") == 2, text
    assert "the relay exited (-9)" in text and "Traceback" not in text, text


def _token_from_cli(state: str) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pywg.cmd.coordinator import main; sys.exit(main(sys.argv[1:]))",
            "coordinator",
            "token",
            "--state",
            state,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout.strip()


def test_cli_home_relays() -> None:
    key = auth.b64(bytes([7]) * 32)
    relays = coordinator_cli.home_relays(
        [f"fra={key}@relay.example.org", f"nyc={key[:-2]}Y=@[2001:db8::7]:3479:8443#{'AB' * 32}"]
    )
    assert relays == [
        HomeRelay(1, "fra", bytes([7]) * 32, "relay.example.org", 3478, 443),
        HomeRelay(2, "nyc", auth.unb64(key[:-2] + "Y=", 32), "2001:db8::7", 3479, 8443,
                  bytes([0xAB]) * 32),
    ]  # fmt: skip
    assert coordinator_cli.home_relays([f"r={key}@198.18.9.2:4000"])[0].tcp_port == 443
    for text, problem in (
        (f"{key}@relay", "NAME=KEY@HOST"),
        (f"fra={key}", "NAME=KEY@HOST"),
        ("fra=AAAA@relay", "the relay key"),
        (f"fra={key}@bad host", "not a host name"),
        (f"fra={key}@[relay]:1", "not an IPv6 address"),
        (f"fra={key}@[::1]x", "[IPv6]:UDP:TCP"),
        (f"fra={key}@relay:0", "ports are 1..65535"),
        (f"fra={key}@relay:1:2:3", "ports are 1..65535"),
        (f"fra={key}@relay#abcd", "pin is a SHA-256"),
        (f"fra={key}@relay#{'zz' * 32}", "pin is a SHA-256"),
    ):
        with pytest.raises(coordinator_cli.UsageError, match=problem.replace("[", r"\[")):
            coordinator_cli.home_relays([text])
    with pytest.raises(coordinator_cli.UsageError, match="twice"):
        coordinator_cli.home_relays([f"a={key}@r1", f"b={key}@r2"])
    with pytest.raises(coordinator_cli.UsageError, match="twice"):
        coordinator_cli.home_relays([f"a={key}@r1", f"a={key[:-2]}Y=@r2"])
    with pytest.raises(coordinator_cli.UsageError, match="at most 15"):
        coordinator_cli.home_relays([f"r{i}={key}@r" for i in range(16)])
