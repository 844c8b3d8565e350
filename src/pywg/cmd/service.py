"""`pywg service`: install the systemd units shipped with pywg (docs/services.md).

    pywg service install [--unit NAME]... [--prefix DIR] [--pywg PATH] [--dry-run]
    pywg service uninstall [--unit NAME]... [--prefix DIR] [--dry-run]

`install` writes the units (all of them unless --unit names some) into DIR
(default /etc/systemd/system) with the absolute path of this installation's
`pywg`, then runs `systemctl daemon-reload` where systemd runs. --dry-run
prints the units instead. Exit status: 0 done, 1 failed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pywg.system import services


def register(subparsers: Any) -> None:
    """Add `service` and its sub-commands to an argparse subparsers object."""
    parser = subparsers.add_parser("service", help="install or remove pywg's systemd units")
    sub = parser.add_subparsers(dest="service_command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--unit",
        action="append",
        choices=services.UNITS,
        metavar="NAME",
        help=f"one unit (repeatable; default all: {', '.join(services.UNITS)})",
    )
    common.add_argument(
        "--prefix",
        default=services.DEFAULT_PREFIX,
        metavar="DIR",
        help=f"where the units go (default {services.DEFAULT_PREFIX})",
    )
    common.add_argument("--dry-run", action="store_true", help="say what, change nothing")
    install = sub.add_parser("install", parents=[common], help="write the units")
    install.add_argument(
        "--pywg", metavar="PATH", help="the pywg executable the units run (default: this one)"
    )
    install.set_defaults(func=install_command)
    uninstall = sub.add_parser("uninstall", parents=[common], help="remove the units")
    uninstall.set_defaults(func=uninstall_command)


def _fail(message: str) -> int:
    print(f"pywg service: {message}", file=sys.stderr)
    return 1


def _reload(dry_run: bool) -> None:
    if dry_run or not services.systemd_running():
        return
    services.daemon_reload()


def install_command(args: argparse.Namespace) -> int:
    names = args.unit or list(services.UNITS)
    try:
        pywg = args.pywg or services.find_executable("pywg")
        written = services.install(args.prefix, names, pywg, dry_run=args.dry_run)
        _reload(args.dry_run)
    except (services.ServiceError, OSError) as exc:
        return _fail(str(exc))
    for path, text in written.items():
        if args.dry_run:
            print(f"# {path}\n{text}")
        else:
            print(f"wrote {path}")
    return 0


def uninstall_command(args: argparse.Namespace) -> int:
    names = args.unit or list(services.UNITS)
    try:
        removed = services.uninstall(args.prefix, names, dry_run=args.dry_run)
        _reload(args.dry_run)
    except (services.ServiceError, OSError) as exc:
        return _fail(str(exc))
    for path in removed:
        print(f"{'would remove' if args.dry_run else 'removed'} {path}")
    return 0
