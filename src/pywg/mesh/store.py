"""The coordinator's state: nodes, their routes, join tokens, the mesh networks.

Theory of operation. One SQLite file (WAL, so the admin commands of
`pywg coordinator` can read and write it while the server runs), or one
PostgreSQL database shared by several coordinators (`pywg.mesh.postgres`,
docs/postgresql.md), holds (`database` says how the one logic here runs on
either):

- ``nodes``: one row a member, its ``id`` also its node id on the home relays
  (1..2^24-1, docs/relay.md): name (unique, case-insensitively), WireGuard
  public key (unique), control key (Ed25519 public), the tunnel addresses it
  was given, the endpoints it last reported, the number of the home relay it
  last reported (NULL: none), the time of its last accepted request (ms,
  `auth.RequestAuth.fresh` refuses anything not newer).
- ``routes``: the prefixes a node routes for others; each starts pending and
  reaches the other nodes only once approved. The default routes are there
  only as an exit node's offer, both together (`pywg.mesh.exits`).
- ``devices``: plain WireGuard devices (docs/mesh.md, "Plain WireGuard
  devices"): name (unique among nodes and devices alike), public key, the
  tunnel addresses it was given (from the same pool as the nodes'), its
  gateway node (removing the node removes its devices), whether that node is
  also its exit to the internet. No private key: `pywg coordinator device
  add` makes it and only prints it.
- ``node_tags``: the access policy's tags each node carries (``tag:NAME``;
  they go with the node).
- ``tokens``: join tokens, by the SHA-256 of their secret only
  (`auth.token_hash`); a single-use token is spent in the same transaction
  that adds the node.
- ``released``: node ids and addresses of removed nodes and devices, handed
  out again last, oldest first (`pywg.mesh.pool`, whose pointers through the
  fresh ones are in ``meta``).
- ``removed_nodes``: the ids of removed nodes, by the version that removed them;
  with each node's ``changed`` (the version of its last change) they tell what
  changed since a version in one indexed query (`Store.changes_since`).
- ``meta``: the mesh networks (fixed at first start), the names' domain, the access
  policy's text (``policy``, absent: no policy; docs/policy.md) and the roster
  *version*, a counter bumped by every change that alters any node's roster,
  whichever process made it. The coordinator watches it to wake long-polls
  (and the relays' long polls of the members with them).

Tables a file may have that nothing reads (``removals``, ``relay_pairs``)
are dropped when it is opened.

Every write is one transaction that no other writer overlaps (SQLite's
``BEGIN IMMEDIATE``, PostgreSQL's advisory lock); every method validates
its input and raises `StoreError` (bad input), `Conflict` (name, key or
address taken, networks differ), `NotFound` or `TokenRefused`.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from ..constants import MAX_RELAY_INDEX
from ..endpoint import format_endpoint
from ..policy import is_tag
from . import pool
from .database import Database, Listening, SqliteDatabase, get_meta, is_url, set_meta
from .dns import DEFAULT_DOMAIN, check_domain
from .exits import EXIT_ROUTES
from .expiry import DEFAULT_EXPIRY_DAYS, period_ms
from .relayproto import MAX_NODE_ID
from .schema import MAX_ENDPOINTS, Networks, SchemaError, endpoint_from_text

DB_NAME: Final = "coordinator.db"
SCHEMA_VERSION: Final = 1
DEFAULT_IPV4: Final = "100.64.0.0/10"  # RFC 6598 shared address space, all of it: room to grow
MAX_ROUTES: Final = 64
MAX_NAME: Final = 63
BUSY_TIMEOUT_MS: Final = 5000
MAX_POLICY: Final = 1 << 20  # characters of an access policy's text
MAX_TAGS: Final = 64  # policy tags of one node
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,63}")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_Net = TypeVar("_Net", ipaddress.IPv4Network, ipaddress.IPv6Network)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value NOT NULL
);
CREATE TABLE IF NOT EXISTS nodes (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    public_key BLOB NOT NULL UNIQUE CHECK (length(public_key) = 32),
    control_key BLOB NOT NULL CHECK (length(control_key) = 32),
    ipv4 TEXT NOT NULL UNIQUE,
    ipv6 TEXT NOT NULL UNIQUE,
    endpoints TEXT NOT NULL DEFAULT '[]',
    last_ms INTEGER,
    created_ms INTEGER NOT NULL,
    home_relay INTEGER
);
CREATE TABLE IF NOT EXISTS routes (
    node_id INTEGER NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    prefix TEXT NOT NULL,
    approved INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (node_id, prefix)
);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    reusable INTEGER NOT NULL,
    uses INTEGER NOT NULL DEFAULT 0,
    last_node INTEGER
);
CREATE TABLE IF NOT EXISTS devices (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    public_key BLOB NOT NULL UNIQUE CHECK (length(public_key) = 32),
    ipv4 TEXT NOT NULL UNIQUE,
    ipv6 TEXT NOT NULL UNIQUE,
    gateway INTEGER NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    exit INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS node_tags (
    node_id INTEGER NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (node_id, tag)
);
CREATE TABLE IF NOT EXISTS removed_nodes (
    version INTEGER NOT NULL,
    node_id INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS removed_nodes_by_version ON removed_nodes (version);
CREATE TABLE IF NOT EXISTS retired_keys (
    public_key BLOB PRIMARY KEY CHECK (length(public_key) = 32),
    control_key BLOB NOT NULL CHECK (length(control_key) = 32),
    node_id INTEGER NOT NULL,
    retired_ms INTEGER NOT NULL
);
"""


# columns added to a table after its first release: (table, column, declaration). A file
# made before one gets it at its next opening; code that does not know it ignores it.
_ADDED_COLUMNS: Final = (
    ("nodes", "home_relay", "INTEGER"),
    ("nodes", "keys_ms", "INTEGER"),  # when its keys were issued (join or rotation)
    ("nodes", "expires_ms", "INTEGER"),  # when they expire (NULL: never; pywg.mesh.expiry)
    ("nodes", "revoked", "INTEGER NOT NULL DEFAULT 0"),
    ("nodes", "previous_key", "BLOB"),  # the WireGuard key its last rotation retired
    ("nodes", "changed", "INTEGER NOT NULL DEFAULT 0"),  # the version of its last change
)

# indexes on added columns: made after them
_ADDED_INDEXES: Final = ("CREATE INDEX IF NOT EXISTS nodes_by_change ON nodes (changed)",)


# tables a file may have that no part of pywg reads: dropped at opening
_DROPPED_TABLES: Final = ("removals", "relay_pairs")


def _drop_tables(db: Database) -> None:
    for table in _DROPPED_TABLES:
        db.execute(f"DROP TABLE IF EXISTS {table}")


def _add_columns(db: Database) -> None:
    for table, column, declaration in _ADDED_COLUMNS:
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


class StoreError(ValueError):
    """Bad input to the store; str() says what, fit for an HTTP 400 or a CLI error line."""


class Conflict(StoreError):
    """A name, key or address is taken, or the networks differ from the stored ones."""


class NotFound(StoreError):
    """No such node (or route)."""


class TokenRefused(StoreError):
    """The join token is unknown, expired or already used."""


class KeyRefused(StoreError):
    """The keys may not be used: revoked or retired by a rotation (pywg.mesh.expiry)."""


def _check_not_retired(db: Database, public_key: bytes, control_key: bytes) -> None:
    """KeyRefused if either key was retired (rotated away from, or revoked): never again."""
    row = db.execute(
        "SELECT 1 FROM retired_keys WHERE public_key = ? OR control_key = ?",
        (public_key, control_key),
    ).fetchone()
    if row is not None:
        raise KeyRefused("these keys were retired or revoked and can never be used again")


def now_ms() -> int:
    return int(time.time() * 1000)


# routes.approved: pending, approved, refused by the admin (kept while advertised, so the
# node's next report does not make it pending again)
PENDING: Final = 0
APPROVED: Final = 1
REFUSED: Final = 2
ADMIN_SECRETS: Final = ("admin_password", "admin_token")  # meta keys: their hashes (webui)


@dataclass(frozen=True, slots=True)
class Route:
    prefix: str
    approved: bool
    refused: bool = False


@dataclass(frozen=True, slots=True)
class Node:
    id: int
    name: str
    public_key: bytes
    control_key: bytes
    ipv4: str
    ipv6: str
    endpoints: tuple[str, ...]
    routes: tuple[Route, ...]
    last_ms: int | None
    created_ms: int
    home_relay: int | None = None  # the number of its home relay, as it reported it
    keys_ms: int | None = None  # when its current keys were issued (join or rotation)
    expires_ms: int | None = None  # when they expire (None: never)
    revoked: bool = False  # by the admin, for good
    previous_key: bytes | None = None  # the WireGuard key its last rotation retired

    def active(self, now: int) -> bool:
        """Whether its keys are good at `now` (ms): neither revoked nor expired."""
        return not self.revoked and (self.expires_ms is None or now < self.expires_ms)

    @property
    def approved_routes(self) -> list[str]:
        return [r.prefix for r in self.routes if r.approved]

    @property
    def pending_routes(self) -> list[str]:
        return [r.prefix for r in self.routes if not r.approved and not r.refused]

    @property
    def refused_routes(self) -> list[str]:
        return [r.prefix for r in self.routes if r.refused]


@dataclass(frozen=True, slots=True)
class Token:
    hash: str
    created_ms: int
    expires_ms: int
    reusable: bool
    uses: int


@dataclass(frozen=True, slots=True)
class Device:
    """A plain WireGuard device: its gateway node carries its traffic into the mesh."""

    id: int
    name: str
    public_key: bytes
    ipv4: str
    ipv6: str
    gateway: str  # the gateway node's name
    exit: bool  # the gateway is also its exit to the internet
    created_ms: int

    @property
    def prefixes(self) -> tuple[str, str]:
        """Its addresses as host prefixes (/32, /128): its gateway's allowed IPs for it."""
        return f"{self.ipv4}/32", f"{self.ipv6}/128"


@dataclass(frozen=True, slots=True)
class Changes:
    """What `Store.changes_since` found: at `version`, the nodes changed (all of them when
    `complete`), the ids of those removed, the devices of the nodes changed."""

    version: int
    complete: bool
    nodes: list[Node]
    removed: list[int]
    devices: list[Device]


def _advertised(db: Database, name: str, wanted: Sequence[str]) -> tuple[int, dict[str, int]]:
    """Node `name`'s id and its advertised routes (prefix -> approval); NotFound if there is
    no such node or it does not advertise every prefix in `wanted`."""
    row = db.execute("SELECT id FROM nodes WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise NotFound(f"no node named {name!r}")
    routes = db.execute("SELECT prefix, approved FROM routes WHERE node_id = ?", (row[0],))
    advertised = {str(prefix): int(state) for prefix, state in routes}
    missing = [p for p in wanted if p not in advertised]
    if missing:
        raise NotFound(f"{name} does not advertise {', '.join(missing)}")
    return int(row[0]), advertised


def _check_device_free(db: Database, name: str, public_key: bytes) -> None:
    """Conflict if a device has `name` (nodes and devices share their names: NAME.DOMAIN)
    or `public_key` (a gateway holds devices and nodes alike as WireGuard peers)."""
    taken = db.execute(
        "SELECT name FROM devices WHERE name = ? OR public_key = ?", (name, public_key)
    ).fetchone()
    if taken is not None:
        raise Conflict(f"the name or key of device {taken[0]!r} is taken")


# -- validation --------------------------------------------------------------------------


def check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise StoreError(f"a node name is 1-{MAX_NAME} characters of A-Z a-z 0-9 - _ .")
    return name


def check_key(key: object, what: str) -> bytes:
    if not isinstance(key, bytes) or len(key) != 32:
        raise StoreError(f"{what} must be 32 bytes")
    return key


def parse_endpoint(text: object) -> str:
    """An endpoint a node may report, in canonical form; StoreError otherwise.

    The API's form (`schema.endpoint_from_text`), and a unicast address with
    a port other than 0: something a peer could send to.
    """
    try:
        host, port = endpoint_from_text(text)
    except SchemaError as exc:
        raise StoreError(str(exc)) from None
    address = ipaddress.ip_address(host)
    if port == 0:
        raise StoreError(f"port 0 in endpoint {text!r}")
    if address.is_unspecified or address.is_multicast:
        raise StoreError(f"endpoint {text!r} is not a unicast address")
    return format_endpoint((host, port))


def check_endpoints(endpoints: object) -> list[str]:
    return _unique(endpoints, "endpoints", MAX_ENDPOINTS, parse_endpoint)


def parse_prefix(text: object, networks: Networks | None = None, *, exit_ok: bool = False) -> str:
    """A routed prefix ("198.18.50.0/24") in canonical form; StoreError otherwise.

    Refused: host bits set, /0 (unless `exit_ok`: an exit node's offer),
    multicast, loopback, and anything overlapping the mesh's own networks (a
    route there would take other nodes' addresses).
    """
    if not isinstance(text, str) or len(text) > 64:
        raise StoreError("a route is a string prefix like 198.18.50.0/24")
    try:
        net: IPNetwork = ipaddress.ip_network(text, strict=True)
    except ValueError:
        raise StoreError(f"not a network prefix (host bits must be zero): {text[:64]!r}") from None
    if "/" not in text:
        raise StoreError(f"a route needs a prefix length: {text!r}")
    if net.prefixlen == 0 and exit_ok:
        return str(net)
    if net.prefixlen == 0:
        raise StoreError(
            f"a default route is not allowed: {text!r} (an exit node offers both: "
            f"{' and '.join(EXIT_ROUTES)})"
        )
    if net.is_multicast or net.is_loopback:
        raise StoreError(f"not a routable unicast prefix: {text!r}")
    if networks is not None:
        own = networks.ipv4 if net.version == 4 else networks.ipv6
        if net.overlaps(own):
            raise StoreError(f"route {text!r} overlaps the mesh network {own}")
    return str(net)


def check_routes(routes: object, networks: Networks | None = None) -> list[str]:
    """Advertised routes; the default routes only both together (an exit node's offer)."""
    exit_ok = isinstance(routes, list | tuple) and all(r in routes for r in EXIT_ROUTES)
    return _unique(
        routes, "routes", MAX_ROUTES, lambda item: parse_prefix(item, networks, exit_ok=exit_ok)
    )


def _unique(items: object, what: str, most: int, parse: Callable[[object], str]) -> list[str]:
    """Each of `items` (a list of at most `most`) through `parse`, without repeats."""
    if not isinstance(items, list | tuple):
        raise StoreError(f"{what} must be a list of strings")
    if len(items) > most:
        raise StoreError(f"at most {most} {what}")
    return list(dict.fromkeys(parse(item) for item in items))


def check_ipv4_network(text: str) -> ipaddress.IPv4Network:
    return _check_network(ipaddress.IPv4Network, text, 8, 30)


def check_ipv6_network(text: str) -> ipaddress.IPv6Network:
    return _check_network(ipaddress.IPv6Network, text, 16, 120)


def _check_network(kind: type[_Net], text: str, shortest: int, longest: int) -> _Net:
    """A mesh network of type `kind`, its prefix length within [shortest, longest]."""
    family = "IPv4" if kind is ipaddress.IPv4Network else "IPv6"
    try:
        net = kind(text, strict=True)
    except ValueError as exc:
        raise StoreError(f"not an {family} network: {text!r} ({exc})") from None
    if not shortest <= net.prefixlen <= longest:
        raise StoreError(
            f"the {family} network must be between /{shortest} and /{longest}, not /{net.prefixlen}"
        )
    return net


def generate_ula(ntp_time: int | None = None, node: int | None = None) -> ipaddress.IPv6Network:
    """A unique local /64 (RFC 4193 §3.2.2): fd00::/8, a 40-bit Global ID, subnet 0.

    The Global ID is the low 40 bits of SHA-1 over the time in 64-bit NTP
    format and an EUI-64 of this machine (from a MAC address, §3.2.2 step 2).
    """
    if ntp_time is None:
        unix = time.time()
        seconds = int(unix) + 2_208_988_800  # NTP era 0 starts in 1900
        ntp_time = (seconds << 32) | int((unix % 1) * (1 << 32))
    mac = uuid.getnode() if node is None else node  # 48 bits
    # EUI-48 to modified EUI-64 (RFC 4291 appendix A): FFFE in the middle, U/L bit flipped
    eui64 = ((mac >> 24) << 40) | (0xFFFE << 24) | (mac & 0xFFFFFF)
    eui64 ^= 0x02 << 56
    digest = hashlib.sha1(
        ntp_time.to_bytes(8, "big") + eui64.to_bytes(8, "big"), usedforsecurity=False
    ).digest()
    global_id = int.from_bytes(digest[-5:], "big")
    prefix = (0xFD << 120) | (global_id << 80)
    return ipaddress.IPv6Network((prefix, 64))


# -- the file ----------------------------------------------------------------------------


def ensure_state_dir(path: str) -> None:
    """Create the state directory, mode 0700, if it is not there."""
    if os.path.isdir(path):
        return
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)  # makedirs' mode went through the umask


def db_path(state_dir: str) -> str:
    return os.path.join(state_dir, DB_NAME)


class Store:
    """The coordinator's state, in SQLite or PostgreSQL (`database`). Safe to share between
    threads (one lock).

    The interface of the mesh's state: every method below, the same on both
    databases. `state_dir` holds the SQLite file, unless `database` names a
    PostgreSQL database (``postgresql://...``, `pywg.mesh.postgres`), which
    then holds the state of every coordinator serving the mesh; the directory
    keeps the coordinator's key and certificate either way.

    `create=False` refuses to make a new state (the admin commands: a typo in
    --state should not start an empty mesh).
    """

    def __init__(self, state_dir: str, *, create: bool = True, database: str | None = None) -> None:
        self.state_dir = state_dir
        self._lock = threading.RLock()
        if database is not None:
            if not is_url(database):
                raise StoreError("--database takes a postgresql:// URL")
            from .postgres import PostgresDatabase

            if create:
                ensure_state_dir(state_dir)  # the coordinator's key and certificate
            try:
                self._db: Database = PostgresDatabase(database, create=create)
            except LookupError as exc:
                raise NotFound(f"{exc} (start `pywg coordinator serve --database` first)") from None
            self.path = self._db.where
            return
        self.path = db_path(state_dir)
        if create:
            ensure_state_dir(state_dir)
            # O_EXCL: an existing database is never opened and closed behind SQLite's
            # back (closing any descriptor drops this process's POSIX locks on it:
            # sqlite.org/howtocorrupt.html §2.2)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                pass
            else:
                os.fchmod(fd, 0o600)  # a new file: not left to the umask
                os.close(fd)
        elif not os.path.isfile(self.path):
            raise NotFound(
                f"no coordinator state in {state_dir} (start `pywg coordinator serve` first)"
            )
        self._db = SqliteDatabase(self.path, BUSY_TIMEOUT_MS)
        try:
            self._prepare_sqlite()
        except BaseException:
            self._db.close()
            raise

    def _prepare_sqlite(self) -> None:
        """The SQLite file's settings, and its tables made or migrated (`_SCHEMA`)."""
        self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")  # spent tokens, last request times
        self._db.execute("PRAGMA foreign_keys = ON")
        with self._write() as db:
            found = db.execute("PRAGMA user_version").fetchone()[0]
            if found > SCHEMA_VERSION:
                raise StoreError(f"{self.path} is from a newer pywg (schema {found})")
            for statement in (_SCHEMA + ";" + pool.SCHEMA).split(";"):
                if statement.strip():
                    db.execute(statement)
            _add_columns(db)
            for statement in _ADDED_INDEXES:
                db.execute(statement)
            _drop_tables(db)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('version', 0)")

    @property
    def database(self) -> Database:
        """The database under the store (`pywg.mesh.migrate` copies between two)."""
        return self._db

    def listen(self, heard: Callable[[int], None]) -> Listening | None:
        """Call `heard(version)` from another thread whenever any process commits a new
        roster version; None where the database sends no notice (SQLite: poll `version`)."""
        return self._db.listen(heard)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[Database]:
        """One write transaction, no other writer's overlapping it (`Database.begin_write`)."""
        with self._lock:
            self._db.begin_write()
            try:
                yield self._db
            except BaseException:
                self._db.rollback()
                raise
            self._db.commit()

    def _bump(self, db: Database) -> int:
        return db.bump_version()

    def _bump_nodes(self, db: Database, node_ids: Iterable[int] | None) -> int:
        """Move the version and mark the nodes whose roster entries it changes (None: all)
        with it: `changes_since` finds them by that mark."""
        version = self._bump(db)
        if node_ids is None:
            db.execute("UPDATE nodes SET changed = ?", (version,))
        else:
            db.executemany(
                "UPDATE nodes SET changed = ? WHERE id = ?", [(version, i) for i in node_ids]
            )
        return version

    # -- meta ------------------------------------------------------------------------------

    def version(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        return int(row[0])

    def networks(self) -> Networks | None:
        with self._lock:
            rows = dict(
                self._db.execute("SELECT key, value FROM meta WHERE key IN ('ipv4', 'ipv6')")
            )
        if "ipv4" not in rows or "ipv6" not in rows:
            return None
        return Networks(
            ipaddress.IPv4Network(str(rows["ipv4"])), ipaddress.IPv6Network(str(rows["ipv6"]))
        )

    def init_networks(self, ipv4: str | None = None, ipv6: str | None = None) -> Networks:
        """The mesh networks: stored at first start (defaults: DEFAULT_IPV4, a new ULA /64),
        then fixed; Conflict if `ipv4`/`ipv6` are given and differ from the stored ones."""
        want4 = check_ipv4_network(ipv4) if ipv4 is not None else None
        want6 = check_ipv6_network(ipv6) if ipv6 is not None else None
        with self._write() as db:
            rows = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('ipv4', 'ipv6')"))
            for key, want in (("ipv4", want4), ("ipv6", want6)):
                if key in rows and want is not None and str(want) != rows[key]:
                    raise Conflict(
                        f"the mesh {key} network is {rows[key]}, fixed at first start; "
                        f"it cannot change to {want}"
                    )
            if "ipv4" not in rows:
                net4 = want4 or check_ipv4_network(DEFAULT_IPV4)
                db.execute("INSERT INTO meta (key, value) VALUES ('ipv4', ?)", (str(net4),))
            if "ipv6" not in rows:
                net6 = want6 or generate_ula()
                db.execute("INSERT INTO meta (key, value) VALUES ('ipv6', ?)", (str(net6),))
        networks = self.networks()
        assert networks is not None
        return networks

    def check_identity(self, public_key: bytes, pin: bytes | None) -> None:
        """The coordinator's public key and the pin of its self-made certificate (None: none)
        are the mesh's: stored by the first coordinator, Conflict for one that differs (the
        coordinators of one mesh sign with one key and serve one pinned certificate)."""
        wanted = {"coordinator_key": public_key.hex(), "tls_pin": pin.hex() if pin else "-"}
        with self._write() as db:
            for key, value in wanted.items():
                stored = get_meta(db, key)
                if stored is None:
                    set_meta(db, key, value)
                elif stored != value:
                    what = "key" if key == "coordinator_key" else "self-made TLS certificate"
                    raise Conflict(
                        f"this coordinator's {what} is not the one of the mesh in {self.path}: "
                        "copy coordinator.key, tls.crt and tls.key from the state directory "
                        "of the first coordinator (docs/postgresql.md)"
                    )

    def _networks_or_fail(self) -> Networks:
        networks = self.networks()
        if networks is None:
            raise StoreError("the mesh networks are not set (start `pywg coordinator serve`)")
        return networks

    def init_domain(self, domain: str | None = None) -> str:
        """The names' domain (docs/mesh.md, "Names"): `domain` if given (kept, and the
        roster version moved when it changes it), else the stored one, else DEFAULT_DOMAIN."""
        want = None
        if domain is not None:
            try:
                want = check_domain(domain)
            except ValueError as exc:
                raise StoreError(f"--domain: {exc}") from None
        with self._write() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'domain'").fetchone()
            stored = str(row[0]) if row is not None else None
            if want is not None and want != stored:
                set_meta(db, "domain", want)
                if stored is not None:
                    self._bump(db)
                stored = want
        return stored or DEFAULT_DOMAIN

    # -- tokens ----------------------------------------------------------------------------

    def add_token(
        self, token_hash: str, expires_ms: int, *, reusable: bool = False, now: int | None = None
    ) -> None:
        if not re.fullmatch(r"[0-9a-f]{64}", token_hash):
            raise StoreError("a token hash is 64 lowercase hexadecimal digits")
        created = now_ms() if now is None else now
        with self._write() as db:
            db.execute("DELETE FROM tokens WHERE expires_ms < ?", (created,))
            db.execute(
                "INSERT INTO tokens (hash, created_ms, expires_ms, reusable) VALUES (?, ?, ?, ?)",
                (token_hash, created, expires_ms, int(reusable)),
            )

    def tokens(self) -> list[Token]:
        with self._lock:
            rows = self._db.execute(
                "SELECT hash, created_ms, expires_ms, reusable, uses FROM tokens "
                "ORDER BY created_ms"
            ).fetchall()
        return [Token(h, c, e, bool(r), u) for h, c, e, r, u in rows]

    def revoke_token(self, token_hash: str) -> None:
        """Delete a token: no node joins with it from now on (NotFound if there is none)."""
        with self._write() as db:
            if db.execute("DELETE FROM tokens WHERE hash = ?", (token_hash,)).rowcount != 1:
                raise NotFound("no such token (expired, or revoked already)")

    # -- the access policy (pywg.mesh.access) ----------------------------------------------

    def policy(self) -> str | None:
        """The access policy's text as set (None: no policy, everyone reaches everyone)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'policy'").fetchone()
        return None if row is None else str(row[0])

    def set_policy(self, text: str | None) -> int:
        """Store the policy's text (checked by `pywg.mesh.access`; None: no policy) and move
        the roster version, so that every node gets its rules; the new version."""
        if text is not None and (not isinstance(text, str) or len(text) > MAX_POLICY):
            raise StoreError(f"a policy is a text of at most {MAX_POLICY} characters")
        with self._write() as db:
            if text is None:
                db.execute("DELETE FROM meta WHERE key = 'policy'")
            else:
                set_meta(db, "policy", text)
            return self._bump(db)

    def tags(self) -> dict[str, frozenset[str]]:
        """Node name -> the policy tags it carries (nodes without any left out)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT n.name, t.tag FROM node_tags t JOIN nodes n ON n.id = t.node_id"
            ).fetchall()
        found: dict[str, set[str]] = {}
        for name, tag in rows:
            found.setdefault(str(name), set()).add(str(tag))
        return {name: frozenset(tags) for name, tags in found.items()}

    def set_tags(self, name: str, tags: Iterable[str]) -> Node:
        """Give node `name` exactly `tags` (each ``tag:NAME``; none: no tags) and move the
        roster version (rules by tag change); the node. They go with the node."""
        wanted = sorted(set(tags))
        bad = [t for t in wanted if not isinstance(t, str) or not is_tag(t)]
        if bad or len(wanted) > MAX_TAGS:
            raise StoreError(f"tags are at most {MAX_TAGS} of tag:NAME, not {bad or wanted}")
        with self._write() as db:
            found = self._select("WHERE name = ?", (name,))
            if not found:
                raise NotFound(f"no node named {name!r}")
            db.execute("DELETE FROM node_tags WHERE node_id = ?", (found[0].id,))
            db.executemany(
                "INSERT INTO node_tags (node_id, tag) VALUES (?, ?)",
                [(found[0].id, tag) for tag in wanted],
            )
            self._bump(db)
        return found[0]

    # -- the admin's secrets (pywg.mesh.webui.passwords) ------------------------------------

    def admin_secret(self, kind: str) -> str | None:
        """The stored hash of an admin secret (one of ADMIN_SECRETS), None if there is none."""
        if kind not in ADMIN_SECRETS:
            raise StoreError(f"no admin secret {kind!r}")
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (kind,)).fetchone()
        return None if row is None else str(row[0])

    def set_admin_secret(self, kind: str, hashed: str) -> None:
        if kind not in ADMIN_SECRETS:
            raise StoreError(f"no admin secret {kind!r}")
        with self._write() as db:
            set_meta(db, kind, hashed)

    def _check_token(self, db: Database, token_hash: str, now: int, node_id: int | None) -> None:
        row = db.execute(
            "SELECT expires_ms, reusable, uses, last_node FROM tokens WHERE hash = ?",
            (token_hash,),
        ).fetchone()
        if row is None:
            raise TokenRefused("unknown join token")
        expires, reusable, uses, last_node = row
        if expires <= now:
            raise TokenRefused("the join token has expired")
        # a used single-use token still lets the node it admitted repeat its join
        if not reusable and uses > 0 and (node_id is None or last_node != node_id):
            raise TokenRefused("the join token has been used")

    def check_join_token(self, token_hash: str, public_key: bytes, now: int | None = None) -> None:
        """TokenRefused unless the token admits the node with `public_key` now (what `join`
        checks first; this is for refusing a request before anything else of it is read)."""
        with self._lock:
            row = self._db.execute(
                "SELECT id FROM nodes WHERE public_key = ?", (public_key,)
            ).fetchone()
            when = now_ms() if now is None else now
            self._check_token(self._db, token_hash, when, None if row is None else int(row[0]))

    # -- nodes -----------------------------------------------------------------------------

    def join(
        self,
        token_hash: str,
        name: str,
        public_key: bytes,
        control_key: bytes,
        routes: Sequence[str],
        *,
        time_ms: int,
        now: int | None = None,
        auto_approve: bool = False,
    ) -> tuple[Node, bool]:
        """Admit a node with a join token: (its record, whether it is new).

        A node already there with the same public and control key gets its
        record back (the token is checked, not spent); if its keys expired, the
        token (then spent) issues them anew, with a new expiry, and it is new
        again to the others. A revoked node, or retired keys, are refused
        (`KeyRefused`). The request's time becomes the node's last accepted
        request time. The token is checked before the routes: a refusal for a
        stranger names none of the mesh.
        """
        check_name(name)
        check_key(public_key, "public key")
        check_key(control_key, "control key")
        networks = self._networks_or_fail()
        when = now_ms() if now is None else now
        with self._write() as db:
            _check_not_retired(db, public_key, control_key)
            row = db.execute(
                "SELECT id, control_key, revoked, expires_ms FROM nodes WHERE public_key = ?",
                (public_key,),
            ).fetchone()
            if row is not None:
                node_id = row[0]
                created = spent = self._rejoin(db, row, token_hash, control_key, (time_ms, when))
            else:
                self._check_token(db, token_hash, when, None)
                prefixes = check_routes(list(routes), networks)
                node_id = self._insert_node(
                    db, networks, (name, public_key, control_key), time_ms, when
                )
                db.executemany(
                    "INSERT INTO routes (node_id, prefix, approved) VALUES (?, ?, ?)",
                    [(node_id, p, int(auto_approve)) for p in prefixes],
                )
                self._issue_keys(db, node_id, when)
                self._bump_nodes(db, [node_id])
                created = spent = True
            db.execute(
                "UPDATE tokens SET uses = uses + ?, last_node = ? WHERE hash = ?",
                (int(spent), node_id, token_hash),
            )
        node = self.node_by_id(int(node_id or 0))
        assert node is not None
        return node, created

    def _rejoin(
        self,
        db: Database,
        row: tuple[int, bytes, int, int | None],
        token_hash: str,
        control_key: bytes,
        times: tuple[int, int],
    ) -> bool:
        """The join of a node already there (`row`: id, control key, revoked, expiry) with
        `token_hash` at `times` (the request's, now); whether its keys were renewed (they
        had expired; the token is then spent)."""
        node_id, control, revoked, expires = row
        time_ms, when = times
        if revoked:
            raise KeyRefused("this node was revoked: its keys cannot join again")
        renew = expires is not None and expires <= when  # expired: a new token renews
        self._check_token(db, token_hash, when, None if renew else node_id)
        if bytes(control) != control_key:
            raise Conflict("this public key has joined with another control key")
        db.execute("UPDATE nodes SET last_ms = ? WHERE id = ?", (time_ms, node_id))
        if renew:
            self._issue_keys(db, node_id, when)
            self._bump_nodes(db, [node_id])
        return renew

    def _insert_node(
        self,
        db: Database,
        networks: Networks,
        who: tuple[str, bytes, bytes],
        time_ms: int,
        when: int,
    ) -> int:
        """A new node's row (`who`: name, public key, control key) with free addresses
        (`pool`: the next fresh ones, else the longest free); its id, which is also its
        node id on the home relays (handed out the same way)."""
        name, public_key, control_key = who
        taken = db.execute("SELECT name FROM nodes WHERE name = ?", (name,)).fetchone()
        if taken is not None:
            raise Conflict(f"the name {taken[0]!r} is taken")
        _check_device_free(db, name, public_key)
        ipv4, ipv6 = self._free_addresses(db, networks)
        try:
            node_id = pool.take_node_id(db, MAX_NODE_ID)
        except pool.Exhausted:
            raise StoreError("no node id left for a new node") from None
        db.execute(
            "INSERT INTO nodes (id, name, public_key, control_key, ipv4, ipv6, last_ms, "
            "created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (node_id, name, public_key, control_key, ipv4, ipv6, time_ms, when),
        )
        return node_id

    @staticmethod
    def _free_addresses(db: Database, networks: Networks) -> tuple[str, str]:
        """A free host address of each network (`pool.take_addresses`)."""
        try:
            return pool.take_addresses(db, networks)
        except pool.Exhausted as exc:
            net = networks.ipv4 if str(exc) == "ipv4" else networks.ipv6
            raise Conflict(f"no free address left in {net}") from None

    def _release(self, db: Database, node: Node | None, devices: list[Device]) -> None:
        """The id and addresses of a node and devices being removed: free again, late."""
        networks = self._networks_or_fail()
        for ipv4, ipv6 in [(d.ipv4, d.ipv6) for d in devices] + (
            [(node.ipv4, node.ipv6)] if node is not None else []
        ):
            pool.release_addresses(db, networks, ipv4, ipv6)
        if node is not None:
            pool.release(db, "node_id", node.id)

    def _load(self, rows: Iterable[tuple[object, ...]]) -> list[Node]:
        nodes = []
        for row in rows:
            node_id, name, pub, control, ipv4, ipv6, endpoints, last, created, home = row[:10]
            keys_ms, expires, revoked, previous = row[10:]
            assert isinstance(node_id, int)
            routes = self._db.execute(
                "SELECT prefix, approved FROM routes WHERE node_id = ? ORDER BY rowid",
                (node_id,),
            ).fetchall()
            nodes.append(
                Node(
                    id=node_id,
                    name=str(name),
                    public_key=bytes(pub),  # type: ignore[call-overload]
                    control_key=bytes(control),  # type: ignore[call-overload]
                    ipv4=str(ipv4),
                    ipv6=str(ipv6),
                    endpoints=tuple(json.loads(str(endpoints))),
                    routes=tuple(Route(str(p), a == APPROVED, a == REFUSED) for p, a in routes),
                    last_ms=last if isinstance(last, int) else None,
                    created_ms=int(created),  # type: ignore[call-overload]
                    home_relay=home if isinstance(home, int) else None,
                    keys_ms=keys_ms if isinstance(keys_ms, int) else None,
                    expires_ms=expires if isinstance(expires, int) else None,
                    revoked=bool(revoked),
                    previous_key=bytes(previous) if isinstance(previous, bytes) else None,
                )
            )
        return nodes

    _COLUMNS = (
        "id, name, public_key, control_key, ipv4, ipv6, endpoints, last_ms, created_ms, home_relay,"
        " keys_ms, expires_ms, revoked, previous_key"
    )

    def _select(self, where: str = "", args: tuple[object, ...] = ()) -> list[Node]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {self._COLUMNS} FROM nodes {where} ORDER BY name", args
            ).fetchall()
            return self._load(rows)

    def nodes(self) -> list[Node]:
        return self._select()

    def snapshot(self) -> tuple[int, list[Node]]:
        """The roster version and every node, read in one transaction (consistent)."""
        with self._lock:
            self._db.begin_read()
            try:
                version = self._db.execute("SELECT value FROM meta WHERE key = 'version'")
                number = int(version.fetchone()[0])
                return number, self._select()
            finally:
                self._db.commit()

    def changes_since(self, since: int) -> Changes:
        """What changed after version `since`, read in one transaction: the nodes marked
        with a later version (`_bump_nodes`), the devices they carry, the ids of nodes
        removed since. Everything (`Changes.complete`) when `since` is not a version of
        this file (negative, ahead of it) or a change marked no node."""
        with self._lock:
            self._db.begin_read()
            try:
                row = self._db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
                version = int(row[0])
                if 0 <= since <= version:
                    nodes = self._select("WHERE changed > ?", (since,))
                    removed = self._db.execute(
                        "SELECT node_id FROM removed_nodes WHERE version > ? ORDER BY version",
                        (since,),
                    ).fetchall()
                    if nodes or removed or since == version:
                        devices = self.devices("WHERE n.changed > ?", (since,))
                        return Changes(version, False, nodes, [r[0] for r in removed], devices)
                return Changes(version, True, self._select(), [], self.devices())
            finally:
                self._db.commit()

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM nodes").fetchone()[0])

    def node_by_id(self, node_id: int) -> Node | None:
        found = self._select("WHERE id = ?", (node_id,))
        return found[0] if found else None

    def node_by_key(self, public_key: bytes) -> Node | None:
        found = self._select("WHERE public_key = ?", (public_key,))
        return found[0] if found else None

    def node_by_name(self, name: str) -> Node | None:
        found = self._select("WHERE name = ?", (name,))
        return found[0] if found else None

    def accept_request(self, node_id: int, time_ms: int) -> bool:
        """Record a request's time as the node's newest, if it is newer (False: it is not,
        or the node is gone). Replays are `auth.ReplayGuard`'s to refuse; this record is its
        floor after a restart."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE nodes SET last_ms = ? WHERE id = ? AND (last_ms IS NULL OR last_ms < ?)",
                (time_ms, node_id, time_ms),
            )
            return cursor.rowcount == 1

    def update(
        self,
        node_id: int,
        *,
        endpoints: Sequence[str] | None = None,
        routes: Sequence[str] | None = None,
        home_relay: int | None = None,
        auto_approve: bool = False,
    ) -> int:
        """Replace a node's endpoints, advertised routes and/or home relay (0: none; None:
        each left as it is); the roster version after.

        Routes approved before and still advertised stay approved; new ones
        start pending (approved with `auto_approve`). The version moves only
        if something changed.
        """
        new_endpoints = check_endpoints(list(endpoints)) if endpoints is not None else None
        new_routes = (
            check_routes(list(routes), self._networks_or_fail()) if routes is not None else None
        )
        if home_relay is not None and not 0 <= home_relay <= MAX_RELAY_INDEX:
            raise StoreError(f"a home relay number is 0..{MAX_RELAY_INDEX}")
        with self._write() as db:
            row = db.execute(
                "SELECT endpoints, home_relay FROM nodes WHERE id = ?", (node_id,)
            ).fetchone()
            if row is None:
                raise NotFound("no such node")
            changed = False
            if new_endpoints is not None and json.loads(row[0]) != new_endpoints:
                db.execute(
                    "UPDATE nodes SET endpoints = ? WHERE id = ?",
                    (json.dumps(new_endpoints), node_id),
                )
                changed = True
            if home_relay is not None and row[1] != (home_relay or None):
                db.execute(
                    "UPDATE nodes SET home_relay = ? WHERE id = ?", (home_relay or None, node_id)
                )
                changed = True
            if new_routes is not None:
                changed |= self._replace_routes(db, node_id, new_routes, auto_approve)
            if changed:
                return self._bump_nodes(db, [node_id])
            return int(db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()[0])

    @staticmethod
    def _replace_routes(db: Database, node_id: int, routes: list[str], auto_approve: bool) -> bool:
        """A node's advertised routes are `routes` (the approved ones stay approved);
        whether they changed."""
        old = dict(
            db.execute(
                "SELECT prefix, approved FROM routes WHERE node_id = ? ORDER BY rowid", (node_id,)
            ).fetchall()
        )
        if list(old) == routes:
            return False
        db.execute("DELETE FROM routes WHERE node_id = ?", (node_id,))
        db.executemany(
            "INSERT INTO routes (node_id, prefix, approved) VALUES (?, ?, ?)",
            [(node_id, p, old.get(p) or int(auto_approve)) for p in routes],
        )
        return True

    def approve(self, name: str, prefixes: Sequence[str]) -> list[str]:
        """Approve advertised routes of a node; the ones among them that were pending."""
        if not prefixes:
            raise StoreError("name at least one prefix to approve")
        wanted = [parse_prefix(p, exit_ok=True) for p in prefixes]
        with self._write() as db:
            node_id, advertised = _advertised(db, name, wanted)
            newly = [p for p in dict.fromkeys(wanted) if advertised[p] != APPROVED]
            db.executemany(
                "UPDATE routes SET approved = 1 WHERE node_id = ? AND prefix = ?",
                [(node_id, p) for p in newly],
            )
            if newly:
                self._bump_nodes(db, [node_id])
        return newly

    def refuse(self, name: str, prefixes: Sequence[str]) -> list[str]:
        """Refuse advertised routes of a node that are not approved; the ones among them
        that were pending (a refused route stays refused while the node advertises it;
        `approve` may still approve it)."""
        wanted = [parse_prefix(p, exit_ok=True) for p in prefixes]
        with self._write() as db:
            node_id, advertised = _advertised(db, name, wanted)
            newly = [p for p in dict.fromkeys(wanted) if advertised[p] == PENDING]
            db.executemany(
                "UPDATE routes SET approved = ? WHERE node_id = ? AND prefix = ?",
                [(REFUSED, node_id, p) for p in newly],
            )
            if newly:  # the node's own roster lists its pending routes
                self._bump_nodes(db, [node_id])
        return newly

    def remove(self, name: str) -> Node:
        """Remove a node (and its routes): the node found and deleted in one transaction,
        so that no other process removes it and another takes its id in between."""
        with self._write() as db:
            found = self._select("WHERE name = ?", (name,))
            if not found:
                raise NotFound(f"no node named {name!r}")
            node = found[0]
            self._release(db, node, self.devices("WHERE d.gateway = ?", (node.id,)))
            db.execute("DELETE FROM nodes WHERE id = ?", (node.id,))  # its devices with it
            version = self._bump(db)
            db.execute(
                "INSERT INTO removed_nodes (version, node_id) VALUES (?, ?)", (version, node.id)
            )
        return node

    # -- key expiry, rotation, revocation (pywg.mesh.expiry) --------------------------------

    def key_expiry_ms(self) -> int:
        """The mesh's key expiry period in ms (0: keys never expire)."""
        with self._lock:
            return self._key_expiry(self._db)

    @staticmethod
    def _key_expiry(db: Database) -> int:
        row = db.execute("SELECT value FROM meta WHERE key = 'key_expiry_ms'").fetchone()
        return int(row[0]) if row is not None else period_ms(DEFAULT_EXPIRY_DAYS)

    def init_key_expiry(self, days: float | None = None, *, now: int | None = None) -> int:
        """The key expiry period in ms: `days` if given (kept), else the stored one, else
        DEFAULT_EXPIRY_DAYS. A new period reaches the nodes at once: one that never
        expired gets an expiry, one expiring later than the period allows expires
        then, and with 0 no key expires (an expiry already past stays)."""
        try:
            wanted = period_ms(days) if days is not None else None
        except ValueError as exc:
            raise StoreError(f"--key-expiry: {exc}") from None
        when = now_ms() if now is None else now
        with self._write() as db:
            if wanted is None or wanted == self._key_expiry(db):
                return self._key_expiry(db)
            set_meta(db, "key_expiry_ms", wanted)
            if wanted == 0:
                db.execute("UPDATE nodes SET expires_ms = NULL WHERE expires_ms > ?", (when,))
            else:
                db.execute(
                    "UPDATE nodes SET keys_ms = coalesce(keys_ms, ?), expires_ms = ? "
                    "WHERE expires_ms IS NULL OR expires_ms > ?",
                    (when, when + wanted, when + wanted),
                )
            self._bump_nodes(db, None)
            return wanted

    def _issue_keys(self, db: Database, node_id: int, when: int) -> None:
        """A node's keys are new at `when`: they expire one period later (or never)."""
        period = self._key_expiry(db)
        db.execute(
            "UPDATE nodes SET keys_ms = ?, expires_ms = ? WHERE id = ?",
            (when, when + period if period else None, node_id),
        )

    def expire(self, name: str, *, now: int | None = None) -> Node:
        """Expire a node's keys now: it leaves every roster and is refused until it joins
        again with a new token. NotFound if there is no such node."""
        when = now_ms() if now is None else now
        with self._write() as db:
            row = db.execute("SELECT id FROM nodes WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"no node named {name!r}")
            db.execute(
                "UPDATE nodes SET expires_ms = ? WHERE id = ? "
                "AND (expires_ms IS NULL OR expires_ms > ?)",
                (when, row[0], when),
            )
            self._bump_nodes(db, [row[0]])
        return self._one(int(row[0]))

    def revoke(self, name: str, *, now: int | None = None) -> Node:
        """Revoke a node for good: it leaves every roster, its keys are retired (they can
        never join, rotate or sign again). Its row stays, holding its name and addresses."""
        when = now_ms() if now is None else now
        with self._write() as db:
            row = db.execute(
                "SELECT id, public_key, control_key FROM nodes WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no node named {name!r}")
            db.execute("UPDATE nodes SET revoked = 1 WHERE id = ?", (row[0],))
            db.execute(
                "INSERT INTO retired_keys (public_key, control_key, node_id, retired_ms) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (row[1], row[2], row[0], when),
            )
            self._bump_nodes(db, [row[0]])
        return self._one(int(row[0]))

    def rotate(
        self,
        node_id: int,
        old_key: bytes,
        new_keys: tuple[bytes, bytes],
        *,
        now: int | None = None,
    ) -> Node:
        """Give node `node_id` (its WireGuard key still `old_key`) its new keys (WireGuard,
        control), in one transaction: the new keys and a new expiry, the old keys retired.
        KeyRefused if the node is revoked or expired, or a new key is retired; Conflict
        if one is taken; NotFound if the node is gone or no longer has `old_key`."""
        new_key, new_control = new_keys
        check_key(new_key, "public key")
        check_key(new_control, "control key")
        when = now_ms() if now is None else now
        with self._write() as db:
            row = db.execute(
                "SELECT control_key, revoked, expires_ms FROM nodes "
                "WHERE id = ? AND public_key = ?",
                (node_id, old_key),
            ).fetchone()
            if row is None:
                raise NotFound("no such node (or its keys changed)")
            control, revoked, expires = row
            if revoked or (expires is not None and expires <= when):
                raise KeyRefused("revoked or expired keys cannot be rotated: join again")
            _check_not_retired(db, new_key, new_control)
            if new_key == old_key or new_control == bytes(control):
                raise StoreError("a rotation needs a new WireGuard key and a new control key")
            if db.execute("SELECT 1 FROM nodes WHERE public_key = ?", (new_key,)).fetchone():
                raise Conflict("the new public key is taken")
            _check_device_free(db, "", new_key)
            db.execute(
                "INSERT INTO retired_keys (public_key, control_key, node_id, retired_ms) "
                "VALUES (?, ?, ?, ?)",
                (old_key, control, node_id, when),
            )
            db.execute(
                "UPDATE nodes SET public_key = ?, control_key = ?, previous_key = ? WHERE id = ?",
                (new_key, new_control, old_key, node_id),
            )
            self._issue_keys(db, node_id, when)
            self._bump_nodes(db, [node_id])
        return self._one(node_id)

    def note_expiries(self, after: int, upto: int) -> bool:
        """Move the roster version if a node's keys expired (by time) in (after, upto], so
        that the long polls wake and leave it out; whether it moved. Reads only, unless
        one did (it runs about once a second)."""
        with self._lock:
            crossed = self._db.execute(
                "SELECT 1 FROM nodes WHERE revoked = 0 AND expires_ms > ? AND expires_ms <= ?",
                (after, upto),
            ).fetchone()
        if crossed is None:
            return False
        with self._write() as db:
            version = self._bump(db)
            db.execute(
                "UPDATE nodes SET changed = ? WHERE revoked = 0 AND expires_ms > ? "
                "AND expires_ms <= ?",
                (version, after, upto),
            )
        return True

    def _one(self, node_id: int) -> Node:
        node = self.node_by_id(node_id)
        if node is None:
            raise NotFound("no such node")
        return node

    # -- plain WireGuard devices -----------------------------------------------------------

    def add_device(
        self, name: str, public_key: bytes, gateway: str, *, exit: bool = False
    ) -> Device:
        """A new device carried by node `gateway`, with free addresses (`pool`); Conflict
        if its name or key is a node's or a device's, NotFound if there is no such node."""
        check_name(name)
        check_key(public_key, "public key")
        networks = self._networks_or_fail()
        with self._write() as db:
            row = db.execute("SELECT id FROM nodes WHERE name = ?", (gateway,)).fetchone()
            if row is None:
                raise NotFound(f"no node named {gateway!r} (the gateway)")
            taken = db.execute(
                "SELECT name FROM nodes WHERE name = ? OR public_key = ?", (name, public_key)
            ).fetchone()
            if taken is not None:
                raise Conflict(f"the name {name!r} is taken by node {taken[0]!r}")
            _check_device_free(db, name, public_key)
            ipv4, ipv6 = self._free_addresses(db, networks)
            db.execute(
                "INSERT INTO devices (name, public_key, ipv4, ipv6, gateway, exit, created_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, public_key, ipv4, ipv6, row[0], int(exit), now_ms()),
            )
            self._bump_nodes(db, [row[0]])  # its gateway's routes
        device = self.device_by_name(name)
        assert device is not None
        return device

    def devices(self, where: str = "", args: tuple[object, ...] = ()) -> list[Device]:
        """The devices (those matching `where`, a condition on ``devices``), by name."""
        with self._lock:
            rows = self._db.execute(
                "SELECT d.id, d.name, d.public_key, d.ipv4, d.ipv6, n.name, d.exit, d.created_ms "
                f"FROM devices AS d JOIN nodes AS n ON n.id = d.gateway {where} ORDER BY d.name",
                args,
            ).fetchall()
        return [
            Device(int(i), str(n), bytes(k), str(v4), str(v6), str(g), bool(x), int(c))
            for i, n, k, v4, v6, g, x, c in rows
        ]

    def device_by_name(self, name: str) -> Device | None:
        found = self.devices("WHERE d.name = ?", (name,))
        return found[0] if found else None

    def remove_device(self, name: str) -> Device:
        """Remove a device: its gateway drops it as a peer at its next roster."""
        device = self.device_by_name(name)
        if device is None:
            raise NotFound(f"no device named {name!r}")
        with self._write() as db:
            if db.execute("DELETE FROM devices WHERE id = ?", (device.id,)).rowcount != 1:
                raise NotFound(f"no device named {name!r}")
            self._release(db, None, [device])
            version = self._bump(db)
            db.execute("UPDATE nodes SET changed = ? WHERE name = ?", (version, device.gateway))
        return device
