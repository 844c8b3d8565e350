"""Exit nodes, sans-IO: which peer carries this node's internet traffic, and how it is routed.

An exit node advertises the two default routes, ``0.0.0.0/0`` and ``::/0``
(`EXIT_ROUTES`), as it would advertise a subnet; the coordinator keeps them
pending until they are approved and then marks the node ``exit_node`` in
every roster, without the default routes among its ``routes`` (a subnet
route goes to every node; a default route only to those that chose it).

A node that chose an exit (`ExitChoice`) gives that one peer the default
routes as allowed IPs as well: WireGuard's cryptokey routing (whitepaper
§2) sends everything without a more specific peer to it, and accepts
packets from any source from it. Only one peer can hold a prefix, so only
the chosen exit gets them; other exits keep their own addresses and
subnets.

The kernel then has to send the traffic into the interface without sending
the tunnel's own datagrams there too. `PolicyRoutes` are the commands, as
wg-quick(8) makes them for AllowedIPs /0: a routing table T holding only a
default route via the interface; ``not fwmark T table T`` (what is not
marked uses it: the WireGuard socket marks its datagrams with T, SO_MARK,
so they leave by the main table); ``table main suppress_prefixlength 0``
before it (the main table's more specific routes still win: the mesh, the
node's own LAN, approved subnets; only its default route is passed over);
and, ahead of both, ``to ADDRESS table main`` for the coordinator and the
relays, whose HTTPS and TCP links come from sockets without the mark.

Kill switch (`plan`): while an exit is chosen, the policy routes stay even
when that exit is gone from the roster or no longer approved; no peer then
holds the default routes and WireGuard drops what is sent there (it has no
peer for the destination), so nothing leaks out of the underlay. With
``allow_leak`` the routes are taken away instead, and traffic goes out
directly until the exit is back.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from .schema import PeerEntry, Roster

EXIT_ROUTES: Final = ("0.0.0.0/0", "::/0")
FIRST_TABLE: Final = 51820  # wg-quick(8)'s first table and fwmark for a /0


def is_exit_route(prefix: str) -> bool:
    """Whether `prefix` is a default route (only an exit node advertises one)."""
    return ipaddress.ip_network(prefix, strict=False).prefixlen == 0


def offers_exit(routes: Iterable[str]) -> bool:
    """Whether `routes` (a node's approved routes) make it an exit: both default routes."""
    have = {str(ipaddress.ip_network(r, strict=False)) for r in routes}
    return all(route in have for route in EXIT_ROUTES)


def subnets(routes: Iterable[str]) -> tuple[str, ...]:
    """`routes` without the default routes: what every node routes to the advertiser."""
    return tuple(route for route in routes if not is_exit_route(route))


@dataclass(frozen=True, slots=True)
class ExitChoice:
    """What this node was asked for: an exit by name (None: none), and whether its
    traffic may go out directly while that exit is gone."""

    name: str | None = None
    allow_leak: bool = False


@dataclass(frozen=True, slots=True)
class ExitPlan:
    """What `plan` decided: the peer that gets the default routes (None: none), whether
    the policy routes are in place, and why, in words for the log."""

    exit_key: bytes | None = None
    route_all: bool = False
    why: str = "no exit node"


def exit_names(roster: Roster) -> list[str]:
    """The approved exit nodes of the roster, by name."""
    return sorted(peer.name for peer in roster.peers if peer.exit_node)


def _exit_entry(roster: Roster, name: str) -> PeerEntry | None:
    return next((p for p in roster.peers if p.name == name and p.exit_node), None)


def plan(roster: Roster, choice: ExitChoice) -> ExitPlan:
    """Which peer carries this node's internet traffic, and whether the policy routes
    stay (the kill switch: they do unless `choice.allow_leak`)."""
    if choice.name is None:
        return ExitPlan()
    entry = _exit_entry(roster, choice.name)
    if entry is not None:
        return ExitPlan(entry.public_key, True, f"internet traffic through exit node {entry.name}")
    gone = f"{choice.name} is not an approved exit node of the roster"
    if choice.allow_leak:
        return ExitPlan(None, False, f"{gone}: internet traffic goes out directly meanwhile")
    return ExitPlan(None, True, f"{gone}: internet traffic is stopped until it is back")


def check_choice(roster: Roster | None, name: str | None, own_name: str | None) -> str | None:
    """Why `name` cannot be chosen as this node's exit at run time (None: it can)."""
    if name is None:
        return None
    if name == own_name:
        return f"{name} is this node itself"
    if roster is None or _exit_entry(roster, name) is None:
        known = ", ".join(exit_names(roster)) if roster is not None else ""
        return f"{name} is not an approved exit node (exit nodes: {known or 'none'})"
    return None


def host_prefix(address: str) -> str:
    ip = ipaddress.ip_address(address)
    return f"{ip}/{ip.max_prefixlen}"


def _family(network: str) -> str:
    return "-6" if ":" in network else "-4"


@dataclass(frozen=True, slots=True)
class PolicyRoutes:
    """The `ip` commands (argument lists without ``ip``) that send everything not marked
    `table` into `ifname`, but for the main table's specific routes and `bypass`."""

    ifname: str
    table: int

    def commands(self, bypass: Sequence[str]) -> list[list[str]]:
        """In the order they are added: a rule added later is consulted earlier (the
        kernel numbers a rule without a priority just below the first one)."""
        out: list[list[str]] = []
        mark = str(self.table)
        for default in EXIT_ROUTES:
            fam = _family(default)
            out.append([fam, "route", "add", default, "dev", self.ifname, "table", mark])
            out.append([fam, "rule", "add", "not", "fwmark", mark, "table", mark])
            out.append([fam, "rule", "add", "table", "main", "suppress_prefixlength", "0"])
        for prefix in sorted({host_prefix(a) for a in bypass}):
            out.append([_family(prefix), "rule", "add", "to", prefix, "table", "main"])
        return out


def undo(command: Sequence[str]) -> list[str]:
    """The command that takes back one of `PolicyRoutes.commands`."""
    return [word if index != 2 else "del" for index, word in enumerate(command)]


def nft_ruleset(table: str, ifname: str, mark: int, addresses: Sequence[str]) -> str:
    """The nftables table wg-quick(8) adds beside the policy routes, for family inet.

    preraw: a packet for a tunnel address that did not come in through the
    tunnel (and is not from this host) is dropped, so the underlay cannot
    reach the tunnel addresses. The mangle chains copy the mark of the
    WireGuard socket's datagrams into their conntrack entry and back onto
    the answers, so the answers pass reverse-path filtering by the main
    table (with ``net.ipv4.conf.all.src_valid_mark=1``).
    """
    raw = []
    for address in addresses:
        proto = "ip6" if ipaddress.ip_address(address).version == 6 else "ip"
        raw.append(
            f'        iifname != "{ifname}" {proto} daddr {address} fib saddr type != local drop'
        )
    return "\n".join(
        [
            f"table inet {table} {{",
            "    chain preraw {",
            "        type filter hook prerouting priority -300; policy accept;",
            *raw,
            "    }",
            "    chain premangle {",
            "        type filter hook prerouting priority -150; policy accept;",
            "        meta l4proto udp meta mark set ct mark",
            "    }",
            "    chain postmangle {",
            "        type filter hook postrouting priority -150; policy accept;",
            f"        meta l4proto udp mark {mark} ct mark set mark",
            "    }",
            "}",
            "",
        ]
    )
