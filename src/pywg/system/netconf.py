"""Interface addresses, routes and hooks for `pywg up`, the way wg-quick(8) sets them.

Everything goes through iproute2 (`ip`), run as argument lists with timeouts,
and every change is recorded so `teardown()` undoes it in reverse order.

Routes (wg-quick(8), "Table"): every AllowedIPs network of every peer becomes a
route on the interface, most specific first. A /0 (a "default route" peer)
cannot simply be added, or the tunnel's own UDP packets would be routed into
the tunnel. As wg-quick does, the device then gets a fwmark (51820 unless set)
and the /0 goes into a routing table of that number, with two rules: packets
without the mark use that table, and the main table is consulted first
except for its default route (`suppress_prefixlength 0`). Table = off adds no
routes; a Table number or name puts them all in that table instead.
"""

from __future__ import annotations

import ipaddress
import logging
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

DEFAULT_TABLE: Final = 51820
TIMEOUT: Final = 15.0

log = logging.getLogger("pywg.netconf")


class NetconfError(RuntimeError):
    """An `ip` command or a hook failed; str() names it and says why, in one line."""


def ip(*args: str) -> str:
    return run(["ip", *args])


PACKAGES: Final = {"ip": "iproute2", "nft": "nftables"}  # what to apt install


def run(argv: Sequence[str], *, stdin: str | None = None) -> str:
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        package = PACKAGES.get(argv[0], argv[0])
        raise NetconfError(f"{argv[0]} is not installed (apt install {package})") from None
    except subprocess.TimeoutExpired:
        raise NetconfError(f"timed out: {' '.join(argv)}") from None
    if done.returncode != 0:
        why = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
        raise NetconfError(f"`{' '.join(argv)}`: {why}")
    return done.stdout


def family(network: str) -> str:
    return "-6" if ":" in network else "-4"


def sorted_routes(networks: Iterable[str]) -> list[str]:
    """Unique networks, most specific first (as wg-quick sorts them)."""
    unique = {str(ipaddress.ip_network(n, strict=False)) for n in networks}
    return sorted(unique, key=lambda n: (-ipaddress.ip_network(n).prefixlen, n))


@dataclass
class Netconf:
    """Applies an interface's addresses, MTU, routes and rules; `teardown()` undoes them."""

    ifname: str
    undo: list[list[str]] = field(default_factory=list)

    def add_addresses(self, addresses: Iterable[str]) -> None:
        for cidr in addresses:
            ip(family(cidr), "address", "add", cidr, "dev", self.ifname)

    def set_mtu_up(self, mtu: int) -> None:
        ip("link", "set", "dev", self.ifname, "mtu", str(mtu), "up")

    def add_routes(self, networks: Iterable[str], *, table: str | None, fwmark: int) -> int:
        """Routes for AllowedIPs; returns the fwmark the device needs (0: none).

        `table` is None (auto: main, /0 via policy routing), "off", or a table.
        """
        if table == "off":
            return 0
        mark = 0
        for network in sorted_routes(networks):
            if table is None and ipaddress.ip_network(network).prefixlen == 0:
                mark = fwmark or DEFAULT_TABLE
                self._default_route(network, mark)
                continue
            where = ["table", table] if table is not None else []
            if table is None and self._routed_here(network):
                continue
            ip(family(network), "route", "add", network, "dev", self.ifname, *where)
        return mark

    def _routed_here(self, network: str) -> bool:
        """A route for the network via this interface exists already (the address added it)."""
        out = ip(family(network), "route", "show", "dev", self.ifname, "match", network)
        return any(line.split()[:1] == [network] for line in out.splitlines())

    def _default_route(self, network: str, mark: int) -> None:
        fam, table = family(network), str(mark)
        ip(fam, "route", "add", network, "dev", self.ifname, "table", table)
        ip(fam, "rule", "add", "not", "fwmark", table, "table", table)
        self.undo.append(["ip", fam, "rule", "delete", "not", "fwmark", table, "table", table])
        ip(fam, "rule", "add", "table", "main", "suppress_prefixlength", "0")
        self.undo.append(
            ["ip", fam, "rule", "delete", "table", "main", "suppress_prefixlength", "0"]
        )

    def teardown(self) -> None:
        """Undo the rules (routes and addresses go with the interface). Never raises."""
        while self.undo:
            argv = self.undo.pop()
            try:
                run(argv)
            except NetconfError as exc:
                log.warning("cleanup: %s", exc)


def run_hooks(commands: Iterable[str], ifname: str, *, stage: str) -> None:
    """Run PreUp/PostUp/PreDown/PostDown commands with bash, %i replaced (wg-quick(8))."""
    for command in commands:
        line = command.replace("%i", ifname)
        log.info("%s: %s", stage, line)
        try:
            done = subprocess.run(["bash", "-c", line], timeout=60, check=False)
        except FileNotFoundError:
            raise NetconfError("bash is not installed (needed for hooks)") from None
        except subprocess.TimeoutExpired:
            raise NetconfError(f"{stage} hook timed out after 60 s: {line}") from None
        if done.returncode != 0:
            raise NetconfError(f"{stage} hook failed (exit {done.returncode}): {line}")
