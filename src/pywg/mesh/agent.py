"""The node agent behind `pywg join`: a WireGuard interface kept in line with the roster.

Theory of operation
-------------------
`MeshNode.run` joins the coordinator once (the join token is spent then; the
keys and the coordinator's key are kept in the state directory, `state`),
then runs a `Tunnel` (and its UAPI socket, so `wg show` works) and four
loops on one event loop:

- roster: a long poll (`CoordinatorClient.next_roster`, by deltas); each new roster is
  applied live: peers added, changed (allowed IPs = their tunnel addresses
  and approved routes) or removed, routes for approved subnets added or
  taken away, the access policy's inbound rules (`Roster.rules`, none
  without a policy) given to the tunnel's filter. Nothing is written by
  hand per pair.
- endpoints: every ENDPOINT_INTERVAL seconds, and at once when a direct path
  is lost, the home relay changes or its link turns to UDP, the node asks a STUN server (--stun,
  else its home relay's UDP port) from its WireGuard socket what its public
  mapping is (RFC 8489), and reports it with its local addresses and its
  home relay's number to the coordinator when they changed.
- paths: every PATH_TICK seconds, probes fall due (`pywg.mesh.paths`,
  `pywg.mesh.wire`), and each peer's WireGuard endpoint is set to the
  selector's choice when that changes: the relay at first, a direct path as
  soon as a probe is answered, the relay again when the direct path goes
  quiet.
- home relay: `pywg.mesh.home` keeps a link to one relay of the roster's
  relay map (`schema.HomeRelay`), the home, and moves to another when it
  dies. The relay path of a peer with a node id is ``[100::ID]:R``
  (`pywg.relayed`), R the home's number (the relays forward to peers homed
  elsewhere); it exists while the home's link has a transport. A mesh
  without a relay map has no relay path.

Probes from peers are answered by the tunnel's STUN hook. Routes to a subnet
this node is itself attached to are not taken (the LAN is reached directly).
A node that advertises routes turns on IP forwarding and, unless told not
to, masquerades mesh traffic into its LAN, so that LAN hosts need no route
back (nftables table `pywg_mesh_<interface>`, removed on exit); an exit node
advertises the default routes (`pywg.mesh.exits`) and does the same for the
internet. A node that chose an exit routes its internet traffic there
(`pywg.mesh.exitroute`), switched at run time through its control socket
(`pywg.mesh.control`, `pywg set --exit-node`).
A node that is the gateway of plain WireGuard devices holds them as peers
too (`pywg.mesh.gateway`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final

from nacl.signing import SigningKey

from .. import relayed, stun
from ..asyncio import Tunnel, UapiServer
from ..endpoint import Endpoint, format_endpoint, normalize_endpoint
from ..keys import PrivateKey, PublicKey
from ..system import netconf
from . import pathstate, wire
from .client import CoordinatorClient, CoordinatorError, split_urls
from .control import ControlError, ControlServer, socket_path
from .exitroute import ExitRouting
from .exits import ExitChoice, check_choice
from .gateway import DeviceGateway, enable_forwarding
from .home import HomeRelays, resolve
from .names import MeshNames, NameOptions
from .paths import DIRECT_TIMEOUT, OPEN_HOPS, PathSelector
from .relayclient import NodeIdentity
from .rotation import GRACE, KeyRotator, RotationError
from .schema import MAX_ENDPOINTS, HomeRelay, PeerEntry, Roster
from .state import Joined, NodeState

ENDPOINT_INTERVAL: Final = 20.0
PATH_TICK: Final = 0.25
PROBE_TIMEOUT: Final = 1.0
ROSTER_WAIT: Final = 30.0
KEEPALIVE: Final = 25
KEEPALIVE_WAIT: Final = 3.0
REPORT_RETRY: Final = 2.0

log = logging.getLogger("pywg.mesh")


class MeshError(RuntimeError):
    """The node cannot join or run; str() says why in one line."""


@dataclass
class JoinOptions:
    url: str
    token: str | None = field(repr=False)  # a join token admits a node: not for logs
    state_dir: str
    interface: str = "pywg0"
    name: str | None = None
    listen_port: int = 51820
    advertise_routes: list[str] = field(default_factory=list)
    snat: bool = True
    stun: tuple[str, int] | None = None
    exit_node: str | None = None  # the exit node for this node's internet traffic
    exit_allow_leak: bool = False  # out directly while that exit is gone (no kill switch)
    names: NameOptions = field(default_factory=NameOptions)  # DNS (`pywg.mesh.names`)


@dataclass
class _Peer:
    key: PublicKey
    raw: bytes
    name: str
    selector: PathSelector = field(default_factory=PathSelector)
    applied: Endpoint | None = None
    relay: Endpoint | None = None  # the relay path: relayed via the home relay
    node_id: int | None = None  # its id on the home relays
    bound: bool = False  # the relay path works: the home relay's link is up
    allowed: tuple[str, ...] = ()
    added: float = 0.0
    roamed_to: Endpoint | None = None  # where WireGuard last roamed without us
    roamed_at: float = 0.0
    keepalive: bool = False  # persistent keepalive on (from the first usable path)


class MeshNode:
    """One node of the mesh; see the module docstring."""

    def __init__(self, options: JoinOptions, state: NodeState) -> None:
        self.options = options
        self.state = state
        self.tunnel: Tunnel | None = None
        self.roster: Roster | None = None
        self.peers: dict[bytes, _Peer] = {}  # by public key
        self.routes: set[str] = set()
        self.reported: list[Endpoint] | None = None
        self.reported_home: int | None = None
        self.home: HomeRelays | None = None
        # (number, transport) of the home relay as applied
        self._home_seen: tuple[int | None, str | None] = (None, None)
        self._relay_map: tuple[HomeRelay, ...] = ()  # the home relays
        self.public_endpoint: Endpoint | None = None
        self._client: CoordinatorClient | None = None
        self._server: UapiServer | None = None
        self._stun_server: Endpoint | None = None  # --stun, resolved
        self._rediscover = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._nft_table: str | None = None
        self._closed = asyncio.Event()
        self.exit = ExitRouting(ExitChoice(options.exit_node, options.exit_allow_leak), options.url)
        self._control: ControlServer | None = None
        self.gateway: DeviceGateway | None = None  # the plain WireGuard devices it carries
        self.names: MeshNames | None = None
        self.on_ready: Callable[[], None] | None = None  # called once the interface is up
        self.rotation: KeyRotator | None = None  # its keys' rotation (pywg.mesh.rotation)

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Join if needed, bring the interface up, keep it in line until `close()`."""
        client = await self._join()
        self._client = client
        self.rotation = KeyRotator(self.state, client, self._switch_keys)
        try:
            roster = await self._first_roster(client)
            tunnel = self._make_tunnel()
            await tunnel.start()
            self.tunnel = tunnel
            try:
                own = self.state.wireguard.public_key
                tunnel.stun_handler = self._answer_probe(tunnel)
                self.home = HomeRelays(tunnel, NodeIdentity(bytes(own), self.state.control))
                self._server = self._make_uapi_server(tunnel)
                self.gateway = DeviceGateway(tunnel)
                await self._server.start()
                self.exit.tunnel = tunnel
                await self._start_control()
                await self._interface_up(roster)
                self.names = MeshNames(tunnel.name, self.options.names)
                await self.names.start(roster)
                await self._apply(roster)
                if self.on_ready is not None:
                    self.on_ready()
                home = self.home
                self._tasks = [
                    asyncio.create_task(self._guarded("home relay", home.run)),
                    asyncio.create_task(self._guarded("roster", lambda: self._roster_loop(client))),
                    asyncio.create_task(
                        self._guarded("endpoint", lambda: self._endpoint_loop(client))
                    ),
                    asyncio.create_task(self._guarded("path", self._path_loop)),
                    asyncio.create_task(
                        self._guarded("path report", lambda: pathstate.report_loop(self, client))
                    ),
                    asyncio.create_task(self._guarded("key rotation", self.rotation.run)),
                ]
                closer = asyncio.create_task(self._closed.wait())
                ender = asyncio.create_task(tunnel.wait_closed())
                await asyncio.wait({closer, ender}, return_when=asyncio.FIRST_COMPLETED)
                closer.cancel()
                ender.cancel()
            finally:
                for task in self._tasks:
                    task.cancel()
                for task in self._tasks:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                self._teardown()
        finally:
            await client.close()

    def close(self) -> None:
        self._closed.set()

    def _teardown(self) -> None:
        if self.names is not None:
            self.names.close()  # the hosts file or resolved as they were
        if self.home is not None:
            self.home.close()
        if self._server is not None:
            self._server.close()
        if self._control is not None:
            self._control.close()
        self.exit.close()
        if self.gateway is not None:
            self.gateway.close()
        if self._nft_table is not None:
            with contextlib.suppress(netconf.NetconfError):
                netconf.run(["nft", "delete", "table", "inet", self._nft_table])
            self._nft_table = None
        if self.tunnel is not None:
            self.tunnel.close("pywg join stopped")  # the interface and its routes go

    async def _join(self) -> CoordinatorClient:
        opts, state = self.options, self.state
        joined = state.joined
        if joined is not None and _same_coordinators(joined.url, opts.url):
            return CoordinatorClient(
                opts.url,
                state.public_key,
                state.control,
                coordinator_key=joined.coordinator_key,
                tls_pin=joined.tls_pin,
            )
        if not opts.token:
            raise MeshError(f"not a member of {opts.url} yet: give a join token (--token)")
        name = opts.name or _default_name()
        client = CoordinatorClient(opts.url, state.public_key, state.control)
        try:
            answer = await client.join(opts.token, name, list(opts.advertise_routes))
        except CoordinatorError as exc:
            await client.close()
            raise MeshError(f"join refused: {exc}") from None
        except BaseException:
            await client.close()
            raise
        state.save_joined(
            Joined(opts.url, answer.coordinator_key, answer.node.name, client.tls_pin)
        )
        log.info("joined %s as %s", opts.url, answer.node.name)
        return client

    async def _first_roster(self, client: CoordinatorClient) -> Roster:
        """The roster from the coordinator; if it cannot be reached, the last one it gave
        (the mesh comes up after a power cut even while the coordinator is down)."""
        delay = 1.0
        while True:
            try:
                return await client.roster(0, 0)
            except CoordinatorError as exc:
                if exc.status == 401 and self.rotation and await self.rotation.recover():
                    continue  # a rotation the coordinator took before this node stopped
                if _keys_refused(exc) and self.options.token and "expired" in exc.message:
                    await self._renew(client, self.options.token)
                    continue
                if exc.status in (401, 403, 404):
                    raise MeshError(f"the coordinator refused this node: {exc}") from None
                cached = self.state.load_roster()
                if cached is not None:
                    log.warning("coordinator: %s; starting from the last roster it gave", exc)
                    return cached
                log.warning("coordinator: %s; retrying in %.0f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _renew(self, client: CoordinatorClient, token: str) -> None:
        """Join again with a new token: keys that expired are issued anew (same keys,
        name and addresses, a new expiry)."""
        joined = self.state.joined
        name = joined.name if joined is not None else self.options.name or _default_name()
        try:
            await client.join(token, name, list(self.options.advertise_routes))
        except CoordinatorError as exc:
            raise MeshError(f"join refused: {exc}") from None
        log.info("joined %s again: keys renewed", self.options.url)

    # ------------------------------------------------------------------ interface
    def _make_tunnel(self) -> Tunnel:
        """The node's tunnel, on a TUN interface (`pywg.mesh.rootless`: on a stack)."""
        return Tunnel(
            self.options.interface,
            private_key=self.state.wireguard,
            listen_port=self.options.listen_port,
        )

    def _make_uapi_server(self, tunnel: Tunnel) -> UapiServer:
        """The UAPI socket, where `wg` looks for it."""
        return UapiServer(tunnel)

    async def _interface_up(self, roster: Roster) -> None:
        """Give the started tunnel its place on the machine: addresses, MTU, forwarding."""
        self._configure_interface(roster)

    def _configure_interface(self, roster: Roster) -> None:
        assert self.tunnel is not None
        ifname = self.tunnel.name
        conf = netconf.Netconf(ifname)
        cidrs = [f"{a}/{roster.network.of(a).prefixlen}" for a in roster.me.addresses]
        conf.add_addresses(cidrs)
        conf.set_mtu_up(self.tunnel.device.mtu)
        log.info("%s: %s", ifname, ", ".join(cidrs))
        if self.options.advertise_routes:
            self._route_for_lan(ifname)

    def _route_for_lan(self, ifname: str) -> None:
        """Forward between the mesh and the advertised subnets, masquerading into them."""
        try:
            enable_forwarding()
        except OSError as exc:
            raise MeshError(f"cannot turn on IP forwarding: {exc.strerror or exc}") from None
        log.info("IP forwarding on (this node routes %s)", ", ".join(self.options.advertise_routes))
        if not self.options.snat:
            return
        table = f"pywg_mesh_{ifname}".replace("-", "_").replace(".", "_")
        rules = f"""table inet {table} {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        iifname "{ifname}" oifname != "{ifname}" masquerade
    }}
}}
"""
        _nft(rules)
        self._nft_table = table

    def _set_routes(self, wanted: set[str]) -> None:
        assert self.tunnel is not None
        ifname = self.tunnel.name
        local = _local_networks(ifname)
        take = {r for r in wanted if not any(_overlap(r, n) for n in local)}
        for route in sorted(self.routes - take):
            with contextlib.suppress(netconf.NetconfError):
                netconf.ip(netconf.family(route), "route", "del", route, "dev", ifname)
        for route in netconf.sorted_routes(take - self.routes):
            try:
                netconf.ip(netconf.family(route), "route", "replace", route, "dev", ifname)
            except netconf.NetconfError as exc:
                log.warning("route %s: %s", route, exc)
                take.discard(route)
        self.routes = take

    # ------------------------------------------------------------------ roster
    async def _roster_loop(self, client: CoordinatorClient) -> None:
        delay = 1.0
        while True:
            try:
                roster = await client.next_roster(self.roster, ROSTER_WAIT)
            except CoordinatorError as exc:
                log.warning("coordinator: %s; retrying in %.0f s", exc, delay)
                if _keys_refused(exc) and self.peers:
                    log.error("this node's keys no longer work: leaving every peer")
                    self._drop_peers(set())
                    self._set_routes(set())
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            delay = 1.0
            if roster != self.roster:
                try:
                    await self._apply(roster)
                except (KeyError, TypeError, ValueError, OSError) as exc:  # signed, yet odd
                    log.error("roster %s not applied: %r", roster.version, exc)
                    await asyncio.sleep(delay)

    async def _apply(self, roster: Roster) -> None:
        """Make the interface match `roster`: its peers, their paths, the routes behind them."""
        now = asyncio.get_running_loop().time()
        assert self.tunnel is not None
        # the access policy's rules for what arrives here, before any peer changes: a
        # peer added by this roster meets them at its first packet (docs/policy.md)
        self.tunnel.set_inbound_rules(roster.rules)
        if self.options.stun is not None and self._stun_server is None:
            self._stun_server = (await resolve(*self.options.stun), self.options.stun[1])
        self._relay_map = roster.relays  # the relay paths below follow it
        if self.home is not None:
            self.home.set_map(roster.relays)
        own = bytes(self.state.wireguard.public_key)
        peers = [entry for entry in roster.peers if entry.public_key != own]
        if self.rotation is not None:
            self.rotation.follow(roster.me)
        self._follow_rotations(peers)
        self.exit.decide(roster)
        for entry in peers:
            self._apply_peer(entry, now)
        self._drop_peers({entry.public_key for entry in peers})
        self._set_routes({route for entry in peers for route in entry.routes})
        await self.exit.sync(roster)
        if self.gateway is not None:
            self.gateway.apply(roster)
        if self.names is not None:
            self.names.update(roster)
        self.roster = roster
        try:
            self.state.save_roster(roster)
        except OSError as exc:
            log.warning("cannot keep the roster in %s: %s", self.state.directory, exc)

    def _follow_rotations(self, peers: list[PeerEntry]) -> None:
        """Peers that rotated their keys (`rotated_from` a key we hold): the key changes in
        place, sessions, paths and settings kept (`Tunnel.change_peer_key`)."""
        tunnel = self.tunnel
        assert tunnel is not None
        for entry in peers:
            old = self.peers.get(entry.rotated_from) if entry.rotated_from else None
            if old is None or entry.public_key in self.peers:
                continue
            new = PublicKey(entry.public_key)
            tunnel.change_peer_key(old.key, new)
            del self.peers[old.raw]
            old.key, old.raw = new, entry.public_key
            self.peers[entry.public_key] = old
            log.info("peer %s rotated its key to %s", old.name, str(new)[:8])

    def _switch_keys(self, wireguard: PrivateKey, control: SigningKey) -> None:
        """This node's new keys (the coordinator took them): the tunnel's identity changes
        with every session kept; links to relays made from now on use them."""
        if self.tunnel is not None:
            self.tunnel.rotate_private_key(wireguard, GRACE)
        if self.home is not None:
            self.home.set_identity(NodeIdentity(bytes(wireguard.public_key), control))

    def _apply_peer(self, entry: PeerEntry, now: float) -> None:
        """Add or update one peer: its candidate paths, relay path, allowed IPs, endpoint."""
        tunnel = self.tunnel
        assert tunnel is not None
        peer = self.peers.get(entry.public_key)
        if peer is None:
            key = PublicKey(entry.public_key)
            peer = self.peers[entry.public_key] = _Peer(key, entry.public_key, entry.name)
        peer.node_id = entry.node_id
        self._set_relay_path(peer)
        peer.selector.set_paths(list(entry.endpoints), peer.relay, now)
        allowed = tuple(_host_prefix(a) for a in entry.addresses) + entry.routes
        allowed += self.exit.allowed(entry.public_key)
        choice = peer.selector.choice(now)
        if peer.key not in tunnel.device.peers:
            # without keepalive yet: its first one would start a handshake at once,
            # lost if the home relay's link is not up yet (the retry comes 5 s later)
            tunnel.add_peer(peer.key, allowed, choice)
            peer.added, peer.keepalive = now, False
            log.info("peer %s (%s) added", peer.name, str(peer.key)[:8])
        elif allowed != peer.allowed:
            tunnel.update_peer(peer.key, allowed_ips=allowed, replace_allowed_ips=True)
        if choice != peer.applied and choice is not None:
            tunnel.update_peer(peer.key, endpoint=choice)
        peer.applied = choice
        peer.allowed = allowed

    async def _start_control(self) -> None:
        """The control socket (`pywg set`); a node runs on without one it cannot bind."""
        control = ControlServer(
            socket_path(self.state.directory), self._set_exit, rotate=self._rotate_keys
        )
        try:
            await control.start()
        except OSError as exc:
            log.warning("no control socket (%s): `pywg set` cannot reach this node", exc)
            return
        self._control = control

    async def _set_exit(self, name: str | None) -> str:
        """The control socket's request: use exit node `name` (None: none) from now on."""
        roster = self.roster
        why = check_choice(roster, name, roster.me.name if roster is not None else None)
        if why is not None:
            raise ControlError(why)
        self.exit.choose(name)
        if roster is not None:
            await self._apply(roster)
        return self.exit.plan.why

    async def _rotate_keys(self) -> str:
        """The control socket's request: rotate this node's keys now."""
        if self.rotation is None:
            raise ControlError("not joined yet")
        try:
            return await self.rotation.request()
        except RotationError as exc:
            raise ControlError(str(exc)) from None

    def _homed(self) -> bool:
        """Whether there is a relay path at all (the roster has a relay map)."""
        return bool(self._relay_map)

    def _set_relay_path(self, peer: _Peer) -> None:
        """The peer's relay path: through the home relay while it is up; else None."""
        home = self.home
        number = home.number if home is not None and home.up else None
        peer.relay = relayed.endpoint(number, peer.node_id) if number and peer.node_id else None
        peer.bound = peer.relay is not None
        peer.selector.relay = peer.relay

    def _follow_home(self, now: float) -> None:
        """When the home relay moves, comes up, goes down or changes transport: every peer's
        relay path again, and the new number reported."""
        home = self.home
        seen = (home.number, home.transport) if home is not None and self._homed() else (None, None)
        if seen == self._home_seen:
            return
        if seen[0] != self._home_seen[0] or seen[1] == "udp":
            # report the new home; learn the mapping anew: the home answering over UDP
            # again can mean UDP gets out now where it did not (a STUN answer will too)
            self._rediscover.set()
        self._home_seen = seen
        for peer in self.peers.values():
            self._set_relay_path(peer)
            self._steer(peer, now)

    def _drop_peers(self, keep: set[bytes]) -> None:
        """Remove the peers the roster no longer names."""
        assert self.tunnel is not None
        for raw in [raw for raw in self.peers if raw not in keep]:
            gone = self.peers.pop(raw)
            with contextlib.suppress(LookupError):
                self.tunnel.remove_peer(gone.key)
            log.info("peer %s (%s) removed", gone.name, str(gone.key)[:8])

    # ------------------------------------------------------------------ endpoints
    async def _endpoint_loop(self, client: CoordinatorClient) -> None:
        while True:
            reported = await self._report_endpoints(client)
            self._rediscover.clear()
            wait = ENDPOINT_INTERVAL if reported else REPORT_RETRY
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rediscover.wait(), wait)

    async def _report_endpoints(self, client: CoordinatorClient) -> bool:
        """Discover and report this node's endpoints; False if the report did not go through."""
        tunnel = self.tunnel
        assert tunnel is not None
        endpoints: list[Endpoint] = []
        server = await self._stun_target()
        if server is not None:
            try:
                mapped = await tunnel.stun_request(server, timeout=3.0)
                self.public_endpoint = normalize_endpoint(mapped.mapped)
                endpoints.append(self.public_endpoint)
            except (TimeoutError, OSError) as exc:
                log.info("STUN %s: %s", server, exc)
        for address in _local_addresses(tunnel.name):
            endpoint = normalize_endpoint((address, tunnel.listen_port))
            if endpoint not in endpoints:
                endpoints.append(endpoint)
        endpoints = endpoints[:MAX_ENDPOINTS]
        home = self._home_report()
        if endpoints == self.reported and home == self.reported_home:
            return True
        try:
            await client.update(endpoints, list(self.options.advertise_routes), home)
        except CoordinatorError as exc:
            log.warning("cannot report endpoints: %s; again in %.0f s", exc, REPORT_RETRY)
            return False
        self.reported, self.reported_home = endpoints, home
        log.info("endpoints reported: %s", ", ".join(map(format_endpoint, endpoints)) or "none")
        if home is not None:
            log.info("home relay reported: %d", home)
        return True

    def _home_report(self) -> int | None:
        """The home relay to report: its number, 0 for none yet; None without a relay map
        (a coordinator without home relays is told nothing about them)."""
        if not self._homed():
            return None
        return (self.home.number if self.home is not None else None) or 0

    async def _stun_target(self) -> Endpoint | None:
        """Where to ask for this node's mapping: --stun, else the home relay (before one
        is chosen, the first of the map)."""
        if self._stun_server is not None:
            return self._stun_server
        home = self.home.current if self.home is not None else None
        relay = home or (self._relay_map[0] if self._relay_map else None)
        if relay is None:
            return None
        try:
            return await resolve(relay.host, relay.udp_port), relay.udp_port
        except OSError as exc:
            log.info("home relay %s: %s", relay.name, exc)
            return None

    # ------------------------------------------------------------------ paths
    async def _path_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            self._follow_home(now)
            for peer in list(self.peers.values()):
                had = peer.selector.had_direct  # as of the last tick
                for endpoint in peer.selector.openers_due(now):
                    self._open(peer, endpoint)
                for endpoint in peer.selector.probes_due(now):
                    self._spawn(self._probe(peer, endpoint))
                if had and not peer.selector.had_direct:  # the direct path went silent
                    self._path_lost(peer, now)
                self._steer(peer, now)
                self._start_keepalive(peer, now)
            await asyncio.sleep(PATH_TICK)

    async def _guarded(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run one of the node's loops; a bug in it is logged and the loop restarted."""
        while True:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s loop failed; restarting it in 1 s", name)
                await asyncio.sleep(1.0)

    def _steer(self, peer: _Peer, now: float) -> None:
        """Point WireGuard at the selector's choice, minding where WireGuard roamed itself.

        WireGuard moves a peer's endpoint to wherever its authenticated packets
        come from (whitepaper §2.1, roaming). Such an address is kept while it
        answers probes, or for DIRECT_TIMEOUT after it appeared (it is probed
        as a peer-reflexive candidate meanwhile, as ICE does, RFC 8445 §7.2.5.3.1);
        an address that does not answer in that time is left for the choice. So
        a path that died under WireGuard (the peer's NAT rebooted) is left too.
        """
        tunnel = self.tunnel
        if tunnel is None or peer.key not in tunnel.device.peers:
            return
        choice = peer.selector.choice(now)
        if choice is None:
            return
        current = tunnel.device.peers[peer.key].endpoint
        if current == choice:
            peer.applied = choice
            return
        if current is not None and peer.selector.may_stay(current, now):
            return  # a direct path that answers: as good as the choice (IPv6 first)
        if current is not None and current not in (peer.applied, peer.relay):
            if current != peer.roamed_to:  # WireGuard just roamed there
                peer.roamed_to, peer.roamed_at = current, now
                peer.selector.add_reflexive(current, now)  # probed (if not a candidate yet)
            if now - peer.roamed_at < DIRECT_TIMEOUT:
                return
        direct = peer.selector.direct(now)
        how = "direct" if choice == direct else "relay" if choice == peer.relay else "guess"
        log.info("peer %s: %s %s", peer.name, how, format_endpoint(choice))
        tunnel.update_peer(peer.key, endpoint=choice)
        peer.applied = choice
        if choice == peer.relay and current not in (None, peer.relay):
            self._path_lost(peer, now)  # one WireGuard roamed to, say

    def _path_lost(self, peer: _Peer, now: float) -> None:
        """A direct path went silent: our own NAT mapping may be what changed, so learn
        it (and report it) now rather than on schedule."""
        self._rediscover.set()

    def _start_keepalive(self, peer: _Peer, now: float) -> None:
        """Persistent keepalive on once a path is usable (its first keepalive starts the
        handshake there), or after KEEPALIVE_WAIT seconds whatever happens."""
        if peer.keepalive or self.tunnel is None or peer.key not in self.tunnel.device.peers:
            return
        usable = peer.bound or peer.selector.direct(now) is not None
        if usable or now - peer.added >= KEEPALIVE_WAIT:
            self.tunnel.update_peer(peer.key, persistent_keepalive=KEEPALIVE)
            peer.keepalive = True

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.append(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)

    def _open(self, peer: _Peer, endpoint: Endpoint) -> None:
        """An opener: a probe that dies past this node's NAT (`pywg.mesh.paths`)."""
        if self.tunnel is not None:
            probe = wire.probe_request(stun.new_transaction_id(), peer.raw)
            self.tunnel.send_datagram(probe, endpoint, hop_limit=OPEN_HOPS)

    async def _probe(self, peer: _Peer, endpoint: Endpoint) -> None:
        tunnel = self.tunnel
        if tunnel is None or tunnel.closed:
            return
        loop = asyncio.get_running_loop()
        sent = loop.time()
        try:
            answer = await tunnel.stun_request(
                endpoint,
                make=lambda tid: wire.probe_request(tid, peer.raw),
                timeout=PROBE_TIMEOUT,
                rto=PROBE_TIMEOUT,
            )
        except (TimeoutError, OSError, RuntimeError):
            return
        if wire.answered_by(answer) == peer.raw:
            if peer.selector.direct(loop.time()) is None:
                log.info("peer %s answers at %s", peer.name, format_endpoint(endpoint))
            peer.selector.answered(endpoint, sent, loop.time())

    @staticmethod
    def _answer_probe(tunnel: Tunnel) -> Callable[[stun.StunMessage, Endpoint], bytes | None]:
        """Answers probes for this node's key (and, after a rotation, for the old one while
        it is still answered: peers probe with the key their roster names)."""

        def answer(message: stun.StunMessage, source: Endpoint) -> bytes | None:
            target = wire.probe_target(message)
            device = tunnel.device
            if target is None or PublicKey(target) not in (
                device.public_key,
                device.retired_public_key,
            ):
                return None
            return wire.probe_answer(message, source, target)

        return answer


# ---------------------------------------------------------------------- helpers
def _keys_refused(exc: CoordinatorError) -> bool:
    """Whether the coordinator refused this node's keys as expired or revoked (then no
    peer takes its handshakes any more: it leaves them too, until it joins again)."""
    return exc.status == 401 and ("expired" in exc.message or "revoked" in exc.message)


def _default_name() -> str:
    import socket

    name = socket.gethostname().split(".")[0] or "node"
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name)[:63]


def _host_prefix(address: str) -> str:
    ip = ipaddress.ip_address(address)
    return f"{ip}/{ip.max_prefixlen}"


def _overlap(a: str, b: str) -> bool:
    x, y = ipaddress.ip_network(a, strict=False), ipaddress.ip_network(b, strict=False)
    return x.version == y.version and x.overlaps(y)


def _addresses(ifname: str) -> list[tuple[str, str]]:
    """(address, network) of every global address on other interfaces than `ifname` and lo."""
    try:
        data = json.loads(netconf.ip("-j", "address", "show"))
    except (netconf.NetconfError, ValueError):
        return []
    out = []
    for link in data:
        if link.get("ifname") in (ifname, "lo"):
            continue
        for info in link.get("addr_info", []):
            if info.get("scope") != "global":
                continue
            local, plen = info.get("local"), info.get("prefixlen")
            if local is None or plen is None:
                continue
            net = ipaddress.ip_network(f"{local}/{plen}", strict=False)
            out.append((str(local), str(net)))
    return out


def _local_addresses(ifname: str) -> list[str]:
    return [address for address, _ in _addresses(ifname)]


def _local_networks(ifname: str) -> list[str]:
    return [network for _, network in _addresses(ifname)]


def _nft(rules: str) -> None:
    try:
        netconf.run(["nft", "-f", "-"], stdin=rules)
    except netconf.NetconfError as exc:
        raise MeshError(f"{exc} (or run with --no-snat)") from None


def _same_coordinators(joined: str, given: str) -> bool:
    """Whether the coordinator URLs given serve the mesh this node joined: one of them is
    one it joined through (a list may grow as coordinators are added)."""
    ours = {url.rstrip("/") for url in split_urls(joined)}
    return any(url.rstrip("/") in ours for url in split_urls(given))
