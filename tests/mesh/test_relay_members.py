"""A home relay's members from the coordinator (GET /v1/members) and from a file.

The coordinator runs on its own event loop on a thread, on 127.0.0.1; nodes
join it through its store (a token, as `pywg join` would use). The relay
(helpers.relay_clients.RelayThread) follows it with CoordinatorMembership.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from nacl.signing import SigningKey

from helpers.relay_clients import TIMEOUT, Node, RelayThread, UdpNode, wg
from pywg.mesh import auth
from pywg.mesh.client import CoordinatorError
from pywg.mesh.coordinator import Coordinator
from pywg.mesh.relayserver import (
    CoordinatorMembership,
    FileMembership,
    Limits,
    RelayConfig,
    server_tls,
)
from pywg.mesh.relayserver.membership import parse_members
from pywg.mesh.schema import Member
from pywg.mesh.tls import Certificate, load_or_make

T = TypeVar("T")


class CoordinatorThread:
    """A Coordinator on a loop of its own; `run` a coroutine there."""

    def __init__(
        self, state: Path, relay_keys: list[bytes], certificate: Certificate | None = None
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.coordinator = Coordinator(
            str(state), relay_keys=relay_keys, poll_interval=0.05, certificate=certificate
        )
        self.port = self.run(self.coordinator.start("127.0.0.1", 0))
        self.url = f"{'https' if certificate else 'http'}://127.0.0.1:{self.port}"
        self.token = self.coordinator.new_token(600, reusable=True)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(TIMEOUT)

    def join(self, node: Node, name: str) -> int:
        """Admit `node` (its WireGuard and control keys) as `name`; its node id."""
        secret = auth.parse_token(self.token).secret
        now = int(time.time() * 1000)
        joined, _ = self.coordinator.store.join(
            auth.token_hash(secret),
            name,
            node.wg_key,
            bytes(node.control.verify_key),
            [],
            time_ms=now,
            now=now,
        )
        return joined.id

    def close(self) -> None:
        self.run(self.coordinator.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[Callable[..., CoordinatorThread]]:
    made: list[CoordinatorThread] = []

    def start(relay_keys: list[bytes], certificate: Certificate | None = None) -> CoordinatorThread:
        made.append(
            CoordinatorThread(tmp_path / f"coordinator{len(made)}", relay_keys, certificate)
        )
        return made[-1]

    yield start
    for running in made:
        running.close()


def fetch(membership: CoordinatorMembership, wait: float = 0.0) -> None:
    async def go() -> None:
        try:
            await membership.refresh(wait)
        finally:
            await membership.close()

    asyncio.run(go())


@pytest.mark.time_limit(20)
def test_the_coordinator_gives_its_members_to_its_relays_only(
    coordinator: Callable[[list[bytes]], CoordinatorThread],
) -> None:
    relay_key = SigningKey.generate()
    running = coordinator([bytes(relay_key.verify_key)])
    a, b = Node.make(1), Node.make(2)
    ids = {running.join(a, "a"), running.join(b, "b")}
    assert len(ids) == 2 and all(1 <= i < 1 << 24 for i in ids)
    key = running.coordinator.public_key
    members = CoordinatorMembership(running.url, relay_key, key)
    fetch(members)
    for node in (a, b):
        member = members.by_key(node.wg_key)
        assert member is not None and member.control_key == bytes(node.control.verify_key)
        assert members.by_id(member.node_id) == member
    assert {m.node_id for m in (members.by_key(a.wg_key), members.by_key(b.wg_key)) if m} == ids
    stranger = CoordinatorMembership(running.url, SigningKey.generate(), key)
    with pytest.raises(CoordinatorError) as refused:
        fetch(stranger)
    assert refused.value.status == 401 and len(stranger) == 0
    impostor = CoordinatorMembership(
        running.url, relay_key, bytes(SigningKey.generate().verify_key)
    )
    with pytest.raises(CoordinatorError, match="not signed by the coordinator"):
        fetch(impostor)
    assert len(impostor) == 0


@pytest.mark.time_limit(20)
def test_a_relay_takes_only_the_pinned_certificate_of_a_coordinator_serving_https(
    coordinator: Callable[..., CoordinatorThread], tmp_path: Path
) -> None:
    """`pywg relay serve --coordinator-pin`: the members from a coordinator serving its
    self-made certificate (`serve --tls`) with that certificate's pin, and from no other."""
    for name in ("tls", "other"):
        (tmp_path / name).mkdir()
    certificate = load_or_make(str(tmp_path / "tls"), ["127.0.0.1"])
    relay_key = SigningKey.generate()
    running = coordinator([bytes(relay_key.verify_key)], certificate)
    a = Node.make(1)
    node_id = running.join(a, "a")
    key = running.coordinator.public_key
    pinned = CoordinatorMembership(running.url, relay_key, key, tls_pin=certificate.pin)
    fetch(pinned)
    member = pinned.by_key(a.wg_key)
    assert member is not None and member.node_id == node_id
    other = load_or_make(str(tmp_path / "other")).pin  # someone in between would show this
    for pin, refusal in ((other, "not the pinned one"), (None, "certificate verify failed")):
        refused = CoordinatorMembership(running.url, relay_key, key, tls_pin=pin)
        with pytest.raises(CoordinatorError, match=refusal):
            fetch(refused)
        assert len(refused) == 0


@pytest.mark.time_limit(30)
def test_a_relay_follows_the_coordinator(
    coordinator: Callable[[list[bytes]], CoordinatorThread], tmp_path: Path
) -> None:
    relay_key = SigningKey.generate()
    running = coordinator([bytes(relay_key.verify_key)])
    membership = CoordinatorMembership(running.url, relay_key, running.coordinator.public_key)
    tls = server_tls(load_or_make(str(tmp_path), ["relay.test"]))
    limits = Limits(sweep_interval=0.1)
    config = RelayConfig(relay_key, membership, tls, "127.0.0.1", 0, 0, limits=limits)
    relay = RelayThread(config)
    try:
        follow = relay.call(lambda: relay.loop.create_task(membership.follow(wait=5.0)))
        a, b = Node.make(0), Node.make(0)
        a_id, b_id = running.join(a, "a"), running.join(b, "b")
        a, b = Node(a.wg_key, a.control, a_id), Node(b.wg_key, b.control, b_id)
        deadline = time.monotonic() + TIMEOUT
        while relay.call(lambda: len(membership)) < 2:
            assert time.monotonic() < deadline, "the relay never learned the members"
            time.sleep(0.02)
        ua, ub = UdpNode(a, relay), UdpNode(b, relay)
        assert ua.associate() == a_id and ub.associate() == b_id
        ua.send(b_id, wg(4, 64))
        assert ub.recv()[1:4] == a_id.to_bytes(3, "big")
        running.run(_remove(running.coordinator, "a"))
        relay.wait_stat("evicted")  # the long poll brought the change
        ua.send(b_id, wg(4, 64))
        assert ub.nothing(0.3)
        ua.close()
        ub.close()
        relay.call(follow.cancel)
    finally:
        relay.close()
        asyncio.run(membership.close())


async def _remove(coordinator: Coordinator, name: str) -> None:
    coordinator.remove(name)


def test_members_files(tmp_path: Path) -> None:
    a, b = Node.make(1), Node.make(2)
    text = (
        '{"members": ['
        + ",".join(
            f'{{"public_key": "{auth.b64(n.wg_key)}", '
            f'"control_key": "{auth.b64(bytes(n.control.verify_key))}", "node_id": {n.node_id}}}'
            for n in (a, b)
        )
        + "]}"
    )
    assert parse_members(text) == [a.member, b.member]
    for bad, where in (
        ("[]", "members"),
        ('{"members": [{"public_key": "x"}]}', "members[0].public_key"),
        (text.replace('"node_id": 2', '"node_id": 0'), "members[1].node_id"),
        ("not json", "JSON"),
    ):
        with pytest.raises(ValueError, match=where.replace("[", r"\[").replace("]", r"\]")):
            parse_members(bad)
    path = tmp_path / "members.json"
    path.write_text(text)
    members = FileMembership(str(path))
    assert members.by_id(2) == b.member and len(members) == 2

    def rewrite(new: str) -> None:  # a new mtime even within the clock's granularity
        stamp = path.stat().st_mtime_ns
        path.write_text(new)
        os.utime(path, ns=(stamp + 10**9, stamp + 10**9))

    rewrite(text.replace(f'"node_id": {b.node_id}', '"node_id": 1'))  # id twice
    assert not members.reload() and len(members) == 2  # refused: the last good list stays
    rewrite('{"members": []}')
    assert members.reload() and len(members) == 0
    with pytest.raises(ValueError):
        Member(a.wg_key, bytes(31), 1)


@pytest.mark.parametrize(
    "argv",
    [
        ["--coordinator", "http://127.0.0.1:1"],  # without its key
        ["--coordinator", "http://127.0.0.1:1", "--coordinator-key", "not a key"],
        [
            "--coordinator",
            "https://127.0.0.1:1",
            "--coordinator-key",
            "A" * 43 + "=",
            "--coordinator-pin",
            "ab" * 31,
        ],  # a pin is 32 bytes
        [
            "--coordinator",
            "https://127.0.0.1:1",
            "--coordinator-key",
            "A" * 43 + "=",
            "--coordinator-pin",
            "zz" * 32,
        ],
        ["--members", "m.json", "--coordinator-pin", "ab" * 32],  # a pin for whom?
        ["--members", "m.json", "--listen", "relay.example"],
        ["--members", "m.json", "--peer", "AAAA@127.0.0.1:443"],
        ["--members", "m.json", "--tls-cert", "c.pem"],  # without its key
    ],
)
def test_pywg_relay_serve_refuses_bad_arguments(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pywg.cmd.main import main

    assert main(["relay", "serve", "--state", str(tmp_path), *argv]) == 2
    assert "pywg relay: " in capsys.readouterr().err
    assert not os.listdir(tmp_path)  # nothing made
