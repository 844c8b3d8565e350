"""The cross-platform UAPI (the text protocol `wg` speaks), sans-IO.

Theory of operation
-------------------
A request is a few `key=value` lines ending with an empty line: `get=1\\n\\n`
or `set=1\\n...\\n\\n`. The answer is (for get, the configuration, then)
`errno=N\\n\\n`, where N is 0 or a negative errno as wireguard-go answers.

- `get(device)` renders the get answer, complete with `errno=0`.
- `SetParser` validates a set body line by line (streaming) into a `SetPlan`
  without changing anything; `SetPlan.apply(device, now)` carries it out and
  cannot fail on validated input. `parse_set` and `apply_set` wrap them. A
  request is atomic: if any line is invalid, `UapiError` is raised and the
  device is unchanged. The split lets the I/O layer look at the plan (a new
  listen port, fwmark) and bind a socket first, refusing the whole request
  with -EADDRINUSE.
- `UapiSession` handles one connection: bytes in, reply bytes out. It frames
  requests, enforces size limits and never raises. Framing errors (a line
  without '=', non-UTF-8, an unknown operation, too-long lines or requests)
  answer an errno and set `closed`; the I/O layer then closes the connection.
  A set request that is well framed but invalid answers -EINVAL and the
  connection stays usable, as the request was consumed whole.

Limits: a line is at most MAX_LINE bytes and a request at most MAX_REQUEST
bytes (16 MiB: 130,000 allowed IPs take about 5 MiB). Set lines are parsed as
they arrive and only the plan is kept, never the text. The allowed IPs a peer
section adds are kept packed (`PrefixList`, 18 bytes each), so 16 MiB of the
shortest `allowed_ip=::/0` lines plan at most about 20 MB; a removal
(`allowed_ip=-...`) costs about 160 bytes, so 16 MiB of those, all different,
about 120 MB. The bound is generous because only root can reach the socket;
it exists so that a runaway writer fails with -EPROTO instead of exhausting
memory.

With the native backend, runs of `allowed_ip=` lines are parsed in C in bulk
(`pywg._fast.uapiparse`), straight into the packed form; C takes only lines
whose meaning is certain and leaves the others to the line-by-line parser.

`private_key=` with all zeros removes the identity, as in wireguard-go.
Secrets never appear in exception messages.
"""

from __future__ import annotations

import errno as _errno
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from . import endpoint
from .allowedips import Prefix, PrefixList, parse_prefix
from .backend import BACKEND
from .constants import PREFIX_RECORD_SIZE, UAPI_MAX_REQUEST
from .device import Device
from .endpoint import Endpoint, format_endpoint
from .exceptions import LocalProtocolError, WireGuardError
from .keys import PresharedKey, PrivateKey, PublicKey, clamp

EINVAL: Final = -_errno.EINVAL
EPROTO: Final = -_errno.EPROTO
EIO: Final = -_errno.EIO
EADDRINUSE: Final = -_errno.EADDRINUSE

MAX_LINE: Final = 4096
MAX_REQUEST: Final = UAPI_MAX_REQUEST

_BulkParser = Callable[[bytearray, int, int], tuple[bytes, int]]
_BulkWriter = Callable[[bytearray, int], tuple[str, int]]
_bulk_allowed_ips: _BulkParser | None = None
_bulk_allowed_ip_text: _BulkWriter | None = None
if BACKEND == "native":
    from ._fast.uapiparse import allowed_ip_lines as _bulk_allowed_ips
    from ._fast.uapiparse import allowed_ip_text as _bulk_allowed_ip_text

# Peers a device may have, as wireguard-go (MaxPeers; the kernel allows 1 << 20): a set
# that would create one more is refused with -EINVAL. It bounds the memory of a device
# that many requests fill (about 2 KiB a peer).
MAX_PEERS: Final = 1 << 16

_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
_DECIMAL = re.compile(r"0*[0-9]{1,10}")  # leading zeros are fine, as for Go's ParseUint
_NAME = re.compile(r"[a-z_]{1,40}")
_ZERO_KEY = bytes(32)

_DEVICE_KEYS: Final = frozenset({"private_key", "listen_port", "fwmark", "replace_peers"})


class UapiError(WireGuardError):
    """A UAPI request failed; `errno` is the (negative) value to answer."""

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno

    def __repr__(self) -> str:
        return f"UapiError({self.errno}, {self.args[0]!r})"


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


@dataclass(slots=True)
class PeerPlan:
    """What one peer section of a set request asks for (all values validated)."""

    public_key: PublicKey
    remove: bool = False
    update_only: bool = False
    preshared_key: PresharedKey | _Unset | None = UNSET
    endpoint: Endpoint | _Unset = UNSET
    persistent_keepalive: int | _Unset = UNSET
    replace_allowed_ips: bool = False
    # every prefix an `allowed_ip=` line adds, in order (repeats are harmless)
    add_allowed_ips: PrefixList = field(default_factory=PrefixList)
    # prefix -> len(add_allowed_ips) when an `allowed_ip=-` line removed it: the
    # adds before that position are void, a later add puts it back
    remove_allowed_ips: dict[Prefix, int] = field(default_factory=dict)
    ignored: bool = False  # our own public key

    def __repr__(self) -> str:
        return f"<PeerPlan {self.public_key} remove={self.remove}>"


@dataclass(slots=True)
class SetPlan:
    """A validated set request; `apply` performs it."""

    private_key: PrivateKey | _Unset | None = UNSET  # None: remove the key
    listen_port: int | None = None
    fwmark: int | None = None
    replace_peers: bool = False
    peers: list[PeerPlan] = field(default_factory=list)

    def __repr__(self) -> str:
        return (
            f"<SetPlan private_key={_key_change(self.private_key)} "
            f"listen_port={self.listen_port} fwmark={self.fwmark} "
            f"replace_peers={self.replace_peers} peers={len(self.peers)}>"
        )

    def apply(self, device: Device, now: float | None = None) -> None:
        """Carry out the plan. With `now`, turning on persistent keepalive sends one."""
        if not isinstance(self.private_key, _Unset) and self.private_key != device.private_key:
            if self.private_key is not None:
                new_public = self.private_key.public_key
                if device.has_peer(new_public):  # a device cannot be its own peer
                    device.remove_peer(new_public)
            device.set_private_key(self.private_key)
        if self.listen_port is not None:
            device.listen_port = self.listen_port
        if self.fwmark is not None:
            device.fwmark = self.fwmark
        if self.replace_peers:
            for public_key in list(device.peers):
                device.remove_peer(public_key)
        for plan in self.peers:
            _apply_peer(device, plan, now)


def _key_change(key: PrivateKey | _Unset | None) -> str:
    if isinstance(key, _Unset):
        return "unchanged"
    return "removed" if key is None else "set"


def _apply_peer(device: Device, plan: PeerPlan, now: float | None) -> None:
    if plan.ignored or plan.public_key == device.public_key:
        return
    exists = device.has_peer(plan.public_key)
    if plan.remove:
        if exists:
            device.remove_peer(plan.public_key)
        return
    if not exists:
        if plan.update_only:
            return
        device.add_peer(plan.public_key)
    kwargs: dict[str, object] = {}
    if not isinstance(plan.preshared_key, _Unset):
        kwargs["preshared_key"] = plan.preshared_key
    if not isinstance(plan.endpoint, _Unset):
        kwargs["endpoint"] = plan.endpoint
    if not isinstance(plan.persistent_keepalive, _Unset):
        kwargs["persistent_keepalive"] = plan.persistent_keepalive
    add, remove, released = _allowed_ip_changes(plan)
    if released:  # as the lines say in order: taken from whoever had them, then dropped
        device.update_peer(plan.public_key, allowed_ips=released)
        device.update_peer(plan.public_key, remove_allowed_ips=released)
    device.update_peer(
        plan.public_key,
        allowed_ips=add,
        replace_allowed_ips=plan.replace_allowed_ips,
        remove_allowed_ips=remove,
        now=now,
        **kwargs,
    )


def _allowed_ip_changes(plan: PeerPlan) -> tuple[PrefixList, list[Prefix], list[Prefix]]:
    """What the peer's `allowed_ip=` lines come to, the later line winning: the prefixes
    to add, in the order of the first add after the last removal; those to remove; and of
    those, the ones added before their removal (*released*: as the lines act in order, as
    upstream wireguard-go applies them, the add took the prefix from whichever peer had it
    and the removal dropped it, so nobody has it)."""
    removed = plan.remove_allowed_ips
    if not removed:
        return plan.add_allowed_ips, [], []
    add, restored, added_before = PrefixList(), set(), set()
    for position, prefix in enumerate(plan.add_allowed_ips):
        if position >= removed.get(prefix, 0):
            add.append(prefix)
            restored.add(prefix)
        else:
            added_before.add(prefix)
    remove = [prefix for prefix in removed if prefix not in restored]
    return add, remove, [prefix for prefix in remove if prefix in added_before]


# ---------------------------------------------------------------------- get


def _split_time(t: float) -> tuple[int, int]:
    """Wall-clock seconds as (sec, nsec); t - floor(t) is exact, so no precision is lost."""
    if not math.isfinite(t) or t < 0:
        return 0, 0
    sec = math.floor(t)
    nsec = round((t - sec) * 1e9)
    if nsec >= 1_000_000_000:
        sec, nsec = sec + 1, nsec - 1_000_000_000
    return sec, nsec


def get(device: Device) -> str:
    """The complete answer to `get=1`, ending with `errno=0` and the empty line."""
    out = []
    if device.private_key is not None:
        out.append(f"private_key={device.private_key.to_hex()}")
    if device.listen_port:
        out.append(f"listen_port={device.listen_port}")
    if device.fwmark:
        out.append(f"fwmark={device.fwmark}")
    for public_key, peer in device.peers.items():
        out.append(f"public_key={public_key.to_hex()}")
        psk = peer.preshared_key
        out.append(f"preshared_key={psk.to_hex() if psk is not None else '0' * 64}")
        out.append("protocol_version=1")
        if peer.endpoint is not None:
            out.append(f"endpoint={format_endpoint(peer.endpoint)}")
        sec, nsec = 0, 0
        if peer.last_handshake_time is not None:
            sec, nsec = _split_time(peer.last_handshake_time)
        out.append(f"last_handshake_time_sec={sec}")
        out.append(f"last_handshake_time_nsec={nsec}")
        out.append(f"tx_bytes={peer.tx_bytes}")
        out.append(f"rx_bytes={peer.rx_bytes}")
        out.append(f"persistent_keepalive_interval={peer.persistent_keepalive}")
        if lines := _allowed_ip_lines(device.allowed_ip_records(public_key)):
            out.append(lines)
    out.append("errno=0")
    return "\n".join(out) + "\n\n"


def _allowed_ip_lines(prefixes: PrefixList) -> str:
    """A peer's `allowed_ip=` lines as one text (no newline after the last): in bulk
    where the native backend can, one prefix at a time where it leaves one."""
    records, offset, parts = prefixes.records, 0, []
    while offset < len(records):
        if _bulk_allowed_ip_text is not None:
            text, offset = _bulk_allowed_ip_text(records, offset)
            parts.append(text)
            if offset == len(records):
                break
        parts.append(f"allowed_ip={Prefix.from_record(records, offset)}\n")
        offset += PREFIX_RECORD_SIZE
    return "".join(parts)[:-1]


# ---------------------------------------------------------------------- set


def _name(key: str) -> str:
    """A key name fit for a message: never echo what might be a secret."""
    return repr(key) if _NAME.fullmatch(key) else "(not shown)"


def _key_bytes(key: str, value: str) -> bytes:
    if not _HEX_KEY.fullmatch(value):
        raise UapiError(EINVAL, f"{key} must be 64 hexadecimal characters")
    return bytes.fromhex(value)


def _uint(key: str, value: str, bits: int) -> int:
    if not _DECIMAL.fullmatch(value) or int(value) >= 1 << bits:
        raise UapiError(EINVAL, f"{key} must be an integer from 0 to {(1 << bits) - 1}")
    return int(value)


def _true(key: str, value: str) -> bool:
    if value != "true":
        raise UapiError(EINVAL, f"{key} only accepts 'true'")
    return True


def parse_endpoint(value: str) -> Endpoint:
    """`a.b.c.d:port` or `[v6]:port`, numeric only (`wg` resolves names itself)."""
    try:
        return endpoint.parse_endpoint(value)
    except ValueError:
        raise UapiError(EINVAL, "bad endpoint (want a.b.c.d:port or [v6]:port)") from None


def parse_allowed_ip(value: str) -> Prefix:
    """A CIDR (`addr/prefix`), host bits cleared."""
    addr, sep, prefix = value.partition("/")
    if not sep or not _DECIMAL.fullmatch(prefix) or "%" in addr:
        raise UapiError(EINVAL, "bad allowed_ip (want address/prefix)")
    try:
        return parse_prefix(f"{addr}/{int(prefix)}")
    except LocalProtocolError:
        raise UapiError(EINVAL, "bad allowed_ip (want address/prefix)") from None


class SetParser:
    """Validate a set body one line at a time (streaming); `finish` gives the plan.

    The first invalid line is remembered and every later line only consumed,
    so a huge request with one bad line at its end is refused whole without
    keeping more than the plan so far.
    """

    def __init__(self) -> None:
        self.plan = SetPlan()
        self.error: UapiError | None = None
        self._current: PeerPlan | None = None

    def __repr__(self) -> str:
        return f"<SetParser {self.plan!r} error={self.error!r}>"

    def line(self, line: str) -> None:
        """Parse one `key=value` line (without its newline)."""
        if self.error is not None:
            return
        try:
            self._parse(line)
        except UapiError as exc:
            self._fail(exc)
        except Exception:  # a bug here must not take the connection down
            self._fail(UapiError(EIO, "internal error while parsing"))

    def finish(self, device: Device) -> SetPlan:
        """The validated plan; raises the first line's error if any line was invalid."""
        if self.error is not None:
            raise self.error
        plan = self.plan
        if isinstance(plan.private_key, _Unset):
            own = device.public_key
        else:
            own = plan.private_key.public_key if plan.private_key is not None else None
        for peer in plan.peers:
            if peer.public_key == own:
                peer.ignored = True
        _check_peer_count(plan, device, own)
        return plan

    def allowed_ip_lines(self, data: bytearray, start: int, end: int) -> int:
        """Take the run of `allowed_ip=` lines at data[start:end] in bulk, as `line` would
        one by one; the offset where the run ends (start if there is no bulk path)."""
        current = self._current
        if _bulk_allowed_ips is None or self.error is not None or current is None:
            return start
        records, stop = _bulk_allowed_ips(data, start, end)
        current.add_allowed_ips.extend_records(records)
        return stop

    def _fail(self, error: UapiError) -> None:
        self.error = error
        self.plan = SetPlan()  # what was parsed will not be applied: free it now
        self._current = None

    def _parse(self, line: str) -> None:
        key, sep, value = line.partition("=")
        if not sep:
            raise UapiError(EPROTO, "line without '='")
        current = self._current
        if current is None and key in _DEVICE_KEYS:
            _parse_device_line(self.plan, key, value)
        elif key == "public_key":
            self._current = PeerPlan(PublicKey(_key_bytes(key, value)))
            self.plan.peers.append(self._current)
        elif current is None:
            raise UapiError(EINVAL, f"unknown device key {_name(key)}")
        elif key in _DEVICE_KEYS:
            raise UapiError(EINVAL, f"device key {key!r} inside a peer section")
        else:
            _parse_peer_line(current, key, value)


def _check_peer_count(plan: SetPlan, device: Device, own: PublicKey | None) -> None:
    """Refuse a plan that would take the device past MAX_PEERS at any of its steps."""
    if not plan.peers:
        return
    peers = device.peers
    # a key change removes the peer with the new public key, replace_peers every peer
    count = 0 if plan.replace_peers else len(peers) - (own in peers)
    there: dict[PublicKey, bool] = {}  # peers the plan added or removed so far
    for peer in plan.peers:
        if peer.ignored:
            continue
        key = peer.public_key
        exists = there.get(key)
        if exists is None:
            exists = not plan.replace_peers and key in peers
        if peer.remove:
            count -= exists
            there[key] = False
        elif not exists and not peer.update_only:
            count += 1
            there[key] = True
            if count > MAX_PEERS:
                raise UapiError(EINVAL, f"too many peers (at most {MAX_PEERS})")


def parse_set(device: Device, lines: Iterable[str]) -> SetPlan:
    """Validate a set body (the lines after `set=1`) into a plan; changes nothing."""
    parser = SetParser()
    for line in lines:
        parser.line(line)
        if parser.error is not None:
            raise parser.error
    return parser.finish(device)


def _parse_device_line(plan: SetPlan, key: str, value: str) -> None:
    if key == "private_key":
        raw = _key_bytes(key, value)
        # clamped on set, as the kernel and wireguard-go do, so that get shows it clamped
        plan.private_key = None if raw == _ZERO_KEY else PrivateKey(clamp(raw))
    elif key == "listen_port":
        plan.listen_port = _uint(key, value, 16)
    elif key == "fwmark":
        plan.fwmark = _uint(key, value, 32)
    else:  # replace_peers
        plan.replace_peers = _true(key, value)


def _parse_peer_line(peer: PeerPlan, key: str, value: str) -> None:
    if key == "remove":
        peer.remove = _true(key, value)
    elif key == "update_only":
        peer.update_only = _true(key, value)
    elif key == "preshared_key":
        raw = _key_bytes(key, value)
        peer.preshared_key = None if raw == _ZERO_KEY else PresharedKey(raw)
    elif key == "endpoint":
        peer.endpoint = parse_endpoint(value)
    elif key == "persistent_keepalive_interval":
        peer.persistent_keepalive = _uint(key, value, 16)
    elif key == "replace_allowed_ips":
        peer.replace_allowed_ips = _true(key, value)
        peer.add_allowed_ips.clear()  # lines apply in order: earlier ones are replaced
        peer.remove_allowed_ips.clear()
    elif key == "allowed_ip":
        if value.startswith("-"):
            network = parse_allowed_ip(value[1:])
            peer.remove_allowed_ips[network] = len(peer.add_allowed_ips)
        else:
            peer.add_allowed_ips.append(parse_allowed_ip(value))
    elif key == "protocol_version":
        if value != "1":
            raise UapiError(EINVAL, "only protocol_version=1 is supported")
    else:
        raise UapiError(EINVAL, f"unknown peer key {_name(key)}")


def apply_set(device: Device, lines: Iterable[str], now: float | None = None) -> None:
    """Validate and apply a set body atomically; UapiError leaves the device unchanged."""
    parse_set(device, lines).apply(device, now)


set_ = apply_set


# ---------------------------------------------------------------------- session


def _reply(errno: int) -> bytes:
    return f"errno={errno}\n\n".encode("ascii")


class _Get:
    """A get request being read: it must consist of `get=1` alone."""

    __slots__ = ("extra_lines",)

    def __init__(self) -> None:
        self.extra_lines = False


class UapiSession:
    """One UAPI connection, sans-IO: `feed` bytes in, get reply bytes back.

    `clock` supplies `now` for set requests (so turning on persistent
    keepalive sends one at once). `before_apply`, if given, sees each
    validated `SetPlan` before it is applied and may raise UapiError (for
    example -EADDRINUSE when the new listen port cannot be bound) to refuse
    the request with the device unchanged.
    """

    def __init__(
        self,
        device: Device,
        *,
        clock: Callable[[], float] | None = None,
        before_apply: Callable[[SetPlan], None] | None = None,
    ) -> None:
        self.device = device
        self.clock = clock
        self.before_apply = before_apply
        self.closed = False
        self._inbox = bytearray()  # bytes pushed; those before _pos are parsed already
        self._pos = 0
        # the request being read: None between requests, _GET, or a set's parser
        self._request_state: SetParser | _Get | None = None
        self._size = 0

    def __repr__(self) -> str:
        return f"<UapiSession closed={self.closed} buffered={self._size + self._unparsed}>"

    def feed(self, data: bytes) -> bytes:
        """Take bytes from the connection; return every reply they complete. Never raises.

        A server that must not buffer many replies at once (pipelined `get=1`
        requests from a client that never reads) uses `push` and
        `next_reply` instead, writing each reply out before making the next.
        """
        self.push(data)
        out: list[bytes] = []
        while (reply := self.next_reply()) is not None:
            out.append(reply)
        return b"".join(out)

    def push(self, data: bytes) -> None:
        """Buffer bytes from the connection; `next_reply` parses them."""
        if not self.closed:
            del self._inbox[: self._pos]
            self._pos = 0
            self._inbox += data

    @property
    def _unparsed(self) -> int:
        return len(self._inbox) - self._pos

    def next_reply(self) -> bytes | None:
        """Parse pushed lines up to the end of one request; its reply, or None for more input.

        Never raises. Bytes past that request stay buffered for the next call.
        """
        while not self.closed:
            state = self._request_state
            if isinstance(state, SetParser) and self._inbox.startswith(b"allowed_ip=", self._pos):
                self._allowed_ip_lines(state)
            end = self._inbox.find(b"\n", self._pos)
            if end < 0:
                break
            line = bytes(self._inbox[self._pos : end])
            self._pos = end + 1
            reply = self._line(line)
            if reply:
                return reply
        if not self.closed and (
            self._unparsed > MAX_LINE or self._size + self._unparsed > MAX_REQUEST
        ):
            return self._fail(EPROTO)
        return None

    def _allowed_ip_lines(self, parser: SetParser) -> None:
        """The bulk path: the lines it takes count toward the request size as `_line` counts
        them, and it takes none past MAX_REQUEST (the line there fails on its own)."""
        end = min(len(self._inbox), self._pos + MAX_REQUEST - self._size)
        stop = parser.allowed_ip_lines(self._inbox, self._pos, end)
        self._size += stop - self._pos
        self._pos = stop

    def _fail(self, errno: int) -> bytes:
        self.closed = True
        self._request_state = None
        self._inbox = bytearray()
        self._pos = 0
        self._size = 0
        return _reply(errno)

    def _line(self, raw: bytes) -> bytes:
        if len(raw) > MAX_LINE:
            return self._fail(EPROTO)
        self._size += len(raw) + 1
        if self._size > MAX_REQUEST:
            return self._fail(EPROTO)
        if not raw:
            state, self._request_state, self._size = self._request_state, None, 0
            if state is None:
                return self._fail(EPROTO)  # an empty line where an operation belongs
            return self._request(state)
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            return self._fail(EPROTO)
        if "=" not in line:
            return self._fail(EPROTO)
        state = self._request_state
        if state is None:
            if line == "get=1":
                self._request_state = _Get()
            elif line == "set=1":
                self._request_state = SetParser()
            else:
                return self._fail(EPROTO)  # unknown operation
        elif isinstance(state, _Get):
            state.extra_lines = True
        else:
            state.line(line)
        return b""

    def _request(self, state: SetParser | _Get) -> bytes:
        try:
            if isinstance(state, _Get):
                if state.extra_lines:
                    return _reply(EINVAL)
                return get(self.device).encode("ascii")
            plan = state.finish(self.device)
            if self.before_apply is not None:
                self.before_apply(plan)
            plan.apply(self.device, self.clock() if self.clock is not None else None)
        except UapiError as exc:
            return _reply(exc.errno)
        except LocalProtocolError:
            return _reply(EINVAL)
        except Exception:  # never let a connection take the caller down
            return _reply(EIO)
        return _reply(0)
