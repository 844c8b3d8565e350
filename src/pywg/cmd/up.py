"""`pywg up CONFIG`: a tunnel from a wg-quick style file, in the foreground.

It needs no wireguard-tools: the file is parsed by `pywg.config`, the device
runs in this process (`pywg.asyncio.Tunnel`), addresses and routes are set
with iproute2 (`pywg.system.netconf`), and the UAPI socket is served too, so `wg` and
`pywg show` see the interface. Ctrl-C (or SIGTERM) takes it all down again:
PreDown, the interface (its routes and addresses go with it), the policy
rules of a default route, PostDown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from pywg.asyncio import TunError, Tunnel, UapiServer, run
from pywg.asyncio.tun import check_ifname
from pywg.cmd.metrics import Address, serve_metrics, tunnel_metrics
from pywg.config import Config, ConfigError, load_config, to_uapi_set
from pywg.constants import DEFAULT_MTU
from pywg.events import EndpointChanged, HandshakeCompleted, HandshakeTimedOut
from pywg.system import sdnotify
from pywg.system.netconf import Netconf, NetconfError, run_hooks
from pywg.uapi import UapiError

log = logging.getLogger("pywg.up")


class UpError(Exception):
    """A one-line reason `pywg up` cannot run."""


def interface_name(path: str, name: str | None) -> str:
    """The interface name: given, or the config file's name without `.conf` (as wg-quick)."""
    if name is None:
        base = os.path.basename(path)
        name = base[: -len(".conf")] if base.endswith(".conf") else base
    try:
        check_ifname(name)
    except TunError as exc:
        raise UpError(f"{exc.strerror}; choose one with --name") from None
    if "%" in name:  # a kernel template ("wg%d"): the hooks and routes need the real name
        raise UpError(f"interface name {name!r} has a '%'; choose one with --name")
    return name


async def up(config: Config, name: str, metrics: Address | None = None) -> int:
    if config.dns:
        log.warning("DNS = ... is ignored: pywg up does not change the resolver")
    run_hooks(config.pre_up, name, stage="PreUp")
    tunnel = Tunnel(name, mtu=config.mtu or DEFAULT_MTU)
    await tunnel.start()
    server = UapiServer(tunnel)
    netconf = Netconf(name)
    exporter = None
    try:
        await server.start()
        exporter = await serve_metrics(metrics, tunnel_metrics(lambda: tunnel))
        tunnel.configure(to_uapi_set(config))
        netconf.add_addresses(config.addresses)
        netconf.set_mtu_up(config.mtu or DEFAULT_MTU)
        networks = [n for peer in config.peers for n in peer.allowed_ips]
        mark = netconf.add_routes(networks, table=config.table, fwmark=config.fwmark)
        if mark and mark != config.fwmark:
            tunnel.configure(f"set=1\nfwmark={mark}\n\n")
        run_hooks(config.post_up, name, stage="PostUp")
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, tunnel.close, signal.Signals(signum).name)
        print(
            f"pywg: {name} is up, UDP port {tunnel.listen_port}, {len(config.peers)} peer(s); "
            "Ctrl-C to stop",
            flush=True,
        )
        sdnotify.ready(f"{name} is up, UDP port {tunnel.listen_port}")
        async for event in tunnel.events():
            if isinstance(event, HandshakeCompleted):
                print(f"pywg: handshake with {event.public_key}", flush=True)
            elif isinstance(event, EndpointChanged):
                print(f"pywg: peer {event.public_key} now at {event.endpoint[0]}", flush=True)
            elif isinstance(event, HandshakeTimedOut):
                print(f"pywg: no answer from {event.public_key} for 90 s", flush=True)
        print(f"pywg: stopping ({tunnel.close_reason})", flush=True)
        sdnotify.stopping(tunnel.close_reason)
    finally:
        try:
            run_hooks(config.pre_down, name, stage="PreDown")
        finally:
            tunnel.close()
            server.close()
            if exporter is not None:
                await exporter.close()
            netconf.teardown()
            run_hooks(config.post_down, name, stage="PostDown")
    return 0


def main(path: str, name: str | None = None, metrics: Address | None = None) -> int:
    """Entry point of `pywg up`; one-line errors on stderr, exit status 1."""
    try:
        if os.geteuid() != 0:  # first: a user without root needs no other complaint
            raise UpError("must run as root (it creates a TUN interface and routes)")
        config = load_config(path)
        ifname = interface_name(path, name)
        if config.private_key is None:
            raise UpError(f"{path}: [Interface] has no PrivateKey")
        return run(up(config, ifname, metrics))
    except (ConfigError, UpError, NetconfError, UapiError) as exc:
        print(f"pywg up: {exc}", file=sys.stderr)
    except (TunError, OSError) as exc:
        print(f"pywg up: {exc.strerror or exc}", file=sys.stderr)
    return 1
