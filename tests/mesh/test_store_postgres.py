"""The store on PostgreSQL: the same Store on both databases, several coordinators on one
database (LISTEN/NOTIFY, failing over), and `pywg coordinator migrate` from SQLite.

The server is the session's (the `postgres` fixture, tests/mesh/conftest.py: Debian's
package in a temporary directory); these tests skip, saying why, where there is none.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from helpers.mesh_harness import V4, V6, Member, make_coordinator
from pywg.cmd import coordinator as coordinator_cli
from pywg.lab import Host
from pywg.mesh.coordinator import Coordinator, load_or_create_key, new_token
from pywg.mesh.store import Conflict, NotFound, Store

TOKEN = "a" * 64


def keys(i: int) -> tuple[bytes, bytes]:
    return bytes([i]) * 32, bytes([100 + i]) * 32


def now_ms() -> int:
    return int(time.time() * 1000)


def test_one_store_on_both_databases(tmp_path: Path, database: str | None) -> None:
    store = Store(str(tmp_path), database=database)
    try:
        store.init_networks("198.19.5.0/30", V6)
        store.add_token(TOKEN, now_ms() + 60_000, reusable=True)
        a, created = store.join(TOKEN, "a", *keys(1), ["198.18.50.0/24"], time_ms=now_ms())
        assert created and (a.id, a.ipv4) == (1, "198.19.5.1")
        assert store.node_by_name("A") == a  # names ignore case on both
        with pytest.raises(Conflict, match="taken"):
            store.join(TOKEN, "A", *keys(2), [], time_ms=now_ms())
        store.join(TOKEN, "b", *keys(2), [], time_ms=now_ms())
        with pytest.raises(Conflict, match="no free address"):
            store.join(TOKEN, "c", *keys(3), [], time_ms=now_ms())
        assert store.approve("a", ["198.18.50.0/24"]) == ["198.18.50.0/24"]
        version = store.version()
        store.remove("a")
        assert store.version() == version + 1
        c, _ = store.join(TOKEN, "c", *keys(3), [], time_ms=now_ms())
        assert c.ipv4 == "198.19.5.1"  # the released address, the pool at its end
        assert store.snapshot() == (store.version(), store.nodes())
        assert [n.name for n in store.nodes()] == ["b", "c"]
    finally:
        store.close()


def test_a_write_is_heard_by_every_listener(tmp_path: Path, postgres_url: str) -> None:
    """NOTIFY carries each committed version to the other stores' listeners."""
    one = Store(str(tmp_path), database=postgres_url)
    two = Store(str(tmp_path), database=postgres_url)
    heard: list[int] = []
    arrived = threading.Event()

    def note(version: int) -> None:
        heard.append(version)
        if version >= 1:
            arrived.set()

    listening = two.listen(note)
    assert listening is not None
    try:
        one.init_networks(V4, V6)
        one.init_domain("one.internal")
        one.init_domain("two.internal")  # a change of the domain moves the version
        assert arrived.wait(5)
        assert heard[-1] == two.version() == 1
    finally:
        listening.close()
        one.close()
        two.close()
    sqlite = Store(str(tmp_path / "sqlite"))
    assert sqlite.listen(note) is None  # SQLite: the coordinator polls the version
    sqlite.close()


# -- two coordinators on one database ------------------------------------------------------


def run_in(host: Host, scenario: Any) -> None:
    host.ip("link", "set", "lo", "up")
    host.call(lambda: asyncio.run(asyncio.wait_for(scenario(), 40)))


@pytest.mark.needs_lab()
@pytest.mark.time_limit(60)
def test_two_coordinators_serve_one_mesh(host: Host, tmp_path: Path, postgres_url: str) -> None:
    """Nodes split between two coordinators: a change made through one reaches the nodes
    polling the other within a second (NOTIFY: neither polls the database meanwhile);
    one dies and its nodes go on through the other."""
    state = str(tmp_path / "state")  # the state directory, copied to both: one key

    async def scenario() -> None:
        one = make_coordinator(state, database=postgres_url, poll_interval=30)
        two = make_coordinator(state, database=postgres_url, poll_interval=30)
        async with contextlib.AsyncExitStack() as stack:
            for coordinator in (one, two):
                stack.push_async_callback(coordinator.close)
            urls = [f"http://127.0.0.1:{await c.start('127.0.0.1', 0)}" for c in (one, two)]
            a = await stack.enter_async_context(Member("a", urls[0]))
            b = await stack.enter_async_context(Member("b", urls[1]))
            both = await stack.enter_async_context(Member("c", ",".join(urls)))
            token = one.new_token(600, reusable=True)
            for member in (a, b, both):
                await member.join(token)
            version = (await b.roster(0, 0))["version"]
            poll = asyncio.create_task(b.roster(version, 30))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            await a.update(["203.0.113.7:51820"], [])  # through one
            roster = await poll  # through two
            assert time.monotonic() - started < 1.0
            peers = {p["name"]: p for p in roster["peers"]}
            assert peers["a"]["endpoints"] == ["203.0.113.7:51820"]
            # the first one dies: the node that knows both goes on through the other
            await one.close()
            await both.update(["203.0.113.9:51820"], [])
            roster = await both.roster(0, 0)
            assert {p["name"] for p in roster["peers"]} == {"a", "b"}
            assert both.client.base.port == two.port
            peers = {p["name"]: p for p in (await b.roster(0, 0))["peers"]}
            assert peers["c"]["endpoints"] == ["203.0.113.9:51820"]

    run_in(host, scenario)


def serve(host: Host, state: str, url: str, port: int) -> subprocess.Popen[bytes]:
    """A `pywg coordinator serve` process on the database `url`, once it listens."""
    argv = [sys.executable, "-m", "pywg", "coordinator", "serve", "--state", state]
    argv += ["--database", url, "--listen", f"127.0.0.1:{port}", "--ipv4", V4, "--ipv6", V6]
    proc = host.popen(*argv, "--no-relay", "--plain-http", stderr=subprocess.PIPE)
    assert proc.stderr is not None
    line, end = "", time.monotonic() + 20
    while "listening on" not in line and time.monotonic() < end:
        ready, _, _ = select.select([proc.stderr], [], [], max(0.0, end - time.monotonic()))
        line = proc.stderr.readline().decode() if ready else ""
        assert line or not ready, "the coordinator exited"
    assert "listening on" in line, line
    return proc


@pytest.mark.needs_lab()
@pytest.mark.time_limit(60)
def test_a_coordinator_process_killed_its_nodes_go_on_through_the_other(
    host: Host, tmp_path: Path, postgres_url: str
) -> None:
    """Two `pywg coordinator serve` processes on one database; SIGKILL to the one a node
    was using: its next request goes to the other, and a change made there reaches a
    node polling the other, as if nothing had happened but a retry."""
    host.ip("link", "set", "lo", "up")
    state = str(tmp_path / "state")
    urls = ["http://127.0.0.1:8601", "http://127.0.0.1:8602"]
    one = serve(host, state, postgres_url, 8601)
    try:
        two = serve(host, state, postgres_url, 8602)
        try:
            store = Store(state, create=False, database=postgres_url)
            try:
                token = new_token(store, load_or_create_key(state), 600, reusable=True)
            finally:
                store.close()

            async def scenario() -> None:
                async with Member("c", ",".join(urls)) as c, Member("b", urls[1]) as b:
                    await c.join(token)
                    await b.join(token)
                    assert c.client.base.port == 8601
                    version = (await b.roster(0, 0))["version"]
                    os.kill(one.pid, signal.SIGKILL)
                    one.wait(10)
                    poll = asyncio.create_task(b.roster(version, 30))
                    started = time.monotonic()
                    await c.update(["203.0.113.9:51820"], [])  # through two, after a retry
                    assert c.client.base.port == 8602
                    peers = {p["name"]: p for p in (await poll)["peers"]}
                    assert peers["c"]["endpoints"] == ["203.0.113.9:51820"]
                    assert time.monotonic() - started < 5.0
                    assert {p["name"] for p in (await c.roster(0, 0))["peers"]} == {"b"}

            host.call(lambda: asyncio.run(asyncio.wait_for(scenario(), 40)))
        finally:
            two.kill()
            two.wait(10)
    finally:
        one.kill()
        one.wait(10)


def test_a_coordinator_with_another_key_is_refused(tmp_path: Path, postgres_url: str) -> None:
    first = Coordinator(str(tmp_path / "one"), database=postgres_url, ipv4=V4, ipv6=V6)
    asyncio.run(first.close())
    with pytest.raises(Conflict, match=r"copy coordinator\.key"):
        Coordinator(str(tmp_path / "two"), database=postgres_url)


# -- migration -------------------------------------------------------------------------------


def _mesh_on_sqlite(state: str) -> None:
    """A mesh with one of everything the state holds."""
    store = Store(state)
    try:
        store.init_networks(V4, V6)
        store.init_domain("home.internal")
        store.init_key_expiry(90)
        store.set_admin_secret("admin_password", "scrypt$hash")
        store.add_token(TOKEN, now_ms() + 60_000, reusable=True)
        store.add_token("b" * 64, now_ms() + 60_000)
        routes = ["198.18.50.0/24", "198.18.51.0/24", "0.0.0.0/0", "::/0"]
        store.join(TOKEN, "gw", *keys(1), routes, time_ms=now_ms())
        store.approve("gw", ["198.18.50.0/24"])
        store.refuse("gw", ["198.18.51.0/24"])
        pi, _ = store.join("b" * 64, "pi", *keys(2), [], time_ms=now_ms())  # spends it
        store.update(pi.id, endpoints=["203.0.113.7:51820"], home_relay=1)
        store.rotate(pi.id, keys(2)[0], keys(3))  # a retired key, a previous key
        store.join(TOKEN, "gone", *keys(4), [], time_ms=now_ms())
        store.remove("gone")  # its id and addresses released
        store.join(TOKEN, "lost", *keys(5), [], time_ms=now_ms())
        store.revoke("lost")
        store.add_device("phone", bytes([9]) * 32, "gw", exit=True)
    finally:
        store.close()


def _rows(store: Store) -> dict[str, set[tuple[str, ...]]]:
    """Every row of every table (as text: SQLite keeps some meta values as integers)."""
    db = store.database
    found = {}
    for table in db.tables():
        cursor = db.execute(f"SELECT * FROM {table}")
        names = [c[0] for c in cursor.description]
        keep = [i for i, name in enumerate(names) if (table, name) != ("routes", "rowid")]
        found[table] = {tuple(_text(row[i]) for i in keep) for row in cursor.fetchall()}
    return found


def _text(value: object) -> str:
    return value.hex() if isinstance(value, bytes) else str(value)


def test_migrate_moves_every_row(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    state = str(tmp_path)
    _mesh_on_sqlite(state)
    migrate = ["coordinator", "migrate", "--state", state, "--to", postgres_url]
    assert coordinator_cli.main(migrate) == 0
    assert "copied" in capsys.readouterr().err
    source, target = Store(state, create=False), Store(state, database=postgres_url)
    try:
        before, after = _rows(source), _rows(target)
        assert set(before) <= set(after)
        for table, rows in before.items():
            assert after[table] == rows, table
        assert sum(map(len, before.values())) > 20
        assert target.nodes() == source.nodes()
        assert target.devices() == source.devices()
        assert target.tokens() == source.tokens()
        assert target.version() == source.version()
        assert target.init_domain() == "home.internal"
        assert target.admin_secret("admin_password") == "scrypt$hash"
        # the mesh goes on there: new ids and addresses after the copied ones
        new, _ = target.join(TOKEN, "new", *keys(6), [], time_ms=now_ms())
        assert new.id not in {n.id for n in source.nodes()}
        target.add_device("tablet", bytes([10]) * 32, "gw")
    finally:
        source.close()
        target.close()
    assert coordinator_cli.main(migrate) == 1  # the target is not empty now
    assert "not empty" in capsys.readouterr().err


def test_admin_commands_need_a_mesh_in_the_database(tmp_path: Path, postgres_url: str) -> None:
    with pytest.raises(NotFound, match="no coordinator state"):
        Store(str(tmp_path / "state"), create=False, database=postgres_url)
    assert not (tmp_path / "state").exists()
