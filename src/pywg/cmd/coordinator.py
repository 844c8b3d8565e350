"""`pywg coordinator`: run a mesh coordinator (and its relay), and administer it.

    pywg coordinator serve [--state DIR] [--listen HOST:PORT] [--ipv4 CIDR] [--ipv6 CIDR]
                           [--relay-host HOST] [--relay-name NAME] [--relay-listen IP]
                           [--relay-port N] [--relay-tcp-port N] [--relay-metrics-listen HOST:PORT]
                           [--no-relay]
                           [--tls | --tls-cert FILE --tls-key FILE | --plain-http]
                           [--auto-approve-routes] [--relay-key KEY]...
                           [--home-relay NAME=KEY@HOST[:UDP[:TCP]][#PIN]]...
                           [--domain DOMAIN] [--key-expiry DAYS]
    pywg coordinator token [--ttl SECONDS] [--reusable] [--url URL]
    pywg coordinator nodes [--json]
    pywg coordinator expire NAME | revoke NAME
    pywg coordinator approve NAME [PREFIX...] [--exit-node]
    pywg coordinator remove NAME
    pywg coordinator key
    pywg coordinator device add|remove|list ...   (plain WireGuard devices: pywg.cmd.devices)
    pywg coordinator policy check|set|show|clear  (the access policy: pywg.cmd.policy)
    pywg coordinator migrate --to postgresql://...  (SQLite to PostgreSQL: pywg.cmd.migrate)

Every command takes --state DIR and --database URL: the mesh is kept in
SQLite in DIR, or in the PostgreSQL database URL (several coordinators may
serve it, docs/postgresql.md; DIR then holds the key and certificate only).
The admin commands work on the state directory's database directly, also
while `serve` runs (it notices within a second). The mesh networks are fixed
at the first `serve`: IPv4 100.64.0.0/10 unless --ipv4 says otherwise (RFC
6598 shared space; pick another range if the hosts are behind a carrier-grade
NAT using it, or run Tailscale), IPv6 a random unique local /64 (RFC 4193).
Members are named NAME.DOMAIN (--domain, default mesh.internal; kept in the
state, and changed for every node when a later `serve` gives another).

`serve` serves HTTPS: with --tls-cert and --tls-key (a CA's certificate), or
with one it makes at the first start (STATE/tls.crt; its SHA-256 is
`certificate-sha256` in the start-up line, and every token pins it). Plain
HTTP takes --plain-http.

`serve` runs a home relay of its own (`pywg relay serve`, docs/relay.md) in a
child process it starts again if it exits and ends when it stops: relay
number 1 of the relay map every roster carries, named --relay-name (default
"relay"), reached by nodes at --relay-host on UDP --relay-port (3478, also
its STUN server) and TCP --relay-tcp-port (443), its key and certificate in
STATE/relay (`pywg relay key --state STATE/relay` prints the key). It reads
the members from this coordinator over loopback. --no-relay runs none.

Each --home-relay puts another home relay (`pywg relay serve` run apart) in
the map, numbered 2, 3, ... in the order given (1, 2, ... with --no-relay;
keep the order when adding one: a node holds each relay under its number):
its name, its relay key (`pywg relay key`), its host, its UDP and TCP ports
(default 3478 and 443) and, optionally, the SHA-256 of its TLS certificate in
hex (`certificate-sha256` in its start-up line). The own relay dials each
(give them `--peer` with its key). The relays of the map may read the
members, as those named by --relay-key may.

Exit status: 0 done, 1 failed (state, network), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Final

from pywg.cmd import metrics as metrics_cli
from pywg.cmd.address import UsageError, parse_hostport
from pywg.cmd.table import format_table
from pywg.system import journal, sdnotify

if TYPE_CHECKING:  # the heavy modules (aiohttp) are imported when a command runs
    from pywg.mesh.coordinator import Coordinator
    from pywg.mesh.limits import Limits
    from pywg.mesh.relaychild import OwnRelay
    from pywg.mesh.schema import HomeRelay
    from pywg.mesh.store import Node, Store
    from pywg.mesh.tls import Certificate

DEFAULT_STATE: Final = "/var/lib/pywg/coordinator"
DEFAULT_LISTEN: Final = ":8580"
DEFAULT_RELAY_LISTEN: Final = "::"
DEFAULT_RELAY_NAME: Final = "relay"
DEFAULT_TTL: Final = 86400
DEFAULT_HOME_UDP: Final = 3478  # `pywg relay serve`'s default ports
DEFAULT_HOME_TCP: Final = 443
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?")


def register(subparsers: Any) -> None:
    """Add `coordinator` and its sub-commands to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "coordinator",
        help="run a mesh coordinator (`pywg join` nodes) and administer it",
        description=(
            "A self-hosted coordinator for a WireGuard mesh: nodes join with a token, "
            "report their endpoints and routes, and get the roster of the others. "
            "It never sees a private key."
        ),
    )
    sub = parser.add_subparsers(dest="coordinator_command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state", default=DEFAULT_STATE, metavar="DIR", help=f"state (default {DEFAULT_STATE})"
    )
    common.add_argument(
        "--database",
        metavar="URL",
        help="keep the mesh in this PostgreSQL database (postgresql://...; docs/postgresql.md) "
        "instead of SQLite in --state, which still holds the key and certificate",
    )
    serve = sub.add_parser("serve", parents=[common], help="run the coordinator (foreground)")
    _register_serve(serve)
    _register_admin(sub, common)
    from pywg.cmd import devices

    devices.register(sub, common, _admin)
    from pywg.cmd import admin

    admin.register(sub, common, _admin)
    from pywg.cmd import policy

    policy.register(sub, common, _admin)
    from pywg.cmd import migrate

    migrate.register(sub, common)


def _register_serve(serve: argparse.ArgumentParser) -> None:
    """The options of `pywg coordinator serve`."""
    serve.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help="HTTP API address (default :8580, every address; [::1]:8580 for IPv6)",
    )
    serve.add_argument(
        "--ipv4",
        metavar="CIDR",
        help="tunnel IPv4 network, fixed at first start (default 100.64.0.0/10)",
    )
    serve.add_argument(
        "--ipv6",
        metavar="CIDR",
        help="tunnel IPv6 network, fixed at first start "
        "(default: a random unique local /64, RFC 4193)",
    )
    _register_own_relay(serve)
    serve.add_argument(
        "--auto-approve-routes",
        action="store_true",
        help="approve advertised subnets (and exit node offers) at once",
    )
    serve.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS with a certificate made here, kept in the state, which tokens pin "
        "(the default without --tls-cert or --plain-http)",
    )
    serve.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate")
    serve.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert")
    serve.add_argument(
        "--plain-http",
        action="store_true",
        help="serve plain HTTP (answers are signed, but names, addresses and endpoints "
        "travel in the clear): behind a TLS-terminating proxy, or in a lab",
    )
    _register_home_relays(serve)
    serve.add_argument(
        "--domain",
        metavar="DOMAIN",
        help="the mesh's names are NAME.DOMAIN (default: as set before, else mesh.internal)",
    )
    serve.add_argument(
        "--key-expiry",
        type=float,
        metavar="DAYS",
        help="node keys expire this many days after they were issued; nodes rotate them "
        "before (0: never; default: as set before, else 180)",
    )
    metrics_cli.add_option(serve)
    from pywg.cmd import admin

    admin.add_serve_options(serve)
    _register_limits(serve)
    serve.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    serve.set_defaults(func=serve_command)


def _register_limits(serve: argparse.ArgumentParser) -> None:
    """What one source address is granted (docs/mesh.md, "Facing the internet"): to raise
    behind a reverse proxy or a large NAT, where many nodes share one address."""
    from pywg.mesh import limits

    serve.add_argument(
        "--connections-per-source",
        type=int,
        default=limits.CONNECTIONS_PER_SOURCE,
        metavar="N",
        help="connections at once from one address (IPv6: one /64) "
        f"(default {limits.CONNECTIONS_PER_SOURCE})",
    )
    serve.add_argument(
        "--refusals-per-second",
        type=float,
        default=limits.REFUSALS_PER_SECOND,
        metavar="RATE",
        help="refused requests (wrong tokens, bad signatures) one address may make a second "
        f"after its --refusal-burst; beyond them its requests get 429 "
        f"(default {limits.REFUSALS_PER_SECOND:g})",
    )
    serve.add_argument(
        "--refusal-burst",
        type=int,
        default=limits.REFUSAL_BURST,
        metavar="N",
        help=f"refused requests one address may make at once (default {limits.REFUSAL_BURST})",
    )
    serve.add_argument(
        "--idle-timeout",
        type=float,
        default=limits.IDLE_TIMEOUT,
        metavar="SECONDS",
        help="close a connection that has not sent a whole request's headers for this long "
        f"(default {limits.IDLE_TIMEOUT:g})",
    )


def limits_of(args: argparse.Namespace) -> Limits:
    """The per-source limits the options give; UsageError if they are out of range."""
    from pywg.mesh.limits import Limits

    try:
        return Limits(
            connections_per_source=args.connections_per_source,
            refusals_per_second=args.refusals_per_second,
            refusal_burst=args.refusal_burst,
            idle_timeout=args.idle_timeout,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _register_own_relay(serve: argparse.ArgumentParser) -> None:
    """The options of `serve` about its own relay (a child process, relay 1 of the map)."""
    serve.add_argument(
        "--relay-host",
        metavar="HOST",
        help="the relay's name or address as nodes reach it (needed unless --relay-listen "
        "or --listen names one address)",
    )
    serve.add_argument(
        "--relay-name",
        default=DEFAULT_RELAY_NAME,
        metavar="NAME",
        help=f"its name in the relay map (default {DEFAULT_RELAY_NAME})",
    )
    serve.add_argument(
        "--relay-listen",
        default=DEFAULT_RELAY_LISTEN,
        metavar="IP",
        help="the address it listens on (default ::, every address, IPv6 and IPv4)",
    )
    serve.add_argument(
        "--relay-port",
        type=int,
        default=DEFAULT_HOME_UDP,
        metavar="N",
        help=f"its UDP port, also the STUN server (default {DEFAULT_HOME_UDP})",
    )
    serve.add_argument(
        "--relay-tcp-port",
        type=int,
        default=DEFAULT_HOME_TCP,
        metavar="N",
        help=f"its TCP (TLS) port (default {DEFAULT_HOME_TCP})",
    )
    serve.add_argument(
        "--relay-metrics-listen",
        metavar="HOST:PORT",
        help="serve its Prometheus metrics there (its --metrics-listen)",
    )
    serve.add_argument(
        "--no-relay", action="store_true", help="run no relay (only the --home-relay ones)"
    )


def _register_home_relays(serve: argparse.ArgumentParser) -> None:
    """The options of `serve` about home relays (docs/relay.md)."""
    serve.add_argument(
        "--relay-key",
        action="append",
        default=[],
        metavar="KEY",
        help="a home relay (`pywg relay key`) that may read the members; repeatable",
    )
    serve.add_argument(
        "--home-relay",
        action="append",
        default=[],
        metavar="NAME=KEY@HOST[:UDP[:TCP]][#PIN]",
        help="a home relay for the relay map (numbered after the own one, in the order "
        "given; ports default "
        f"{DEFAULT_HOME_UDP} and {DEFAULT_HOME_TCP}; PIN: its certificate's SHA-256 in hex); "
        "repeatable",
    )


def _register_admin(sub: Any, common: argparse.ArgumentParser) -> None:
    """`token`, `nodes`, `approve`, `remove`: the commands on the state directory."""
    token = sub.add_parser("token", parents=[common], help="make a join token")
    token.add_argument(
        "--ttl", type=float, default=DEFAULT_TTL, metavar="SECONDS", help="lifetime (default 1 day)"
    )
    token.add_argument("--reusable", action="store_true", help="any number of nodes may use it")
    token.add_argument("--url", help="the coordinator's URL, for the hint printed with the token")
    token.set_defaults(func=token_command)

    nodes = sub.add_parser("nodes", parents=[common], help="list the nodes")
    nodes.add_argument("--json", action="store_true", help="as JSON")
    nodes.set_defaults(func=nodes_command)

    approve = sub.add_parser(
        "approve", parents=[common], help="approve a node's subnet routes or exit node offer"
    )
    approve.add_argument("name", help="the node")
    approve.add_argument("prefixes", nargs="*", metavar="PREFIX", help="advertised prefixes")
    approve.add_argument(
        "--exit-node",
        action="store_true",
        help="approve its offer to be an exit node (the same as PREFIXES 0.0.0.0/0 ::/0)",
    )
    approve.set_defaults(func=approve_command)

    remove = sub.add_parser("remove", parents=[common], help="remove a node from the mesh")
    remove.add_argument("name", help="the node")
    remove.set_defaults(func=remove_command)

    expire = sub.add_parser(
        "expire", parents=[common], help="expire a node's keys now (it may join again)"
    )
    expire.add_argument("name", help="the node")
    expire.set_defaults(func=expire_command)

    revoke = sub.add_parser(
        "revoke", parents=[common], help="revoke a node for good (its keys never work again)"
    )
    revoke.add_argument("name", help="the node")
    revoke.set_defaults(func=revoke_command)

    key = sub.add_parser("key", parents=[common], help="print the coordinator's public key")
    key.set_defaults(func=key_command)


def main(argv: Sequence[str] | None = None) -> int:
    """`pywg coordinator ...` on its own (the same as through `pywg`)."""
    parser = argparse.ArgumentParser(prog="pywg")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


# -- argument parsing ----------------------------------------------------------------------


def _specific(host: str | None) -> str | None:
    """`host` if it names one address nodes could reach (not a wildcard, not loopback)."""
    if host is None:
        return None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host  # a name
    return None if ip.is_unspecified or ip.is_loopback else str(ip)


def relay_config(args: argparse.Namespace) -> OwnRelay | None:
    """The own relay from the serve arguments (None with --no-relay); UsageError."""
    from pywg.mesh.relaychild import OwnRelay
    from pywg.mesh.schema import MAX_RELAY_NAME

    if args.no_relay:
        return None
    try:
        listen = str(ipaddress.ip_address(args.relay_listen))
    except ValueError:
        raise UsageError(f"--relay-listen: {args.relay_listen!r} is not an IP address") from None
    for flag, port in (
        ("--relay-port", args.relay_port),
        ("--relay-tcp-port", args.relay_tcp_port),
    ):
        if not 0 < port <= 0xFFFF:
            raise UsageError(f"{flag} must be 1..65535, not {port}")
    name = args.relay_name
    if not 0 < len(name) <= MAX_RELAY_NAME or not name.isprintable():
        raise UsageError(f"--relay-name: 1..{MAX_RELAY_NAME} printable characters")
    public = args.relay_host
    if public is None:
        public = _specific(listen) or _specific(parse_hostport(args.listen, "--listen")[0])
    if public is None:
        raise UsageError(
            "give --relay-host, the address or name nodes reach the relay at (or --no-relay)"
        )
    if not _HOSTNAME_RE.fullmatch(public):
        try:
            public = str(ipaddress.ip_address(public.strip("[]")))
        except ValueError:
            raise UsageError(f"--relay-host {public!r} is not a host name or address") from None
    metrics = args.relay_metrics_listen
    if metrics is not None:
        parse_hostport(metrics, "--relay-metrics-listen")
    return OwnRelay(public, name, listen, args.relay_port, args.relay_tcp_port, metrics)


def parse_pin(text: str, what: str) -> bytes:
    """A certificate pin as a SHA-256 in hex (64 digits); UsageError otherwise."""
    try:
        pin = bytes.fromhex(text)
    except ValueError:
        pin = b""
    if len(pin) != 32 or len(text) != 64:
        raise UsageError(f"{what}: the pin is a SHA-256 in hex (64 digits)")
    return pin


def parse_home_relay(text: str, number: int) -> HomeRelay:
    """``NAME=KEY@HOST[:UDP[:TCP]][#PIN]`` as relay `number` of the map (HOST an IPv6
    address in brackets); UsageError naming the part that is wrong."""
    from pywg.mesh.schema import HomeRelay

    what = f"--home-relay {text!r}"
    name, eq, rest = text.partition("=")
    key_text, at, where = rest.partition("@")
    if not eq or not at or not name or not key_text:
        raise UsageError(f"{what}: write NAME=KEY@HOST[:UDP[:TCP]][#PIN]")
    key = parse_key(key_text, f"{what}: the relay key")
    where, hash_mark, pin_text = where.partition("#")
    host, ports = _relay_host_ports(where, what)
    pin = parse_pin(pin_text, what) if hash_mark else None
    try:
        return HomeRelay(number, name, key, host, *ports, pin=pin)
    except ValueError as exc:
        raise UsageError(f"{what}: {exc}") from None


def _relay_host_ports(where: str, what: str) -> tuple[str, tuple[int, int]]:
    """``HOST[:UDP[:TCP]]`` (``[IPv6][:UDP[:TCP]]``): the host and both ports."""
    if where.startswith("["):
        host, bracket, tail = where[1:].partition("]")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UsageError(f"{what}: {host!r} is not an IPv6 address") from None
        if not bracket or (tail and not tail.startswith(":")):
            raise UsageError(f"{what}: write [IPv6]:UDP:TCP")
        ports = tail[1:].split(":") if tail else []
    else:
        host, *ports = where.split(":")
        if not _HOSTNAME_RE.fullmatch(host):
            raise UsageError(f"{what}: {host!r} is not a host name or address")
    numbers = [DEFAULT_HOME_UDP, DEFAULT_HOME_TCP]
    if len(ports) > 2 or not all(p.isdigit() and 0 < int(p) <= 0xFFFF for p in ports):
        raise UsageError(f"{what}: the ports are 1..65535, UDP then TCP")
    numbers[: len(ports)] = [int(p) for p in ports]
    return host, (numbers[0], numbers[1])


def home_relays(texts: Sequence[str], first: int = 1, taken: Sequence[str] = ()) -> list[HomeRelay]:
    """The --home-relay arguments, numbered in order from `first` (2 after the own relay);
    UsageError, also for a name in `taken` (the own relay's)."""
    from pywg.constants import MAX_RELAY_INDEX

    if first - 1 + len(texts) > MAX_RELAY_INDEX:
        raise UsageError(f"at most {MAX_RELAY_INDEX} relays in the map (the own one counts)")
    relays = [parse_home_relay(text, number) for number, text in enumerate(texts, first)]
    for index, relay in enumerate(relays):
        if relay.name in taken:
            raise UsageError(f"--home-relay {relay.name}: the own relay's name (--relay-name)")
        for other in relays[:index]:
            if other.name == relay.name or other.key == relay.key:
                raise UsageError(f"--home-relay {relay.name}: a name or key given twice")
    return relays


# -- commands ------------------------------------------------------------------------------


def tls_certificate(args: argparse.Namespace, listen_host: str | None) -> Certificate | None:
    """The certificate `serve` uses: made here once and pinned by tokens (the default,
    --tls), --tls-cert and --tls-key (checked by nodes against their CAs), or none
    (--plain-http)."""
    from pywg.mesh import tls
    from pywg.mesh.store import ensure_state_dir

    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if args.tls and args.tls_cert:
        raise UsageError("--tls makes its own certificate: give it or --tls-cert, not both")
    if args.plain_http and (args.tls or args.tls_cert):
        raise UsageError("--plain-http serves no certificate: not with --tls or --tls-cert")
    own = tls.self_made(args.state) if os.path.isdir(args.state) else None
    if args.tls_cert:
        if own is not None:
            raise UsageError(
                f"{own.cert_path} exists and tokens would pin it: remove it and "
                f"{own.key_path} to serve --tls-cert"
            )
        return tls.load(args.tls_cert, args.tls_key)
    if args.plain_http:
        return None
    if own is None and _served_plain(args.state, args.database):
        raise UsageError(
            f"the mesh in {args.state} is served over plain HTTP and its nodes use http:// "
            "URLs: give --plain-http to go on so, or --tls-cert/--tls-key for a certificate "
            "their system trusts"
        )
    ensure_state_dir(args.state)
    names = [n for n in (listen_host, args.relay_host) if n]
    return tls.load_or_make(args.state, names)


def _served_plain(state: str, database: str | None = None) -> bool:
    """Whether the coordinator's state holds nodes but no self-made certificate: a mesh that
    was served over plain HTTP (its nodes would not follow it to HTTPS)."""
    from pywg.mesh.database import errors
    from pywg.mesh.store import Store, StoreError, db_path

    if database is None and not os.path.exists(db_path(state)):
        return False
    try:
        store = Store(state, create=False, database=database)
    except errors(StoreError, OSError):
        return False  # serve opens it next and says what is wrong
    try:
        return bool(store.nodes())
    finally:
        store.close()


def _fail(message: str, status: int = 1) -> int:
    print(f"pywg coordinator: {message}", file=sys.stderr)
    return status


def _admin(args: argparse.Namespace, work: Callable[[Store], int]) -> int:
    """Open the existing state, run `work`, turn expected errors into one line."""
    from pywg.mesh.database import errors
    from pywg.mesh.store import NotFound, Store, StoreError

    where = "the database" if args.database else args.state
    try:
        store = Store(args.state, create=False, database=args.database)
    except StoreError as exc:
        return _fail(str(exc))
    except errors(OSError) as exc:
        return _fail(f"cannot open the state in {where}: {exc}")
    try:
        return work(store)
    except NotFound as exc:
        return _fail(str(exc))
    except StoreError as exc:
        return _fail(str(exc), 2)
    except errors(OSError) as exc:
        return _fail(f"{where}: {exc}")
    finally:
        store.close()


def token_command(args: argparse.Namespace) -> int:
    from pywg.mesh.coordinator import load_or_create_key, new_token

    def work(store: Store) -> int:
        token = new_token(store, load_or_create_key(args.state), args.ttl, reusable=args.reusable)
        until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() + args.ttl))
        kind = "reusable" if args.reusable else "single-use"
        scheme = "https" if "." in token.partition(".")[2] else "http"  # pinned: self-made
        url = args.url or f"{scheme}://<this host>:8580"
        print(token)
        print(
            f"pywg coordinator: {kind} token valid until {until}; on the new node run:\n"
            f"  pywg join {url} --token {token}",
            file=sys.stderr,
        )
        return 0

    return _admin(args, work)


def key_command(args: argparse.Namespace) -> int:
    from pywg.mesh.auth import b64
    from pywg.mesh.coordinator import load_or_create_key

    def work(store: Store) -> int:
        print(b64(bytes(load_or_create_key(args.state).verify_key)))
        return 0

    return _admin(args, work)


def parse_key(text: str, what: str) -> bytes:
    """A 32-byte key in base64 (a relay's, the coordinator's); UsageError otherwise."""
    from pywg.mesh.auth import AuthError, unb64

    try:
        return unb64(text.strip(), 32)
    except AuthError as exc:
        raise UsageError(f"{what} {text!r} is not a key (base64 of 32 bytes: {exc})") from None


def _ago(ms: int | None) -> str:
    if ms is None:
        return "never"
    seconds = max(0, int(time.time() - ms / 1000))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def format_nodes(nodes: list[Node]) -> str:
    """The `nodes` table: name, addresses, endpoints, routes (approved, pending), last seen."""
    header = ("NAME", "ADDRESSES", "ENDPOINTS", "ROUTES", "PENDING", "LAST SEEN", "EXPIRES")
    rows = [
        (
            node.name,
            f"{node.ipv4} {node.ipv6}",
            ",".join(node.endpoints) or "-",
            _routes_cell(node.approved_routes),
            _routes_cell(node.pending_routes),
            _ago(node.last_ms),
            _expiry_cell(node),
        )
        for node in nodes
    ]
    return format_table(header, rows)


def _routes_cell(routes: list[str]) -> str:
    """Routes for the `nodes` table: an exit node's default routes shown as "exit"."""
    from pywg.mesh.exits import offers_exit, subnets

    shown = (["exit"] if offers_exit(routes) else []) + list(subnets(routes))
    return ",".join(shown) or "-"


def nodes_json(store: Store, nodes: list[Node]) -> dict[str, object]:
    """The `nodes --json` listing: the mesh networks, the roster version, every node (with
    the number of the home relay it reported, null for none), every plain WireGuard device."""
    from pywg.mesh.auth import b64
    from pywg.mesh.devices import devices_json
    from pywg.mesh.exits import offers_exit

    networks = store.networks()
    return {
        "network": networks.to_json() if networks else None,
        "version": store.version(),
        "nodes": [
            {
                "name": n.name,
                "public_key": b64(n.public_key),
                "addresses": [n.ipv4, n.ipv6],
                "endpoints": list(n.endpoints),
                "routes": n.approved_routes,
                "pending_routes": n.pending_routes,
                "home_relay": n.home_relay,
                "last_ms": n.last_ms,
                "exit_node": offers_exit(n.approved_routes),
                "expires_ms": n.expires_ms,
                "revoked": n.revoked,
            }
            for n in nodes
        ],
        "devices": devices_json(store.devices()),
    }


def nodes_command(args: argparse.Namespace) -> int:
    def work(store: Store) -> int:
        nodes = store.nodes()
        if args.json:
            print(json.dumps(nodes_json(store, nodes), indent=2))
        elif nodes:
            print(format_nodes(nodes))
        else:
            print(
                "pywg coordinator: no nodes yet (make a token: pywg coordinator token)",
                file=sys.stderr,
            )
        return 0

    return _admin(args, work)


def approve_command(args: argparse.Namespace) -> int:
    if not args.prefixes and not args.exit_node:
        return _fail("approve: name the prefixes to approve, or --exit-node", 2)

    def work(store: Store) -> int:
        from pywg.mesh.exits import EXIT_ROUTES

        prefixes = list(args.prefixes) + (list(EXIT_ROUTES) if args.exit_node else [])
        newly = store.approve(args.name, prefixes)
        if newly:
            print(f"approved for {args.name}: {', '.join(newly)}")
        else:
            print(f"already approved for {args.name}")
        return 0

    return _admin(args, work)


def remove_command(args: argparse.Namespace) -> int:
    def work(store: Store) -> int:
        node = store.remove(args.name)
        print(f"removed {node.name} ({node.ipv4}, {node.ipv6})")
        return 0

    return _admin(args, work)


def expire_command(args: argparse.Namespace) -> int:
    def work(store: Store) -> int:
        node = store.expire(args.name)
        print(f"expired the keys of {node.name}: it is in no roster now (a new token renews it)")
        return 0

    return _admin(args, work)


def revoke_command(args: argparse.Namespace) -> int:
    def work(store: Store) -> int:
        node = store.revoke(args.name)
        print(f"revoked {node.name}: its keys never work again")
        return 0

    return _admin(args, work)


def _expiry_cell(node: Node) -> str:
    """The `nodes` table's EXPIRES: revoked, expired, never or the date."""
    if node.revoked:
        return "revoked"
    if node.expires_ms is None:
        return "never"
    if node.expires_ms <= time.time() * 1000:
        return "expired"
    return time.strftime("%Y-%m-%d", time.localtime(node.expires_ms / 1000))


def setup_logging(verbose: bool) -> None:
    """pywg's loggers on stderr with the time, INFO (DEBUG with `verbose`): a server's log."""
    journal.setup(
        sys.stderr,
        logging.DEBUG if verbose else logging.INFO,
        logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"),
        logging.Formatter("%(name)s: %(message)s"),
    )


def _ready_line(coordinator: Coordinator, args: argparse.Namespace, host: str | None) -> str:
    """What `serve` says once it listens: where, the mesh, its relays, its state."""
    from pywg.mesh.auth import b64

    where = f"[{host}]" if host and ":" in host else host or ""
    nets = coordinator.networks
    relays = [
        f"{r.number} {r.name} at {r.host} udp {r.udp_port} tcp {r.tcp_port}"
        for r in coordinator.home_relays
    ]
    relay_text = "relays " + ", ".join(relays) if relays else "no relay"
    if coordinator.own_relay is not None:
        relay_text += f" (1: own, key {b64(coordinator.home_relays[0].key)})"
    certificate = coordinator.certificate
    scheme = f"HTTPS, certificate-sha256 {certificate.pin.hex()}" if certificate else "HTTP"
    return (
        f"pywg coordinator: listening on {where}:{coordinator.port} ({scheme}), "
        f"mesh {nets.ipv4} {nets.ipv6}, {relay_text}, state {args.state}"
    )


def serve_command(args: argparse.Namespace) -> int:
    from pywg.cmd import admin
    from pywg.mesh.coordinator import serve
    from pywg.mesh.tls import TlsError

    try:
        listen_host, listen_port = parse_hostport(args.listen, "--listen")
        relay = relay_config(args)
        relay_keys = [parse_key(text, "--relay-key") for text in args.relay_key]
        taken = [relay.name] if relay is not None else []
        relay_map = home_relays(args.home_relay, 1 + len(taken), taken)
        setup = admin.setup(args)
        limits = limits_of(args)
        certificate = tls_certificate(args, listen_host)  # last: it may make one
    except UsageError as exc:
        return _fail(str(exc), 2)
    except TlsError as exc:
        return _fail(str(exc))
    setup_logging(args.verbose)

    running: list[Coordinator] = []  # the one serving, for its metrics

    def ready(coordinator: Coordinator) -> None:
        running.append(coordinator)
        print(_ready_line(coordinator, args, listen_host), file=sys.stderr, flush=True)
        sdnotify.ready(f"listening on port {coordinator.port}")

    async def run() -> None:
        stop = asyncio.Event()
        sdnotify.stop_on_signals(stop.set)
        collector = metrics_cli.coordinator_metrics(lambda: running[0] if running else None)
        async with metrics_cli.served(args.metrics_listen, collector):
            await serve(
                args.state,
                listen_host,
                listen_port,
                ipv4=args.ipv4,
                ipv6=args.ipv6,
                relay=relay,
                auto_approve_routes=args.auto_approve_routes,
                relay_keys=relay_keys,
                home_relays=relay_map,
                stop=stop,
                ready=ready,
                certificate=certificate,
                domain=args.domain,
                setup=setup,
                key_expiry_days=args.key_expiry,
                limits=limits,
                database=args.database,
            )

    return _run_serving(run)


def _run_serving(run: Callable[[], Coroutine[Any, Any, None]]) -> int:
    """Run the coordinator's main coroutine; its failures as the command's exit status."""
    from pywg.mesh.database import errors
    from pywg.mesh.store import StoreError
    from pywg.mesh.tls import TlsError

    try:
        asyncio.run(run())
    except (StoreError, TlsError) as exc:
        return _fail(str(exc))
    except ValueError as exc:  # the relay map: a --home-relay with the own relay's key
        return _fail(str(exc), 2)
    except errors(OSError) as exc:
        return _fail(f"cannot serve: {exc}")
    except KeyboardInterrupt:
        return 0
    return 0
