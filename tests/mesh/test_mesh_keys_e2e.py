"""Key rotation, expiry and revocation end to end: `pywg coordinator` and `pywg join`
processes in the lab (pywg.lab.mesh), docs/keys.md.

The nodes are on public hosts of the lab's internet, so their peers are reached
directly. A node rotates its keys (`pywg set --rotate-keys`) under a running TCP
transfer: everything arrives, without a stall of a second, and the peer holds
the node under its new key. An expired and a revoked node then leave every
roster: no other node takes their handshakes (pings that worked before fail).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from pywg.lab.mesh import PYWG, MeshLab, Node, dump
from pywg.lab.transfer import PacedStream

PREFIX = "pwkeys"  # of the `lab` fixture's lab

# bytes/s and seconds of the transfer under the rotations: 12 MB in the default run;
# 100 MB (the issue's) with PYWG_SLOW_TESTS=1
SIZES = [
    pytest.param(2_000_000, 6.0, id="12MB"),
    pytest.param(10_000_000, 10.0, id="100MB", marks=pytest.mark.slow),
]


def _rotate(node: Node) -> str:
    """`pywg set --rotate-keys` for the node (its control socket); its answer."""
    done = node.host.run(
        *PYWG, "set", "--rotate-keys", "--state", str(node.state), check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr + node.log_text()
    return done.stdout


def _peer_keys(node: Node) -> set[str]:
    return set(node.endpoints())


def _wait(what: str, check: Callable[[], bool], seconds: float, mesh: MeshLab) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {seconds} s\n{dump(mesh)}")


@pytest.mark.needs_lab
@pytest.mark.time_limit(120)
@pytest.mark.parametrize(("rate", "seconds"), SIZES)
def test_rotation_under_transfer_then_expire_and_revoke(
    mesh_lab: Callable[..., MeshLab], rate: int, seconds: float
) -> None:
    mesh = mesh_lab(own_relay=False)
    a = mesh.node("a", mesh.net.public("a"))
    b = mesh.node("b", mesh.net.public("b"))
    c = mesh.node("c", mesh.net.public("c"))
    for node in (a, b, c):
        mesh.wait_up(node, 2)
    for src, dst in ((a, b), (a, c), (b, c)):
        assert src.host.wait_ping(dst.addr4(), deadline=15), dump(mesh)
    old_a, old_b = a.public_key(), b.public_key()

    stream = PacedStream(a.host, b.host, b.addr4(), port=5201, rate=rate, seconds=seconds)
    time.sleep(seconds / 4)
    assert "keys rotated" in _rotate(a)  # the sender ...
    time.sleep(seconds / 4)
    assert "keys rotated" in _rotate(b)  # ... and the receiver
    result = stream.result(seconds + 30)
    assert result.ok, result
    assert result.max_gap < 1.0, (result, dump(mesh))

    new_a, new_b = a.public_key(), b.public_key()
    assert new_a != old_a and new_b != old_b
    _wait("the new keys in the peers", lambda: new_a in _peer_keys(b) and new_a in _peer_keys(c)
          and new_b in _peer_keys(a) and old_a not in _peer_keys(c), 5, mesh)  # fmt: skip
    assert "rotated its key" in b.log_text() and "rotated its key" in c.log_text()
    assert a.host.ping(b.addr4(), count=2), dump(mesh)

    mesh.admin("expire", "b")
    mesh.admin("revoke", "c")
    _wait("b and c out of a's peers", lambda: _peer_keys(a) == set(), 5, mesh)
    for src, dst in ((b, a), (c, a), (a, b), (b, c)):
        assert not src.host.ping(dst.addr4(), count=2, timeout=3), (src.name, dst.name)
    listing = mesh.admin("nodes")
    assert "revoked" in listing and "expired" in listing, listing
