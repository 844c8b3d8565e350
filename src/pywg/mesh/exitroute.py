"""A node's exit node routing on this machine: `pywg.mesh.exits`' plan, applied and undone.

`ExitRouting` holds the node's choice (`--exit-node`, changed at run time
through the control socket, `pywg.mesh.control`) and, on every roster, the
agent asks it which peer gets the default routes (`allowed`) and then to
bring the machine in line (`sync`):

- while the policy routes are wanted (an exit is chosen, or was and is gone,
  the kill switch), the first free routing table from 51820 on is taken as
  wg-quick(8) takes it (neither family has a route there), the tunnel's
  WireGuard socket gets that number as its fwmark (SO_MARK, UAPI
  ``fwmark=``), ``net.ipv4.conf.all.src_valid_mark`` is set to 1, the
  nftables table ``pywg_exit_<interface>`` (`exits.nft_ruleset`) is added,
  and the `ip` routes and rules of `exits.PolicyRoutes` are made, the
  coordinator's and the relays' addresses (names resolved, the last answer
  kept when a lookup fails) reached by the main table;
- when they are not, everything is taken back in reverse order: rules,
  routes, the nftables table, the fwmark, the sysctl's old value. `close()`
  does the same when the node stops.

An exit node's own side (forwarding, masquerade) is the agent's, as for
advertised subnets.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
from urllib.parse import urlsplit

from ..asyncio import Tunnel
from ..system import netconf
from ..uapi import UapiError
from .client import split_urls
from .exits import (
    EXIT_ROUTES,
    FIRST_TABLE,
    ExitChoice,
    ExitPlan,
    PolicyRoutes,
    nft_ruleset,
    plan,
    undo,
)
from .schema import Roster

VALID_MARK = "/proc/sys/net/ipv4/conf/all/src_valid_mark"
MAX_TABLES = 1000  # tables tried from FIRST_TABLE on

log = logging.getLogger("pywg.mesh")


class ExitRouting:
    """This node's exit node: the choice, the plan for the roster, the routes it makes."""

    def __init__(self, choice: ExitChoice, coordinator_url: str) -> None:
        self.choice = choice
        self.plan = ExitPlan()
        self.tunnel: Tunnel | None = None
        # every coordinator's host (the URL may name several: `client.split_urls`)
        self._coordinators = [urlsplit(url).hostname or "" for url in split_urls(coordinator_url)]
        self._resolved: dict[str, list[str]] = {}  # host -> its addresses, last answer
        self._applied: list[list[str]] = []  # `ip` commands in effect, in order
        self._table: int | None = None
        self._nft: str | None = None
        self._valid_mark: str | None = None  # the sysctl's value before
        self._lock = asyncio.Lock()

    def choose(self, name: str | None) -> None:
        self.choice = dataclasses.replace(self.choice, name=name)

    def decide(self, roster: Roster) -> ExitPlan:
        """The plan for `roster` (logged when it changes)."""
        new = plan(roster, self.choice)
        if new != self.plan:
            (log.warning if new.route_all and new.exit_key is None else log.info)("%s", new.why)
        self.plan = new
        return new

    def allowed(self, public_key: bytes) -> tuple[str, ...]:
        """The allowed IPs a peer gets beyond its own: the default routes for the exit."""
        return EXIT_ROUTES if public_key == self.plan.exit_key else ()

    async def sync(self, roster: Roster) -> None:
        """Make the machine's routes match the plan."""
        async with self._lock:
            if not self.plan.route_all or self.tunnel is None:
                self._off()
                return
            bypass = await self._bypass(roster)
            if self._table is None and not self._on(roster):
                return
            assert self._table is not None
            self._converge(PolicyRoutes(self.tunnel.name, self._table).commands(bypass))

    def close(self) -> None:
        """Take everything back (the node stops). Never raises."""
        self._off()

    # ------------------------------------------------------------------ steps
    async def _bypass(self, roster: Roster) -> list[str]:
        """The coordinator's and the relays' addresses: reached without the tunnel."""
        hosts = self._coordinators + [relay.host for relay in roster.relays]
        found: list[str] = []
        for host in dict.fromkeys(h for h in hosts if h):
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, None, type=socket.SOCK_STREAM
                )
                self._resolved[host] = [str(info[4][0]) for info in infos]
            except OSError as exc:
                log.info("exit routing: cannot resolve %s (%s); keeping %s", host, exc, "its last")
            found += self._resolved.get(host, [])
        return found

    def _on(self, roster: Roster) -> bool:
        """Table, fwmark, sysctl and nftables for the policy routes; False if the socket
        cannot be marked (the rules would then send the tunnel's datagrams into itself)."""
        assert self.tunnel is not None
        try:
            table = _free_table()
            self.tunnel.configure(f"set=1\nfwmark={table}\n\n")
        except (netconf.NetconfError, UapiError) as exc:
            log.error("exit routing: cannot mark the WireGuard socket: %s", exc)
            return False
        self._table = table
        try:
            with open(VALID_MARK, encoding="ascii") as handle:
                self._valid_mark = handle.read().strip()
            _write(VALID_MARK, "1")
        except OSError as exc:
            log.warning("exit routing: src_valid_mark: %s", exc.strerror or exc)
        name = f"pywg_exit_{self.tunnel.name}".replace("-", "_").replace(".", "_")
        try:
            netconf.run(
                ["nft", "-f", "-"],
                stdin=nft_ruleset(name, self.tunnel.name, table, roster.me.addresses),
            )
            self._nft = name
        except netconf.NetconfError as exc:
            log.warning("exit routing: nftables: %s", exc)
        log.info("exit routing on: table and fwmark %d", table)
        return True

    def _converge(self, wanted: list[list[str]]) -> None:
        """Take back the commands in effect that are not wanted, then make the others."""
        for command in reversed(self._applied):
            if command not in wanted:
                with contextlib.suppress(netconf.NetconfError):
                    netconf.ip(*undo(command))
        kept = [command for command in self._applied if command in wanted]
        for command in wanted:
            if command in kept:
                continue
            try:
                netconf.ip(*command)
                kept.append(command)
            except netconf.NetconfError as exc:
                log.warning("exit routing: %s", exc)
        self._applied = kept

    def _off(self) -> None:
        if self._table is None:
            return
        self._converge([])
        if self._nft is not None:
            with contextlib.suppress(netconf.NetconfError):
                netconf.run(["nft", "delete", "table", "inet", self._nft])
            self._nft = None
        if self._valid_mark is not None:
            with contextlib.suppress(OSError):
                _write(VALID_MARK, self._valid_mark)
            self._valid_mark = None
        if self.tunnel is not None and not self.tunnel.closed:
            with contextlib.suppress(Exception):
                self.tunnel.configure("set=1\nfwmark=0\n\n")
        log.info("exit routing off (table %d)", self._table)
        self._table = None


def _free_table() -> int:
    """The first table from FIRST_TABLE on with no route in either family (wg-quick(8))."""
    for table in range(FIRST_TABLE, FIRST_TABLE + MAX_TABLES):
        used = False
        for family in ("-4", "-6"):
            with contextlib.suppress(netconf.NetconfError):
                used = used or bool(
                    netconf.ip(family, "route", "show", "table", str(table)).strip()
                )
        if not used:
            return table
    raise netconf.NetconfError(f"no free routing table from {FIRST_TABLE} on")


def _write(path: str, value: str) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
