"""WireGuard configuration files, as `wg setconf` (wg(8)) and `wg-quick` (wg-quick(8)) read them.

Theory of operation
-------------------
A configuration file is INI-like text (wg(8), CONFIGURATION FILE FORMAT):

    [Interface]                     # section names are case-insensitive
    PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
    ListenPort = 51820
    Address = 198.19.0.1/24, fd19::1/64

    [Peer]
    PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
    AllowedIPs = 198.19.0.2/32, fd19::2/128
    Endpoint = 198.18.0.2:51820

- A line is `Key = Value`, a `[Section]` header, or empty. `#` starts a
  comment that runs to the end of the line (wg-quick cuts every line at its
  first `#`, hook commands included). Key names are case-insensitive and
  whitespace around `=` and around list items is ignored.
- `[Interface]` takes the keys of wg(8) (PrivateKey, ListenPort, FwMark)
  and those wg-quick(8) adds (Address, DNS, MTU, Table, PreUp, PostUp,
  PreDown, PostDown, SaveConfig). `[Peer]` takes PublicKey (required),
  PresharedKey, AllowedIPs, Endpoint and PersistentKeepalive.
- Address, DNS, AllowedIPs and the four hooks may repeat, adding to the
  list in order; every other key may appear once per section.
- AllowedIPs are stored as networks with the host bits cleared, as `wg`
  reports them (10.0.0.1/24 becomes 10.0.0.0/24); Address keeps the host
  part (an interface address). A bare address means /32 or /128.
- Endpoint is `host:port`, with IPv6 literals in brackets (`[fd18::1]:51820`).
  Host names stay unresolved in `Config`; `resolve_endpoint` resolves one the
  way `wg` does (getaddrinfo over UDP, first answer), and `to_uapi_set`
  resolves them all to build the `set=1` request `wg setconf` would send.

Deliberately stricter than `wg`: a repeated single-valued key, a second
[Interface] section and two peers with the same public key are errors, not
"the last one wins". Every error is a `ConfigError` naming the source and
line. Secrets (PrivateKey, PresharedKey) never appear in a message or a
repr, and a value that looks like a key is never quoted wherever it was put.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from .constants import UAPI_MAX_REQUEST
from .endpoint import format_endpoint
from .exceptions import LocalProtocolError
from .keys import PresharedKey, PrivateKey, PublicKey
from .redact import quote

__all__ = [
    "Config",
    "ConfigError",
    "PeerConfig",
    "Resolver",
    "load_config",
    "parse_config",
    "resolve_endpoint",
    "to_uapi_set",
]

logger = logging.getLogger("pywg.config")

Resolver = Callable[..., Sequence[tuple[Any, ...]]]
"""A `socket.getaddrinfo` lookalike: (host, port, family=, type=, proto=) -> results."""

MIN_MTU: Final = 576  # RFC 791: every IPv4 host must accept 576-byte datagrams
MAX_MTU: Final = 65535

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
_DECIMAL = re.compile(r"[0-9]{1,10}")
_HEX = re.compile(r"0[xX][0-9a-fA-F]{1,8}")
_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})")
_TABLE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SECTION = re.compile(r"\[\s*([^\]]*?)\s*\]")


class ConfigError(LocalProtocolError):
    """A configuration file is invalid or unreadable.

    str() is one line, `source:line: message` (or `source: message` when no
    line is to blame). Messages never contain secret key material.
    """

    def __init__(self, message: str, source: str = "<config>", line: int | None = None) -> None:
        self.message = message
        self.source = source
        self.line = line
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {message}")


# ---------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """One [Peer] section (wg(8))."""

    public_key: PublicKey
    preshared_key: PresharedKey | None = None
    allowed_ips: tuple[str, ...] = ()
    # host (a name or a literal; IPv6 without brackets) and port, unresolved
    endpoint: tuple[str, int] | None = None
    persistent_keepalive: int = 0  # seconds; 0 = off


@dataclass(frozen=True, slots=True)
class Config:
    """A whole configuration file: the [Interface] section and the peers."""

    private_key: PrivateKey | None = None
    listen_port: int | None = None
    fwmark: int = 0  # 0 = off
    # interface form such as "198.19.0.1/24" or "fd19::1/64"; a bare address gets /32 or /128
    addresses: tuple[str, ...] = ()
    mtu: int | None = None
    dns: tuple[str, ...] = ()
    table: str | None = None
    pre_up: tuple[str, ...] = ()
    post_up: tuple[str, ...] = ()
    pre_down: tuple[str, ...] = ()
    post_down: tuple[str, ...] = ()
    save_config: bool = False
    peers: tuple[PeerConfig, ...] = ()


# ---------------------------------------------------------------------- values
#
# Each value parser takes the (stripped, non-empty) value text and returns the
# parsed value or raises ValueError with a message that is safe to show: it
# may quote the value only through _quote, and never for a secret key.


_K = TypeVar("_K", PublicKey, PrivateKey, PresharedKey)


def _is_hostname(name: str) -> bool:
    """A DNS name (RFC 1123 labels, `_` tolerated), not something like 1.2.3.999."""
    labels = name.removesuffix(".").split(".")
    return (
        len(name) <= 253
        and all(_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    )


def _key(value: str, cls: type[_K]) -> _K:
    try:
        return cls.from_base64(value)
    except LocalProtocolError:  # its messages never hold the text, but say it our way
        raise ValueError("not a valid base64 key (expected 32 bytes)") from None


def _public_key(value: str) -> PublicKey:
    return _key(value, PublicKey)


def _private_key(value: str) -> PrivateKey:
    return _key(value, PrivateKey)


def _preshared_key(value: str) -> PresharedKey | None:
    key = _key(value, PresharedKey)
    return None if key.is_zero() else key  # all zeros means "no preshared key" (wg(8))


def _integer(value: str, low: int, high: int, *, off: bool = False, hexa: bool = False) -> int:
    if off and value.lower() == "off":
        return 0
    if _DECIMAL.fullmatch(value):
        number = int(value)
    elif hexa and _HEX.fullmatch(value):
        number = int(value, 16)
    else:
        number = -1
    if not low <= number <= high:
        forms = " or 'off'" if off else ""
        raise ValueError(f"expected an integer from {low} to {high}{forms}, got {quote(value)}")
    return number


def _port(value: str) -> int:
    return _integer(value, 0, 65535)


def _fwmark(value: str) -> int:
    return _integer(value, 0, 0xFFFFFFFF, off=True, hexa=True)


def _mtu(value: str) -> int:
    return _integer(value, MIN_MTU, MAX_MTU)


def _keepalive(value: str) -> int:
    return _integer(value, 0, 65535, off=True)


def _bool(value: str) -> bool:
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise ValueError(f"expected 'true' or 'false', got {quote(value)}")
    return lowered == "true"


def _table(value: str) -> str:
    if not _TABLE.fullmatch(value):
        raise ValueError(f"expected 'off', 'auto' or a routing table, got {quote(value)}")
    return value


def _command(value: str) -> str:
    return value


def _split_cidr(item: str) -> tuple[str, str | None]:
    address, sep, prefix = item.partition("/")
    if "%" in address or (sep and not _DECIMAL.fullmatch(prefix)):
        raise ValueError(f"not an IP address or CIDR: {quote(item)}")
    return address, prefix if sep else None


def _address(item: str) -> str:
    """An interface address, host part kept: 198.19.0.1/24."""
    address, prefix = _split_cidr(item)
    try:
        ip = ipaddress.ip_address(address)
        interface = ipaddress.ip_interface(f"{ip}/{ip.max_prefixlen if prefix is None else prefix}")
    except ValueError:
        raise ValueError(f"not an IP address or CIDR: {quote(item)}") from None
    return str(interface)


def _allowed_ip(item: str) -> str:
    """A network, host bits cleared as `wg` does: 10.0.0.1/24 is 10.0.0.0/24."""
    address, prefix = _split_cidr(item)
    try:
        ip = ipaddress.ip_address(address)
        plen = ip.max_prefixlen if prefix is None else int(prefix)
        network = ipaddress.ip_network(f"{ip}/{plen}", strict=False)
    except ValueError:
        raise ValueError(f"not an IP address or CIDR: {quote(item)}") from None
    return str(network)


def _ip_or_name(text: str, name: str) -> str:
    """An IP literal in canonical form, or a DNS name as written (`name`: what kind, for errors)."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if not _is_hostname(text):
        raise ValueError(f"not an IP address or {name}: {quote(text)}")
    return text


def _dns(item: str) -> str:
    """A name server address or (as wg-quick(8) reads it) a search domain."""
    return _ip_or_name(item, "a search domain")


def _endpoint(value: str) -> tuple[str, int]:
    """`host:port`, `a.b.c.d:port` or `[v6]:port` (wg(8) Endpoint).

    Wider than the UAPI's numeric form (`pywg.endpoint.parse_endpoint`): the
    host may be a name, resolved later (`resolve_endpoint`), and an IPv6
    literal stays as written (canonical, a mapped IPv4 address too) until
    `to_uapi_set` hands it to the device with `format_endpoint`. Port 0 is
    refused: nothing can be reached there.
    """
    host, port_text = _endpoint_host(value)
    try:
        port = _integer(port_text, 1, 65535)
    except ValueError:
        raise ValueError(
            f"port must be an integer from 1 to 65535, got {quote(port_text)}"
        ) from None
    return host, port


def _endpoint_host(value: str) -> tuple[str, str]:
    """The host (canonical if a literal) and the port text of an Endpoint value."""
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"expected [IPv6]:port, got {quote(value)}")
        try:
            return str(ipaddress.IPv6Address(host)), rest[1:]
        except ValueError:
            raise ValueError(f"not an IPv6 address: {quote(host)}") from None
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected host:port, got {quote(value)}")
    if ":" in host:
        raise ValueError("an IPv6 endpoint needs brackets: [address]:port")
    return _ip_or_name(host, "a host name"), port_text


# ---------------------------------------------------------------------- keys

_Parser = Callable[[str], Any]


@dataclass(frozen=True, slots=True)
class _KeySpec:
    name: str  # as the man pages spell it
    attr: str
    parse: _Parser
    is_list: bool = False  # comma-separated items, the key may repeat
    repeats: bool = False  # one item per line, the key may repeat (hooks)


_INTERFACE_KEYS: Final = {
    spec.name.lower(): spec
    for spec in (
        _KeySpec("PrivateKey", "private_key", _private_key),
        _KeySpec("ListenPort", "listen_port", _port),
        _KeySpec("FwMark", "fwmark", _fwmark),
        _KeySpec("Address", "addresses", _address, is_list=True),
        _KeySpec("MTU", "mtu", _mtu),
        _KeySpec("DNS", "dns", _dns, is_list=True),
        _KeySpec("Table", "table", _table),
        _KeySpec("PreUp", "pre_up", _command, repeats=True),
        _KeySpec("PostUp", "post_up", _command, repeats=True),
        _KeySpec("PreDown", "pre_down", _command, repeats=True),
        _KeySpec("PostDown", "post_down", _command, repeats=True),
        _KeySpec("SaveConfig", "save_config", _bool),
    )
}

_PEER_KEYS: Final = {
    spec.name.lower(): spec
    for spec in (
        _KeySpec("PublicKey", "public_key", _public_key),
        _KeySpec("PresharedKey", "preshared_key", _preshared_key),
        _KeySpec("AllowedIPs", "allowed_ips", _allowed_ip, is_list=True),
        _KeySpec("Endpoint", "endpoint", _endpoint),
        _KeySpec("PersistentKeepalive", "persistent_keepalive", _keepalive),
    )
}


class _Section:
    """The keys seen so far in one section: values, and the line each first appeared on."""

    def __init__(self, kind: str, line: int) -> None:
        self.kind = kind  # "Interface" or "Peer"
        self.line = line
        self.values: dict[str, Any] = {}
        self.seen: dict[str, int] = {}
        self.members: dict[str, set[Any]] = {}  # of each list, to drop repeats in O(1)

    def add(self, spec: _KeySpec, value: str, lineno: int) -> None:
        if spec.is_list or spec.repeats:
            items: list[Any] = self.values.setdefault(spec.attr, [])
            if spec.repeats:
                items.append(spec.parse(value))
            elif value:  # `AllowedIPs =` is allowed and adds nothing
                for item in value.split(","):
                    item = item.strip()
                    if not item:
                        raise ValueError("empty item in a comma-separated list")
                    parsed = spec.parse(item)
                    members = self.members.setdefault(spec.attr, set())
                    if parsed not in members:
                        members.add(parsed)
                        items.append(parsed)
            return
        if spec.attr in self.seen:
            raise ValueError(f"given twice in one section (first on line {self.seen[spec.attr]})")
        self.seen[spec.attr] = lineno
        self.values[spec.attr] = spec.parse(value)

    def fields(self) -> dict[str, Any]:
        return {k: tuple(v) if isinstance(v, list) else v for k, v in self.values.items()}


def _key_name(key: str) -> str:
    """A key name for a message; something that is not name-like may be a pasted secret."""
    return repr(key) if _NAME.fullmatch(key) else "(not shown)"


# ---------------------------------------------------------------------- parse


def parse_config(text: str, *, source: str = "<config>") -> Config:
    """Parse the text of a configuration file; raise ConfigError on any problem."""
    if not isinstance(text, str):
        raise ConfigError("configuration text must be a str", source)
    reader = _Reader(source)
    lines = text.splitlines()
    if lines and lines[0].startswith("\ufeff"):  # a byte order mark from some editors
        lines[0] = lines[0][1:]
    for lineno, raw in enumerate(lines, 1):
        line = raw.partition("#")[0].strip()
        if line.startswith("["):
            reader.section_header(line, lineno)
        elif line:
            reader.key_value(line, lineno)
    return reader.config()


class _Reader:
    """The sections of one file as its lines are read, in order."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.interface: _Section | None = None
        self.peers: list[_Section] = []
        self.current: _Section | None = None

    def error(self, message: str, line: int | None = None) -> ConfigError:
        return ConfigError(message, self.source, line)

    def section_header(self, line: str, lineno: int) -> None:
        """`[Interface]` or `[Peer]` (any case) starts a section."""
        match = _SECTION.fullmatch(line)
        if match is None:
            raise self.error("malformed section header (expected [Interface] or [Peer])", lineno)
        name = match.group(1).lower()
        if name == "interface":
            if self.interface is not None:
                raise self.error(
                    f"second [Interface] section (the first is on line {self.interface.line})",
                    lineno,
                )
            self.current = self.interface = _Section("Interface", lineno)
        elif name == "peer":
            self.current = _Section("Peer", lineno)
            self.peers.append(self.current)
        else:
            shown = f"[{match.group(1)}]" if _NAME.fullmatch(match.group(1)) else "(not shown)"
            raise self.error(f"unknown section {shown} (expected [Interface] or [Peer])", lineno)

    def key_value(self, line: str, lineno: int) -> None:
        """`Key = Value`: a key known in the current section, given a valid value."""
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            raise self.error("expected 'Key = Value' or a [Section] header", lineno)
        if not key:
            raise self.error("missing key name before '='", lineno)
        lowered = key.lower() if key.isascii() else ""
        spec = _INTERFACE_KEYS.get(lowered) or _PEER_KEYS.get(lowered)
        if spec is None:
            raise self.error(f"unknown key {_key_name(key)}", lineno)
        current = self.current
        if current is None:
            raise self.error(
                f"{spec.name} outside of a section (expected [Interface] or [Peer] first)", lineno
            )
        own_keys = _INTERFACE_KEYS if current.kind == "Interface" else _PEER_KEYS
        if lowered not in own_keys:
            raise self.error(f"{spec.name} does not belong in [{current.kind}]", lineno)
        if not value and not spec.is_list:
            raise self.error(f"{spec.name}: missing value", lineno)
        try:
            current.add(spec, value, lineno)
        except ValueError as exc:
            raise self.error(f"{spec.name}: {exc}", lineno) from None

    def config(self) -> Config:
        if self.interface is None:
            raise self.error("missing [Interface] section")
        return Config(**self.interface.fields(), peers=_build_peers(self.peers, self.source))


def _build_peers(sections: list[_Section], source: str) -> tuple[PeerConfig, ...]:
    peers: list[PeerConfig] = []
    first_line: dict[PublicKey, int] = {}
    for section in sections:
        values = section.fields()
        if "public_key" not in values:
            raise ConfigError("[Peer] section without a PublicKey", source, section.line)
        public_key: PublicKey = values["public_key"]
        line = section.seen["public_key"]
        if public_key in first_line:
            raise ConfigError(
                f"PublicKey: this peer is already configured (line {first_line[public_key]})",
                source,
                line,
            )
        first_line[public_key] = line
        peers.append(PeerConfig(**values))
    return tuple(peers)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and parse a configuration file (UTF-8).

    Logs a warning on the `pywg.config` logger when group or others have any
    access to the file, as wg-quick(8) warns: it holds a private key, and its
    hook commands run as root.
    """
    source = os.fspath(path)
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            # A file is at most as large as the UAPI request it may become (a
            # configuration of 300,000 allowed IPs fits); more is not one: /dev/zero.
            data = f.read(UAPI_MAX_REQUEST + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", source) from None
    if len(data) > UAPI_MAX_REQUEST:
        raise ConfigError(f"larger than {UAPI_MAX_REQUEST} bytes, not a configuration file", source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (invalid byte at offset {exc.start})", source) from None
    if stat.S_ISREG(mode) and mode & 0o077:
        logger.warning(
            "%s is accessible by group or others (mode %04o); it holds secrets, chmod 600 it",
            source,
            stat.S_IMODE(mode),
        )
    return parse_config(text, source=source)


# ---------------------------------------------------------------------- resolve, uapi


def resolve_endpoint(
    host: str, port: int, *, resolver: Resolver = socket.getaddrinfo
) -> tuple[str, int]:
    """An endpoint as an IP literal and port, resolving a host name like `wg` does.

    A literal comes back in canonical form. A name is looked up with
    getaddrinfo for UDP and the first IPv4 or IPv6 answer is taken, so the
    resolver's own ordering (RFC 6724, /etc/gai.conf) decides, as with `wg`.
    """
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        pass
    try:
        results = resolver(
            host, port, family=socket.AF_UNSPEC, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP
        )
    except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise ConfigError(f"cannot resolve endpoint host {quote(host)}: {reason}") from None
    for family, _type, _proto, _canonname, sockaddr in results:
        if family in (socket.AF_INET, socket.AF_INET6):
            try:
                ip = ipaddress.ip_address(sockaddr[0])
            except (ValueError, TypeError, IndexError):
                continue
            return str(ip), port
    raise ConfigError(f"cannot resolve endpoint host {quote(host)}: no IPv4 or IPv6 address")


def to_uapi_set(config: Config, *, resolver: Resolver = socket.getaddrinfo) -> str:
    """The whole UAPI request (`set=1` ... empty line) that `wg setconf` would send.

    The device takes the configuration as a whole: fwmark is always sent
    (0 turns it off), the peer list is replaced, and so is each peer's list
    of allowed IPs. The private key and listen port are sent when the file
    gives them. Endpoint host names are resolved here (`resolve_endpoint`).
    The returned text holds the private key (in hex): do not log it.
    """
    out = ["set=1"]
    if config.private_key is not None:
        out.append(f"private_key={config.private_key.to_hex()}")
    if config.listen_port is not None:
        out.append(f"listen_port={config.listen_port}")
    out.append(f"fwmark={config.fwmark}")
    out.append("replace_peers=true")
    for peer in config.peers:
        out.append(f"public_key={peer.public_key.to_hex()}")
        if peer.preshared_key is not None:
            out.append(f"preshared_key={peer.preshared_key.to_hex()}")
        if peer.endpoint is not None:
            endpoint = resolve_endpoint(*peer.endpoint, resolver=resolver)
            out.append(f"endpoint={format_endpoint(endpoint)}")
        out.append(f"persistent_keepalive_interval={peer.persistent_keepalive}")
        out.append("replace_allowed_ips=true")
        out.extend(f"allowed_ip={network}" for network in peer.allowed_ips)
    return "\n".join(out) + "\n\n"
