"""Node key expiry, rotation and revocation (pywg.mesh.expiry, docs/keys.md): the store's
rules without a network, the coordinator's API in a lab host (its own loopback)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nacl.signing import SigningKey

from helpers.mesh_harness import V4, V6, Coordinators, Member
from pywg.cmd import coordinator as coordinator_cli
from pywg.keys import PrivateKey
from pywg.lab import Host
from pywg.mesh import auth, expiry
from pywg.mesh.client import CoordinatorClient, CoordinatorError
from pywg.mesh.control import ControlServer, rotate_keys, socket_path
from pywg.mesh.rotation import KeyRotator
from pywg.mesh.schema import ROTATE_PATH, RotateRequest, encode
from pywg.mesh.state import NodeState
from pywg.mesh.store import Conflict, KeyRefused, Store, StoreError, TokenRefused

DAY = expiry.DAY_MS
T0 = 1_800_000_000_000  # ms: the store tests' clock


def _store(tmp_path: Path, days: float | None = None) -> Store:
    store = Store(str(tmp_path))
    store.init_networks(V4, V6)
    store.init_key_expiry(days, now=T0)
    return store


def _join(store: Store, name: str, now: int = T0, token: str = "a" * 64) -> tuple[bytes, bytes]:
    if not store.tokens():
        store.add_token(token, now + 10 * DAY, reusable=True, now=now)
    keys = bytes(PrivateKey.generate().public_key), bytes(SigningKey.generate().verify_key)
    store.join(token, name, *keys, [], time_ms=now, now=now)
    return keys


def _keys() -> tuple[bytes, bytes]:
    return bytes(PrivateKey.generate().public_key), bytes(SigningKey.generate().verify_key)


# -- the store -------------------------------------------------------------------------


def test_keys_expire_after_the_period_set(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert store.key_expiry_ms() == expiry.DEFAULT_EXPIRY_DAYS * DAY
    _join(store, "a")
    node = store.node_by_name("a")
    assert node is not None and node.keys_ms == T0
    assert node.expires_ms == T0 + 180 * DAY
    assert node.active(T0 + 180 * DAY - 1) and not node.active(T0 + 180 * DAY)
    store.init_key_expiry(30, now=T0 + DAY)  # shorter: capped
    assert store.key_expiry_ms() == 30 * DAY
    assert store.nodes()[0].expires_ms == T0 + 31 * DAY
    store.init_key_expiry(0, now=T0 + DAY)  # never
    assert store.nodes()[0].expires_ms is None
    store.close()
    again = Store(str(tmp_path))  # kept
    assert again.key_expiry_ms() == 0
    with pytest.raises(StoreError):
        again.init_key_expiry(-1)
    again.close()


def test_expire_then_join_again_with_a_new_token(tmp_path: Path) -> None:
    store = _store(tmp_path)
    keys = _join(store, "a")
    version = store.version()
    node = store.expire("a", now=T0 + 5)
    assert not node.active(T0 + 5) and store.version() > version
    fresh = "b" * 64
    store.add_token(fresh, T0 + DAY, now=T0)
    renewed, new = store.join(fresh, "a", *keys, [], time_ms=T0 + 10, now=T0 + 10)
    assert new and renewed.active(T0 + 10) and renewed.expires_ms == T0 + 10 + 180 * DAY
    assert [t.uses for t in store.tokens() if t.hash == fresh] == [1]  # spent
    store.expire("a", now=T0 + 20)
    with pytest.raises(TokenRefused):  # a used single-use token renews nothing
        store.join(fresh, "a", *keys, [], time_ms=T0 + 30, now=T0 + 30)


def test_revoked_keys_never_work_again(tmp_path: Path) -> None:
    store = _store(tmp_path)
    pub, control = _join(store, "a")
    store.revoke("a", now=T0 + 1)
    node = store.node_by_name("a")
    assert node is not None and node.revoked and not node.active(T0 + 1)
    with pytest.raises(KeyRefused):  # neither its keys ...
        store.join("a" * 64, "a", pub, control, [], time_ms=T0 + 2, now=T0 + 2)
    with pytest.raises(KeyRefused):  # ... nor its control key under another WireGuard key
        store.join("a" * 64, "z", _keys()[0], control, [], time_ms=T0 + 2, now=T0 + 2)
    with pytest.raises(KeyRefused):
        store.rotate(node.id, pub, _keys(), now=T0 + 3)
    store.init_key_expiry(0, now=T0 + 4)
    assert not store.nodes()[0].active(T0 + 5)  # revoked stays revoked


def test_rotation_is_recorded_at_once(tmp_path: Path) -> None:
    store = _store(tmp_path, days=90)
    pub, control = _join(store, "a")
    other = _join(store, "b")
    node = store.node_by_name("a")
    assert node is not None
    version = store.version()
    new = _keys()
    rotated = store.rotate(node.id, pub, new, now=T0 + DAY)
    assert (rotated.public_key, rotated.control_key, rotated.previous_key) == (*new, pub)
    assert rotated.keys_ms == T0 + DAY and rotated.expires_ms == T0 + 91 * DAY
    assert (rotated.ipv4, rotated.name) == (node.ipv4, node.name) and store.version() > version
    with pytest.raises(KeyRefused):  # the old keys are retired: no rejoin with them
        store.join("a" * 64, "a2", pub, control, [], time_ms=T0, now=T0 + DAY)
    with pytest.raises(StoreError):  # a replayed rotation: the node no longer has `pub`
        store.rotate(node.id, pub, _keys(), now=T0 + DAY)
    with pytest.raises(KeyRefused):  # back to a retired key
        store.rotate(node.id, new[0], (pub, _keys()[1]), now=T0 + DAY)
    with pytest.raises(Conflict):  # to another node's key
        store.rotate(node.id, new[0], (other[0], _keys()[1]), now=T0 + DAY)
    with pytest.raises(StoreError):  # the same control key
        store.rotate(node.id, new[0], (_keys()[0], new[1]), now=T0 + DAY)
    store.expire("a", now=T0 + 2 * DAY)
    with pytest.raises(KeyRefused):  # expired keys cannot rotate
        store.rotate(node.id, new[0], _keys(), now=T0 + 2 * DAY)


def test_expiry_by_time_moves_the_version(tmp_path: Path) -> None:
    store = _store(tmp_path, days=1)
    _join(store, "a")
    version = store.version()
    assert not store.note_expiries(T0, T0 + DAY - 1)
    assert store.version() == version
    assert store.note_expiries(T0 + DAY - 1, T0 + DAY)
    assert store.version() == version + 1


def test_a_store_from_before_expiry_gets_the_columns(tmp_path: Path) -> None:
    import sqlite3

    store = _store(tmp_path)
    _join(store, "a")
    store.close()
    db = sqlite3.connect(tmp_path / "coordinator.db")
    for column in ("keys_ms", "expires_ms", "revoked", "previous_key"):
        db.execute(f"ALTER TABLE nodes DROP COLUMN {column}")
    db.execute("DROP TABLE retired_keys")
    db.commit()
    db.close()
    again = Store(str(tmp_path))
    node = again.nodes()[0]
    assert node.expires_ms is None and not node.revoked and node.active(T0)
    again.init_key_expiry(10, now=T0)  # a period reaches the nodes that had none
    assert again.nodes()[0].expires_ms == T0 + 10 * DAY
    again.close()


# -- the coordinator's API, in a lab host ----------------------------------------------


def run_in(host: Host, scenario: Any) -> None:
    host.ip("link", "set", "lo", "up")
    host.call(lambda: asyncio.run(asyncio.wait_for(scenario(), 60)))


async def _post_rotate(member: Member, url: str, body: bytes, time_ms: int) -> int:
    """A rotation request as any client could send it (signed by the member's control
    key at `time_ms`); the HTTP status."""
    header, _ = auth.sign_request(
        member.control, member.public_b64, "POST", ROTATE_PATH, body, time_ms
    )
    headers = {"Authorization": header, "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + ROTATE_PATH, data=body, headers=headers) as answer,
    ):
        return answer.status


def _rotation(
    member: Member, when: int, *, signer: SigningKey | None = None
) -> tuple[bytes, bytes]:
    new_wg, new_control = PrivateKey.generate(), SigningKey.generate()
    proof = expiry.sign_proof(
        signer or new_control, member.public_raw, bytes(new_wg.public_key), when
    )
    message = RotateRequest(bytes(new_wg.public_key), bytes(new_control.verify_key), when, proof)
    return encode(message), bytes(new_wg.public_key)


@pytest.mark.needs_lab
def test_rotation_requests(host: Host, coordinator: Coordinators) -> None:
    async def scenario() -> None:
        async with coordinator(("a", "b", "c")) as running:
            a, b, c = running.members
            await running.join(a, b, c)
            now = int(time.time() * 1000)
            body, _ = _rotation(a, now, signer=SigningKey.generate())  # not the new key's proof
            assert await _post_rotate(a, running.url, body, now) == 401
            body, _ = _rotation(a, now - 400_000)  # a stale proof
            assert await _post_rotate(a, running.url, body, now + 1) == 401
            body, new_key = _rotation(a, now + 2)
            assert await _post_rotate(a, running.url, body, now + 2) == 200
            assert await _post_rotate(a, running.url, body, now + 2) == 401  # replayed
            assert await _post_rotate(a, running.url, body, now + 3) == 401  # old key: retired
            peers = {p["name"]: p for p in (await b.roster(0, 0))["peers"]}
            assert auth.unb64(peers["a"]["public_key"], 32) == new_key
            assert peers["a"]["rotated_from"] == a.public_b64
            # the client's own rotation: it signs with the new keys afterwards
            new_wg, new_control = PrivateKey.generate(), SigningKey.generate()
            answer = await b.client.rotate(bytes(new_wg.public_key), new_control)
            assert answer.node.public_key == bytes(new_wg.public_key)
            assert (await b.client.roster(0, 0)).me.public_key == bytes(new_wg.public_key)
            running.coordinator.revoke("c")
            with pytest.raises(CoordinatorError) as refused:
                await c.client.rotate(
                    bytes(PrivateKey.generate().public_key), SigningKey.generate()
                )
            assert refused.value.status == 401 and "revoked" in refused.value.message

    run_in(host, scenario)


@pytest.mark.needs_lab
def test_expired_and_revoked_nodes_leave_rosters_within_a_poll(
    host: Host, coordinator: Coordinators, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with coordinator(("a", "b", "c"), poll_interval=0.2) as running:
            a, b, c = running.members
            await running.join(a, b, c)
            roster = await a.roster(0, 0)
            assert {p["name"] for p in roster["peers"]} == {"b", "c"}
            assert roster["self"]["expires_ms"] > roster["self"]["keys_ms"]
            for name, command in (("b", "expire"), ("c", "revoke")):
                poll = asyncio.create_task(a.roster(roster["version"], 30))
                await asyncio.sleep(0.1)
                started = time.monotonic()
                argv = ["coordinator", command, "--state", str(tmp_path), name]
                assert await asyncio.to_thread(coordinator_cli.main, argv) == 0
                roster = await poll
                assert time.monotonic() - started < 2
                assert name not in {p["name"] for p in roster["peers"]}
            for member, why in ((b, "expired"), (c, "revoked")):
                with pytest.raises(CoordinatorError) as refused:
                    await member.roster(0, 0)
                assert refused.value.status == 401 and why in refused.value.message
            members = running.coordinator.store.nodes()
            assert [n.name for n in members if n.active(int(time.time() * 1000))] == ["a"]
            listing = json.loads(
                json.dumps(coordinator_cli.nodes_json(running.coordinator.store, members))
            )
            assert [n["revoked"] for n in listing["nodes"]] == [False, False, True]

    run_in(host, scenario)


# -- the node's side -------------------------------------------------------------------


def test_rotation_falls_due_with_a_third_of_the_lifetime_left() -> None:
    assert expiry.rotation_due(0, 90 * DAY) == 60 * DAY
    assert expiry.rotation_due(None, 90 * DAY) == 90 * DAY  # issue unknown: as soon as it can
    assert expiry.rotation_due(T0, None) is None  # never expires: never due


def test_staged_keys_commit_or_drop(tmp_path: Path) -> None:
    state = NodeState.open(str(tmp_path / "node"))
    before = state.public_key
    assert state.staged_keys() is None
    wg, control = PrivateKey.generate(), SigningKey.generate()
    state.stage_keys(wg, control)
    assert state.public_key == before  # staged only
    state.drop_staged_keys()
    assert state.staged_keys() is None
    state.stage_keys(wg, control)
    state.commit_keys()
    assert state.public_key == wg.public_key.to_base64() and state.staged_keys() is None
    again = NodeState.open(str(tmp_path / "node"))  # on disk
    assert (again.public_key, bytes(again.control)) == (state.public_key, bytes(control))


@pytest.mark.needs_lab
def test_a_rotation_whose_answer_was_lost_is_recovered(
    host: Host, coordinator: Coordinators, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with coordinator(("a", "b"), state=tmp_path / "coordinator") as running:
            a, b = running.members
            await running.join(a, b)
            state = NodeState.open(str(tmp_path / "node"))
            state.wireguard, state.control = a.wg, a.control  # the node behind member a
            switched: list[PrivateKey] = []
            rotator = KeyRotator(state, a.client, lambda wg, _: switched.append(wg))
            wg, control = PrivateKey.generate(), SigningKey.generate()
            state.stage_keys(wg, control)
            assert not await rotator.recover()  # the coordinator does not know them: dropped
            assert state.staged_keys() is None
            state.stage_keys(wg, control)
            shadow = CoordinatorClient(  # the request went through; its answer got lost
                running.url, a.public_b64, a.control, coordinator_key=a.client.coordinator_key
            )
            await shadow.rotate(bytes(wg.public_key), control)
            await shadow.close()
            assert await rotator.recover()
            assert state.public_key == wg.public_key.to_base64() and switched == [wg]
            assert (await a.client.roster(0, 0)).me.public_key == bytes(wg.public_key)
            message = await rotator.rotate()  # and a whole rotation on top
            assert "keys rotated" in message and len(switched) == 2
            assert rotator.expires_ms is not None and rotator.keys_ms is not None
            peers = (await b.client.roster(0, 0)).peers
            assert [p.public_key for p in peers] == [bytes(switched[1].public_key)]

    run_in(host, scenario)


@pytest.mark.needs_lab
def test_the_control_socket_asks_for_a_rotation(host: Host, tmp_path: Path) -> None:
    async def scenario() -> None:
        calls: list[str] = []

        async def rotate() -> str:
            calls.append("rotate")
            return "keys rotated: K"

        async def set_exit(name: str | None) -> str:
            raise AssertionError("not an exit request")

        server = ControlServer(socket_path(str(tmp_path)), set_exit, rotate=rotate)
        await server.start()
        try:
            answer = await asyncio.to_thread(rotate_keys, str(tmp_path))
        finally:
            server.close()
        assert (answer, calls) == ("keys rotated: K", ["rotate"])

    run_in(host, scenario)
