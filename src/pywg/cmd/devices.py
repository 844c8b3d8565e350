"""`pywg coordinator device`: plain WireGuard devices (phones, PCs, routers) in the mesh.

    pywg coordinator device add NAME [--gateway NODE] [--exit-node NODE]
                                [--endpoint HOST:PORT] [--dns IP... | --no-dns] [--output FILE]
                                [--qr FILE.png|FILE.svg] [--no-qr]
    pywg coordinator device remove NAME
    pywg coordinator device list [--json]

`add` makes the device's key pair and prints its wg-quick file (on stdout,
or into --output, mode 0600) and, on a terminal, the file as a QR code for
the WireGuard apps (--qr writes one to a PNG or SVG file too). The private
key is in that output only: the coordinator keeps the public key. The
gateway is --gateway, else --exit-node, else the mesh's only node; the
Endpoint is --endpoint, else the first IPv4 endpoint the gateway reported.
`remove` takes the device off its gateway within seconds. The commands work
on the state directory, like the other admin commands (`pywg.mesh.devices`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pywg.cmd.table import format_table

if TYPE_CHECKING:
    from pywg.mesh.store import Device, Store

Admin = Callable[[argparse.Namespace, Callable[["Store"], int]], int]


def register(sub: Any, common: argparse.ArgumentParser, admin: Admin) -> None:
    """Add `device` (add, remove, list) to the coordinator's sub-commands; `admin` runs a
    command's work on the opened state (`pywg.cmd.coordinator`)."""
    device = sub.add_parser(
        "device", help="plain WireGuard devices (phones, PCs, routers): add, remove, list"
    )
    commands = device.add_subparsers(dest="device_command", required=True, metavar="COMMAND")
    add = commands.add_parser(
        "add", parents=[common], help="add a device: print its wg-quick file and QR code"
    )
    add.add_argument("name", help="the device's name (unique among nodes and devices)")
    add.add_argument("--gateway", metavar="NODE", help="the node that carries its traffic")
    add.add_argument(
        "--exit-node",
        metavar="NODE",
        help="send all of its traffic through NODE (its gateway, which masquerades it)",
    )
    add.add_argument("--endpoint", metavar="HOST:PORT", help="where the device reaches the gateway")
    dns = add.add_mutually_exclusive_group()
    dns.add_argument(
        "--dns",
        action="append",
        metavar="IP",
        help="a DNS server for it, repeatable (default: its gateway's, which answers the "
        "mesh's names, and the mesh domain to search)",
    )
    dns.add_argument(
        "--no-dns", action="store_true", help="no DNS line (wg-quick needs resolvconf for one)"
    )
    add.add_argument("--output", metavar="FILE", help="write the wg-quick file here (0600)")
    add.add_argument("--qr", metavar="FILE", help="write the QR code to FILE.png or FILE.svg")
    add.add_argument("--no-qr", action="store_true", help="no QR code on the terminal")
    add.set_defaults(func=lambda args: admin(args, lambda store: add_command(args, store)))

    remove = commands.add_parser("remove", parents=[common], help="remove a device")
    remove.add_argument("name", help="the device")
    remove.set_defaults(func=lambda args: admin(args, lambda store: remove_command(store, args)))

    listing = commands.add_parser("list", parents=[common], help="list the devices")
    listing.add_argument("--json", action="store_true", help="as JSON")
    listing.set_defaults(func=lambda args: admin(args, lambda store: list_command(store, args)))


def add_command(args: argparse.Namespace, store: Store) -> int:
    """Check the options, make the device, write its config and QR code (DeviceError and
    the store's errors are the caller's to report)."""
    from pywg.mesh import devices, qr

    if args.qr is not None:
        try:
            qr.check_path(args.qr)
        except ValueError as exc:
            raise devices.DeviceError(f"--qr: {exc}") from None
    endpoint = devices.check_endpoint(args.endpoint) if args.endpoint is not None else None
    device, config = devices.add_device(
        store,
        args.name,
        gateway=args.gateway,
        exit_node=args.exit_node,
        endpoint=endpoint,
        dns=() if args.no_dns else devices.check_dns(args.dns) if args.dns else None,
    )
    text = config.render()
    try:
        _write(args, text)
    except OSError as exc:  # the key is lost with the output: the device goes too
        store.remove_device(device.name)
        print(f"pywg coordinator: device {device.name} not added: {exc}", file=sys.stderr)
        return 1
    print(
        f"pywg coordinator: device {device.name} added: {device.ipv4}, {device.ipv6}, gateway "
        f"{device.gateway} at {config.endpoint}; its private key is in this output only",
        file=sys.stderr,
    )
    return 0


def _write(args: argparse.Namespace, text: str) -> None:
    """The config to --output or stdout, the QR code to --qr and (on a terminal) stdout."""
    from pywg.mesh import qr
    from pywg.system.secretfile import write_secret_file

    if args.qr is not None:
        qr.save(text, args.qr)
    if args.output is not None:
        write_secret_file(args.output, text)
    else:
        sys.stdout.write(text)
    if not args.no_qr and sys.stdout.isatty():
        sys.stdout.write("\n" + qr.terminal(text))
    sys.stdout.flush()


def remove_command(store: Store, args: argparse.Namespace) -> int:
    device = store.remove_device(args.name)
    print(f"removed device {device.name} ({device.ipv4}, {device.ipv6}, gateway {device.gateway})")
    return 0


def format_devices(devices: list[Device]) -> str:
    """The `device list` table: name, addresses, gateway, exit, added."""
    header = ("NAME", "ADDRESSES", "GATEWAY", "EXIT", "ADDED")
    rows = [
        (
            d.name,
            f"{d.ipv4} {d.ipv6}",
            d.gateway,
            "yes" if d.exit else "-",
            time.strftime("%Y-%m-%d %H:%M", time.localtime(d.created_ms / 1000)),
        )
        for d in devices
    ]
    return format_table(header, rows)


def list_command(store: Store, args: argparse.Namespace) -> int:
    found = store.devices()
    if args.json:
        from pywg.mesh.devices import devices_json

        print(json.dumps({"devices": devices_json(found)}, indent=2))
    elif found:
        print(format_devices(found))
    else:
        print(
            "pywg coordinator: no devices (add one: pywg coordinator device add)", file=sys.stderr
        )
    return 0
