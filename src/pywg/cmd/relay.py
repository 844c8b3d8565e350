"""`pywg relay`: run a home relay for a mesh in a process of its own (docs/relay.md).

    pywg relay serve (--members FILE | --coordinator URL --coordinator-key KEY
                                       [--coordinator-pin SHA256HEX])
                     [--state DIR] [--listen IP] [--udp-port N] [--tcp-port N]
                     [--tls-cert FILE --tls-key FILE | --hostname NAME]
                     [--peer KEY[@HOST:PORT]]... [-v]
    pywg relay key [--state DIR]

`serve` keeps its relay key (Ed25519) in DIR/relay.key and, without
--tls-cert, a self-signed certificate for --hostname in DIR/tls.crt and
DIR/tls.key, all made at the first start. Once listening it prints one line
on stdout: ``relay KEY udp PORT tcp PORT certificate-sha256 HEX``. The members
come from a file (``{"members": [{"public_key", "control_key", "node_id"}]}``),
read again whenever it changes, or from the coordinator (GET /v1/members,
long-polled; `pywg coordinator serve --relay-key KEY` admits this relay);
over HTTPS, --coordinator-pin takes exactly the certificate with that
SHA-256 (in hex; a coordinator's self-made one, `serve --tls`), else one
the system's CAs vouch for.
``--peer KEY@HOST:PORT`` dials another relay of the mesh, ``--peer KEY``
accepts its dialing. `key` prints the relay key.

Exit status: 0 stopped by a signal, 1 failed (files, ports), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import ssl
import sys
from typing import TYPE_CHECKING, Any, Final

from pywg.cmd import metrics as metrics_cli
from pywg.cmd.address import UsageError, parse_hostport
from pywg.cmd.coordinator import parse_key, parse_pin, setup_logging

if TYPE_CHECKING:
    from nacl.signing import SigningKey

    from pywg.mesh.relayserver import PeerSpec, RelayConfig

DEFAULT_STATE: Final = "/var/lib/pywg/relay"
DEFAULT_LISTEN: Final = "::"
DEFAULT_UDP_PORT: Final = 3478
DEFAULT_TCP_PORT: Final = 443
DEFAULT_HOSTNAME: Final = "pywg-relay"


def register(subparsers: Any) -> None:
    """Add `relay` and its sub-commands to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "relay",
        help="run a home relay for a mesh (UDP, and TCP/TLS on 443 where UDP is blocked)",
        description="A relay for a pywg mesh: forwards sealed WireGuard datagrams between "
        "member nodes, over UDP or over TLS on TCP. It never holds a key that opens them.",
    )
    sub = parser.add_subparsers(dest="relay_command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state", default=DEFAULT_STATE, metavar="DIR", help=f"state (default {DEFAULT_STATE})"
    )
    serve = sub.add_parser("serve", parents=[common], help="run the relay (foreground)")
    _register_serve(serve)
    key = sub.add_parser("key", parents=[common], help="print the relay key")
    key.set_defaults(func=key_command)


def _register_serve(serve: argparse.ArgumentParser) -> None:
    members = serve.add_mutually_exclusive_group(required=True)
    members.add_argument("--members", metavar="FILE", help="the members, from a file it follows")
    members.add_argument(
        "--coordinator",
        metavar="URL",
        help="the members, from the coordinator (with --coordinator-key; the coordinator "
        "needs --relay-key with this relay's key)",
    )
    serve.add_argument(
        "--coordinator-key", metavar="KEY", help="the coordinator's key (`pywg coordinator key`)"
    )
    serve.add_argument(
        "--coordinator-pin",
        metavar="SHA256HEX",
        help="over HTTPS, take only the coordinator certificate with this SHA-256 (hex)",
    )
    serve.add_argument(
        "--listen", default=DEFAULT_LISTEN, metavar="IP", help="address (default ::, all)"
    )
    serve.add_argument("--udp-port", type=int, default=DEFAULT_UDP_PORT, metavar="N")
    serve.add_argument("--tcp-port", type=int, default=DEFAULT_TCP_PORT, metavar="N")
    serve.add_argument("--tls-cert", metavar="FILE", help="PEM certificate chain (with --tls-key)")
    serve.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    serve.add_argument(
        "--hostname",
        default=DEFAULT_HOSTNAME,
        metavar="NAME",
        help="name in the self-signed certificate made without --tls-cert",
    )
    serve.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="KEY[@HOST:PORT]",
        help="another relay of the mesh: dial it (with an address) or accept it; repeatable",
    )
    metrics_cli.add_option(serve)
    serve.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    serve.set_defaults(func=serve_command)


def _fail(message: str, status: int = 1) -> int:
    print(f"pywg relay: {message}", file=sys.stderr)
    return status


def parse_peer(text: str) -> PeerSpec:
    """``KEY`` or ``KEY@HOST:PORT`` (KEY: the relay key, base64)."""
    from pywg.mesh.auth import AuthError, unb64
    from pywg.mesh.relayserver import PeerSpec

    key_text, at, where = text.partition("@")
    try:
        key = unb64(key_text, 32)
    except AuthError as exc:
        problem = f"the relay key is not base64 of 32 bytes ({exc})"
        raise UsageError(f"--peer {text!r}: {problem}") from None
    if not at:
        return PeerSpec(key)
    host, port = parse_hostport(where, "--peer")
    if host is None or port == 0:
        raise UsageError(f"--peer {text!r}: dial where? KEY@HOST:PORT")
    return PeerSpec(key, host, port)


def _check_arguments(args: argparse.Namespace) -> None:
    try:
        ipaddress.ip_address(args.listen)
    except ValueError:
        raise UsageError(f"--listen must be an IP address, not {args.listen!r}") from None
    for name in ("udp_port", "tcp_port"):
        if not 0 <= getattr(args, name) <= 0xFFFF:
            raise UsageError(f"--{name.replace('_', '-')} out of range")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if (args.coordinator is None) != (args.coordinator_key is None):
        raise UsageError("--coordinator and --coordinator-key go together")
    if args.coordinator_key is not None:
        parse_key(args.coordinator_key, "--coordinator-key")
    if args.coordinator_pin is not None:
        if args.coordinator is None:
            raise UsageError("--coordinator-pin goes with --coordinator")
        parse_pin(args.coordinator_pin, "--coordinator-pin")


def _relay_key(state: str) -> SigningKey:
    from pywg.mesh.relayserver.state import load_or_create_key

    return load_or_create_key(state)


def key_command(args: argparse.Namespace) -> int:
    from pywg.mesh.auth import b64

    try:
        key = _relay_key(args.state)
    except (OSError, ValueError) as exc:
        return _fail(str(exc))
    print(b64(bytes(key.verify_key)))
    return 0


def _config(args: argparse.Namespace, peers: list[PeerSpec]) -> RelayConfig:
    """The relay's configuration from the command line and the state directory."""
    from pywg.mesh import tls
    from pywg.mesh.relayserver import (
        CoordinatorMembership,
        FileMembership,
        Membership,
        RelayConfig,
        server_tls,
    )

    signing_key = _relay_key(args.state)
    membership: Membership
    if args.coordinator is not None:
        coordinator_key = parse_key(args.coordinator_key, "--coordinator-key")
        pin = None
        if args.coordinator_pin is not None:
            pin = parse_pin(args.coordinator_pin, "--coordinator-pin")
        membership = CoordinatorMembership(
            args.coordinator, signing_key, coordinator_key, tls_pin=pin
        )
    else:
        membership = FileMembership(args.members)
    if args.tls_cert is not None:
        certificate = tls.load(args.tls_cert, args.tls_key)
    else:
        certificate = tls.load_or_make(args.state, [args.hostname])
    return RelayConfig(
        signing_key=signing_key,
        membership=membership,
        tls=server_tls(certificate),
        host=args.listen,
        udp_port=args.udp_port,
        tcp_port=args.tcp_port,
        peers=peers,
    )


def serve_command(args: argparse.Namespace) -> int:
    from pywg.asyncio import run

    try:
        _check_arguments(args)
        peers = [parse_peer(text) for text in args.peer]
    except UsageError as exc:
        return _fail(str(exc), 2)
    setup_logging(args.verbose)
    try:
        config = _config(args, peers)
    except (OSError, ValueError, ssl.SSLError) as exc:
        return _fail(str(exc))
    try:
        run(_serve(config, args.metrics_listen))
    except OSError as exc:
        return _fail(f"cannot serve: {exc}")
    except KeyboardInterrupt:
        return 0
    return 0


async def _serve(config: RelayConfig, metrics: metrics_cli.Address | None = None) -> None:
    from pywg.mesh.auth import b64
    from pywg.mesh.relayserver import CoordinatorMembership, FileMembership, Relay
    from pywg.system import sdnotify

    stop = asyncio.Event()
    sdnotify.stop_on_signals(stop.set)
    loop = asyncio.get_running_loop()
    relay = Relay(config)
    await relay.start()
    try:
        exporter = await metrics_cli.serve_metrics(metrics, metrics_cli.relay_metrics(relay))
    except OSError:
        relay.close()
        raise
    membership = config.membership
    follow = None
    if isinstance(membership, FileMembership | CoordinatorMembership):
        follow = loop.create_task(membership.follow())
    try:
        print(
            f"relay {b64(relay.key)} udp {relay.udp_port} tcp {relay.tcp_port} "
            f"certificate-sha256 {config.tls.fingerprint}",
            flush=True,
        )
        sdnotify.ready(f"UDP port {relay.udp_port}, TCP port {relay.tcp_port}")
        await stop.wait()
    finally:
        if follow is not None:
            follow.cancel()
        relay.close()
        if exporter is not None:
            await exporter.close()
        if isinstance(membership, CoordinatorMembership):
            await membership.close()
