"""`kill -9` of a coordinator in the middle of joins and endpoint reports leaves it whole.

A real `pywg coordinator serve` process (in a lab host: its own loopback) gets a
burst of joins, each with its own single-use token, and endpoint reports from
the nodes that joined, and is killed with SIGKILL at a random moment, again
and again on the same database. After each kill the database opens cleanly
and holds together: every spent token has its node and every node its spent
token (no half-joined node), every join and report that was answered is
there, the roster version is not behind any change, and a new coordinator's
rosters (its view in memory) are the rosters defined from the whole store.

The database is the `crash_database` fixture's (a location and how to open
and check it), so that each store implementation can run the same test.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers.mesh_harness import Member
from pywg.endpoint import parse_endpoint
from pywg.lab import Host
from pywg.mesh.client import CoordinatorError
from pywg.mesh.coordinator import Coordinator, load_or_create_key, new_token
from pywg.mesh.meshview import roster_of
from pywg.mesh.store import Store

needs_lab = pytest.mark.needs_lab
PREFIX = "pwk"
PORT = 8591
URL = f"http://127.0.0.1:{PORT}"
V4, V6 = "100.64.0.0/16", "fd19:9::/64"
MEMBERS = 24  # joining in one burst
FIRST_PORT = 1001  # of the endpoints reported: one more each report


@dataclass
class CrashDatabase:
    """Where the coordinator keeps its state (SQLite in `state`, or the PostgreSQL
    database `url` with the key in `state`), and how to open it after a crash."""

    state: str
    url: str | None = None

    def serve_args(self) -> list[str]:
        return ["--state", self.state, *(["--database", self.url] if self.url else [])]

    def open(self) -> Store:
        return Store(self.state, create=False, database=self.url)

    def check_file(self) -> None:
        """The file itself is sound (SQLite's own check; PostgreSQL recovers by its WAL)."""
        if self.url is not None:
            return
        db = sqlite3.connect(os.path.join(self.state, "coordinator.db"))
        try:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        finally:
            db.close()


@pytest.fixture
def crash_database(tmp_path: Path, database: str | None) -> Iterator[CrashDatabase]:
    """The crash tests' database, on each store (the `database` fixture)."""
    yield CrashDatabase(str(tmp_path / "state"), database)


@dataclass
class Acknowledged:
    """What the coordinator answered before it died: joins, and each node's last report."""

    joined: set[str] = field(default_factory=set)
    reported: dict[str, int] = field(default_factory=dict)  # name -> last answered port


def start(host: Host, database: CrashDatabase) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "pywg", "coordinator", "serve", *database.serve_args()]
    argv += ["--listen", f"127.0.0.1:{PORT}", "--ipv4", V4, "--ipv6", V6, "--no-relay"]
    argv += ["--plain-http", "--connections-per-source", "4096", "--refusal-burst", "4096"]
    proc = host.popen(*argv, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    line, end = "", time.monotonic() + 20
    while "listening on" not in line and time.monotonic() < end:
        ready, _, _ = select.select([proc.stderr], [], [], max(0.0, end - time.monotonic()))
        line = proc.stderr.readline().decode() if ready else ""
        assert line or not ready, "the coordinator exited"
    assert "listening on" in line
    return proc


def make_tokens(database: CrashDatabase, count: int) -> list[str]:
    store = database.open()
    try:
        key = load_or_create_key(store.state_dir)
        return [new_token(store, key, 3600) for _ in range(count)]
    finally:
        store.close()


async def member_burst(member: Member, token: str, after: float, seen: Acknowledged) -> None:
    """Join `after` seconds from now, then report endpoints (ports 1001, 1002, ...), until
    the coordinator dies."""
    await asyncio.sleep(after)
    try:
        await member.client.join(token, member.name, [])
        seen.joined.add(member.name)
        for port in range(FIRST_PORT, 65536):
            await member.client.update([parse_endpoint(f"203.0.113.9:{port}")], [])
            seen.reported[member.name] = port
    except CoordinatorError:
        pass  # the coordinator died under it


async def burst(
    proc: subprocess.Popen[bytes], tokens: list[str], round_: int, chance: random.Random
) -> Acknowledged:
    """Members join (at random moments over half a second) and report until the kill,
    at a random moment in the first 0.6 s."""
    seen = Acknowledged()
    members = [Member(f"r{round_}n{i}", URL) for i in range(len(tokens))]
    delay = chance.uniform(0.02, 0.6)
    asyncio.get_running_loop().call_later(delay, proc.send_signal, signal.SIGKILL)
    try:
        work = [
            member_burst(m, t, chance.uniform(0, 0.5), seen)
            for m, t in zip(members, tokens, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*work), 30)
    finally:
        for member in members:
            await member.client.close()
    return seen


def check_consistent(database: CrashDatabase, everything: Acknowledged) -> int:
    """The state after a crash holds together (see the module's docstring); its node count."""
    database.check_file()
    store = database.open()
    try:
        nodes = store.nodes()
        names = {n.name for n in nodes}
        assert everything.joined <= names, everything.joined - names
        spent = [t for t in store.tokens() if t.uses]
        assert len(spent) == len(nodes)  # one single-use token a node, spent with it
        version = store.version()
        for node in nodes:
            assert node.keys_ms is not None and node.expires_ms is not None, node.name
            ports = [parse_endpoint(e)[1] for e in node.endpoints]
            assert ports == [] or ports[0] >= FIRST_PORT, node.endpoints
            answered = everything.reported.get(node.name)
            if answered is not None:
                assert ports and ports[0] >= answered, (node.name, ports, answered)
        db = store.database
        rows = db.execute("SELECT last_node FROM tokens").fetchall()
        last_nodes = {row[0] for row in rows}
        assert last_nodes - {None} == {n.id for n in nodes}  # each spent on its node
        assert (db.execute("SELECT max(changed) FROM nodes").fetchone()[0] or 0) <= version
    finally:
        store.close()
    coordinator = Coordinator(database.state, database=database.url)  # its view from the store
    try:
        context = (coordinator.view.frame, coordinator._node_info, coordinator.clock_ms())
        at, everyone = coordinator.store.snapshot()
        devices = coordinator.store.devices()
        for node in everyone:
            expected = roster_of(at, everyone, devices, node.id, context)
            assert coordinator.roster(node.id) == expected
    finally:
        coordinator.store.close()
    return len(nodes)


def crash_rounds(host: Host, database: CrashDatabase, rounds: int, seed: int) -> None:
    host.ip("link", "set", "lo", "up")
    chance = random.Random(seed)
    everything = Acknowledged()
    proc = start(host, database)  # the first start makes the state
    proc.kill()
    proc.wait(10)
    counts = []
    for round_ in range(rounds):
        tokens = make_tokens(database, MEMBERS)
        proc = start(host, database)
        seen = host.call(lambda: asyncio.run(burst(proc, tokens, round_, chance)))  # noqa: B023
        assert proc.wait(10) == -signal.SIGKILL
        everything.joined |= seen.joined
        everything.reported.update(seen.reported)
        counts.append(check_consistent(database, everything))
    # the kills came at different moments: some rounds were cut short, and nodes joined
    print(json.dumps({"seed": seed, "nodes after each round": counts}))
    assert counts[-1] > 0


@needs_lab
@pytest.mark.time_limit(60)
def test_kill_9_during_joins_and_reports(host: Host, crash_database: CrashDatabase) -> None:
    crash_rounds(host, crash_database, rounds=10, seed=int(os.environ.get("PYWG_CRASH_SEED", 19)))


@needs_lab
@pytest.mark.slow
@pytest.mark.time_limit(600)
def test_kill_9_many_times(host: Host, crash_database: CrashDatabase) -> None:
    crash_rounds(host, crash_database, rounds=60, seed=random.randrange(1 << 30))
