"""`pywg up --userspace` (pywg.cmd.rootless, pywg.cmd.proxyopts): options, and the command's wiring.

The options: what is accepted, and what is refused with a one-line reason.
The wiring, in process, with a stand-in for the user-space stack
(helpers.kernel_stack): the tunnel from the file handshakes with a peer and
answers its pings through the link; curl reaches a file through the
command's SOCKS5 and HTTP proxies; a forward carries a connection to a
local service; SIGTERM stops it all. The real stack (pywg.netstack) is
what `make_stack` imports; without it the command says so.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
from pathlib import Path

import pytest

from helpers.icmp import ECHO_REPLY, echo_request, parse_echo
from helpers.kernel_stack import KernelStack
from helpers.metrics import scrape, value
from helpers.proxy_env import FileServer, curl, sha256
from pywg.asyncio.userspace import UserspaceTunnel
from pywg.cmd import main as pywg_main
from pywg.cmd import proxyopts, rootless
from pywg.cmd.address import UsageError
from pywg.config import load_config
from pywg.keys import PrivateKey
from pywg.proxy.forward import ForwardSpec

pytestmark = pytest.mark.time_limit(20)


def options(*argv: str) -> proxyopts.ProxyOptions:
    parser = argparse.ArgumentParser()
    proxyopts.add_options(parser)
    return proxyopts.proxy_options(parser.parse_args(list(argv)))


def test_options() -> None:
    got = options(
        "--userspace", "--socks5", "127.0.0.1:1080", "--http-proxy", "[::1]:3128",
        "--forward", "8080=127.0.0.1:80", "--forward", "2222=[::1]:22",
    )  # fmt: skip
    assert got == proxyopts.ProxyOptions(
        ("127.0.0.1", 1080),
        ("::1", 3128),
        (ForwardSpec(8080, "127.0.0.1", 80), ForwardSpec(2222, "::1", 22)),
    )
    assert options("--userspace") == proxyopts.ProxyOptions()
    for argv, message in [
        (["--socks5", "127.0.0.1:1080"], "--socks5 works with --userspace only"),
        (["--forward", "80=h:1"], "--forward works with --userspace only"),
        (["--userspace", "--forward", "80=h"], "PORT=HOST:PORT"),
        (["--userspace", "--forward", "80=a:1", "--forward", "80=b:2"], "forwarded once"),
        (["--userspace", "--socks5", "1080"], "--socks5 must be HOST:PORT"),
        (["--userspace", "--http-proxy", "::1:80"], "brackets"),
    ]:
        with pytest.raises(UsageError, match=message):
            options(*argv)


def test_pywg_up_refuses_a_proxy_without_userspace(capsys: pytest.CaptureFixture[str]) -> None:
    assert pywg_main.main(["up", "--socks5", "127.0.0.1:1080", "wg0.conf"]) == 2
    assert "--socks5 works with --userspace only" in capsys.readouterr().err


def test_pywg_up_userspace_without_a_stack_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(link: object, addresses: object) -> None:
        raise rootless.NetstackMissing("--userspace needs pywg.netstack, the user-space stack")

    monkeypatch.setattr(rootless, "make_stack", missing)
    monkeypatch.setattr(rootless.up_userspace, "__defaults__", (missing,))
    conf = tmp_path / "rl0.conf"
    conf.write_text(f"[Interface]\nPrivateKey = {PrivateKey.generate()}\nAddress = 10.9.0.1/24\n")
    assert pywg_main.main(["up", "--userspace", str(conf)]) == 1
    captured = capsys.readouterr()
    assert "rl0 is up (user space), UDP port" in captured.out
    assert "pywg up: --userspace needs pywg.netstack" in captured.err


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def ping_through(peer: UserspaceTunnel, address: str) -> bool:
    """Echo requests from `peer` to `address` until one is answered (bounded)."""
    answered = asyncio.Event()

    def receive(packets: object) -> None:
        for packet in packets:  # type: ignore[attr-defined]
            echo = parse_echo(packet)
            if echo is not None and echo[0] == ECHO_REPLY and echo[1] == address:
                answered.set()

    peer.link.set_receiver(receive)
    for seq in range(20):
        peer.link.send([echo_request("10.9.0.2", address, 9, seq)])
        try:
            await asyncio.wait_for(answered.wait(), 0.25)
            return True
        except TimeoutError:
            continue
    return False


def test_up_userspace_wiring(tmp_path: Path) -> None:
    async def body() -> None:
        node_key, peer_key = PrivateKey.generate(), PrivateKey.generate()
        node_port = free_udp_port()
        async with UserspaceTunnel("peer", private_key=peer_key) as peer:
            conf = tmp_path / "rl0.conf"
            conf.write_text(
                f"[Interface]\nPrivateKey = {node_key}\nListenPort = {node_port}\n"
                "Address = 10.9.0.1/24\nDNS = 10.9.0.53\n\n"
                f"[Peer]\nPublicKey = {peer_key.public_key}\nAllowedIPs = 10.9.0.2/32\n"
                f"Endpoint = 127.0.0.1:{peer.listen_port}\n"
            )
            peer.add_peer(node_key.public_key, ["10.9.0.1/32"], ("127.0.0.1", node_port))
            stacks: list[KernelStack] = []

            def factory(link: object, addresses: object) -> KernelStack:
                stacks.append(KernelStack(link, addresses))  # type: ignore[arg-type]
                return stacks[-1]

            proxy_ports = free_tcp_port(), free_tcp_port()
            with FileServer().running() as files:
                opts = proxyopts.ProxyOptions(
                    ("127.0.0.1", proxy_ports[0]), ("127.0.0.1", proxy_ports[1]),
                    (ForwardSpec(8022, "127.0.0.1", files.port),),
                )  # fmt: skip
                command = asyncio.create_task(
                    rootless.up_userspace(load_config(str(conf)), "rl0", opts, factory)
                )
                await wait_listening(proxy_ports[1])
                (stack,) = stacks
                assert stack.address == "10.9.0.1"
                assert await ping_through(peer, "10.9.0.1")  # the tunnel, through the link
                url = f"http://127.0.0.1:{files.port}/file"
                socks = await curl("--socks5-hostname", f"127.0.0.1:{proxy_ports[0]}", url)
                # a name is never looked up outside the tunnel: without the mesh's
                # resolver it does not resolve (reply 4, host unreachable)
                leak = url.replace("127.0.0.1", "localhost")
                refused = await curl("--socks5-hostname", f"127.0.0.1:{proxy_ports[0]}", leak)
                assert refused[0] == 97 and "(4)" in refused[2], refused
                http = await curl("-x", f"http://127.0.0.1:{proxy_ports[1]}", url)
                forwarded_port = stack.servers[8022].sockets[0].getsockname()[1]
                forwarded = await curl(f"http://127.0.0.1:{forwarded_port}/file")
                for code, out, err in (socks, http, forwarded):
                    assert code == 0 and sha256(out) == files.digest, err
                signal.raise_signal(signal.SIGTERM)
                assert await asyncio.wait_for(command, 5) == 0
            assert stack.closed

    asyncio.run(body())


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_listening(port: int) -> None:
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise AssertionError(f"nothing listens on port {port}")


def test_proxy_auth_file(tmp_path: Path) -> None:
    secret = tmp_path / "auth"
    secret.write_text("alice:s3cret:with:colons\n")
    got = options("--userspace", "--socks5", "127.0.0.1:1080", "--proxy-auth-file", str(secret))
    assert got.credentials == ("alice", "s3cret:with:colons")
    assert "s3cret" not in repr(got)
    for text in ("alice\n", ":pw\n", "alice:\n", ""):
        secret.write_text(text)
        with pytest.raises(UsageError, match="must be USER:PASSWORD"):
            options("--userspace", "--proxy-auth-file", str(secret))
    with pytest.raises(UsageError, match="--proxy-auth-file works with --userspace only"):
        options("--proxy-auth-file", str(secret))
    with pytest.raises(UsageError, match="No such file"):
        options("--userspace", "--proxy-auth-file", str(tmp_path / "none"))


def test_up_userspace_credentials_and_metrics(tmp_path: Path) -> None:
    """With credentials both proxies refuse a client without them and serve one with them;
    --metrics-listen serves the tunnel's metrics."""

    async def body() -> None:
        conf = tmp_path / "rl0.conf"
        peer_key = PrivateKey.generate().public_key
        conf.write_text(
            f"[Interface]\nPrivateKey = {PrivateKey.generate()}\nAddress = 10.9.0.1/24\n\n"
            f"[Peer]\nPublicKey = {peer_key}\nAllowedIPs = 10.9.0.2/32\n"
        )
        socks, http, metrics = free_tcp_port(), free_tcp_port(), free_tcp_port()
        opts = proxyopts.ProxyOptions(
            ("127.0.0.1", socks), ("127.0.0.1", http), credentials=("alice", "s3cret")
        )
        with FileServer().running() as files:
            command = asyncio.create_task(
                rootless.up_userspace(
                    load_config(str(conf)), "rl0", opts,
                    lambda link, addresses: KernelStack(link, addresses),  # type: ignore[arg-type]
                    metrics=("127.0.0.1", metrics),
                )
            )  # fmt: skip
            await wait_listening(metrics)
            url = f"http://127.0.0.1:{files.port}/file"
            no_socks = await curl("--socks5-hostname", f"127.0.0.1:{socks}", url)
            no_http = await curl("-x", f"http://127.0.0.1:{http}", "-w", "%{http_code}", url)
            assert no_socks[0] == 97, no_socks
            assert no_http[1].endswith(b"407"), no_http
            with_socks = await curl("--socks5-hostname", f"alice:s3cret@127.0.0.1:{socks}", url)
            with_http = await curl("-x", f"http://alice:s3cret@127.0.0.1:{http}", url)
            for code, out, err in (with_socks, with_http):
                assert code == 0 and sha256(out) == files.digest, err
            samples = await asyncio.to_thread(scrape, f"http://127.0.0.1:{metrics}/metrics")
            assert value(samples, "pywg_peers", interface="rl0") == 1
            signal.raise_signal(signal.SIGTERM)
            assert await asyncio.wait_for(command, 5) == 0

    asyncio.run(body())
