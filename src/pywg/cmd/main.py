"""The `pywg` command: keys in `wg`'s formats, `up`, `show`, the demo, interop, the mesh
(`coordinator`, `join`, `relay`, `set`), systemd units (`service`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence

from pywg import __version__
from pywg.cmd import coordinator as coordinator_cli
from pywg.cmd import interop as interop_cli
from pywg.cmd import join as join_cli
from pywg.cmd import metrics as metrics_cli
from pywg.cmd import proxyopts
from pywg.cmd import relay as relay_cli
from pywg.cmd import service as service_cli
from pywg.cmd import set as set_cli
from pywg.cmd.address import UsageError
from pywg.exceptions import LocalProtocolError
from pywg.keys import PresharedKey, PrivateKey
from pywg.system import journal
from pywg.system.secretfile import write_secret_file


def _genkey(args: argparse.Namespace) -> int:
    return _emit_key(PrivateKey.generate().to_base64(), args.output, "genkey")


def _genpsk(args: argparse.Namespace) -> int:
    return _emit_key(PresharedKey.generate().to_base64(), args.output, "genpsk")


def _emit_key(text: str, output: str | None, command: str) -> int:
    """Print a new key, or with --output write it to a file (nothing on stdout)."""
    if output is None:
        print(text)
        return 0
    try:
        write_secret_file(output, text + "\n")
    except OSError as exc:
        print(f"pywg {command}: cannot write {output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def _pubkey(_: argparse.Namespace) -> int:
    """Read a private key on stdin, print its public key (as `wg pubkey`)."""
    try:
        key = PrivateKey.from_base64(sys.stdin.read().strip())
    except LocalProtocolError as exc:
        print(f"pywg pubkey: {exc}", file=sys.stderr)
        return 1
    print(key.public_key.to_base64())
    return 0


def _demo(args: argparse.Namespace) -> int:
    if args.in_memory:
        from pywg.cmd.demo_memory import run as run_memory

        return run_memory(seconds=args.seconds)
    from pywg.cmd.demo import run
    from pywg.lab import LabError

    try:
        return run(megabytes=args.megabytes)
    except LabError as exc:
        print(f"pywg demo: {exc}", file=sys.stderr)
        return 1


def _up(args: argparse.Namespace) -> int:
    from pywg.cmd.up import main as up_main

    if proxyopts.wanted(args):
        from pywg.cmd.rootless import up_main as userspace_main

        try:
            options = proxyopts.proxy_options(args)
        except UsageError as exc:
            print(f"pywg up: {exc}", file=sys.stderr)
            return 2
        return userspace_main(args.config, args.name, options, args.metrics_listen)

    return up_main(args.config, args.name, args.metrics_listen)


def _show(args: argparse.Namespace) -> int:
    """Status of userspace interfaces (any implementation serving the UAPI), like `wg show`."""
    from pywg.cmd.show import format_status
    from pywg.status import parse_get
    from pywg.system import uapi_client

    try:
        names = [args.interface] if args.interface else uapi_client.interfaces()
        if not names:
            print("pywg show: no userspace WireGuard interfaces are running", file=sys.stderr)
            return 1
        blocks = []
        for name in names:
            status = parse_get(name, uapi_client.get(name))
            blocks.append(format_status(status, now=time.time(), color=sys.stdout.isatty()))
    except (OSError, ValueError) as exc:
        print(f"pywg show: {exc}", file=sys.stderr)
        return 1
    print("\n\n".join(blocks))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pywg", description="userspace WireGuard")
    parser.add_argument("--version", action="version", version=f"pywg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, what in (("genkey", _genkey, "private"), ("genpsk", _genpsk, "preshared")):
        gen = sub.add_parser(name, help=f"print a new {what} key")
        gen.add_argument(
            "--output", "-o", metavar="FILE", help="write it to FILE (mode 0600) instead"
        )
        gen.set_defaults(func=func)
    sub.add_parser("pubkey", help="private key on stdin -> public key").set_defaults(func=_pubkey)
    demo = sub.add_parser("demo", help="a real tunnel between two namespaces (needs root)")
    demo.add_argument("--megabytes", type=int, default=100, help="TCP transfer size each way")
    demo.add_argument(
        "--in-memory", action="store_true", help="two devices in one process, no root needed"
    )
    demo.add_argument("--seconds", type=float, default=2.0, help="--in-memory throughput run")
    demo.set_defaults(func=_demo)
    up = sub.add_parser("up", help="run a tunnel from a wg-quick style file, in the foreground")
    up.add_argument("config", help="configuration file, e.g. ./wg0.conf")
    up.add_argument("--name", help="interface name (default: the file name without .conf)")
    metrics_cli.add_option(up)
    proxyopts.add_options(up)
    up.set_defaults(func=_up)
    show = sub.add_parser("show", help="status of running interfaces, like `wg show`")
    show.add_argument("interface", nargs="?", help="one interface (default: all)")
    show.set_defaults(func=_show)
    interop = sub.add_parser(
        "interop", help="conformance suite against WireGuard implementations (needs root)"
    )
    interop_cli.add_arguments(interop)
    interop.set_defaults(func=interop_cli.run)
    coordinator_cli.register(sub)
    join_cli.register(sub)
    relay_cli.register(sub)
    service_cli.register(sub)
    set_cli.register(sub)
    args = parser.parse_args(argv)
    _setup_logging()
    result: int = args.func(args)
    return result


def _setup_logging() -> None:
    """Warnings and errors on stderr; LOG_LEVEL=debug (as for pywgd) shows everything."""
    level = logging.DEBUG if os.environ.get("LOG_LEVEL", "") in ("debug", "verbose") else None
    line = logging.Formatter("pywg: %(levelname)s: %(message)s")
    logging.basicConfig(
        level=level or logging.WARNING, handlers=[journal.handler(sys.stderr, line, line)]
    )


if __name__ == "__main__":
    sys.exit(main())
