"""The coordinator API's messages, typed: what a node and the coordinator send each other.

One frozen dataclass per JSON object of the HTTP API (`pywg.mesh.coordinator`
lists the requests). The coordinator builds its answers from them and parses
requests into them; the node's client (`pywg.mesh.client`) does the
opposite; the agent applies them. ``to_json()`` gives the object as it
travels, keys in this order; ``from_json()`` takes a decoded JSON value,
checks every field it reads (unknown ones are ignored) and raises
`SchemaError` naming the first one that is wrong.

    POST /v1/join     JoinRequest    -> JoinAnswer  (NodeInfo, Networks)
    GET  /v1/roster   (a query)      -> Roster      (NodeInfo, Networks, PeerEntry, HomeRelay,
                                                     DeviceEntry), or RosterDelta (delta=1)
    POST /v1/update   UpdateRequest  -> UpdateAnswer
    GET  /v1/health                  -> Health
    any error                        -> ErrorAnswer

Keys travel as standard base64, endpoints as ``a.b.c.d:port`` or
``[v6]:port`` (`pywg.endpoint`), networks and prefixes as `ipaddress` writes
them. What depends on the mesh's state (a name taken, a route inside the
mesh network, an address a node may not report) is the store's to judge
(`pywg.mesh.store`), not the schema's.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol, TypeVar

from ..constants import KEY_SIZE, MAX_RELAY_INDEX  # keys: X25519 and Ed25519 alike
from ..endpoint import Endpoint, format_endpoint, parse_endpoint
from ..policy.rules import InboundRule, RulesError, from_rows, to_rows
from ..redact import quote
from . import auth
from .dns import check_domain
from .relayproto import MAX_NODE_ID
from .tls import PIN_SIZE

JOIN_PATH: Final = "/v1/join"
ROSTER_PATH: Final = "/v1/roster"
UPDATE_PATH: Final = "/v1/update"
HEALTH_PATH: Final = "/v1/health"
MEMBERS_PATH: Final = "/v1/members"  # for home relays (docs/relay.md)
MAX_TIME_MS: Final = 1 << 53  # times in ms (JSON numbers stay exact below 2^53)
ROTATE_PATH: Final = "/v1/rotate"  # a member's new keys (pywg.mesh.expiry)
MAX_WAIT: Final = 60.0  # the longest roster long-poll, in seconds
MAX_ENDPOINTS: Final = 8  # endpoints a node may report
MAX_ENDPOINT_TEXT: Final = 64  # characters of one endpoint
MAX_COUNT: Final = (1 << 63) - 1  # versions and counts: SQLite integers
MAX_HOST: Final = 253  # characters of a host name (RFC 1035 §2.3.4, without the final dot)
MAX_RELAY_NAME: Final = 63
MAX_PATHS: Final = 400  # peers a node reports its path to, in one update (fits MAX_BODY)
PATH_KINDS: Final = ("direct", "relay")  # how a node reaches a peer now (`PathState`)

JsonObject = dict[str, object]
T = TypeVar("T")


class SchemaError(ValueError):
    """A message that is not what the API says; str() names the field and what is wrong."""


class Message(Protocol):
    def to_json(self) -> JsonObject: ...


def encode(message: Message) -> bytes:
    """The body that carries `message`: compact JSON, UTF-8."""
    return json.dumps(message.to_json(), separators=(",", ":")).encode("utf-8")


def decode(body: bytes) -> object:
    """The JSON value in a body; SchemaError if it is not JSON."""
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise SchemaError("the body is not JSON") from None


def endpoint_from_text(text: object) -> Endpoint:
    """An endpoint as the API writes it (numeric, no zone index); SchemaError otherwise."""
    if not isinstance(text, str) or len(text) > MAX_ENDPOINT_TEXT:
        raise SchemaError("an endpoint is a string ip:port or [ipv6]:port")
    if "%" in text:  # a zone index names an interface of the sender: meaningless elsewhere
        raise SchemaError(f"an endpoint has no zone index: {quote(text)}")
    try:
        return parse_endpoint(text)
    except ValueError as exc:
        raise SchemaError(str(exc)) from None


class _Fields:
    """The fields of one JSON object, each read with its type checked.

    `where` names the message, `prefix` the path to this object inside it
    (``peers[2].``), so an error says ``roster: peers[2].public_key ...``.
    """

    def __init__(self, value: object, where: str, prefix: str = "") -> None:
        if not isinstance(value, dict):
            raise SchemaError(f"{where}: {prefix.rstrip('.') or 'the message'} is not an object")
        self._data: dict[str, object] = value
        self._where = where
        self._prefix = prefix

    def error(self, key: str, problem: str) -> SchemaError:
        return SchemaError(f"{self._where}: {self._prefix}{key} {problem}")

    def get(self, key: str) -> object:
        if key not in self._data:
            raise self.error(key, "is missing")
        return self._data[key]

    def given(self, key: str) -> bool:
        """Whether `key` is there and not null."""
        return self._data.get(key) is not None

    def text(self, key: str) -> str:
        value = self.get(key)
        if not isinstance(value, str):
            raise self.error(key, "must be a string")
        return value

    def integer(self, key: str, low: int, high: int) -> int:
        value = self.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self.error(key, f"must be an integer from {low} to {high}")
        return value

    def boolean(self, key: str) -> bool:
        value = self.get(key)
        if not isinstance(value, bool):
            raise self.error(key, "must be true or false")
        return value

    def flag(self, key: str) -> bool:
        """An optional boolean: false when left out (or null), else checked as `boolean`."""
        return self.given(key) and self.boolean(key)

    def key(self, key: str) -> bytes:
        try:
            return auth.unb64(self.text(key), KEY_SIZE)
        except auth.AuthError as exc:
            raise self.error(key, f"is not a key: {exc}") from None

    def items(self, key: str) -> list[object]:
        value = self.get(key)
        if not isinstance(value, list):
            raise self.error(key, "must be a list")
        return value

    def each(self, key: str, parse: Callable[[object], T]) -> tuple[T, ...]:
        """Every item of list `key`, through `parse` (its ValueError, with the item's place)."""
        result = []
        for index, item in enumerate(self.items(key)):
            try:
                result.append(parse(item))
            except ValueError as exc:
                raise SchemaError(f"{self._where}: {self._prefix}{key}[{index}]: {exc}") from None
        return tuple(result)

    def texts(self, key: str) -> tuple[str, ...]:
        return self.each(key, _string)

    def addresses(self, key: str) -> tuple[str, ...]:
        return self.each(key, _address)

    def prefixes(self, key: str) -> tuple[str, ...]:
        return self.each(key, _prefix)

    def endpoints(self, key: str) -> tuple[Endpoint, ...]:
        return self.each(key, endpoint_from_text)

    def inner(self, key: str) -> _Fields:
        return _Fields(self.get(key), self._where, f"{self._prefix}{key}.")

    def objects(self, key: str) -> list[_Fields]:
        return [
            _Fields(item, self._where, f"{self._prefix}{key}[{index}].")
            for index, item in enumerate(self.items(key))
        ]


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("not a string")
    return value


def _key(value: object) -> bytes:
    try:
        return auth.unb64(_string(value), KEY_SIZE)
    except auth.AuthError as exc:
        raise ValueError(f"not a key: {exc}") from None


def _address(value: object) -> str:
    try:
        return str(ipaddress.ip_address(_string(value)))
    except ValueError:
        raise ValueError(f"not an IP address: {quote(value)}") from None


def _prefix(value: object) -> str:
    try:
        return str(ipaddress.ip_network(_string(value), strict=True))
    except ValueError:
        raise ValueError(f"not a network prefix: {quote(value)}") from None


# -- the parts ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Networks:
    """The mesh's tunnel networks, fixed at the coordinator's first start."""

    ipv4: ipaddress.IPv4Network
    ipv6: ipaddress.IPv6Network

    def to_json(self) -> JsonObject:
        return {"ipv4": str(self.ipv4), "ipv6": str(self.ipv6)}

    @classmethod
    def read(cls, fields: _Fields) -> Networks:
        try:
            ipv4 = ipaddress.IPv4Network(fields.text("ipv4"), strict=True)
        except ValueError:
            raise fields.error("ipv4", "is not an IPv4 network") from None
        try:
            ipv6 = ipaddress.IPv6Network(fields.text("ipv6"), strict=True)
        except ValueError:
            raise fields.error("ipv6", "is not an IPv6 network") from None
        return cls(ipv4, ipv6)

    def of(self, address: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        """The network of the family of `address`."""
        return self.ipv4 if ipaddress.ip_address(address).version == 4 else self.ipv6


def _host(fields: _Fields) -> str:
    host = fields.text("host")
    if not 0 < len(host) <= MAX_HOST:
        raise fields.error("host", "must be a host name or address")
    return host


@dataclass(frozen=True, slots=True)
class HomeRelay:
    """A home relay of the mesh (`pywg relay serve`, docs/relay.md), as the relay map names it.

    `number` (1..15) is the relay number a node's tunnel holds it under
    (peers behind it at ``[100::ID]:number``, `pywg.relayed`): the coordinator
    numbers its relays in the order of its configuration, so a number stays
    with its relay. `key` is the relay key (Ed25519); `pin`, when given, the
    SHA-256 of the only TLS certificate a node takes from it.
    """

    number: int
    name: str
    key: bytes
    host: str
    udp_port: int = 3478
    tcp_port: int = 443
    pin: bytes | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.number <= MAX_RELAY_INDEX:
            raise ValueError(f"a relay number is 1..{MAX_RELAY_INDEX}")
        if not 0 < len(self.name) <= MAX_RELAY_NAME or not self.name.isprintable():
            raise ValueError(f"a relay's name is 1..{MAX_RELAY_NAME} printable characters")
        if len(self.key) != KEY_SIZE:
            raise ValueError("a relay key is 32 bytes")
        if not 0 < len(self.host) <= MAX_HOST:
            raise ValueError("a relay's host is a host name or address")
        if not (0 < self.udp_port <= 0xFFFF and 0 < self.tcp_port <= 0xFFFF):
            raise ValueError("a relay's ports are 1..65535")
        if self.pin is not None and len(self.pin) != PIN_SIZE:
            raise ValueError("a certificate pin is a SHA-256 (32 bytes)")

    def to_json(self) -> JsonObject:
        data: JsonObject = {
            "number": self.number,
            "name": self.name,
            "key": auth.b64(self.key),
            "host": self.host,
            "udp_port": self.udp_port,
            "tcp_port": self.tcp_port,
        }
        if self.pin is not None:
            data["pin"] = self.pin.hex()
        return data

    @classmethod
    def read(cls, fields: _Fields) -> HomeRelay:
        name = fields.text("name")
        if not 0 < len(name) <= MAX_RELAY_NAME or not name.isprintable():
            raise fields.error("name", f"must be 1..{MAX_RELAY_NAME} printable characters")
        return cls(
            number=fields.integer("number", 1, MAX_RELAY_INDEX),
            name=name,
            key=fields.key("key"),
            host=_host(fields),
            udp_port=fields.integer("udp_port", 1, 0xFFFF),
            tcp_port=fields.integer("tcp_port", 1, 0xFFFF),
            pin=_pin(fields) if fields.given("pin") else None,
        )


def _pin(fields: _Fields) -> bytes:
    text = fields.text("pin")
    try:
        pin = bytes.fromhex(text)
    except ValueError:
        pin = b""
    if len(pin) != PIN_SIZE or len(text) != 2 * PIN_SIZE:
        raise fields.error("pin", "must be a SHA-256 in hex (64 digits)")
    return pin


def _home_relays(fields: _Fields) -> tuple[HomeRelay, ...]:
    """The relay map: no number or name twice (a node holds each relay under its number)."""
    if not fields.given("relays"):
        return ()
    relays = tuple(HomeRelay.read(item) for item in fields.objects("relays"))
    for index, relay in enumerate(relays):
        if any(other.number == relay.number for other in relays[:index]):
            raise fields.error(f"relays[{index}].number", f"{relay.number} is taken")
        if any(other.name == relay.name for other in relays[:index]):
            raise fields.error(f"relays[{index}].name", f"{quote(relay.name)} is taken")
    return relays


def _home_relay(fields: _Fields) -> int | None:
    """A node's home relay number (left out: none, or a coordinator without home relays)."""
    return fields.integer("home_relay", 1, MAX_RELAY_INDEX) if fields.given("home_relay") else None


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A member as the coordinator describes it to itself (``"self"`` on the wire)."""

    name: str
    public_key: bytes  # WireGuard
    addresses: tuple[str, ...]  # its tunnel addresses: IPv4, IPv6
    routes: tuple[str, ...]  # advertised and approved
    pending_routes: tuple[str, ...]  # advertised, waiting for approval
    node_id: int | None = None  # its address on the home relays (docs/relay.md)
    home_relay: int | None = None  # the number of its home relay, as it reported it
    keys_ms: int | None = None  # when its keys were issued (ms since the epoch)
    expires_ms: int | None = None  # when they expire (None: never; pywg.mesh.expiry)

    def to_json(self) -> JsonObject:
        data: JsonObject = {
            "name": self.name,
            "public_key": auth.b64(self.public_key),
            "addresses": list(self.addresses),
            "routes": list(self.routes),
            "pending_routes": list(self.pending_routes),
        }
        data = _with_home(data, self.node_id, self.home_relay)
        if self.keys_ms is not None:
            data["keys_ms"] = self.keys_ms
        if self.expires_ms is not None:
            data["expires_ms"] = self.expires_ms
        return data

    @classmethod
    def read(cls, fields: _Fields) -> NodeInfo:
        return cls(
            name=fields.text("name"),
            public_key=fields.key("public_key"),
            addresses=fields.addresses("addresses"),
            routes=fields.prefixes("routes"),
            pending_routes=fields.prefixes("pending_routes"),
            node_id=_node_id(fields),
            home_relay=_home_relay(fields),
            keys_ms=_time_ms(fields, "keys_ms"),
            expires_ms=_time_ms(fields, "expires_ms"),
        )


def _time_ms(fields: _Fields, key: str) -> int | None:
    """A time in ms since the epoch, or None if left out."""
    return fields.integer(key, 0, MAX_TIME_MS) if fields.given(key) else None


def _with_home(data: JsonObject, node_id: int | None, home_relay: int | None) -> JsonObject:
    """`data` with "node_id" and "home_relay" last when there are (a coordinator may give
    none, a node may have no home relay)."""
    if node_id is not None:
        data["node_id"] = node_id
    if home_relay is not None:
        data["home_relay"] = home_relay
    return data


def _node_id(fields: _Fields) -> int | None:
    return fields.integer("node_id", 1, MAX_NODE_ID) if fields.given("node_id") else None


@dataclass(frozen=True, slots=True)
class PeerEntry:
    """Another member, as a roster gives it: how to reach it and what it routes."""

    name: str
    public_key: bytes  # WireGuard
    control_key: bytes  # Ed25519 (`pywg.mesh.auth`)
    addresses: tuple[str, ...]  # its tunnel addresses
    routes: tuple[str, ...]  # approved subnets and the devices it carries, behind it
    endpoints: tuple[Endpoint, ...]  # where it last said it can be reached
    node_id: int | None = None  # its address on the home relays (docs/relay.md)
    home_relay: int | None = None  # the number of its home relay, as it reported it
    exit_node: bool = False  # an approved exit node (`pywg.mesh.exits`): left out when not
    rotated_from: bytes | None = None  # its WireGuard key before its last rotation

    def to_json(self) -> JsonObject:
        data: JsonObject = {
            "name": self.name,
            "public_key": auth.b64(self.public_key),
            "control_key": auth.b64(self.control_key),
            "addresses": list(self.addresses),
            "routes": list(self.routes),
            "endpoints": [format_endpoint(e) for e in self.endpoints],
        }
        data = _with_home(data, self.node_id, self.home_relay)
        if self.exit_node:
            data["exit_node"] = True
        if self.rotated_from is not None:
            data["rotated_from"] = auth.b64(self.rotated_from)
        return data

    @classmethod
    def read(cls, fields: _Fields) -> PeerEntry:
        return cls(
            name=fields.text("name"),
            public_key=fields.key("public_key"),
            control_key=fields.key("control_key"),
            addresses=fields.addresses("addresses"),
            routes=fields.prefixes("routes"),
            endpoints=fields.endpoints("endpoints"),
            node_id=_node_id(fields),
            home_relay=_home_relay(fields),
            exit_node=fields.flag("exit_node"),
            rotated_from=fields.key("rotated_from") if fields.given("rotated_from") else None,
        )


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """A plain WireGuard device (docs/mesh.md, "Plain WireGuard devices"), as a roster names
    it: node `gateway` holds it as a peer; every other node reaches it through that node
    (its addresses are among the gateway's routes). `exit`: the gateway is also its exit
    to the internet."""

    name: str
    public_key: bytes  # WireGuard
    addresses: tuple[str, ...]  # its tunnel addresses: IPv4, IPv6
    gateway: str  # the name of the node that carries it
    exit: bool = False

    def to_json(self) -> JsonObject:
        data: JsonObject = {
            "name": self.name,
            "public_key": auth.b64(self.public_key),
            "addresses": list(self.addresses),
            "gateway": self.gateway,
        }
        if self.exit:
            data["exit"] = True
        return data

    @classmethod
    def read(cls, fields: _Fields) -> DeviceEntry:
        return cls(
            name=fields.text("name"),
            public_key=fields.key("public_key"),
            addresses=fields.addresses("addresses"),
            gateway=fields.text("gateway"),
            exit=fields.flag("exit"),
        )


@dataclass(frozen=True, slots=True)
class PathState:
    """How a node reaches one peer now (docs/webui.md, "Paths"): `path` is one of
    PATH_KINDS, `endpoint` where its WireGuard sends (a relayed one for "relay")."""

    peer: bytes  # the peer's WireGuard public key
    path: str
    endpoint: Endpoint | None = None

    def to_json(self) -> JsonObject:
        data: JsonObject = {"peer": auth.b64(self.peer), "path": self.path}
        if self.endpoint is not None:
            data["endpoint"] = format_endpoint(self.endpoint)
        return data

    @classmethod
    def read(cls, fields: _Fields) -> PathState:
        path = fields.text("path")
        if path not in PATH_KINDS:
            raise fields.error("path", f"must be one of {', '.join(PATH_KINDS)}")
        endpoint = None
        if fields.given("endpoint"):
            try:
                endpoint = endpoint_from_text(fields.get("endpoint"))
            except ValueError as exc:
                raise fields.error("endpoint", str(exc)) from None
        return cls(fields.key("peer"), path, endpoint)


def _path_states(fields: _Fields) -> tuple[PathState, ...] | None:
    """The optional `paths` of an update: at most MAX_PATHS."""
    if not fields.given("paths"):
        return None
    found = fields.objects("paths")
    if len(found) > MAX_PATHS:
        raise fields.error("paths", f"has more than {MAX_PATHS} entries")
    return tuple(PathState.read(item) for item in found)


# -- the messages ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Roster:
    """One member's view of the mesh (GET /v1/roster); `version` moves on every change."""

    version: int
    network: Networks
    me: NodeInfo  # "self" on the wire
    peers: tuple[PeerEntry, ...]
    relays: tuple[HomeRelay, ...] = ()  # the home relays ("relays", left out when none)
    devices: tuple[DeviceEntry, ...] = ()  # plain WireGuard devices (left out when none)
    domain: str | None = None  # the names' domain ("domain"; left out: dns.DEFAULT_DOMAIN)
    # the access policy's rules for traffic to this member ("rules", `pywg.policy.rules`'
    # compact rows; left out: no policy, everything passes; [] lets in only replies)
    rules: tuple[InboundRule, ...] | None = None

    def to_json(self) -> JsonObject:
        data: JsonObject = {
            "version": self.version,
            "network": self.network.to_json(),
            "self": self.me.to_json(),
            "peers": [peer.to_json() for peer in self.peers],
        }
        if self.relays:
            data["relays"] = [relay.to_json() for relay in self.relays]
        if self.devices:
            data["devices"] = [device.to_json() for device in self.devices]
        if self.domain is not None:
            data["domain"] = self.domain
        if self.rules is not None:
            data["rules"] = to_rows(self.rules)
        return data

    @classmethod
    def from_json(cls, data: object) -> Roster:
        fields = _Fields(data, "roster")
        return cls(
            version=fields.integer("version", 0, MAX_COUNT),
            network=Networks.read(fields.inner("network")),
            me=NodeInfo.read(fields.inner("self")),
            peers=tuple(PeerEntry.read(peer) for peer in fields.objects("peers")),
            relays=_home_relays(fields),
            devices=tuple(DeviceEntry.read(d) for d in fields.objects("devices"))
            if fields.given("devices")
            else (),
            domain=_domain(fields),
            rules=_rules(fields),
        )


def _rules(fields: _Fields) -> tuple[InboundRule, ...] | None:
    if not fields.given("rules"):
        return None
    try:
        return from_rows(fields.get("rules"))
    except RulesError as exc:
        raise fields.error("rules", str(exc)) from None


@dataclass(frozen=True, slots=True)
class RosterDelta:
    """What changed in a member's roster since version `base` (GET /v1/roster with
    ``delta=1``; `pywg.mesh.rosterdelta` applies it): its own entry, the peers and devices
    added or changed (whole entries), the peers and devices gone (by WireGuard key, by
    name), and the relays and the domain when they changed (None: as they were)."""

    version: int
    base: int
    me: NodeInfo  # "self" on the wire
    peers: tuple[PeerEntry, ...] = ()
    removed: tuple[bytes, ...] = ()  # WireGuard keys of peers gone
    devices: tuple[DeviceEntry, ...] = ()
    removed_devices: tuple[str, ...] = ()  # names of devices gone
    relays: tuple[HomeRelay, ...] | None = None
    domain: str | None = None

    def to_json(self) -> JsonObject:
        data: JsonObject = {
            "version": self.version,
            "base": self.base,
            "self": self.me.to_json(),
            "peers": [peer.to_json() for peer in self.peers],
            "removed": [auth.b64(key) for key in self.removed],
            "devices": [device.to_json() for device in self.devices],
            "removed_devices": list(self.removed_devices),
        }
        if self.relays is not None:
            data["relays"] = [relay.to_json() for relay in self.relays]
        if self.domain is not None:
            data["domain"] = self.domain
        return data

    @classmethod
    def from_json(cls, data: object) -> RosterDelta:
        fields = _Fields(data, "roster delta")
        return cls(
            version=fields.integer("version", 0, MAX_COUNT),
            base=fields.integer("base", 0, MAX_COUNT),
            me=NodeInfo.read(fields.inner("self")),
            peers=tuple(PeerEntry.read(peer) for peer in fields.objects("peers")),
            removed=fields.each("removed", _key),
            devices=tuple(DeviceEntry.read(d) for d in fields.objects("devices")),
            removed_devices=fields.texts("removed_devices"),
            relays=_home_relays(fields) if fields.given("relays") else None,
            domain=_domain(fields),
        )


def roster_answer(data: object) -> Roster | RosterDelta:
    """A roster long poll's answer: a `RosterDelta` when it names its base, else a `Roster`."""
    if isinstance(data, dict) and "base" in data:
        return RosterDelta.from_json(data)
    return Roster.from_json(data)


def _domain(fields: _Fields) -> str | None:
    if not fields.given("domain"):
        return None
    try:
        return check_domain(fields.text("domain"))
    except ValueError as exc:
        raise fields.error("domain", str(exc)) from None


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """A new node (POST /v1/join), signed with the control key it names."""

    token: str = field(repr=False)  # admits a node: not for logs
    name: str
    public_key: bytes  # WireGuard
    control_key: bytes  # Ed25519
    routes: tuple[str, ...]  # subnets it offers to route

    def to_json(self) -> JsonObject:
        return {
            "token": self.token,
            "name": self.name,
            "public_key": auth.b64(self.public_key),
            "control_key": auth.b64(self.control_key),
            "routes": list(self.routes),
        }

    @classmethod
    def from_json(cls, data: object) -> JoinRequest:
        fields = _Fields(data, "join request")
        return cls(
            token=fields.text("token"),
            name=fields.text("name"),
            public_key=fields.key("public_key"),
            control_key=fields.key("control_key"),
            routes=fields.texts("routes") if fields.given("routes") else (),
        )


@dataclass(frozen=True, slots=True)
class JoinAnswer:
    """The answer to a join: the node as admitted, the mesh, and the coordinator's key."""

    node: NodeInfo
    network: Networks
    coordinator_key: bytes  # Ed25519; its fingerprint is in the join token

    def to_json(self) -> JsonObject:
        info = {**self.node.to_json(), "network": self.network.to_json()}
        return {"self": info, "coordinator_key": auth.b64(self.coordinator_key)}

    @classmethod
    def from_json(cls, data: object) -> JoinAnswer:
        fields = _Fields(data, "join answer")
        info = fields.inner("self")
        return cls(
            node=NodeInfo.read(info),
            network=Networks.read(info.inner("network")),
            coordinator_key=fields.key("coordinator_key"),
        )


@dataclass(frozen=True, slots=True)
class RotateRequest:
    """A member's new keys (POST /v1/rotate), signed with its old control key; `proof` is
    the new control key's signature (`pywg.mesh.expiry.sign_proof`) for `time_ms`."""

    public_key: bytes  # the new WireGuard key
    control_key: bytes  # the new Ed25519 key
    time_ms: int
    proof: bytes = field(repr=False)

    def to_json(self) -> JsonObject:
        return {
            "public_key": auth.b64(self.public_key),
            "control_key": auth.b64(self.control_key),
            "time_ms": self.time_ms,
            "proof": auth.b64(self.proof),
        }

    @classmethod
    def from_json(cls, data: object) -> RotateRequest:
        fields = _Fields(data, "rotate request")
        proof = fields.text("proof")
        try:
            raw = auth.unb64(proof, 64)
        except auth.AuthError as exc:
            raise fields.error("proof", str(exc)) from None
        return cls(
            public_key=fields.key("public_key"),
            control_key=fields.key("control_key"),
            time_ms=fields.integer("time_ms", 0, MAX_TIME_MS),
            proof=raw,
        )


@dataclass(frozen=True, slots=True)
class RotateAnswer:
    """The answer to a rotation: the node with its new keys and their expiry."""

    node: NodeInfo

    def to_json(self) -> JsonObject:
        return {"self": self.node.to_json()}

    @classmethod
    def from_json(cls, data: object) -> RotateAnswer:
        return cls(NodeInfo.read(_Fields(data, "rotate answer").inner("self")))


@dataclass(frozen=True, slots=True)
class UpdateRequest:
    """A member's endpoints, advertised routes and home relay (POST /v1/update); None: left
    as they are. `home_relay` is the number of its home relay in the relay map, 0 for none.
    `paths`: how it reaches its peers now (kept by the coordinator for its admin, never
    in a roster)."""

    endpoints: tuple[Endpoint, ...] | None
    routes: tuple[str, ...] | None
    home_relay: int | None = None
    paths: tuple[PathState, ...] | None = None

    def to_json(self) -> JsonObject:
        data: JsonObject = {}
        if self.endpoints is not None:
            data["endpoints"] = [format_endpoint(e) for e in self.endpoints]
        if self.routes is not None:
            data["routes"] = list(self.routes)
        if self.home_relay is not None:
            data["home_relay"] = self.home_relay
        if self.paths is not None:
            data["paths"] = [p.to_json() for p in self.paths]
        return data

    @classmethod
    def from_json(cls, data: object) -> UpdateRequest:
        fields = _Fields(data, "update")
        return cls(
            endpoints=fields.endpoints("endpoints") if fields.given("endpoints") else None,
            routes=fields.texts("routes") if fields.given("routes") else None,
            home_relay=fields.integer("home_relay", 0, MAX_RELAY_INDEX)
            if fields.given("home_relay")
            else None,
            paths=_path_states(fields),
        )


@dataclass(frozen=True, slots=True)
class UpdateAnswer:
    version: int  # the roster version after the update

    def to_json(self) -> JsonObject:
        return {"version": self.version}

    @classmethod
    def from_json(cls, data: object) -> UpdateAnswer:
        return cls(_Fields(data, "update answer").integer("version", 0, MAX_COUNT))


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    nodes: int | None = None  # members; the coordinator tells no one (its metrics do)

    def to_json(self) -> JsonObject:
        if self.nodes is None:
            return {"ok": self.ok}
        return {"ok": self.ok, "nodes": self.nodes}

    @classmethod
    def from_json(cls, data: object) -> Health:
        fields = _Fields(data, "health")
        nodes = fields.integer("nodes", 0, MAX_COUNT) if fields.given("nodes") else None
        return cls(fields.boolean("ok"), nodes)


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """Any refusal, with its HTTP status: what went wrong, one line."""

    error: str

    def to_json(self) -> JsonObject:
        return {"error": self.error}

    @classmethod
    def from_json(cls, data: object) -> ErrorAnswer:
        return cls(_Fields(data, "error").text("error"))


@dataclass(frozen=True, slots=True)
class Member:
    """A member as a home relay knows it (docs/relay.md, "Identities")."""

    public_key: bytes  # WireGuard (X25519)
    control_key: bytes  # Ed25519: signs the node's associations with relays
    node_id: int  # 1..MAX_NODE_ID

    def __post_init__(self) -> None:
        if len(self.public_key) != KEY_SIZE or len(self.control_key) != KEY_SIZE:
            raise ValueError("a member's keys are 32 bytes")
        if not 1 <= self.node_id <= MAX_NODE_ID:
            raise ValueError(f"a node id is 1..{MAX_NODE_ID}")

    def to_json(self) -> JsonObject:
        return {
            "public_key": auth.b64(self.public_key),
            "control_key": auth.b64(self.control_key),
            "node_id": self.node_id,
        }

    @classmethod
    def read(cls, fields: _Fields) -> Member:
        return cls(
            fields.key("public_key"),
            fields.key("control_key"),
            fields.integer("node_id", 1, MAX_NODE_ID),
        )


@dataclass(frozen=True, slots=True)
class MembersList:
    """Every member, for a home relay (GET /v1/members, or `pywg relay serve --members` as a
    file, where the version may be left out); `version` is the roster's."""

    version: int
    members: tuple[Member, ...]

    def to_json(self) -> JsonObject:
        return {"version": self.version, "members": [m.to_json() for m in self.members]}

    @classmethod
    def from_json(cls, data: object) -> MembersList:
        fields = _Fields(data, "members")
        version = fields.integer("version", 0, MAX_COUNT) if fields.given("version") else 0
        return cls(version, tuple(Member.read(item) for item in fields.objects("members")))
