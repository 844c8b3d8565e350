"""`--userspace` for `pywg up` and `pywg join`: WireGuard with no TUN and no root.

The tunnel runs as a `UserspaceTunnel` (its packets on a `PacketLink`), a
user-space stack (`pywg.netstack`, made by `pywg.proxy.stacknet.make_stack`)
holds the node's tunnel addresses on that link, and ordinary programs reach
the mesh through proxies on this machine: `--socks5 ADDR` (SOCKS5 with
remote names and UDP ASSOCIATE), `--http-proxy ADDR` (HTTP CONNECT and plain
http://), and `--forward PORT=HOST:PORT` (a local service at the node's
tunnel address PORT). Nothing on the machine changes: no interface, no
address, route, firewall rule or resolver entry.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from pywg.asyncio.userspace import UserspaceTunnel
from pywg.cmd.address import UsageError
from pywg.cmd.metrics import Address, served, tunnel_metrics
from pywg.cmd.proxyopts import Listen, ProxyOptions
from pywg.cmd.proxyopts import proxy_options as proxyopts_parse
from pywg.config import Config, to_uapi_set
from pywg.constants import DEFAULT_MTU
from pywg.proxy import HttpProxy, KernelNetwork, Network, PortForward, Socks5Server
from pywg.proxy.serving import ClientServer
from pywg.proxy.stacknet import (
    NetstackMissing,
    StackFactory,
    StackLike,
    StackNetwork,
    make_stack,
)

if TYPE_CHECKING:  # imported by `pywg join` only: the mesh brings aiohttp, slow to import
    from pywg.mesh.agent import JoinOptions, MeshNode
    from pywg.mesh.state import NodeState

log = logging.getLogger("pywg.rootless")


async def start_proxies(
    options: ProxyOptions, network: Network, local: Network
) -> list[ClientServer]:
    """Start what `options` asks for: proxies on this machine into `network`, forwards
    from `network` to `local`. Each says where it listens in the log."""
    servers: list[ClientServer] = []
    try:
        if options.socks5 is not None:
            socks = Socks5Server(network, credentials=options.credentials)
            servers.append(socks)
            await socks.start(*options.socks5)
            log.info("SOCKS5 proxy on %s port %d", *_shown(options.socks5))
        if options.http_proxy is not None:
            http = HttpProxy(network, credentials=options.credentials)
            servers.append(http)
            await http.start(*options.http_proxy)
            log.info("HTTP proxy on %s port %d", *_shown(options.http_proxy))
        for spec in options.forwards:
            forward = PortForward(spec, local)
            servers.append(forward)
            await forward.start_forward(network)
            log.info(
                "forward: tunnel port %d to %s port %d", spec.port, spec.host, spec.target_port
            )
    except BaseException:
        await stop_proxies(servers)
        raise
    return servers


def _shown(listen: Listen) -> tuple[str, int]:
    return listen[0] or "*", listen[1]


async def stop_proxies(servers: Sequence[ClientServer]) -> None:
    for server in servers:
        await server.close()


def without_privileged_parts(config: Config) -> Config:
    """The configuration a user-space tunnel can apply: what needs root is dropped, with
    a warning (a firewall mark, hooks, DNS, a routing table: nothing on the machine changes)."""
    ignored = [
        key
        for key, present in (
            ("FwMark", config.fwmark),
            ("DNS", config.dns),
            ("Table", config.table),
            (
                "PreUp/PostUp/PreDown/PostDown",
                config.pre_up or config.post_up or config.pre_down or config.post_down,
            ),
        )
        if present
    ]
    if ignored:
        log.warning("ignored with --userspace: %s", ", ".join(ignored))
    return replace(config, fwmark=0)


async def up_userspace(
    config: Config,
    name: str,
    options: ProxyOptions,
    stack_factory: StackFactory = make_stack,
    *,
    metrics: Address | None = None,
) -> int:
    """Run the tunnel of `config` with its stack and proxies (and its metrics at `metrics`)
    until a signal or `close`."""
    config = without_privileged_parts(config)
    tunnel = UserspaceTunnel(name, mtu=config.mtu or DEFAULT_MTU)
    await tunnel.start()
    servers: list[ClientServer] = []
    stack: StackLike | None = None
    try:
        tunnel.configure(to_uapi_set(config))
        print(f"pywg: {name} is up (user space), UDP port {tunnel.listen_port}", flush=True)
        stack = stack_factory(tunnel.link, config.addresses)
        servers = await start_proxies(options, StackNetwork(stack), KernelNetwork())
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, tunnel.close, signal.Signals(signum).name)
        print(f"pywg: {name}: {describe(options)}; Ctrl-C to stop", flush=True)
        async with served(metrics, tunnel_metrics(lambda: tunnel)):
            await tunnel.wait_closed()
        print(f"pywg: stopping ({tunnel.close_reason})", flush=True)
    finally:
        await stop_proxies(servers)
        if stack is not None:
            stack.close()
        tunnel.close()
    return 0


def describe(options: ProxyOptions) -> str:
    parts = []
    if options.socks5 is not None:
        parts.append("SOCKS5 on {}:{}".format(*_shown(options.socks5)))
    if options.http_proxy is not None:
        parts.append("HTTP proxy on {}:{}".format(*_shown(options.http_proxy)))
    parts += [f"forward {spec}" for spec in options.forwards]
    return ", ".join(parts) or "no proxies (the stack alone)"


def up_main(
    path: str, name: str | None, options: ProxyOptions, metrics: Address | None = None
) -> int:
    """`pywg up --userspace CONFIG`: one-line errors on stderr, exit status 1."""
    from pywg.asyncio import run
    from pywg.cmd.up import UpError, interface_name
    from pywg.config import ConfigError, load_config
    from pywg.uapi import UapiError

    try:
        config = load_config(path)
        ifname = interface_name(path, name)
        if config.private_key is None:
            raise UpError(f"{path}: [Interface] has no PrivateKey")
        return run(up_userspace(config, ifname, options, metrics=metrics))
    except (ConfigError, UpError, UapiError, NetstackMissing) as exc:
        print(f"pywg up: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"pywg up: {exc.strerror or exc}", file=sys.stderr)
    return 1


def user_state_dir(interface: str) -> str:
    """The state directory of an unprivileged node: $XDG_STATE_HOME/pywg/INTERFACE
    (~/.local/state by default, XDG Base Directory Specification)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local/state")
    return os.path.join(base, "pywg", interface)


def check_join_args(args: argparse.Namespace) -> ProxyOptions:
    """The proxies of `pywg join --userspace`; UsageError for what needs the machine
    (a node without an interface routes nothing and uses no exit), and a user's own
    state directory when none is given."""
    options = proxyopts_parse(args)
    for flag, given in (
        ("--advertise-routes", args.advertise_routes),
        ("--advertise-exit-node", args.advertise_exit_node),
        ("--exit-node", args.exit_node),
    ):
        if given:
            raise UsageError(f"{flag} needs an interface: not with --userspace")
    if args.state is None:
        args.state = user_state_dir(args.interface)
    return options


def join_options(options: JoinOptions) -> JoinOptions:
    """A node's options as a user-space node runs them: no DNS server, no resolver entries."""
    from pywg.mesh.names import NameOptions

    return replace(options, names=NameOptions(serve=False, resolver="none"))


def join_node(options: JoinOptions, state: NodeState, proxies: ProxyOptions) -> MeshNode:
    """The node of `pywg join --userspace`, with the proxies `proxies` asks for."""
    from pywg.mesh.rootless import RootlessNode

    async def start(network: Network) -> list[ClientServer]:
        return await start_proxies(proxies, network, KernelNetwork())

    return RootlessNode(join_options(options), state, start)
