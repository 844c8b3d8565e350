"""Plain WireGuard devices: members of the mesh that run any WireGuard app, not `pywg join`.

Theory of operation. A phone, a Windows PC or a router cannot run the node
agent; it gets a wg-quick file instead (`pywg coordinator device add`, which
prints it and, as a QR code, `pywg.mesh.qr`). Its private key is made here,
put in that file and nowhere else: the store keeps its public key only.

The device has one peer, its *gateway*: a node with an endpoint the device
can reach (a public address, or a NAT that keeps one mapping for every
destination). The device dials in (it sends keepalives every KEEPALIVE
seconds, so its own NAT keeps the way back open), and the gateway forwards
between it and the mesh (`pywg.mesh.gateway`). The coordinator puts the
device into every roster (`schema.DeviceEntry`) and its addresses among the
gateway's routes (`devices_by_gateway`), so every other node sends the
device's traffic to the gateway, as it sends a subnet's to its router.

The file's AllowedIPs are the mesh networks and the subnets approved when it
was made; with an exit node (the gateway), everything (0.0.0.0/0, ::/0).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from ..config import ConfigError, parse_config
from ..keys import PrivateKey, PublicKey
from . import exits
from .auth import b64
from .schema import DeviceEntry, Networks
from .store import Device, Node, Store, StoreError

KEEPALIVE: Final = 25  # seconds: well within the 30 s a NAT keeps a UDP mapping (RFC 4787 §4.3)
EVERYTHING: Final = ("0.0.0.0/0", "::/0")


class DeviceError(StoreError):
    """A device that cannot be made as asked; str() says why, fit for a CLI error line."""


# -- the coordinator's side -----------------------------------------------------------------


def devices_by_gateway(devices: Iterable[Device]) -> dict[str, tuple[str, ...]]:
    """gateway name -> the host prefixes of the devices it carries (routes behind it)."""
    carried: dict[str, tuple[str, ...]] = {}
    for device in devices:
        carried[device.gateway] = carried.get(device.gateway, ()) + device.prefixes
    return carried


def device_entries(devices: Iterable[Device]) -> tuple[DeviceEntry, ...]:
    """The devices as a roster names them."""
    return tuple(
        DeviceEntry(d.name, d.public_key, (d.ipv4, d.ipv6), d.gateway, d.exit) for d in devices
    )


def choose_gateway(nodes: Sequence[Node], gateway: str | None, exit_node: str | None) -> Node:
    """The device's gateway: `gateway`, else `exit_node` (the exit carries the device's
    internet traffic, so it carries all of it), else the mesh's only node. DeviceError
    when that is not one node of `nodes`, or when the two names differ."""
    if gateway is not None and exit_node is not None and gateway.lower() != exit_node.lower():
        raise DeviceError(
            f"a device's exit node is its gateway: --exit-node {exit_node} with "
            f"--gateway {gateway} (give one of them)"
        )
    wanted = gateway or exit_node
    if wanted is None:
        if len(nodes) == 1:
            return nodes[0]
        names = ", ".join(n.name for n in nodes) or "none yet"
        raise DeviceError(f"name the gateway node with --gateway (nodes: {names})")
    found = next((n for n in nodes if n.name.lower() == wanted.lower()), None)
    if found is None:
        raise DeviceError(f"no node named {wanted!r} (the gateway)")
    return found


def gateway_endpoint(node: Node) -> str:
    """Where a device reaches `node`: the first IPv4 endpoint it reported (its public
    mapping comes first; a phone's network may have no IPv6), else its first endpoint.
    DeviceError if it reported none."""
    for endpoint in node.endpoints:
        if not endpoint.startswith("["):
            return endpoint
    if node.endpoints:
        return node.endpoints[0]
    raise DeviceError(
        f"node {node.name} has reported no endpoint yet (is it running?): give --endpoint"
    )


def check_endpoint(text: str) -> str:
    """`text` if it is an Endpoint wg-quick takes (HOST:PORT, a.b.c.d:PORT, [IPv6]:PORT),
    read as `pywg.config` reads one; DeviceError otherwise."""
    if not text.isprintable() or "#" in text:
        raise DeviceError(f"--endpoint {text!r} is not HOST:PORT")
    key = PublicKey(bytes(32)).to_base64()
    probe = f"[Interface]\n[Peer]\nPublicKey = {key}\nEndpoint = {text}\n"
    try:
        parse_config(probe, source="--endpoint")
    except ConfigError as exc:
        raise DeviceError(f"--endpoint {text!r} is not HOST:PORT ({exc})") from None
    return text


def check_dns(servers: Iterable[str]) -> tuple[str, ...]:
    """DNS server addresses for the config; DeviceError for one that is not an address."""
    try:
        return tuple(str(ipaddress.ip_address(s)) for s in servers)
    except ValueError as exc:
        raise DeviceError(f"--dns: {exc}") from None


def devices_json(devices: Iterable[Device]) -> list[dict[str, object]]:
    """The devices as `device list --json` and `nodes --json` give them."""
    return [
        {
            "name": d.name,
            "public_key": b64(d.public_key),
            "addresses": [d.ipv4, d.ipv6],
            "gateway": d.gateway,
            "exit": d.exit,
            "created_ms": d.created_ms,
        }
        for d in devices
    ]


def allowed_ips(networks: Networks, subnets: Iterable[str], *, exit: bool) -> tuple[str, ...]:
    """A device's AllowedIPs: everything with an exit; else the mesh networks and `subnets`."""
    if exit:
        return EVERYTHING
    return tuple(dict.fromkeys([str(networks.ipv4), str(networks.ipv6), *subnets]))


@dataclass(frozen=True)
class DeviceConfig:
    """A device's wg-quick file (wg-quick(8)); `render()` writes it."""

    private_key: PrivateKey = field(repr=False)
    addresses: tuple[str, ...]  # the device's: IPv4, IPv6
    gateway_key: PublicKey
    endpoint: str  # HOST:PORT, [IPv6]:PORT
    allowed_ips: tuple[str, ...]
    dns: tuple[str, ...] = ()  # servers and search domains; left out when empty

    def render(self) -> str:
        """The file: [Interface] with the key and /32, /128 addresses; one [Peer], the gateway."""
        hosts = [f"{a}/{ipaddress.ip_address(a).max_prefixlen}" for a in self.addresses]
        lines = [
            "[Interface]",
            f"PrivateKey = {self.private_key.to_base64()}",
            f"Address = {', '.join(hosts)}",
        ]
        if self.dns:
            lines.append(f"DNS = {', '.join(self.dns)}")
        lines += [
            "",
            "[Peer]",
            f"PublicKey = {self.gateway_key.to_base64()}",
            f"Endpoint = {self.endpoint}",
            f"AllowedIPs = {', '.join(self.allowed_ips)}",
            f"PersistentKeepalive = {KEEPALIVE}",
        ]
        return "\n".join(lines) + "\n"


def add_device(
    store: Store,
    name: str,
    *,
    gateway: str | None = None,
    exit_node: str | None = None,
    endpoint: str | None = None,
    dns: Sequence[str] | None = None,
) -> tuple[Device, DeviceConfig]:
    """Make device `name`: a new key pair, its record (public key only) and its config.

    DeviceError/StoreError (Conflict, NotFound) before anything is stored when
    the gateway or its endpoint cannot be told."""
    networks = store.networks()
    if networks is None:
        raise DeviceError("the mesh networks are not set (start `pywg coordinator serve`)")
    nodes = store.nodes()
    node = choose_gateway(nodes, gateway, exit_node)
    if exit_node is not None and not exits.offers_exit(node.approved_routes):
        raise DeviceError(
            f"{node.name} is not an approved exit node (`pywg join --advertise-exit-node` "
            f"there, then `pywg coordinator approve {node.name} --exit-node`)"
        )
    where = endpoint or gateway_endpoint(node)
    # an exit's default routes are no subnet: only an exit device gets them (allowed_ips)
    subnets = [route for n in nodes for route in exits.subnets(n.approved_routes)]
    private = PrivateKey.generate()
    device = store.add_device(
        name, bytes(private.public_key), node.name, exit=exit_node is not None
    )
    config = DeviceConfig(
        private_key=private,
        addresses=(device.ipv4, device.ipv6),
        gateway_key=PublicKey(node.public_key),
        endpoint=where,
        allowed_ips=allowed_ips(networks, subnets, exit=device.exit),
        dns=tuple(dns) if dns is not None else mesh_dns(node, store.init_domain()),
    )
    return device, config


def mesh_dns(gateway: Node, domain: str) -> tuple[str, ...]:
    """A device's default DNS line: the name server every `pywg join` runs on its tunnel
    addresses (docs/mesh.md, "Names"), the gateway's, which answers the mesh's names and
    forwards the rest; and the mesh domain as the search domain (wg-quick(8) reads a DNS
    entry that is no address as one, as the WireGuard apps do)."""
    return (gateway.ipv4, gateway.ipv6, domain)
