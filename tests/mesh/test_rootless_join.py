"""`pywg join --userspace` (pywg.mesh.rootless, pywg.cmd.rootless): a mesh node with no TUN.

In process, against the coordinator, with a stand-in for the user-space
stack (helpers.kernel_stack): the node joins, its stack gets the node's mesh
addresses, its UAPI socket is in its state directory, the SOCKS5 proxy
resolves a peer's mesh name from the roster and curl fetches through it;
closing it ends the proxies and the stack. The command's refusals are
checked too.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
from pathlib import Path

import pytest

from helpers.kernel_stack import KernelStack
from helpers.mesh_harness import V4, V6, Coordinators
from helpers.proxy_env import FileServer, curl, sha256
from pywg.asyncio.userspace import UserspaceTunnel
from pywg.cmd import join as join_cli
from pywg.cmd import rootless
from pywg.cmd.address import UsageError
from pywg.cmd.proxyopts import ProxyOptions
from pywg.mesh.agent import JoinOptions
from pywg.mesh.names import NameOptions
from pywg.mesh.rootless import RootlessNode
from pywg.mesh.state import NodeState

pytestmark = pytest.mark.time_limit(20)


def join_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    join_cli.register(parser.add_subparsers())
    return parser.parse_args(["join", "https://c.example:8580", *argv])


def test_join_userspace_arguments(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    args = join_args("--userspace", "--socks5", "127.0.0.1:1080", "--forward", "22=[::1]:22")
    options = rootless.check_join_args(args)
    assert options.socks5 == ("127.0.0.1", 1080) and len(options.forwards) == 1
    assert args.state == str(tmp_path / "pywg" / "pywg0")  # the user's, not /var/lib
    for flag in (["--advertise-routes", "10.1.0.0/24"], ["--advertise-exit-node"],
                 ["--exit-node", "gw"]):  # fmt: skip
        with pytest.raises(UsageError, match=f"{flag[0]} needs an interface"):
            rootless.check_join_args(join_args("--userspace", *flag))
    with pytest.raises(UsageError, match="--http-proxy works with --userspace only"):
        rootless.check_join_args(join_args("--http-proxy", "127.0.0.1:3128"))
    plain = JoinOptions("https://c", None, str(tmp_path))
    assert rootless.join_options(plain).names == NameOptions(serve=False, resolver="none")


def test_rootless_node_joins_and_serves_socks5(coordinator: Coordinators, tmp_path: Path) -> None:
    async def body() -> None:
        async with coordinator(("peer",)) as running:
            (peer,) = running.members
            token = await running.join(peer)
            stacks: list[KernelStack] = []

            def factory(link: object, addresses: object) -> KernelStack:
                stacks.append(KernelStack(link, addresses, redirect="127.0.0.1"))  # type: ignore[arg-type]
                return stacks[-1]

            port = free_port()
            proxies = ProxyOptions(socks5=("127.0.0.1", port))

            async def start(network: rootless.Network) -> list[rootless.ClientServer]:
                return await rootless.start_proxies(proxies, network, rootless.KernelNetwork())

            state_dir = str(tmp_path / "node")
            options = rootless.join_options(
                JoinOptions(running.url, token, state_dir, interface="rl0", name="me",
                            listen_port=0)
            )  # fmt: skip
            node = RootlessNode(options, NodeState.open(state_dir), start, factory)
            ready = asyncio.Event()
            node.on_ready = ready.set
            task = asyncio.create_task(node.run())
            await asyncio.wait_for(ready.wait(), 10)
            assert isinstance(node.tunnel, UserspaceTunnel)
            (stack,) = stacks
            assert [ipaddress.ip_interface(a).network for a in stack.addresses] == [
                ipaddress.ip_network(V4),
                ipaddress.ip_network(V6),
            ]
            assert os.path.exists(os.path.join(state_dir, "rl0.sock"))  # the UAPI socket
            assert not os.path.exists("/sys/class/net/rl0")  # no interface anywhere
            peer_address = (await node._resolve("peer.mesh.internal"))[0]
            assert ipaddress.ip_address(peer_address) in ipaddress.ip_network(V4)
            assert peer_address != stack.address  # the peer's, not this node's
            assert await node._resolve("nobody.mesh.internal") == []
            with FileServer().running() as files:
                url = f"http://peer.mesh.internal:{files.port}/file"
                code, out, err = await curl("--socks5-hostname", f"127.0.0.1:{port}", url)
                assert code == 0 and sha256(out) == files.digest, err
            node.close()
            await asyncio.wait_for(task, 5)
            assert stack.closed and node.tunnel.closed

    asyncio.run(body())


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
