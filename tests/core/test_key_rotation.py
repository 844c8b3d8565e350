"""Rotating static keys under live sessions: `Device.rotate_private_key` on the rotating
side, `Device.change_peer_key` on its peers (pywg.mesh.expiry, docs/keys.md)."""

from __future__ import annotations

import pytest

from helpers.device_pair import make_pair
from helpers.ip_packets import ip4
from helpers.virtual_network import Host, Network
from pywg import Device, HandshakeCompleted, LocalProtocolError, PrivateKey

A, B = "198.19.0.1", "198.19.0.2"


def _connected() -> tuple[Network, Host, Host]:
    net = Network()
    a, b = make_pair(net)
    net.send(a, ip4(A, B, b"first"))
    net.run_until(1.0)
    assert [p for _, p in b.received] == [ip4(A, B, b"first")]
    return net, a, b


def _exchange(net: Network, a: Host, b: Host, tag: bytes, until: float) -> None:
    """A packet each way; both must arrive."""
    before_a, before_b = len(a.received), len(b.received)
    net.send(a, ip4(A, B, tag))
    net.send(b, ip4(B, A, tag))
    net.run_until(until)
    assert [p for _, p in b.received[before_b:]] == [ip4(A, B, tag)]
    assert [p for _, p in a.received[before_a:]] == [ip4(B, A, tag)]


def test_rotation_keeps_sessions_without_a_handshake() -> None:
    net, a, b = _connected()
    sessions = (
        a.device.peer(b.device.public_key).current,
        b.device.peer(a.device.public_key).current,
    )
    old = a.device.public_key
    new = PrivateKey.generate()
    a.device.rotate_private_key(new, grace_until=net.now + 30)
    b.device.change_peer_key(old, new.public_key)
    assert a.device.public_key == new.public_key and a.device.retired_public_key == old
    _exchange(net, a, b, b"after", 2.0)
    assert a.device.peer(b.device.public_key).current is sessions[0]
    assert b.device.peer(new.public_key).current is sessions[1]
    assert not b.device.has_peer(old)
    handshakes = [e for e in a.events + b.events if isinstance(e, HandshakeCompleted)]
    assert len(handshakes) == 2  # the first one's, on each side: none since


def test_changed_peer_keeps_endpoint_allowed_ips_and_timers() -> None:
    _, a, b = _connected()
    peer = b.device.peer(a.device.public_key)
    before = (peer.endpoint, b.device.allowed_ips(a.device.public_key), peer.persistent_keepalive)
    new = PrivateKey.generate().public_key
    assert b.device.change_peer_key(a.device.public_key, new) is peer
    assert (peer.endpoint, b.device.allowed_ips(new), peer.persistent_keepalive) == before
    assert b.device.route(A) is peer


def test_peers_that_have_not_seen_the_new_key_still_handshake_in_the_grace() -> None:
    net, a, b = _connected()
    a.device.rotate_private_key(PrivateKey.generate(), grace_until=net.now + 30)
    b.device.remove_peer(a.device.retired_public_key or b"")  # b forgets its session ...
    b.device.add_peer(a.device.retired_public_key or b"", [f"{A}/32"], endpoint=a.addr)
    net.send(b, ip4(B, A, b"again"))  # ... and handshakes with the old key: answered
    net.run_until(3.0)
    assert [p for _, p in a.received][-1] == ip4(B, A, b"again")
    net.send(a, ip4(A, B, b"reply"))  # on the session that handshake made
    net.run_until(4.0)
    assert [p for _, p in b.received][-1] == ip4(A, B, b"reply")
    assert b.events[-1].public_key == a.device.retired_public_key  # type: ignore[attr-defined]


def test_old_key_not_answered_after_the_grace() -> None:
    net, a, b = _connected()
    old = a.device.public_key
    assert old is not None
    a.device.rotate_private_key(PrivateKey.generate(), grace_until=net.now + 3)
    net.run_until(4.0)
    assert a.device.retired_public_key is None
    b.device.remove_peer(old)
    b.device.add_peer(old, [f"{A}/32"], endpoint=a.addr)
    net.send(b, ip4(B, A, b"late"))
    net.run_until(8.0)
    assert not [p for _, p in a.received if p == ip4(B, A, b"late")]
    assert a.device.dropped["bad_mac1"] >= 1


def test_new_handshakes_use_the_new_key() -> None:
    net, a, b = _connected()
    old = a.device.public_key
    new = PrivateKey.generate()
    a.device.rotate_private_key(new, grace_until=net.now + 30)
    b.device.change_peer_key(old, new.public_key)
    for host in (a, b):  # sessions gone on both sides: only a new handshake brings traffic
        other = b if host is a else a
        host.device.remove_peer(other.device.public_key)
    a.device.add_peer(b.device.public_key, [f"{B}/32"], endpoint=b.addr)
    b.device.add_peer(new.public_key, [f"{A}/32"], endpoint=a.addr)
    _exchange(net, a, b, b"fresh", 15.0)


def test_set_private_key_still_drops_sessions_and_grace() -> None:
    net, a, b = _connected()
    a.device.rotate_private_key(PrivateKey.generate(), grace_until=net.now + 30)
    a.device.set_private_key(PrivateKey.generate())
    assert a.device.retired_public_key is None
    assert a.device.peer(b.device.public_key).current is None


def test_refusals() -> None:
    _, a, b = _connected()
    stranger = PrivateKey.generate().public_key
    with pytest.raises(LocalProtocolError):
        a.device.change_peer_key(stranger, PrivateKey.generate().public_key)  # no such peer
    with pytest.raises(LocalProtocolError):
        b.device.change_peer_key(a.device.public_key, b.device.public_key)  # its own key
    assert b.device.private_key is not None
    with pytest.raises(LocalProtocolError):
        a.device.rotate_private_key(b.device.private_key, 10.0)  # a peer's key
    with pytest.raises(LocalProtocolError):
        Device().rotate_private_key(PrivateKey.generate(), 10.0)  # no identity yet
