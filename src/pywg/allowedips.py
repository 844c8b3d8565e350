"""Cryptokey routing: the allowed-IPs table (whitepaper §3).

Theory of operation
-------------------

WireGuard associates each peer with a set of IP prefixes, its *allowed IPs*
(whitepaper §3, "Cryptokey Routing"). The table is used in both directions:

* sending: the destination address of a packet read from the TUN device is
  looked up and the longest matching prefix names the peer to encrypt it for;
* receiving: after a transport packet is decrypted, its inner source address
  is looked up and the packet is dropped unless the answer is the peer whose
  session key authenticated it.

Each prefix has exactly one owner. Inserting a prefix that already exists
moves it to the new owner (Linux ``wg_allowedips_insert_v4/v6`` semantics), so
configuring ``10.0.0.0/24`` on peer B silently takes it away from peer A.

The structure is a binary trie with path compression, one per address family
(IPv4 and IPv6 never share a root; ``::ffff:1.2.3.4`` is an IPv6 address and
is looked up in the IPv6 trie, as on Linux). Every node is a prefix
``(bits, cidr)``: ``bits`` is the address as an int with the host bits zeroed,
``cidr`` its length. A node's children extend its prefix; the child chosen is
the address bit just after the node's prefix (bit index ``cidr`` counted from
the most significant end). Runs of single-child nodes are never stored: a
child may be many bits longer than its parent, so the depth is bounded by the
number of stored prefixes, not by the address width.

A node either carries a value (a stored prefix) or is an *intermediate* node
created where two stored prefixes diverge. Invariant, kept by ``remove``: an
intermediate node always has exactly two children. So a table with ``n``
prefixes has at most ``2n - 1`` nodes, and churn cannot leak memory: once
every prefix is removed the trie is empty again.

Lookup works on Python ints (``int.from_bytes`` of the packed address) and
costs one loop iteration per node on the path, never one per bit. Along any
root-to-leaf path the prefixes are nested, so "does the address fall inside
this node" is monotone: once a node fails to match, no deeper node can. The
walk therefore steers by one address bit per node, checks the match (an XOR
and a shift) only on nodes that carry a value, remembers the last matching
value, and stops at the first value-carrying node that does not match.

Values are compared by identity (``is``): they are ``Peer`` objects. ``None``
cannot be stored, because ``lookup`` uses it for "no route".

This module is sans-IO and not thread-safe; mutate the table only from the
thread that also looks things up (or hold a lock).

This trie is the reference. With the native backend, `pywg.device.Device`
keeps the same table in C (`pywg._fast.routes.NativeAllowedIPs`, the same API
and answers; the tests run both). Prefixes travel in bulk as a `PrefixList`:
18-byte records (`constants.PREFIX_RECORD_SIZE`) that the C table, the
UAPI's bulk parser and its get answer read and write directly.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Generic, NamedTuple, TypeVar

from .constants import PREFIX_RECORD_SIZE
from .exceptions import LocalProtocolError
from .redact import quote

__all__ = ["AllowedIPs", "Network", "Prefix", "PrefixList", "parse_network", "parse_prefix"]

T = TypeVar("T")

Network = IPv4Network | IPv6Network

_V4_BITS = 32
_V6_BITS = 128

# Address texts the fast path of `parse_prefix` takes: dotted quads without
# leading zeros, and IPv6 of hex groups and colons only. On these,
# socket.inet_pton and ipaddress agree; anything else goes to ipaddress.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_V4_TEXT = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_V6_TEXT = re.compile(r"[0-9A-Fa-f:]{2,39}")
_LENGTH_TEXT = re.compile(r"[0-9]{1,3}")


class Prefix(NamedTuple):
    """An IP prefix as the trie stores it: the address width (32 or 128), the
    address as an int with the host bits cleared, and the prefix length.

    A tenth of the size of an ``IPv6Network`` and cheap to build, so a set
    request of 100,000 allowed IPs is parsed and inserted in well under a second.
    """

    width: int
    bits: int
    cidr: int

    def network(self) -> Network:
        if self.width == _V4_BITS:
            return IPv4Network((self.bits, self.cidr))
        return IPv6Network((self.bits, self.cidr))

    def packed(self) -> bytes:
        """The network address in network byte order (4 or 16 bytes)."""
        return self.bits.to_bytes(self.width // 8, "big")

    def record(self) -> bytes:
        """The packed form (`PrefixList`): family, length, 16 address bytes."""
        if self.width == _V4_BITS:
            return bytes((4, self.cidr)) + self.bits.to_bytes(4, "big") + _V4_PAD
        return bytes((6, self.cidr)) + self.bits.to_bytes(16, "big")

    @classmethod
    def from_record(cls, data: bytes | bytearray | memoryview, offset: int = 0) -> Prefix:
        """The prefix of the record at ``data[offset:]`` (see `record`)."""
        if data[offset] == 4:
            return cls(_V4_BITS, int.from_bytes(data[offset + 2 : offset + 6]), data[offset + 1])
        return cls(_V6_BITS, int.from_bytes(data[offset + 2 : offset + 18]), data[offset + 1])

    def __str__(self) -> str:
        """As ``str(self.network())``, the canonical text (RFC 5952 for IPv6), faster."""
        if self.width == _V4_BITS:
            return f"{socket.inet_ntop(socket.AF_INET, self.packed())}/{self.cidr}"
        if self.bits >> 48 == 0:  # in ::/80 inet_ntop may write a dotted quad; ipaddress never
            return str(self.network())
        return f"{socket.inet_ntop(socket.AF_INET6, self.packed())}/{self.cidr}"


_V4_PAD = bytes(PREFIX_RECORD_SIZE - 6)


class PrefixList:
    """Prefixes in the packed form the bulk paths pass around, in order.

    Each is a record of ``PREFIX_RECORD_SIZE`` bytes (`Prefix.record`): 18
    bytes where a `Prefix` object costs about 160 with its ints, so a set
    request's allowed IPs are kept as one buffer from the parser to the
    native table (``pywg_lpm_insert_many`` reads the same records).
    Repeats are kept; inserting one again changes nothing.
    """

    __slots__ = ("_data",)

    def __init__(self, prefixes: Iterable[Prefix] = ()) -> None:
        self._data = bytearray()
        for prefix in prefixes:
            self.append(prefix)

    def append(self, prefix: Prefix) -> None:
        self._data += prefix.record()

    def extend_records(self, records: bytes | bytearray) -> None:
        """Add records already packed (whole records, each a valid prefix)."""
        if len(records) % PREFIX_RECORD_SIZE:
            raise ValueError(f"records are {PREFIX_RECORD_SIZE} bytes each")
        self._data += records

    def clear(self) -> None:
        self._data = bytearray()

    @property
    def records(self) -> bytearray:
        """The packed records (the list's own buffer: do not change it)."""
        return self._data

    def __len__(self) -> int:
        return len(self._data) // PREFIX_RECORD_SIZE

    def __iter__(self) -> Iterator[Prefix]:
        data = self._data
        for offset in range(0, len(data), PREFIX_RECORD_SIZE):
            yield Prefix.from_record(data, offset)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PrefixList) and self._data == other._data

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"<PrefixList {len(self)} prefixes>"


def _fast_prefix(text: str) -> Prefix | None:
    """`addr/len` parsed with inet_pton, or None where ipaddress must decide."""
    addr, sep, length = text.partition("/")
    if not sep or not _LENGTH_TEXT.fullmatch(length):
        return None
    if _V4_TEXT.fullmatch(addr):
        family, width = socket.AF_INET, _V4_BITS
    elif ":" in addr and _V6_TEXT.fullmatch(addr):
        family, width = socket.AF_INET6, _V6_BITS
    else:
        return None
    cidr = int(length)
    if cidr > width:
        return None
    try:
        bits = int.from_bytes(socket.inet_pton(family, addr), "big")
    except OSError:
        return None
    host = width - cidr
    return Prefix(width, bits >> host << host, cidr)


def parse_prefix(network: str | IPv4Network | IPv6Network | Prefix) -> Prefix:
    """`parse_network`, as a `Prefix`; common texts skip the slow ipaddress parser."""
    if isinstance(network, Prefix):
        return network
    if isinstance(network, str) and (fast := _fast_prefix(network)) is not None:
        return fast
    net = parse_network(network)
    return Prefix(net.max_prefixlen, int(net.network_address), net.prefixlen)


class _Node:
    """One trie node: the prefix ``bits/cidr`` of an address family.

    ``shift`` is ``width - cidr``: ``(addr ^ bits) >> shift == 0`` iff ``addr``
    lies inside the prefix. ``bitshift`` is ``width - 1 - cidr``, the shift
    that brings the steering bit (the first bit after the prefix) to bit 0;
    host routes have no children and use 0 there, which selects a ``None``
    child and ends the walk.
    """

    __slots__ = ("bits", "bitshift", "cidr", "one", "shift", "value", "zero")

    def __init__(self, bits: int, cidr: int, width: int, value: object) -> None:
        self.bits = bits
        self.cidr = cidr
        self.shift = width - cidr
        self.bitshift = width - 1 - cidr if cidr < width else 0
        self.value = value
        self.zero: _Node | None = None
        self.one: _Node | None = None

    def prefix(self) -> Prefix:
        return Prefix(self.cidr + self.shift, self.bits, self.cidr)


def _walk(node: _Node | None, addr: int) -> object:
    """Longest-prefix match of ``addr`` starting at ``node`` (see module doc)."""
    best: object = None
    while node is not None:
        value = node.value
        if value is not None:
            if (addr ^ node.bits) >> node.shift:
                break  # prefixes nest along a path: nothing deeper can match
            best = value
        node = node.one if addr >> node.bitshift & 1 else node.zero
    return best


def parse_network(network: str | IPv4Network | IPv6Network) -> Network:
    """Parse an allowed-IPs entry, masking host bits off (``"10.0.0.5/8"`` is ``10.0.0.0/8``).

    A bare address is a host route (``/32`` or ``/128``). Raises
    ``LocalProtocolError`` for anything else.
    """
    if isinstance(network, IPv4Network | IPv6Network):
        return network
    if isinstance(network, str):
        try:
            return ipaddress.ip_network(network.strip(), strict=False)
        except ValueError:
            raise LocalProtocolError(f"invalid allowed-IPs network {quote(network)}") from None
    raise LocalProtocolError(
        "allowed-IPs network must be a str, IPv4Network or IPv6Network, "
        f"not {type(network).__name__}"
    )


class AllowedIPs(Generic[T]):
    """Longest-prefix-match table mapping IP prefixes to values (peers).

    >>> table: AllowedIPs[str] = AllowedIPs()
    >>> table.insert("10.0.0.0/8", "peer-a")
    >>> table.insert("10.1.0.0/16", "peer-b")
    >>> table.lookup("10.1.2.3"), table.lookup("10.2.0.1"), table.lookup("11.0.0.1")
    ('peer-b', 'peer-a', None)
    """

    __slots__ = ("_count", "_owned", "_root4", "_root6", "version")

    def __init__(self) -> None:
        self._root4: _Node | None = None
        self._root6: _Node | None = None
        self._count = 0
        self.version = 0  # changes with every insert, remove and clear
        # id(value) -> that value's nodes, in the order they were assigned to it.
        # The nodes keep the value alive, so its id cannot be reused meanwhile.
        self._owned: dict[int, dict[_Node, None]] = {}

    # -- mutation ---------------------------------------------------------

    def insert(self, network: str | IPv4Network | IPv6Network | Prefix, value: T) -> None:
        """Route ``network`` to ``value``.

        Host bits are masked off. If the masked prefix is already present it
        is reassigned to ``value`` (it moves between peers), as Linux does.
        """
        if value is None:
            raise LocalProtocolError("None cannot be stored in AllowedIPs (it means 'no route')")
        width, bits, cidr = parse_prefix(network)
        v6 = width == _V6_BITS

        parent: _Node | None = None
        node = self._root6 if v6 else self._root4
        # Descend while the current node is a prefix of (or equal to) the new one.
        while node is not None and node.cidr <= cidr and not (bits ^ node.bits) >> node.shift:
            if node.cidr == cidr:
                if node.value is None:
                    self._count += 1  # an intermediate fork becomes a stored prefix
                self._assign(node, value)
                return
            parent = node
            node = node.one if bits >> node.bitshift & 1 else node.zero

        new = _Node(bits, cidr, width, None)
        subtree = new
        if node is not None:
            # ``node`` sits where ``new`` belongs but is not a prefix of it:
            # either ``new`` is a prefix of ``node`` (it becomes the parent), or
            # the two diverge and need an intermediate node at the fork.
            common = width - (bits ^ node.bits).bit_length()  # leading bits in common
            if common >= cidr:
                _set_child(new, node.bits >> new.bitshift & 1, node)
            else:
                fork_shift = width - common
                fork = _Node(bits >> fork_shift << fork_shift, common, width, None)
                side = bits >> fork.bitshift & 1
                _set_child(fork, side, new)
                _set_child(fork, side ^ 1, node)
                subtree = fork
        # The subtree is complete before it is linked in, so a walk never sees
        # a half-built branch.
        self._replace(v6, parent, bits, subtree)
        self._count += 1
        self._assign(new, value)

    def remove(self, network: str | IPv4Network | IPv6Network | Prefix, value: T | None) -> bool:
        """Delete exactly ``network`` if it is owned by ``value``; return whether it was.

        No-op (``False``) if the masked prefix is absent, owned by another
        value, or ``value`` is ``None`` (wireguard-go ``RemoveByPrefix`` semantics).
        """
        prefix = parse_prefix(network)
        if value is None:
            return False
        node = self._find_exact(prefix)
        if node is None or node.value is not value:
            return False
        self._unown(node)
        self._delete(node)
        return True

    def remove_by_value(self, value: T) -> int:
        """Delete every prefix owned by ``value``; return how many (Linux ``remove_by_peer``)."""
        nodes = self._owned.pop(id(value), None)
        if nodes is None:
            return 0
        for node in nodes:
            self._delete(node)
        return len(nodes)

    def insert_many(self, prefixes: PrefixList, value: T) -> None:
        """`insert` of each prefix in order, all to ``value``."""
        for prefix in prefixes:
            self.insert(prefix, value)

    def remove_many(self, prefixes: PrefixList, value: T | None) -> int:
        """`remove` of each prefix in order; how many were removed."""
        return sum(self.remove(prefix, value) for prefix in prefixes)

    def clear(self) -> None:
        """Remove every prefix of both families."""
        self._root4 = None
        self._root6 = None
        self._owned.clear()
        self._count = 0
        self.version += 1

    # -- queries ----------------------------------------------------------

    def lookup(self, address: str | bytes | IPv4Address | IPv6Address) -> T | None:
        """Value of the longest prefix containing ``address``, or ``None``.

        ``bytes`` are a packed address and follow ``lookup_packed`` (a wrong
        length gives ``None``); a malformed string raises ``LocalProtocolError``.
        """
        if isinstance(address, bytes | bytearray | memoryview):
            return self.lookup_packed(address)
        if isinstance(address, str):
            try:
                address = ipaddress.ip_address(address.strip())
            except ValueError:
                raise LocalProtocolError(f"invalid IP address {quote(address)}") from None
        if isinstance(address, IPv4Address):
            return _walk(self._root4, int(address))  # type: ignore[return-value]
        if isinstance(address, IPv6Address):
            return _walk(self._root6, int(address))  # type: ignore[return-value]
        raise LocalProtocolError(
            "address must be a str, bytes, IPv4Address or IPv6Address, "
            f"not {type(address).__name__}"
        )

    def lookup_packed(self, address: bytes | bytearray | memoryview) -> T | None:
        """Fast path: look up a 4- or 16-byte network-order address.

        Any other length returns ``None``; this is fed packet bytes and never raises.
        """
        size = len(address)
        if size == 4:
            node = self._root4
        elif size == 16:
            node = self._root6
        else:
            return None
        addr = int.from_bytes(address)
        # _walk() inlined: this runs once per packet.
        best: object = None
        while node is not None:
            value = node.value
            if value is not None:
                if (addr ^ node.bits) >> node.shift:
                    break
                best = value
            node = node.one if addr >> node.bitshift & 1 else node.zero
        return best  # type: ignore[return-value]

    def networks_of(self, value: T) -> list[Network]:
        """The (masked) prefixes owned by ``value``.

        Ordered by when each prefix was last assigned to ``value`` (oldest
        first), which is insertion order unless a prefix moved away and back.
        """
        return [prefix.network() for prefix in self.prefixes_of(value)]

    def prefixes_of(self, value: T) -> list[Prefix]:
        """`networks_of`, as `Prefix`es: the fast form for rendering a get reply."""
        return [node.prefix() for node in self._owned.get(id(value), ())]

    def records_of(self, value: T) -> PrefixList:
        """`prefixes_of`, packed."""
        return PrefixList(self.prefixes_of(value))

    def items(self) -> Iterator[tuple[Network, T]]:
        """Every ``(network, value)``: IPv4 first, then IPv6, each sorted by address then length.

        Iterates over a snapshot, so the table may be modified meanwhile.
        """
        return iter([(prefix.network(), value) for prefix, value in self.prefixes()])

    def prefixes(self) -> Iterator[tuple[Prefix, T]]:
        """`items`, as ``(Prefix, value)``: the fast form for mirroring the table."""
        snapshot: list[tuple[Prefix, T]] = [
            (node.prefix(), node.value)  # type: ignore[misc]
            for root in (self._root4, self._root6)
            for node in _preorder(root)
            if node.value is not None
        ]
        return iter(snapshot)

    def node_count(self) -> int:
        """Number of trie nodes, stored prefixes plus intermediate forks (at most ``2*len - 1``)."""
        return sum(1 for root in (self._root4, self._root6) for _ in _preorder(root))

    def owner_count(self) -> int:
        """Number of distinct values that own at least one prefix."""
        return len(self._owned)

    def __len__(self) -> int:
        """Number of stored prefixes (both families)."""
        return self._count

    def __repr__(self) -> str:
        return f"<AllowedIPs prefixes={self._count} owners={len(self._owned)}>"

    # -- internals --------------------------------------------------------

    def _assign(self, node: _Node, value: object) -> None:
        self.version += 1
        old = node.value
        if old is value:
            return
        if old is not None:
            self._unown(node)
        node.value = value
        self._owned.setdefault(id(value), {})[node] = None

    def _unown(self, node: _Node) -> None:
        key = id(node.value)
        nodes = self._owned[key]
        del nodes[node]
        if not nodes:
            del self._owned[key]

    def _find_exact(self, prefix: Prefix) -> _Node | None:
        width, bits, cidr = prefix
        node = self._root6 if width == _V6_BITS else self._root4
        while node is not None and node.cidr < cidr:
            node = node.one if bits >> node.bitshift & 1 else node.zero
        if node is None or node.cidr != cidr or node.bits != bits:
            return None
        return node

    def _replace(self, v6: bool, parent: _Node | None, bits: int, child: _Node | None) -> None:
        """Point ``parent``'s link toward ``bits`` (or the root) at ``child``."""
        if parent is not None:
            _set_child(parent, bits >> parent.bitshift & 1, child)
        elif v6:
            self._root6 = child
        else:
            self._root4 = child

    def _delete(self, node: _Node) -> None:
        self.version += 1
        """Drop ``node``'s value (already un-owned) and prune what became redundant."""
        v6 = node.cidr + node.shift == _V6_BITS
        # No parent pointers (they would make the trie cyclic garbage): find
        # the parent and grandparent by walking the node's own key.
        grandparent: _Node | None = None
        parent: _Node | None = None
        cur = self._root6 if v6 else self._root4
        while cur is not node:
            assert cur is not None, "allowed-IPs node not in its trie"
            grandparent, parent = parent, cur
            cur = cur.one if node.bits >> cur.bitshift & 1 else cur.zero

        node.value = None
        self._count -= 1
        if node.zero is not None and node.one is not None:
            return  # still a fork between two stored prefixes: keep as intermediate
        # Splice the node out, its single child (if any) takes its place.
        child = node.zero if node.zero is not None else node.one
        self._replace(v6, parent, node.bits, child)
        if child is None and parent is not None and parent.value is None:
            # The parent was an intermediate fork and just lost a branch: it
            # now has one child and is redundant too (Linux frees it likewise).
            remaining = parent.zero if parent.zero is not None else parent.one
            self._replace(v6, grandparent, parent.bits, remaining)

    def _validate(self) -> None:
        """Check the trie invariants (for tests); raises AssertionError."""
        total = 0
        owned = sum(len(nodes) for nodes in self._owned.values())
        for root, width in ((self._root4, _V4_BITS), (self._root6, _V6_BITS)):
            stack: list[tuple[_Node, _Node | None]] = [(root, None)] if root else []
            while stack:
                node, parent = stack.pop()
                assert node.cidr + node.shift == width
                assert node.bits >> node.shift << node.shift == node.bits, "host bits set"
                if parent is not None:
                    assert node.cidr > parent.cidr
                    assert not (node.bits ^ parent.bits) >> parent.shift, "not under parent"
                    side = node.bits >> parent.bitshift & 1
                    assert (parent.one if side else parent.zero) is node, "wrong side"
                if node.value is None:
                    assert node.zero is not None and node.one is not None, "redundant node"
                else:
                    total += 1
                    assert node in self._owned[id(node.value)], "owner index out of date"
                stack.extend((c, node) for c in (node.one, node.zero) if c is not None)
        assert total == self._count == owned, (total, self._count, owned)


def _set_child(parent: _Node, side: int, child: _Node | None) -> None:
    if side:
        parent.one = child
    else:
        parent.zero = child


def _preorder(root: _Node | None) -> Iterator[_Node]:
    """Nodes in address order (a prefix before the longer prefixes inside it)."""
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        yield node
        if node.one is not None:
            stack.append(node.one)
        if node.zero is not None:
            stack.append(node.zero)
