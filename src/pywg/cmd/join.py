"""`pywg join URL --token T`: bring this machine into a mesh in one command (`pywg.mesh.agent`)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from pywg.cmd import metrics as metrics_cli
from pywg.cmd import proxyopts

if TYPE_CHECKING:  # imported when the command runs: aiohttp is slow to import
    from pywg.mesh.agent import JoinOptions

DEFAULT_STATE: str = "/var/lib/pywg"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "join",
        help="join a mesh run by `pywg coordinator` (runs the node in the foreground)",
        description=(
            "Join the mesh at URL (once, with a join token from `pywg coordinator token`), "
            "then run this node: a WireGuard interface whose peers, endpoints and routes "
            "follow the coordinator's roster, with direct paths through NATs where they open "
            "and the relay where they do not. Keys stay in the state directory; a restart "
            "needs no token."
        ),
    )
    p.add_argument(
        "url",
        help="the coordinator, e.g. https://vps.example.org:8580; several coordinators of one "
        "mesh comma-separated (tried in turn, docs/postgresql.md)",
    )
    p.add_argument("--token", help="a join token (needed the first time only)")
    p.add_argument("--name", help="this node's name in the mesh (default: the host name)")
    p.add_argument("--interface", "-i", default="pywg0", help="interface name (default pywg0)")
    p.add_argument(
        "--state", help=f"state directory (default {DEFAULT_STATE}/INTERFACE)", default=None
    )
    p.add_argument("--listen-port", type=int, default=51820, help="UDP port (default 51820)")
    p.add_argument(
        "--advertise-routes",
        default="",
        metavar="CIDR,...",
        help="subnets this node routes for the mesh (the coordinator must approve them)",
    )
    p.add_argument(
        "--no-snat",
        action="store_true",
        help="do not masquerade mesh traffic into the advertised subnets "
        "(their hosts then need a route back to the mesh)",
    )
    p.add_argument(
        "--advertise-exit-node",
        action="store_true",
        help="offer this node as an exit node: it forwards and masquerades the internet "
        "traffic of the nodes that choose it (the coordinator must approve it)",
    )
    p.add_argument(
        "--exit-node",
        metavar="NAME",
        help="send this node's internet traffic through exit node NAME "
        "(change it at run time: pywg set --exit-node NAME|none)",
    )
    p.add_argument(
        "--exit-node-allow-leak",
        action="store_true",
        help="while the exit node is gone from the roster, let internet traffic go out "
        "directly (default: it stops)",
    )
    p.add_argument("--stun", metavar="HOST:PORT", help="STUN server (default: the home relay)")
    _register_names(p)
    metrics_cli.add_option(p)
    proxyopts.add_options(p)
    p.add_argument("-v", "--verbose", action="store_true", help="log every decision")
    p.set_defaults(func=main)


def _register_names(p: argparse.ArgumentParser) -> None:
    """The options of names (docs/mesh.md, "Names")."""
    p.add_argument(
        "--no-dns",
        action="store_true",
        help="run no DNS server for the mesh's names on the tunnel addresses",
    )
    p.add_argument(
        "--resolver",
        choices=("auto", "resolved", "hosts", "none"),
        default="auto",
        help="how this machine learns the mesh's names: systemd-resolved for the mesh "
        "domain, a block in the hosts file, or not at all (default auto: resolved where "
        "it runs, else hosts)",
    )
    p.add_argument(
        "--hosts-file",
        default="/etc/hosts",
        metavar="PATH",
        help="the hosts file of --resolver hosts (default /etc/hosts)",
    )
    p.add_argument(
        "--resolv-conf",
        default="/etc/resolv.conf",
        metavar="PATH",
        help="where the servers for names outside the mesh are read (default /etc/resolv.conf)",
    )


def _options(args: argparse.Namespace) -> JoinOptions:
    from pywg.mesh.agent import JoinOptions, MeshError
    from pywg.mesh.exits import EXIT_ROUTES
    from pywg.mesh.names import NameOptions

    routes = [r.strip() for r in args.advertise_routes.split(",") if r.strip()]
    for route in routes:
        try:
            network = ipaddress.ip_network(route, strict=True)
        except ValueError:
            raise MeshError(
                f"--advertise-routes: {route!r} is not a network address/prefix"
            ) from None
        if network.prefixlen == 0:
            raise MeshError(
                f"--advertise-routes: {route} is a default route: use --advertise-exit-node"
            )
    if args.advertise_exit_node:
        routes += list(EXIT_ROUTES)
    if args.exit_node is not None and (not args.exit_node or args.exit_node == args.name):
        raise MeshError("--exit-node must name another node of the mesh")
    if args.exit_node_allow_leak and args.exit_node is None:
        raise MeshError("--exit-node-allow-leak needs --exit-node")
    stun_server = None
    if args.stun:
        host, sep, port = args.stun.rpartition(":")
        if not sep or not port.isdigit():
            raise MeshError("--stun must be HOST:PORT")
        stun_server = (host.strip("[]"), int(port))
    if not 0 <= args.listen_port <= 65535:
        raise MeshError("--listen-port must be 0-65535")
    return JoinOptions(
        url=args.url,
        token=args.token,
        state_dir=args.state or os.path.join(DEFAULT_STATE, args.interface),
        interface=args.interface,
        name=args.name,
        listen_port=args.listen_port,
        advertise_routes=routes,
        snat=not args.no_snat,
        stun=stun_server,
        exit_node=args.exit_node,
        exit_allow_leak=args.exit_node_allow_leak,
        names=NameOptions(
            serve=not args.no_dns,
            resolver=args.resolver,
            hosts_file=args.hosts_file,
            resolv_conf=args.resolv_conf,
        ),
    )


def main(args: argparse.Namespace) -> int:
    from pywg.asyncio import run
    from pywg.asyncio.tun import TunError
    from pywg.cmd import rootless
    from pywg.cmd.address import UsageError
    from pywg.mesh.agent import MeshError, MeshNode
    from pywg.mesh.control import ControlError
    from pywg.mesh.state import NodeState, StateError
    from pywg.proxy.stacknet import NetstackMissing
    from pywg.system import journal, sdnotify

    journal.setup(
        sys.stderr,
        logging.DEBUG if args.verbose else logging.INFO,
        logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"),
        logging.Formatter("%(message)s"),
    )
    userspace = proxyopts.wanted(args)
    if os.geteuid() != 0 and not userspace:
        print("pywg join: must run as root (it creates a network interface)", file=sys.stderr)
        return 1
    try:
        proxies = rootless.check_join_args(args) if userspace else None
        options = _options(args)
        state = NodeState.open(options.state_dir)
    except (MeshError, StateError, UsageError) as exc:
        print(f"pywg join: {exc}", file=sys.stderr)
        return 1
    if proxies is None:
        node = MeshNode(options, state)
    else:
        node = rootless.join_node(options, state, proxies)

    def ready() -> None:
        sdnotify.ready(f"{options.interface} is up")

    node.on_ready = ready

    async def serve() -> None:
        sdnotify.stop_on_signals(node.close)
        async with metrics_cli.served(args.metrics_listen, metrics_cli.mesh_metrics(node)):
            await node.run()

    try:
        run(serve())
    except (MeshError, StateError, TunError, ControlError, OSError, NetstackMissing) as exc:
        print(f"pywg join: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0
