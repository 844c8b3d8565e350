"""A homelab full mesh: 50 in-process devices, every pair a peer, on virtual time."""

from __future__ import annotations

import time

from helpers.ip_packets import ip4
from helpers.virtual_network import Network
from pywg import Device, HandshakeCompleted, PrivateKey

N = 50


def test_full_mesh_of_50_devices() -> None:
    started = time.monotonic()
    net = Network(latency=0.002)
    keys = [PrivateKey.generate() for _ in range(N)]
    hosts = []
    for i, key in enumerate(keys):
        dev = Device(key, 51820, wall_clock=net.wall_clock())
        hosts.append(net.attach(dev, (f"198.18.{i // 200}.{i % 200 + 1}", 51820)))
    tunnel = [f"198.19.{i // 200}.{i % 200 + 1}" for i in range(N)]
    for i, host in enumerate(hosts):
        for j, other in enumerate(hosts):
            if i != j:
                host.device.add_peer(keys[j].public_key, [f"{tunnel[j]}/32"], endpoint=other.addr)
    # everyone sends one packet to everyone else at once: the worst case for handshakes
    for i, host in enumerate(hosts):
        for j in range(N):
            if i != j:
                net.send(host, ip4(tunnel[i], tunnel[j], f"{i}->{j}".encode()))
    net.run_until(30.0)
    for j, host in enumerate(hosts):
        got = sorted(p for _, p in host.received)
        want = sorted(ip4(tunnel[i], tunnel[j], f"{i}->{j}".encode()) for i in range(N) if i != j)
        assert got == want, f"device {j} got {len(got)} of {len(want)}"
    for host in hosts:
        peers_done = {e.public_key for e in host.events if isinstance(e, HandshakeCompleted)}
        assert len(peers_done) == N - 1
        # the only drops: responses to initiations that crossed the peer's own
        # (its handshake was replaced by answering ours), at most a few per peer
        assert set(host.device.dropped) <= {"unknown_index"}
        assert host.device.dropped["unknown_index"] <= 2 * (N - 1)
    assert time.monotonic() - started < 60.0
