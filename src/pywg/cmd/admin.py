"""`pywg coordinator admin`: the secrets of the admin web UI, and its options of `serve`.

    pywg coordinator admin set-password      (the password from stdin, or asked for)
    pywg coordinator admin token             (prints a new admin login token)

Both are stored hashed in the coordinator's state (`pywg.mesh.webui.passwords`);
a new one replaces the one before at once, also for a coordinator running
on the state. `serve` takes ``--admin-session-hours`` and ``--no-admin-ui``
(docs/webui.md).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from pywg.cmd.address import UsageError

if TYPE_CHECKING:
    from pywg.mesh.coordinator import Coordinator
    from pywg.mesh.store import Store

Admin = Callable[[argparse.Namespace, Callable[["Store"], int]], int]

DEFAULT_SESSION_HOURS: Final = 12.0
MAX_SESSION_HOURS: Final = 24 * 30.0


def register(sub: Any, common: argparse.ArgumentParser, admin: Admin) -> None:
    """Add `admin` (set-password, token) to the coordinator's sub-commands; `admin` runs a
    command's work on the opened state (`pywg.cmd.coordinator`)."""
    parser = sub.add_parser("admin", help="the admin web UI's password and login token")
    commands = parser.add_subparsers(dest="admin_command", required=True, metavar="COMMAND")
    password = commands.add_parser(
        "set-password",
        parents=[common],
        help="set the admin password (read from stdin, or asked for on a terminal)",
    )
    password.set_defaults(func=lambda args: admin(args, set_password_command))
    token = commands.add_parser(
        "token", parents=[common], help="print a new admin login token (the old one stops working)"
    )
    token.set_defaults(func=lambda args: admin(args, token_command))


def add_serve_options(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--admin-session-hours",
        type=float,
        default=DEFAULT_SESSION_HOURS,
        metavar="H",
        help=f"an admin UI login lasts H hours (default {DEFAULT_SESSION_HOURS:g})",
    )
    serve.add_argument("--no-admin-ui", action="store_true", help="no admin web UI under /admin")


def setup(args: argparse.Namespace) -> Callable[[Coordinator], None] | None:
    """What `serve` does to its coordinator before it starts: mount the admin UI.
    UsageError for a session length out of range."""
    if args.no_admin_ui:
        return None
    hours = args.admin_session_hours
    if not 0 < hours <= MAX_SESSION_HOURS:
        raise UsageError(f"--admin-session-hours is from 0 to {MAX_SESSION_HOURS:g}")

    def mount(coordinator: Coordinator) -> None:
        from pywg.mesh.webui import mount

        mount(coordinator, session_ttl=hours * 3600)

    return mount


def _read_password() -> str:
    """The new password: asked twice on a terminal, else the first line of stdin."""
    if sys.stdin.isatty():
        first = getpass.getpass("New admin password: ")
        if getpass.getpass("Again: ") != first:
            raise ValueError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def set_password_command(store: Store) -> int:
    from pywg.mesh.webui.passwords import PasswordError, set_password

    try:
        set_password(store, _read_password())
    except (PasswordError, ValueError) as exc:
        print(f"pywg coordinator: admin set-password: {exc}", file=sys.stderr)
        return 2
    print(
        "pywg coordinator: admin password set (log in at https://<this host>:8580/admin)",
        file=sys.stderr,
    )
    return 0


def token_command(store: Store) -> int:
    from pywg.mesh.webui.passwords import new_token

    print(new_token(store))
    print(
        "pywg coordinator: admin login token made (the one before no longer works); "
        "log in with it at https://<this host>:8580/admin",
        file=sys.stderr,
    )
    return 0
