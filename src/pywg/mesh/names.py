"""A node's names: its DNS server and the OS resolver kept in line with the roster.

`MeshNames` is what `pywg join` runs for names (docs/mesh.md, "Names"):

- at start, the upstream servers are read from /etc/resolv.conf (before
  anything is changed), the DNS server (`pywg.mesh.dnsserver`) listens on
  this node's tunnel addresses, and the OS resolver is told about the
  mesh's domain only: systemd-resolved per link where it runs, else a block
  in the hosts file (`pywg.system.resolver`), as `resolver` says
  (``auto``, ``resolved``, ``hosts``, ``none``);
- every roster (`update`) makes a new zone (`pywg.mesh.dns.Zone`) from
  `roster_entries`: the DNS server answers from it at once and the hosts
  block is rewritten when its lines change;
- `close` stops the server and takes the registration back.

A DNS server that cannot listen (port 53 taken on the tunnel address) is
logged and left out: the hosts block still gives the names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final, Literal, get_args

from ..system import resolver
from ..system.resolver import HOSTS, RESOLV_CONF
from .dns import DEFAULT_DOMAIN, Zone
from .dnsserver import PORT, DnsServer
from .schema import Roster

ResolverMode = Literal["auto", "resolved", "hosts", "none"]
RESOLVER_MODES: Final[tuple[ResolverMode, ...]] = get_args(ResolverMode)

log = logging.getLogger("pywg.mesh")


@dataclass
class NameOptions:
    """`serve`: run the DNS server; `resolver`: how the OS learns the domain; `hosts_file`
    the hosts file of the ``hosts`` way; `resolv_conf` where the upstream servers are."""

    serve: bool = True
    resolver: ResolverMode = "auto"
    hosts_file: str = HOSTS
    resolv_conf: str = RESOLV_CONF
    port: int = PORT


def roster_entries(roster: Roster) -> list[tuple[str, tuple[str, ...]]]:
    """Every name the roster gives, with its tunnel addresses: this node, its peers, then
    the plain WireGuard devices."""
    entries = [(roster.me.name, roster.me.addresses)]
    entries += [(peer.name, peer.addresses) for peer in roster.peers]
    entries += [(device.name, device.addresses) for device in roster.devices]
    return entries


def zone_of(roster: Roster) -> Zone:
    """The zone of a roster: its domain (DEFAULT_DOMAIN when it names none)."""
    domain = roster.domain or DEFAULT_DOMAIN
    return Zone(domain, roster_entries(roster), primary=roster.me.name, serial=roster.version)


class MeshNames:
    """The names of one node on interface `ifname`; see the module docstring."""

    def __init__(self, ifname: str, options: NameOptions) -> None:
        self.ifname = ifname
        self.options = options
        self.server: DnsServer | None = None
        self.hosts: resolver.HostsBlock | None = None
        self.resolved: resolver.ResolvedLink | None = None
        self.zone: Zone | None = None

    async def start(self, roster: Roster) -> None:
        opts = self.options
        own = list(roster.me.addresses)
        upstreams = [a for a in resolver.nameservers(opts.resolv_conf) if a not in own]
        zone = self.zone = zone_of(roster)
        if opts.serve:
            server = DnsServer(zone, upstreams, opts.port)
            try:
                await server.start(own)
                self.server = server
                log.info("DNS: %s on %s, upstream %s", zone.domain, ", ".join(own),
                         ", ".join(upstreams) or "none")  # fmt: skip
            except OSError as exc:
                log.warning("DNS server not started: %s", exc)
        mode = opts.resolver
        if mode == "auto":
            mode = "resolved" if resolver.resolved_running() else "hosts"
        if mode == "resolved" and self.server is not None:
            self.resolved = resolver.ResolvedLink(self.ifname)
            try:
                self.resolved.register(own, zone.domain)
                log.info("DNS: systemd-resolved sends *.%s to %s", zone.domain, self.ifname)
            except resolver.ResolverError as exc:
                log.warning("DNS: %s; using %s instead", exc, opts.hosts_file)
                self.resolved, mode = None, "hosts"
        if mode == "hosts":
            self.hosts = resolver.HostsBlock(self.ifname, opts.hosts_file)
        self._write_hosts(zone)

    def update(self, roster: Roster) -> None:
        """The names of `roster` from now on."""
        zone = self.zone = zone_of(roster)
        if zone.skipped:
            log.warning("DNS: names that are no DNS names left out: %s", ", ".join(zone.skipped))
        if self.server is not None:
            self.server.zone = zone
        self._write_hosts(zone)

    def _write_hosts(self, zone: Zone) -> None:
        if self.hosts is None:
            return
        try:
            if self.hosts.write(zone.hosts_lines()):
                log.debug("DNS: %s holds %d names", self.hosts.path, len(zone.hosts))
        except resolver.ResolverError as exc:
            log.warning("DNS: %s", exc)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        if self.hosts is not None:
            try:
                self.hosts.remove()
            except resolver.ResolverError as exc:
                log.warning("DNS: %s", exc)
            self.hosts = None
        if self.resolved is not None:
            self.resolved.remove()
            self.resolved = None


__all__ = ["RESOLVER_MODES", "MeshNames", "NameOptions", "ResolverMode", "roster_entries"]
