"""pywg.mesh.state (a node's keys and records on disk), endpoint text, the agent's helpers."""

from __future__ import annotations

import ipaddress
import os
import stat
from pathlib import Path

import pytest

from pywg.endpoint import format_endpoint, parse_endpoint
from pywg.mesh.agent import _overlap
from pywg.mesh.schema import Networks, NodeInfo, Roster
from pywg.mesh.state import Joined, NodeState, StateError


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_keys_are_made_once_private_and_kept(tmp_path: Path) -> None:
    directory = tmp_path / "node"
    old = os.umask(0o022)
    try:
        first = NodeState.open(str(directory))
    finally:
        os.umask(old)
    assert mode(directory) == 0o700
    for name in ("wireguard.key", "control.key"):
        assert mode(directory / name) == 0o600
    again = NodeState.open(str(directory))
    assert again.public_key == first.public_key
    assert bytes(again.control.verify_key) == bytes(first.control.verify_key)
    assert again.joined is None


def test_repr_shows_no_secret(tmp_path: Path) -> None:
    state = NodeState.open(str(tmp_path / "n"))
    text = repr(state)
    assert state.wireguard.to_base64() not in text
    assert (tmp_path / "n" / "control.key").read_text().strip() not in text
    assert state.public_key in text


def test_join_record_and_roster_cache_round_trip(tmp_path: Path) -> None:
    state = NodeState.open(str(tmp_path / "n"))
    state.save_joined(Joined("http://198.18.0.1:8580", bytes(range(32)), "nas"))
    assert mode(tmp_path / "n" / "node.json") == 0o600
    again = NodeState.open(str(tmp_path / "n"))
    assert again.joined == Joined("http://198.18.0.1:8580", bytes(range(32)), "nas")
    assert again.load_roster() is None
    roster = Roster(
        version=3,
        network=Networks(
            ipaddress.IPv4Network("198.19.5.0/24"), ipaddress.IPv6Network("fd19:5::/64")
        ),
        me=NodeInfo("nas", bytes(range(32)), ("198.19.5.1", "fd19:5::1"), (), ()),
        peers=(),
    )
    again.save_roster(roster)
    assert NodeState.open(str(tmp_path / "n")).load_roster() == roster
    (tmp_path / "n" / "roster.json").write_text("{not json")
    assert again.load_roster() is None  # only a cache: unreadable means none


def test_damaged_files_are_clear_errors(tmp_path: Path) -> None:
    NodeState.open(str(tmp_path / "n"))
    (tmp_path / "n" / "node.json").write_text('{"url": 1}')
    with pytest.raises(StateError, match=r"node\.json is damaged"):
        NodeState.open(str(tmp_path / "n"))
    (tmp_path / "n" / "node.json").unlink()
    (tmp_path / "n" / "wireguard.key").write_text("not a key\n")
    with pytest.raises(StateError, match="damaged"):
        NodeState.open(str(tmp_path / "n"))


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("198.18.0.1:51820", ("198.18.0.1", 51820)),
        ("[fd18::1]:51820", ("fd18::1", 51820)),
        ("[::ffff:198.18.0.1]:9", ("198.18.0.1", 9)),
    ],
)
def test_endpoint_text(text: str, endpoint: tuple[str, int]) -> None:
    assert parse_endpoint(text) == endpoint
    assert parse_endpoint(format_endpoint(endpoint)) == endpoint


@pytest.mark.parametrize("bad", ["198.18.0.1", "host:80", "[fd18::1]", "1.2.3.4:x", ""])
def test_bad_endpoint_text(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_endpoint(bad)


def test_overlap() -> None:
    assert _overlap("198.18.50.0/24", "198.18.50.0/24")
    assert _overlap("198.18.0.0/16", "198.18.50.0/24")
    assert not _overlap("198.18.50.0/24", "198.18.51.0/24")
    assert not _overlap("198.18.50.0/24", "fd18::/64")


def test_mesh_objects_show_no_secret(tmp_path: Path) -> None:
    import base64

    from pywg.mesh.agent import JoinOptions, MeshNode
    from pywg.mesh.client import CoordinatorClient

    state = NodeState.open(str(tmp_path / "n"))
    token = "S" * 32 + ".fingerprintfingerpri"
    options = JoinOptions("http://198.18.0.1:8580", token, str(tmp_path / "n"))
    node = MeshNode(options, state)
    client = CoordinatorClient(options.url, state.public_key, state.control)
    secrets = [
        state.wireguard.to_base64(),
        base64.b64encode(bytes(state.control)).decode(),
        bytes(state.control).hex(),
        "S" * 32,
    ]
    for obj in (state, options, node, client):
        for text in (repr(obj), str(obj)):
            for secret in secrets:
                assert secret not in text, type(obj).__name__
