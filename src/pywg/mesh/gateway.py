"""A node as the gateway of plain WireGuard devices (`pywg.mesh.devices`).

The roster names every device and its gateway (`schema.DeviceEntry`). On the
gateway, `DeviceGateway.apply` keeps one WireGuard peer per device it
carries: allowed IPs the device's /32 and /128, no endpoint and no
keepalive (the device dials in and keeps its own NAT open; WireGuard then
answers wherever it last heard the device from, whitepaper §2.1). A device
the roster no longer names is removed as a peer at once, so `pywg
coordinator device remove` cuts it off within a roster long poll.

The gateway forwards between its devices and the mesh, both on its mesh
interface (IP forwarding on, no address translation: the other nodes route
the devices' addresses to it). For a device whose exit it is, it also
masquerades what the device sends out of any other interface (nftables
table ``pywg_dev_<interface>``, removed on `close`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from typing import Final

from ..asyncio import Tunnel
from ..keys import PublicKey
from ..system import netconf
from .schema import DeviceEntry, Roster

FORWARDING: Final = ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding")

log = logging.getLogger("pywg.mesh")


def enable_forwarding() -> None:
    """IPv4 and IPv6 forwarding on (this namespace's sysctls); OSError if refused."""
    for key in FORWARDING:
        with open(f"/proc/sys/{key.replace('.', '/')}", "w", encoding="ascii") as handle:
            handle.write("1\n")


def _allowed(device: DeviceEntry) -> tuple[str, ...]:
    return tuple(f"{a}/{ipaddress.ip_address(a).max_prefixlen}" for a in device.addresses)


def masquerade_rules(table: str, ifname: str, sources: list[str]) -> str:
    """An nftables table masquerading what `sources` (addresses) send out of any interface
    but `ifname` (a device's traffic to the internet, through its exit)."""
    v4 = [a for a in sources if ipaddress.ip_address(a).version == 4]
    v6 = [a for a in sources if ipaddress.ip_address(a).version == 6]
    rules = [
        f'        iifname "{ifname}" oifname != "{ifname}" {family} saddr {{ {", ".join(group)} }} '
        "masquerade"
        for family, group in (("ip", v4), ("ip6", v6))
        if group
    ]
    return (
        f"table inet {table} {{\n    chain postrouting {{\n"
        "        type nat hook postrouting priority srcnat; policy accept;\n"
        + "".join(line + "\n" for line in rules)
        + "    }\n}\n"
    )


class DeviceGateway:
    """The devices this node carries, as peers of its tunnel; see the module docstring."""

    def __init__(self, tunnel: Tunnel) -> None:
        self.tunnel = tunnel
        self.devices: dict[bytes, DeviceEntry] = {}  # by public key
        self.forwarding = False
        self.table = f"pywg_dev_{tunnel.name}".replace("-", "_").replace(".", "_")
        self._exits: list[str] = []  # the addresses masqueraded, as applied

    def apply(self, roster: Roster) -> None:
        """Make the tunnel's device peers match the devices `roster` gives this node."""
        mine = {d.public_key: d for d in roster.devices if d.gateway == roster.me.name}
        for raw in [raw for raw in self.devices if raw not in mine]:
            gone = self.devices.pop(raw)
            with contextlib.suppress(LookupError):
                self.tunnel.remove_peer(PublicKey(raw))
            log.info("device %s removed", gone.name)
        for raw, device in mine.items():
            before = self.devices.get(raw)
            if before is None:
                self.tunnel.add_peer(PublicKey(raw), _allowed(device), None)
                log.info("device %s (%s) added", device.name, ", ".join(device.addresses))
            elif before.addresses != device.addresses:
                self.tunnel.update_peer(
                    PublicKey(raw), allowed_ips=_allowed(device), replace_allowed_ips=True
                )
            self.devices[raw] = device
        if mine and not self.forwarding:
            try:
                enable_forwarding()
            except OSError as exc:
                log.error("cannot turn on IP forwarding for the devices: %s", exc)
            else:
                self.forwarding = True
                log.info("IP forwarding on (this node is the gateway of devices)")
        self._masquerade([a for d in mine.values() if d.exit for a in d.addresses])

    def _masquerade(self, sources: list[str]) -> None:
        """The exit devices' masquerade table, as `sources` asks (none: no table)."""
        if sources == self._exits:
            return
        try:
            if self._exits:
                netconf.run(["nft", "delete", "table", "inet", self.table])
            self._exits = []
            if sources:
                rules = masquerade_rules(self.table, self.tunnel.name, sources)
                netconf.run(["nft", "-f", "-"], stdin=rules)
                self._exits = sources
        except netconf.NetconfError as exc:
            log.error("devices' exit masquerade: %s", exc)

    def close(self) -> None:
        """Remove the masquerade table (the peers go with the tunnel)."""
        self._masquerade([])
