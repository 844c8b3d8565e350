"""`pywg set --exit-node NAME|none`: change a running `pywg join` (`pywg.mesh.control`)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from pywg.cmd.join import DEFAULT_STATE


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "set",
        help="change a running `pywg join` (its exit node)",
        description=(
            "Talk to the `pywg join` running on INTERFACE through the control socket in its "
            "state directory: --exit-node NAME sends this node's internet traffic through "
            "exit node NAME from now on, --exit-node none sends it out directly again."
        ),
    )
    p.add_argument(
        "--exit-node",
        required=True,
        metavar="NAME|none",
        help="an approved exit node of the mesh, or none",
    )
    p.add_argument("--interface", "-i", default="pywg0", help="interface name (default pywg0)")
    p.add_argument(
        "--state", help=f"the node's state directory (default {DEFAULT_STATE}/INTERFACE)"
    )
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from pywg.mesh.control import ControlError, set_exit_node

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
