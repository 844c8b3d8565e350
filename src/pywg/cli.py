"""The `pywg` command: keys in `wg`'s formats, and the demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .exceptions import LocalProtocolError
from .keys import PresharedKey, PrivateKey


def _genkey(_: argparse.Namespace) -> int:
    print(PrivateKey.generate().to_base64())
    return 0


def _genpsk(_: argparse.Namespace) -> int:
    print(PresharedKey.generate().to_base64())
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
    from .demo import run

    return run(seconds=args.seconds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pywg", description="userspace WireGuard")
    parser.add_argument("--version", action="version", version=f"pywg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("genkey", help="print a new private key").set_defaults(func=_genkey)
    sub.add_parser("genpsk", help="print a new preshared key").set_defaults(func=_genpsk)
    sub.add_parser("pubkey", help="private key on stdin -> public key").set_defaults(func=_pubkey)
    demo = sub.add_parser("demo", help="two devices, handshake, traffic, rekey, throughput")
    demo.add_argument("--seconds", type=float, default=2.0, help="throughput run length")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
