"""`pywg coordinator policy`: the mesh's access policy (docs/policy.md).

    pywg coordinator policy check FILE    read FILE and check its names against the mesh
    pywg coordinator policy set FILE      check it, then put it in force on every node
    pywg coordinator policy show          print the policy in force
    pywg coordinator policy clear         no policy: everyone reaches everyone
    pywg coordinator policy tag NODE [TAG...]   the tags (tag:NAME) NODE carries; none: no tags

A refused policy is told as ``FILE:LINE: REASON`` (exit status 2) and the
one in force stays. FILE ``-`` is standard input. The commands work on the
state directory, like the other admin commands; a running coordinator gives
the nodes a new policy within about a second (`pywg.mesh.access`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pywg.mesh.store import Store

Admin = Callable[[argparse.Namespace, Callable[["Store"], int]], int]


def register(sub: Any, common: argparse.ArgumentParser, admin: Admin) -> None:
    """Add `policy` (check, set, show, clear) to the coordinator's sub-commands; `admin`
    runs a command's work on the opened state (`pywg.cmd.coordinator`)."""
    policy = sub.add_parser(
        "policy", help="the access policy: who may reach what (check, set, show, clear)"
    )
    commands = policy.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "check", parents=[common], help="check a policy file against the mesh (changes nothing)"
    )
    check.add_argument("file", metavar="FILE", help="the policy (JSON with comments; - : stdin)")
    check.set_defaults(func=lambda args: admin(args, lambda store: _check(store, args.file)))
    put = commands.add_parser(
        "set", parents=[common], help="check a policy file and put it in force on every node"
    )
    put.add_argument("file", metavar="FILE", help="the policy (JSON with comments; - : stdin)")
    put.set_defaults(func=lambda args: admin(args, lambda store: _set(store, args.file)))
    show = commands.add_parser("show", parents=[common], help="print the policy in force")
    show.set_defaults(func=lambda args: admin(args, _show))
    clear = commands.add_parser(
        "clear", parents=[common], help="remove the policy: everyone reaches everyone"
    )
    clear.set_defaults(func=lambda args: admin(args, _clear))
    tag = commands.add_parser(
        "tag", parents=[common], help="set the policy tags a node carries (none: no tags)"
    )
    tag.add_argument("node", help="the node")
    tag.add_argument("tags", nargs="*", metavar="TAG", help="tag:NAME, as the policy names it")
    tag.set_defaults(func=lambda args: admin(args, lambda store: _tag(store, args.node, args.tags)))


class _Unreadable(Exception):
    """The policy file cannot be read."""


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise _Unreadable(f"cannot read {path}: {exc}") from None


def _refused(path: str, line: int, reason: str) -> int:
    name = "<stdin>" if path == "-" else path
    print(f"pywg coordinator: {name}:{line}: {reason} (the policy in force stays)", file=sys.stderr)
    return 2


def _check(store: Store, path: str) -> int:
    from pywg.mesh import access
    from pywg.policy import PolicyError

    try:
        policy = access.check_policy(_read(path), access.mesh_names(store))
    except PolicyError as exc:
        return _refused(path, exc.line, exc.reason)
    except _Unreadable as exc:
        print(f"pywg coordinator: {exc}", file=sys.stderr)
        return 1
    print(f"{path}: a good policy ({len(policy.rules)} rules)")
    return 0


def _set(store: Store, path: str) -> int:
    from pywg.mesh import access
    from pywg.policy import PolicyError

    try:
        version = access.set_policy(store, _read(path))
    except PolicyError as exc:
        return _refused(path, exc.line, exc.reason)
    except _Unreadable as exc:
        print(f"pywg coordinator: {exc}", file=sys.stderr)
        return 1
    print(f"policy set (roster version {version}): every node has it within seconds")
    return 0


def _show(store: Store) -> int:
    text = store.policy()
    if text is None:
        print("no policy: every node reaches every node", file=sys.stderr)
        return 0
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def _tag(store: Store, name: str, tags: list[str]) -> int:
    node = store.set_tags(name, tags)
    print(f"{node.name}: {', '.join(sorted(set(tags))) or 'no tags'}")
    return 0


def _clear(store: Store) -> int:
    version = store.set_policy(None)
    print(f"policy cleared (roster version {version}): every node reaches every node")
    return 0
