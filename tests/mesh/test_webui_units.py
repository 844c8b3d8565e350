"""The admin web UI's parts on their own (pywg.mesh.webui): password hashing, sessions,
CSRF tokens, the login rate limit, and the store's admin operations it relies on."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.mesh_harness import V4, V6
from pywg.mesh.schema import PathState, SchemaError, UpdateRequest, decode, encode
from pywg.mesh.store import Store
from pywg.mesh.webui import csrf, passwords
from pywg.mesh.webui.ratelimit import LoginLimiter
from pywg.mesh.webui.sessions import Sessions


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Store:
    made = Store(str(tmp_path))
    made.init_networks(V4, V6)
    return made


def test_password_hashes_are_salted_scrypt_and_checked() -> None:
    one, two = passwords.hash_secret("correct horse"), passwords.hash_secret("correct horse")
    assert one != two  # a salt each
    assert one.startswith(f"scrypt${passwords.N}${passwords.R}${passwords.P}$")
    assert "correct horse" not in one
    assert passwords.verify("correct horse", one) and passwords.verify("correct horse", two)
    assert not passwords.verify("correct horsf", one)
    assert not passwords.verify("correct horse", one.replace("scrypt", "bcrypt"))
    assert not passwords.verify("correct horse", "scrypt$3$8$1$AAAA$AAAA")  # n not a power of 2
    assert not passwords.verify("correct horse", f"scrypt${1 << 30}$8$1$AAAA$AAAA")  # too costly
    assert not passwords.verify("x", "garbage")


def test_password_and_admin_token_in_the_store(store: Store) -> None:
    assert not passwords.configured(store)
    assert not passwords.check_login(store, "anything at all")
    with pytest.raises(passwords.PasswordError):
        passwords.set_password(store, "short")
    passwords.set_password(store, "a long enough password")
    stored = store.admin_secret(passwords.PASSWORD)
    assert stored is not None and "a long enough password" not in stored
    assert passwords.configured(store)
    assert passwords.check_login(store, "a long enough password")
    assert not passwords.check_login(store, "a long enough passwore")
    token = passwords.new_token(store)
    assert token.startswith(passwords.TOKEN_PREFIX)
    assert passwords.check_login(store, token)
    newer = passwords.new_token(store)
    assert not passwords.check_login(store, token)  # replaced
    assert passwords.check_login(store, newer)
    assert not passwords.check_login(store, passwords.TOKEN_PREFIX + "guess")


def test_sessions_expire_and_are_kept_by_hash() -> None:
    clock = Clock()
    sessions = Sessions(ttl=60, clock=clock)
    session_id, session = sessions.create()
    assert sessions.get(session_id) is session
    assert session_id not in repr(sessions.__dict__)  # kept by its hash only
    assert session.csrf not in repr(session)
    assert sessions.get("another") is None and sessions.get(None) is None
    clock.now += 59
    assert sessions.get(session_id) is session  # not extended by use
    clock.now += 1
    assert sessions.get(session_id) is None
    other_id, _ = sessions.create()
    sessions.drop(other_id)
    assert sessions.get(other_id) is None and len(sessions) == 0


def test_csrf_token_must_be_the_sessions() -> None:
    sessions = Sessions(ttl=60)
    _, one = sessions.create()
    _, two = sessions.create()
    assert one.csrf != two.csrf
    assert csrf.valid(one, one.csrf)
    assert not csrf.valid(one, two.csrf)
    assert not csrf.valid(one, None)
    assert not csrf.valid(one, "")
    assert not csrf.valid(one, one.csrf[:-1])


def test_login_rate_limit_per_source() -> None:
    clock = Clock()
    limiter = LoginLimiter(max_failures=3, window=100, clock=clock)
    for _ in range(3):
        assert limiter.retry_after("192.0.2.1") == 0
        limiter.failed("192.0.2.1")
        clock.now += 10
    assert limiter.retry_after("192.0.2.1") == pytest.approx(70)  # the first failure + 100 s
    assert limiter.retry_after("192.0.2.2") == 0  # another source
    clock.now += 70
    assert limiter.retry_after("192.0.2.1") == 0  # the oldest left the window
    limiter.failed("192.0.2.1")
    assert limiter.retry_after("192.0.2.1") > 0
    limiter.succeeded("192.0.2.1")
    assert limiter.retry_after("192.0.2.1") == 0


def test_refused_routes_stay_refused_and_tokens_revoke(store: Store) -> None:
    node, _ = store.join(
        _token(store), "gw", b"\x01" * 32, b"\x02" * 32, ["10.9.0.0/24", "10.8.0.0/24"], time_ms=1
    )
    before = store.version()
    assert store.refuse("gw", ["10.9.0.0/24"]) == ["10.9.0.0/24"]
    assert store.version() > before  # the node's own roster lists its pending routes
    assert store.refuse("gw", ["10.9.0.0/24"]) == []
    again = store.node_by_name("gw")
    assert again is not None
    assert again.pending_routes == ["10.8.0.0/24"] and again.refused_routes == ["10.9.0.0/24"]
    store.update(node.id, routes=["10.9.0.0/24", "10.8.0.0/24"])  # its next report
    again = store.node_by_name("gw")
    assert again is not None and again.refused_routes == ["10.9.0.0/24"]
    assert store.approve("gw", ["10.9.0.0/24"]) == ["10.9.0.0/24"]  # the admin changed mind
    tokens = store.tokens()
    store.revoke_token(tokens[0].hash)
    assert store.tokens() == []


def _token(store: Store) -> str:
    from pywg.mesh import auth

    secret = "s" * 43
    store.add_token(auth.token_hash(secret), 10**13, reusable=True, now=0)
    return auth.token_hash(secret)


def test_update_request_paths_round_trip() -> None:
    update = UpdateRequest(
        None, None, None, (PathState(b"\x07" * 32, "direct", ("192.0.2.7", 51820)),)
    )
    assert UpdateRequest.from_json(decode(encode(update))) == update
    assert UpdateRequest.from_json({}).paths is None
    with pytest.raises(SchemaError, match="path"):
        UpdateRequest.from_json({"paths": [{"peer": "x" * 43 + "=", "path": "teleport"}]})


class _WgPeer:
    def __init__(self, endpoint: tuple[str, int] | None) -> None:
        self.endpoint = endpoint


class _FakeNode:
    """What pathstate.peer_paths reads of a MeshNode: its tunnel's peers and its own."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        from pywg.keys import PrivateKey

        self.keys = [PrivateKey.generate().public_key for _ in range(3)]
        self.wg = {k: _WgPeer(None) for k in self.keys}
        self.tunnel = SimpleNamespace(device=SimpleNamespace(peers=self.wg))
        self.relay = ("127.0.0.1", 40001)
        self.peers = {
            bytes(k): SimpleNamespace(key=k, raw=bytes(k), relay=self.relay) for k in self.keys
        }


class _FakeClient:
    def __init__(self) -> None:
        self.reports: list[tuple[PathState, ...]] = []

    async def report_paths(self, paths: tuple[PathState, ...]) -> int:
        self.reports.append(tuple(paths))
        return 1


def test_a_node_reports_its_paths_when_they_change(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from pywg.mesh import pathstate

    monkeypatch.setattr(pathstate, "MIN_GAP", 0.01)
    node, client = _FakeNode(), _FakeClient()
    one, two, _ = node.keys
    node.wg[one].endpoint = ("192.0.2.1", 51820)

    async def scenario() -> None:
        task = asyncio.create_task(pathstate.report_loop(node, client))  # type: ignore[arg-type]
        await asyncio.sleep(0.1)
        node.wg[one].endpoint = node.relay  # the direct path went: the relay
        node.wg[two].endpoint = ("192.0.2.2", 51820)
        await asyncio.sleep(0.1)
        task.cancel()

    asyncio.run(scenario())
    assert len(client.reports) == 2  # the first, and the change; nothing while none changes
    assert client.reports[0] == (PathState(bytes(one), "direct", ("192.0.2.1", 51820)),)
    assert {(p.peer, p.path) for p in client.reports[1]} == {
        (bytes(one), "relay"),
        (bytes(two), "direct"),
    }


def test_cli_sets_the_password_and_makes_admin_tokens(
    store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from pywg.cmd import coordinator as coordinator_cli

    state = store.state_dir
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert coordinator_cli.main(["coordinator", "admin", "set-password", "--state", state]) == 2
    assert "at least" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("the admin's password\n"))
    assert coordinator_cli.main(["coordinator", "admin", "set-password", "--state", state]) == 0
    assert passwords.check_login(store, "the admin's password")
    assert coordinator_cli.main(["coordinator", "admin", "token", "--state", state]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert passwords.check_login(store, token) and token not in out.err
    args = coordinator_cli_args(["--admin-session-hours", "0"])
    with pytest.raises(ValueError, match="admin-session-hours"):
        from pywg.cmd import admin

        admin.setup(args)


def coordinator_cli_args(extra: list[str]) -> object:
    import argparse

    from pywg.cmd import coordinator as coordinator_cli

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    coordinator_cli.register(sub)
    return parser.parse_args(["coordinator", "serve", *extra])
