"""`pywg set --exit-node NAME|none`, `pywg set --rotate-keys`: change a running `pywg join`
(`pywg.mesh.control`)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from pywg.cmd.join import DEFAULT_STATE


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "set",
        help="change a running `pywg join` (its exit node, its keys)",
        description=(
            "Talk to the `pywg join` running on INTERFACE through the control socket in its "
            "state directory: --exit-node NAME sends this node's internet traffic through "
            "exit node NAME from now on, --exit-node none sends it out directly again; "
            "--rotate-keys rotates the node's WireGuard and control keys now (as it does "
            "itself before they expire), keeping its connections."
        ),
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--exit-node",
        metavar="NAME|none",
        help="an approved exit node of the mesh, or none",
    )
    what.add_argument(
        "--rotate-keys", action="store_true", help="rotate the node's keys now (docs/keys.md)"
    )
    p.add_argument("--interface", "-i", default="pywg0", help="interface name (default pywg0)")
    p.add_argument(
        "--state", help=f"the node's state directory (default {DEFAULT_STATE}/INTERFACE)"
    )
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from pywg.mesh.control import ControlError, rotate_keys, set_exit_node

    if args.rotate_keys:
        state = args.state or os.path.join(DEFAULT_STATE, args.interface)
        try:
            print(rotate_keys(state))
        except ControlError as exc:
            print(f"pywg set: {exc}", file=sys.stderr)
            return 1
        return 0
    name = None if args.exit_node == "none" else args.exit_node
    if name == "":
        print("pywg set: --exit-node needs a node name or none", file=sys.stderr)
        return 2
    state = args.state or os.path.join(DEFAULT_STATE, args.interface)
    try:
        print(set_exit_node(state, name))
    except ControlError as exc:
        print(f"pywg set: {exc}", file=sys.stderr)
        return 1
    return 0
