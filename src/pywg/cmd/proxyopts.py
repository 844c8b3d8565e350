"""The options of `--userspace` (`pywg up`, `pywg join`): the flag and its proxies.

Kept apart from `pywg.cmd.rootless`, which runs them, so that registering the
options imports nothing heavy. Listening addresses are HOST:PORT as for
--metrics-listen (`pywg.cmd.address`); forwards are PORT=HOST:PORT
(`pywg.proxy.forward`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from pywg.cmd.address import UsageError, parse_hostport
from pywg.proxy.forward import ForwardSpec, parse_forward

Listen = tuple[str | None, int]


@dataclass(frozen=True, slots=True)
class ProxyOptions:
    """The proxies of a user-space node (all optional)."""

    socks5: Listen | None = None
    http_proxy: Listen | None = None
    forwards: tuple[ForwardSpec, ...] = ()
    # user and password both proxies ask for; never in a repr
    credentials: tuple[str, str] | None = field(default=None, repr=False)


def add_options(parser: Any) -> None:
    """--userspace and its proxies, on an argparse parser."""
    parser.add_argument(
        "--userspace",
        action="store_true",
        help="no TUN and no root: the tunnel ends in a user-space TCP/IP stack in this "
        "process, reached through --socks5, --http-proxy and --forward (docs/rootless.md)",
    )
    parser.add_argument(
        "--socks5", metavar="HOST:PORT", help="with --userspace: a SOCKS5 proxy into the mesh"
    )
    parser.add_argument(
        "--http-proxy",
        metavar="HOST:PORT",
        help="with --userspace: an HTTP proxy (CONNECT and http://) into the mesh",
    )
    parser.add_argument(
        "--proxy-auth-file",
        metavar="FILE",
        help="with --userspace: the proxies ask for the USER:PASSWORD on FILE's first line "
        "(SOCKS5 user/password, HTTP Proxy-Authorization: Basic)",
    )
    parser.add_argument(
        "--forward",
        metavar="PORT=HOST:PORT",
        action="append",
        default=[],
        help="with --userspace: serve the local HOST:PORT at this node's tunnel address "
        "PORT (repeatable)",
    )


def proxy_options(args: argparse.Namespace) -> ProxyOptions:
    """The proxies asked for; UsageError for a bad value or one without --userspace."""
    asked = [name for name in ("socks5", "http_proxy", "proxy_auth_file") if getattr(args, name)]
    if args.forward:
        asked.append("forward")
    if asked and not args.userspace:
        option = "--" + asked[0].replace("_", "-")
        raise UsageError(f"{option} works with --userspace only")
    forwards = []
    for spec in args.forward:
        try:
            forwards.append(parse_forward(spec))
        except ValueError as exc:
            raise UsageError(f"--forward {exc}") from None
    ports = [spec.port for spec in forwards]
    if len(set(ports)) != len(ports):
        raise UsageError("--forward: each PORT may be forwarded once")
    return ProxyOptions(
        socks5=parse_hostport(args.socks5, "--socks5") if args.socks5 else None,
        http_proxy=parse_hostport(args.http_proxy, "--http-proxy") if args.http_proxy else None,
        forwards=tuple(forwards),
        credentials=read_credentials(args.proxy_auth_file) if args.proxy_auth_file else None,
    )


def read_credentials(path: str) -> tuple[str, str]:
    """USER:PASSWORD from the first line of `path` (a file, so that the password is not
    on a command line every user can read in /proc); UsageError if it has none."""
    try:
        with open(path, encoding="utf-8") as handle:
            line = handle.readline().rstrip("\r\n")
    except OSError as exc:
        raise UsageError(f"--proxy-auth-file {path}: {exc.strerror}") from None
    user, colon, password = line.partition(":")
    # RFC 1929 §2: each of user name and password is 1 to 255 octets
    if not colon or not 0 < len(user.encode()) < 256 or not 0 < len(password.encode()) < 256:
        raise UsageError(f"--proxy-auth-file {path}: the first line must be USER:PASSWORD")
    return user, password


def wanted(args: argparse.Namespace) -> bool:
    """Whether the command line asks for user-space operation or any of its proxies."""
    return bool(
        args.userspace or args.socks5 or args.http_proxy or args.forward or args.proxy_auth_file
    )
