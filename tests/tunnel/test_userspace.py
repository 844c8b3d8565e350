"""A WireGuard tunnel with no TUN device (`pywg.asyncio.userspace`): its packets on a PacketLink.

In process: two user-space tunnels on loopback, on both data planes, carry
hand-made ICMP echoes both ways. In the lab: a node that dropped to an
unprivileged user (no capabilities, no TUN it may create) runs a tunnel to
wireguard-go in another namespace; the kernel's ping on the far side gets its
echo answered in Python, through the encrypted path.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from helpers.icmp import ECHO_REPLY, echo_reply_to, echo_request, parse_echo
from pywg import backend
from pywg.asyncio.userspace import SocketLink, UserspaceTunnel
from pywg.keys import PrivateKey
from pywg.lab import Lab
from pywg.lab.wireguard import WIREGUARD_GO, endpoint, start_node

PREFIX = "pwu"
NOBODY = 65534
ROOT = Path(__file__).resolve().parents[2]

PLANES = [pytest.param(False, id="pure")]
if backend.BACKEND == "native":
    PLANES.append(pytest.param(True, id="native"))


async def echo_pair(native: bool, count: int) -> tuple[int, int]:
    """Two tunnels on loopback; A sends `count` echo requests, B answers.

    Returns the replies A got and the packets B's link dropped."""
    keys = PrivateKey.generate(), PrivateKey.generate()
    a = UserspaceTunnel("ua", private_key=keys[0], native=native)
    b = UserspaceTunnel("ub", private_key=keys[1], native=native)
    async with a, b:
        assert isinstance(a.link, SocketLink) and a.link.mtu == 1420
        a.add_peer(keys[1].public_key, ["10.9.0.2/32"], ("127.0.0.1", b.listen_port))
        b.add_peer(keys[0].public_key, ["10.9.0.1/32"], ("127.0.0.1", a.listen_port))
        b.link.set_receiver(lambda packets: b.link.send(answers(packets, "10.9.0.2")))
        got: set[int] = set()
        done = asyncio.Event()

        def on_reply(packets: Sequence[bytes]) -> None:
            for packet in packets:
                echo = parse_echo(packet)
                if echo is not None and echo[0] == ECHO_REPLY and echo[1] == "10.9.0.2":
                    got.add(echo[4])
            if len(got) == count:
                done.set()

        a.link.set_receiver(on_reply)
        for seq in range(count):  # the first ones wait for the handshake (staged)
            a.link.send([echo_request("10.9.0.1", "10.9.0.2", 1, seq)])
            if seq % 50 == 49:
                await asyncio.sleep(0.01)
        await asyncio.wait_for(done.wait(), 5)
        return len(got), b.link.send_drops


def answers(packets: Sequence[bytes], own: str) -> list[bytes]:
    return [reply for p in packets if (reply := echo_reply_to(p, own)) is not None]


@pytest.mark.time_limit(15)
@pytest.mark.parametrize("native", PLANES)
def test_two_userspace_tunnels_carry_echoes(native: bool) -> None:
    replies, drops = asyncio.run(echo_pair(native, 100))
    assert (replies, drops) == (100, 0)


@pytest.mark.time_limit(5)
def test_link_after_close_drops_and_tunnel_starts_once() -> None:
    async def body() -> None:
        tunnel = UserspaceTunnel(private_key=PrivateKey.generate())
        await tunnel.start()
        tunnel.close()
        tunnel.link.send([b"\x45" + bytes(27)])
        assert tunnel.link.send_drops == 1 and tunnel.link.closed
        with pytest.raises(OSError, match="starts once"):
            await tunnel.start()

    asyncio.run(body())


@pytest.mark.needs_lab("wireguard-go", "ping")
@pytest.mark.time_limit(25)
def test_unprivileged_node_answers_ping_from_wireguard_go() -> None:
    with Lab(PREFIX) as lab:
        a, b = lab.host("a"), lab.host("b")
        link = lab.link(a, b)
        peer = start_node(lab, b, WIREGUARD_GO, net=1, index=2)
        key = PrivateKey.generate()
        env = {"PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'tests'}", "PYWG_OFFLOAD": "1"}
        node = a.popen(
            sys.executable, "-m", "helpers.rootless_node", str(NOBODY), str(peer.public_key),
            endpoint(link.b_addr4, peer.port), "198.19.1.1", peer.addr4,
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd="/",
        )  # fmt: skip
        assert node.stdin is not None and node.stdout is not None
        node.stdin.write(f"{key}\n".encode())
        node.stdin.flush()
        # its endpoint is learnt from its handshake: the rootless node starts it
        peer.set(f"public_key={key.public_key.to_hex()}\nallowed_ip=198.19.1.1/32\n")
        lines = [node.stdout.readline().decode().strip() for _ in range(5)]
        assert lines[0] == f"uid {NOBODY} caps 0", lines
        assert lines[1].startswith("tun refused: "), lines
        assert lines[2] == ("plane native" if backend.BACKEND == "native" else "plane pure")
        assert lines[3:] == ["outbound ok", "ready"], lines
        assert b.ping("198.19.1.1", count=3, timeout=5)
        (status,) = peer.status().peers
        assert status.public_key == str(key.public_key) and status.last_handshake
        node.stdin.close()
        assert node.wait(timeout=5) == 0
        assert os.geteuid() == 0  # the test itself kept its privileges


@pytest.mark.needs_lab("wireguard-go", "curl")
@pytest.mark.time_limit(30)
def test_pywg_up_userspace_as_an_unprivileged_user() -> None:
    """`pywg up --userspace --socks5` as nobody: it comes up with no TUN and no privilege;
    with the user-space stack, curl through its SOCKS5 proxy fetches a file from an
    HTTP server behind wireguard-go, and the hashes match."""
    with Lab(PREFIX) as lab, tempfile.TemporaryDirectory() as scratch:
        a, b = lab.host("a"), lab.host("b")
        link = lab.link(a, b)
        peer = start_node(lab, b, WIREGUARD_GO, net=1, index=2)
        key = PrivateKey.generate()
        files = Path(scratch)
        files.chmod(0o755)  # the unprivileged node reads its configuration here
        conf = files / "rl0.conf"
        conf.write_text(
            f"[Interface]\nPrivateKey = {key}\nAddress = 198.19.1.1/24\n\n"
            f"[Peer]\nPublicKey = {peer.public_key}\nAllowedIPs = 198.19.1.2/32\n"
            f"Endpoint = {endpoint(link.b_addr4, peer.port)}\n"
        )
        os.chown(conf, NOBODY, NOBODY)
        conf.chmod(0o600)
        peer.set(f"public_key={key.public_key.to_hex()}\nallowed_ip=198.19.1.1/32\n")
        env = {"PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'tests'}"}
        node = a.popen(
            sys.executable, "-m", "helpers.unprivileged_pywg", str(NOBODY),
            "up", "--userspace", "--socks5", "127.0.0.1:1080", str(conf),
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/",
        )  # fmt: skip
        assert node.stdout is not None and node.stderr is not None
        assert node.stdout.readline().decode().strip() == f"uid {NOBODY} caps 0"
        lines = [node.stdout.readline().decode() for _ in range(2)]
        if not lines[0].startswith("pywg: rl0 is up (user space), UDP port "):
            node.kill()
            raise AssertionError(f"{lines!r}: {node.stderr.read().decode()}")
        if "SOCKS5 on 127.0.0.1:1080" not in lines[1]:
            assert node.wait(timeout=5) == 1
            error = node.stderr.read().decode()
            assert "--userspace needs pywg.netstack" in error, error
            pytest.skip("pywg.netstack is not in this build: the fetch through it waits for it")
        body = os.urandom(1 << 20)
        (files / "file").write_bytes(body)
        server = ("-m", "http.server", "-b", "198.19.1.2", "8000", "-d", scratch)
        b.popen(sys.executable, *server, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        got = files / "got"
        a.run(
            "curl", "-sS", "--retry", "3", "--retry-all-errors", "--max-time", "15",
            "--socks5-hostname", "127.0.0.1:1080", "-o", str(got),
            "http://198.19.1.2:8000/file", timeout=25,
        )  # fmt: skip
        assert hashlib.sha256(got.read_bytes()).digest() == hashlib.sha256(body).digest()
        node.terminate()
        assert node.wait(timeout=5) == 0
