"""A jumbo tunnel MTU (34000) both ways: pywgd against pywgd and against wireguard-go.

Each test builds its own lab (prefix "pwj"): two hosts joined by a veth whose
MTU leaves room for a 34000-byte tunnel packet plus the outer IPv6, UDP and
WireGuard overhead, one daemon per host with tunnel MTU 34000. It checks that

- pings of 30000 bytes with DF set (`ping -s 30000 -M do`) pass both ways,
  over IPv4 and IPv6, so packets that size cross the tunnel unfragmented;
- seeded TCP streams arrive byte for byte (SHA-256 at both ends) both ways;
- UDP datagrams of MTU - 28 bytes come back intact from an echo server on the
  other side (each one distinct, so a mixed-up or truncated one shows);
- iperf3 TCP one stream each way runs; its throughput and retransmits are
  printed (run with -s), not asserted: speed is benches/tunnel.py --mtu's.

Needs root, iproute2, ping, iperf3 and wireguard-go; skipped otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from pywg.lab import Host, Lab, tcp_transfer
from pywg.lab.wireguard import PYWGD, WIREGUARD_GO, Impl, WgNode, connect, start_node
from pywg.lab.wireguard import wait_handshake as lab_wait_handshake

PREFIX = "pwj"
TEST_TIME_LIMIT = 120.0  # seconds for any one test here, teardown included
MTU = 34000
UNDERLAY_OVERHEAD = 80  # outer IPv6 (40) + UDP (8) + WireGuard header (16) + tag (16)
PING_BYTES = 30000
TCP_BYTES = 64 * 1024 * 1024
IPERF_SECONDS = 3
UDP_DATAGRAMS = 40
UDP_PORT = 5301

pytestmark = [
    pytest.mark.needs_lab("wireguard-go", "ping", "iperf3", "pywgd"),
    pytest.mark.time_limit(TEST_TIME_LIMIT),
]

# Echoes every datagram to its sender until killed (the lab kills it at close).
ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    data, source = s.recvfrom(65535)
    s.sendto(data, source)
"""

# Sends COUNT distinct datagrams of SIZE bytes, each until its echo comes back
# (three tries, one second each); prints how many came back equal, and unequal.
ECHO_CLIENT = """
import hashlib, json, socket, sys
address, port, size, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
equal = unequal = 0
for i in range(count):
    seed = hashlib.sha256(i.to_bytes(4, "big")).digest()
    data = (seed * (size // len(seed) + 1))[:size]
    for _ in range(3):
        s.sendto(data, (address, port))
        try:
            echo, _ = s.recvfrom(65535)
        except TimeoutError:
            continue
        if echo == data:
            equal += 1
        else:
            unequal += 1
        break
print(json.dumps({"equal": equal, "unequal": unequal}))
"""


def jumbo_pair(lab: Lab, a_impl: Impl, b_impl: Impl) -> tuple[WgNode, WgNode]:
    a, b = lab.host("a"), lab.host("b")
    link = lab.link(a, b, mtu=MTU + UNDERLAY_OVERHEAD)
    left = start_node(lab, a, a_impl, net=1, index=1, mtu=MTU)
    right = start_node(lab, b, b_impl, net=1, index=2, mtu=MTU)
    connect(left, right, link)
    assert lab_wait_handshake(left, right), f"{a_impl.name} and {b_impl.name}: no handshake"
    return left, right


def big_ping(host: Host, address: str) -> subprocess.CompletedProcess[str]:
    family = "-6" if ":" in address else "-4"
    argv = ["ping", family, "-n", "-c", "3", "-i", "0.2", "-W", "2", "-M", "do"]
    return host.run(*argv, "-s", str(PING_BYTES), address, check=False)


def iperf_tcp(client: Host, server: Host, address: str, *, reverse: bool) -> tuple[float, int]:
    """iperf3 TCP, one stream; (Gbit/s received, sender's retransmits)."""
    srv = server.popen(
        "iperf3", "-s", "-1", "-B", address, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        time.sleep(0.3)
        argv = ["iperf3", "-c", address, "-t", str(IPERF_SECONDS), "-J"]
        out = client.run(*argv, *(["-R"] if reverse else []), timeout=IPERF_SECONDS + 30).stdout
    finally:
        srv.kill()
        srv.wait()
    end = json.loads(out)["end"]
    return end["sum_received"]["bits_per_second"] / 1e9, int(end["sum_sent"].get("retransmits", 0))


def udp_echo(client: Host, server: Host, address: str) -> dict[str, int]:
    echo = server.popen(sys.executable, "-c", ECHO, address, str(UDP_PORT), stdout=subprocess.PIPE)
    try:
        assert echo.stdout is not None
        assert echo.stdout.readline().strip() == b"ready"
        argv = [address, str(UDP_PORT), str(MTU - 28), str(UDP_DATAGRAMS)]
        out = client.run(sys.executable, "-c", ECHO_CLIENT, *argv, timeout=UDP_DATAGRAMS * 4)
    finally:
        echo.kill()
        echo.wait()
    counts: dict[str, int] = json.loads(out.stdout)
    return counts


@pytest.mark.parametrize(
    ("a_impl", "b_impl"),
    [(PYWGD, PYWGD), (PYWGD, WIREGUARD_GO)],
    ids=["pywgd-pywgd", "pywgd-wireguard-go"],
)
def test_jumbo_mtu_both_ways(lab: Lab, a_impl: Impl, b_impl: Impl) -> None:
    left, right = jumbo_pair(lab, a_impl, b_impl)
    a, b = left.host, right.host
    for host, peer in ((a, right), (b, left)):
        for address in (peer.addr4, peer.addr6):
            done = big_ping(host, address)
            assert done.returncode == 0, f"{PING_BYTES}-byte ping to {address}: {done.stdout}"

    for sender, receiver, address in ((a, b, right.addr4), (b, a, left.addr4)):
        result = tcp_transfer(sender, receiver, address, TCP_BYTES, timeout=60)
        assert result.ok, f"TCP {sender.name}->{receiver.name} not intact: {result}"

    for client, server, address in ((a, b, right.addr4), (b, a, left.addr4)):
        counts = udp_echo(client, server, address)
        assert counts["unequal"] == 0, f"UDP echo {client.name}<->{server.name}: {counts}"
        assert counts["equal"] == UDP_DATAGRAMS, f"UDP echo {client.name}<->{server.name}: {counts}"

    forward = iperf_tcp(a, b, right.addr4, reverse=False)
    reverse = iperf_tcp(a, b, right.addr4, reverse=True)
    print(
        f"\n{a_impl.name}-{b_impl.name} MTU {MTU}: TCP A->B {forward[0]:.2f} Gbit/s"
        f" ({forward[1]} retransmits), B->A {reverse[0]:.2f} Gbit/s ({reverse[1]} retransmits)"
    )
