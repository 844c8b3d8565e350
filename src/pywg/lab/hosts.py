"""Lab hosts: namespaces, veth links, commands run inside them, ping, loss and teardown.

The core of :mod:`pywg.lab` (see its docstring for a guide and the rules):
:class:`Lab` owns every namespace, link, interface name and process it made
and removes them at :meth:`Lab.close`; :class:`Host` runs commands in one
namespace; :class:`Link` is a veth pair with underlay addresses on both ends.
Every command has a timeout and every loop a deadline.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import itertools
import logging
import math
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

from ..system.netns import run_in, socket_in

T = TypeVar("T")

logger = logging.getLogger(__name__)

IFNAMSIZ = 15  # longest Linux interface name (IFNAMSIZ - 1)
UAPI_DIR = Path("/var/run/wireguard")
COMMAND_TIMEOUT = 30.0  # seconds for one `ip`/`nft`/`sysctl` call
KILL_GRACE = 3.0  # seconds between SIGTERM and SIGKILL at close()
IPV6_READY = 5.0  # seconds Lab.link waits for IPv6 to see a new link's carrier

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_=+.-]{1,15}$")  # what wg-quick accepts
_TAG_RE = re.compile(r"^(?P<prefix>[A-Za-z0-9]+)-(?P<pid>\d+)-(?P<id>[0-9a-f]{6})-")
_loss_tables = itertools.count(1)  # nft table names of Host.loss, unique in this process


class LabError(RuntimeError):
    """A lab command failed; the message names the command and quotes its stderr."""


class Closing:
    """A context manager that closes what it holds on the way out: ``with X(...) as x:``.

    Subclasses define :meth:`close`; ``__enter__`` returns the object itself.
    """

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def unavailable_reason() -> str | None:
    """Why a lab cannot be built here (not root, no ``ip``), or None if it can."""
    if os.geteuid() != 0:
        return "the namespace lab must run as root"
    if shutil.which("ip") is None:
        return "the namespace lab needs iproute2 (`ip`)"
    return None


def require_root() -> None:
    """Raise :class:`LabError` unless this process is root."""
    if os.geteuid() != 0:
        raise LabError("the namespace lab must run as root (network namespaces, veth, TUN)")


def _run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = COMMAND_TIMEOUT,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    cmd = list(argv)
    try:
        result = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"command timed out after {timeout:g} s: {shlex.join(cmd)}") from exc
    except OSError as exc:
        raise LabError(f"cannot run {shlex.join(cmd)}: {exc}") from exc
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()[-2000:] or "(no output)"
        raise LabError(f"command failed (exit {result.returncode}): {shlex.join(cmd)}: {detail}")
    return result


def _family_flag(*addresses: str | None) -> str:
    return "-6" if any(a is not None and ":" in a for a in addresses) else "-4"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _netns_names() -> list[str]:
    out = _run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _kill_netns_pids(netns: str) -> None:
    """SIGKILL whatever still runs inside `netns` (daemons that forked away, say)."""
    result = _run(["ip", "netns", "pids", netns], check=False)
    for word in result.stdout.split():
        if word.isdigit() and int(word) != os.getpid():
            with contextlib.suppress(OSError):
                os.kill(int(word), signal.SIGKILL)


def _delete_netns(netns: str) -> None:
    _kill_netns_pids(netns)
    _run(["ip", "netns", "del", netns])


def cleanup_stale(prefix: str = "pwl") -> list[str]:
    """Delete namespaces left by labs (with this prefix) whose process is gone.

    Returns the names deleted. Namespaces of live labs are never touched.
    """
    deleted = []
    for name in _netns_names():
        match = _TAG_RE.match(name)
        if match is None or match["prefix"] != prefix or _pid_alive(int(match["pid"])):
            continue
        try:
            _delete_netns(name)
            deleted.append(name)
        except LabError as exc:
            logger.warning("lab: cannot delete stale namespace %s: %s", name, exc)
    return deleted


class Host:
    """One network namespace of a :class:`Lab`. Create with :meth:`Lab.host`."""

    def __init__(self, lab: Lab, name: str, netns: str) -> None:
        self.lab = lab
        self.name = name  # logical name, as given to Lab.host
        self.netns = netns  # the real namespace name

    def __repr__(self) -> str:
        return f"Host({self.name!r}, netns={self.netns!r})"

    # -- running things ---------------------------------------------------------------

    def exec_argv(self, *argv: str) -> list[str]:
        """The argument list that runs `argv` inside this namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def run(
        self,
        *argv: str,
        check: bool = True,
        timeout: float = COMMAND_TIMEOUT,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` in this namespace and wait; stdout/stderr are captured as text.

        With ``check`` a non-zero exit raises :class:`LabError`; a timeout always does.
        """
        return _run(self.exec_argv(*argv), check=check, timeout=timeout, input=input)

    def popen(
        self, *argv: str, env: dict[str, str] | None = None, **kwargs: Any
    ) -> subprocess.Popen[bytes]:
        """Start `argv` in this namespace; the lab kills it (and its process group) at close.

        `env` adds to (not replaces) this process's environment. Other keyword
        arguments go to :class:`subprocess.Popen`; it starts a new session
        unless told otherwise, so whatever it forks dies with it.
        """
        if env is not None:
            kwargs["env"] = {**os.environ, **env}
        kwargs.setdefault("start_new_session", True)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(self.exec_argv(*argv), **kwargs)
        # `ip netns exec` execs the command itself, so proc.pid is the command
        return self.lab._track(proc, group=bool(kwargs["start_new_session"]))

    def socket(self, family: int, kind: int, proto: int = 0) -> socket.socket:
        """A socket of this process that lives in this host's namespace (`netns.socket_in`)."""
        return socket_in(self.netns, family, kind, proto)

    def call(self, function: Callable[[], T]) -> T:
        """Run `function` on a thread inside this host's namespace (`netns.run_in`):
        ``host.call(lambda: asyncio.run(main()))`` runs an event loop whose sockets live here."""
        return run_in(self.netns, function)

    def python(self, code: str, *args: str, timeout: float = 60) -> str:
        """Run ``python -c code args...`` (this interpreter) here; return its stdout."""
        return self.run(sys.executable, "-c", code, *args, timeout=timeout).stdout

    def sysctl(self, *assignments: str) -> None:
        """Set sysctls inside this namespace: ``sysctl("net.ipv4.ip_forward=1", ...)``.

        Only per-namespace keys (``net.*``): the root namespace is never touched.
        """
        for item in assignments:
            if not item.startswith("net.") or "=" not in item:
                raise LabError(f"not a per-namespace sysctl assignment: {item!r}")
        self.run("sysctl", "-q", "-w", *assignments)

    # -- addresses and routes ---------------------------------------------------------

    def ip(self, *args: str) -> str:
        """Run ``ip -n NETNS args...``; return its stdout."""
        return _run(["ip", "-n", self.netns, *args]).stdout

    def addr(self, ifname: str, cidr: str) -> None:
        """Add an address (``198.19.0.1/24``, ``fd19::1/64``) to an interface; v6 skips DAD."""
        iface = ipaddress.ip_interface(cidr)
        extra = ["nodad"] if iface.version == 6 else []
        self.ip(f"-{iface.version}", "addr", "add", cidr, "dev", ifname, *extra)

    def route(self, cidr: str, via: str | None = None, dev: str | None = None) -> None:
        """Add a route; ``cidr`` may be ``default`` (IPv4) or ``::/0``."""
        if via is None and dev is None:
            raise LabError("route needs via= or dev=")
        args = [_family_flag(cidr, via), "route", "add", cidr]
        if via is not None:
            args += ["via", via]
        if dev is not None:
            args += ["dev", dev]
        self.ip(*args)

    def link_up(self, ifname: str, mtu: int | None = None) -> None:
        """Bring an interface up (setting its MTU first if given)."""
        if mtu is not None:
            self.ip("link", "set", "dev", ifname, "mtu", str(mtu))
        self.ip("link", "set", "dev", ifname, "up")

    def wait_ipv6_ready(self, ifname: str, *, deadline: float = IPV6_READY) -> bool:
        """Wait until IPv6 has seen `ifname`'s carrier (its link-local address appears).

        A new link's carrier reaches IPv6 through the kernel's linkwatch,
        which batches events up to a second apart; until then neighbour
        discovery over it fails and the first IPv6 packet costs a 1 s
        retransmit (IPv4 does not wait). :meth:`Lab.link` calls this for
        both ends; call it for a TUN device once it is up. False (and a
        warning) if it did not happen within `deadline` seconds.
        """
        end = time.monotonic() + deadline
        for _ in range(int(deadline / 0.02) + 1):
            out = self.ip("-6", "-o", "addr", "show", "dev", ifname, "scope", "link")
            if any("tentative" not in line for line in out.splitlines()):
                return True
            if time.monotonic() >= end:
                break
            time.sleep(0.02)
        logger.warning("lab: IPv6 on %s %s not ready after %g s", self.netns, ifname, deadline)
        return False

    def forwarding(self, on: bool = True) -> None:
        """Route between this host's interfaces (IPv4 and IPv6)."""
        flag = int(on)
        self.sysctl(f"net.ipv4.ip_forward={flag}", f"net.ipv6.conf.all.forwarding={flag}")

    def nft(self, ruleset: str) -> None:
        """Load an nftables ruleset here (``nft -f -``): NAT, drops, loss injection."""
        self.run("nft", "-f", "-", input=ruleset)

    def loss(
        self,
        ifname: str,
        percent: float,
        *,
        direction: Literal["in", "out", "both"] = "both",
        protocol: Literal["udp", "tcp"] | None = "udp",
        port: int | None = None,
    ) -> Loss:
        """Drop `percent` % of the packets crossing `ifname`, at random, until removed.

        nftables ``numgen random mod 10000 < N`` (per packet, independent) in a
        ``netdev`` table of its own, on the wire of `ifname`: ``"in"`` drops
        what arrives (ingress hook, before conntrack, NAT or routing see it),
        ``"out"`` what leaves (egress hook, Linux 5.16+, after all of them),
        forwarded or local alike; a local sender gets no error, as on a lossy
        wire. Only `protocol` packets (None: all, ARP and neighbour discovery
        too), and with `port` only those to that destination port. A UDP GSO
        batch counts as one packet: split it (``gso_max_segs 1`` on the
        sender's link) to drop single datagrams.
        """
        if not 0 <= percent <= 100:
            raise LabError(f"loss must be 0-100 %, not {percent!r}")
        if port is not None and protocol is None:
            raise LabError("loss on a port needs a protocol")
        match = f"meta l4proto {protocol}" if protocol is not None else ""
        if port is not None:
            match = f"{protocol} dport {port}"
        share = round(percent * 100)  # in 1/10000
        chance = f"numgen random mod 10000 < {share} " if share < 10000 else ""
        drop = f"{match} counter {chance}counter drop"
        table = f"pywg_loss{next(_loss_tables)}"
        hooks = {"in": "ingress", "out": "egress"}
        wanted = ("in", "out") if direction == "both" else (direction,)
        if not set(wanted) <= set(hooks):
            raise LabError(f"loss direction must be in, out or both, not {direction!r}")
        body = "".join(
            f'  chain {name} {{\n    type filter hook {hooks[name]} device "{ifname}" priority 0;'
            f"\n    {drop}\n  }}\n"
            for name in wanted
        )
        self.nft(f"table netdev {table} {{\n{body}}}\n")
        return Loss(self, table)

    # -- reachability -----------------------------------------------------------------

    def ping(self, address: str, *, count: int = 3, timeout: float = 10) -> bool:
        """Send `count` echo requests; True if every one was answered within `timeout` s.

        Uses iputils ``ping`` when installed, else an equivalent raw-socket
        pinger in Python (same result), so the lab does not depend on it.
        """
        family = _family_flag(address)
        if shutil.which("ping") is None:
            return _python_ping(self, address, count, timeout)
        argv = ["ping", family, "-n", "-q", "-c", str(count), "-i", "0.2"]
        argv += ["-W", f"{max(timeout, 0.1):.3f}", "-w", str(max(1, math.ceil(timeout))), address]
        return self.run(*argv, check=False, timeout=timeout + 10).returncode == 0

    def wait_ping(self, address: str, *, deadline: float = 15) -> bool:
        """Ping once at a time until a reply arrives or `deadline` seconds pass."""
        end = time.monotonic() + deadline
        for _ in range(int(deadline * 20) + 1):  # bounded in count as well as time
            left = end - time.monotonic()
            if left <= 0:
                break
            if self.ping(address, count=1, timeout=min(1.0, max(left, 0.2))):
                return True
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))
        return False


_PING_SCRIPT = r"""
import os, select, socket, struct, sys, time
addr, count, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
v6 = ":" in addr
if v6:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    request, reply = 128, 129
else:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    request, reply = 8, 0
family = socket.AF_INET6 if v6 else socket.AF_INET
want = socket.inet_pton(family, addr)

def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF

ident = os.getpid() & 0xFFFF
end = time.monotonic() + timeout
answered = 0
for seq in range(count):
    payload = b"pywg-lab-ping-%04d" % seq
    header = struct.pack("!BBHHH", request, 0, 0, ident, seq)
    if not v6:  # the kernel fills in the ICMPv6 checksum itself
        header = struct.pack("!BBHHH", request, 0, checksum(header + payload), ident, seq)
    sock.sendto(header + payload, (addr, 0))
    while time.monotonic() < end:
        ready, _, _ = select.select([sock], [], [], max(0.0, end - time.monotonic()))
        if not ready:
            break
        data, source = sock.recvfrom(65535)
        if not v6:
            data = data[(data[0] & 0x0F) * 4:]
        if len(data) < 8 or socket.inet_pton(family, source[0]) != want:
            continue
        kind, _, _, rid, rseq = struct.unpack("!BBHHH", data[:8])
        if kind == reply and rid == ident and rseq == seq:
            answered += 1
            break
    else:
        break
print("answered", answered, "of", count)
sys.exit(0 if answered == count else 1)
"""


class Loss:
    """Random loss from :meth:`Host.loss`: its counters, and :meth:`remove`."""

    def __init__(self, host: Host, table: str) -> None:
        self.host, self.table = host, table

    def __repr__(self) -> str:
        return f"Loss({self.host.name}, {self.table})"

    def counts(self) -> tuple[int, int]:
        """(packets matched, packets dropped) so far, both directions together."""
        out = self.host.run("nft", "list", "table", "netdev", self.table).stdout
        counters = [int(n) for n in re.findall(r"counter packets (\d+)", out)]
        return sum(counters[0::2]), sum(counters[1::2])

    def remove(self) -> None:
        """Stop dropping (deletes the table)."""
        self.host.nft(f"delete table netdev {self.table}\n")


def _python_ping(host: Host, address: str, count: int, timeout: float) -> bool:
    argv = (sys.executable, "-c", _PING_SCRIPT, address, str(count), str(timeout))
    return host.run(*argv, check=False, timeout=timeout + 30).returncode == 0


class _EndAddress:
    """A read-only :class:`Link` attribute: the bare address of one end in one family."""

    def __init__(self, version: int, side: int) -> None:
        self.version, self.side = version, side

    def __get__(self, link: Link, owner: type[Link] | None = None) -> str:
        return link._addr(self.version, self.side)


class Link:
    """A veth pair between two hosts, up, with addresses on both ends.

    The ``*_addr4`` / ``*_addr6`` properties are bare addresses (no prefix);
    they raise :class:`LabError` when the link was made without that family.
    """

    def __init__(
        self,
        a: Host,
        b: Host,
        a_if: str,
        b_if: str,
        subnet: int,
        v4: bool,
        v6: bool,
        mtu: int,
    ) -> None:
        self.a, self.b = a, b
        self.a_if, self.b_if = a_if, b_if
        self.subnet = subnet
        self.mtu = mtu
        self.v4, self.v6 = v4, v6

    def __repr__(self) -> str:
        return (
            f"Link({self.a.name}:{self.a_if} <-> {self.b.name}:{self.b_if}, subnet={self.subnet})"
        )

    @property
    def prefix4(self) -> str:
        return f"198.18.{self.subnet}.0/24"

    @property
    def prefix6(self) -> str:
        return f"fd18::{self.subnet}:0/112"

    def side(self, host: Host) -> Literal[1, 2]:
        """1 for the host on the a end, 2 for the b end; LabError for any other host."""
        if host is self.a:
            return 1
        if host is self.b:
            return 2
        raise LabError(f"{host!r} is not an end of {self!r}")

    def ifname(self, host: Host) -> str:
        """The veth interface of `host`'s end."""
        return self.a_if if self.side(host) == 1 else self.b_if

    def address(self, host: Host, version: int = 4) -> str:
        """The bare IPv4 (or, with `version` 6, IPv6) address of `host`'s end."""
        return self._addr(version, self.side(host))

    def _addr(self, version: int, side: int) -> str:
        if version == 4:
            if not self.v4:
                raise LabError(f"{self!r} has no IPv4 addresses")
            return f"198.18.{self.subnet}.{side}"
        if not self.v6:
            raise LabError(f"{self!r} has no IPv6 addresses")
        return f"fd18::{self.subnet}:{side}"

    a_addr4 = _EndAddress(4, 1)
    b_addr4 = _EndAddress(4, 2)
    a_addr6 = _EndAddress(6, 1)
    b_addr6 = _EndAddress(6, 2)


_open_labs: set[Lab] = set()  # closed at exit if their owner forgot


@atexit.register
def close_all_labs() -> None:
    """Close every lab of this process still open (at exit, or on a signal)."""
    for lab in list(_open_labs):
        lab.close()


class Lab(Closing):
    """A set of namespaces, links and processes that :meth:`close` removes again.

    Use as a context manager. `prefix` (letters and digits) starts every
    namespace name: ``{prefix}-{pid}-{6 random hex}-{host}``.
    """

    def __init__(self, prefix: str = "pwl") -> None:
        if not re.fullmatch(r"[A-Za-z0-9]{1,8}", prefix):
            raise LabError(f"lab prefix must be 1-8 letters or digits, not {prefix!r}")
        require_root()
        if shutil.which("ip") is None:
            raise LabError("the namespace lab needs iproute2 (`ip`)")
        self.id = secrets.token_hex(3)
        self.tag = f"{prefix}-{os.getpid()}-{self.id}"
        self.hosts: dict[str, Host] = {}
        self.links: list[Link] = []
        self._procs: list[tuple[subprocess.Popen[bytes], bool]] = []
        self._ifnames: list[str] = []
        self._ifcount = 0
        self._subnets: set[int] = set()
        self._lock = threading.Lock()
        self._closed = False
        _open_labs.add(self)

    def __repr__(self) -> str:
        return f"Lab({self.tag!r}, hosts={list(self.hosts)})"

    def _check_open(self) -> None:
        if self._closed:
            raise LabError(f"lab {self.tag} is closed")

    # -- building -----------------------------------------------------------------

    def host(self, name: str) -> Host:
        """A new namespace ``{tag}-{name}`` with lo up, IPv6 on and DAD off."""
        self._check_open()
        if not _NAME_RE.match(name) or name in self.hosts:
            raise LabError(f"host name {name!r} is invalid or already used in this lab")
        netns = f"{self.tag}-{name}"
        _run(["ip", "netns", "add", netns])
        host = Host(self, name, netns)
        self.hosts[name] = host  # from here on close() deletes it
        # Before any interface exists, so every later one (veth, TUN) inherits "default".
        host.sysctl(
            "net.ipv6.conf.all.disable_ipv6=0",
            "net.ipv6.conf.default.disable_ipv6=0",
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        )
        host.link_up("lo")
        return host

    def link(
        self,
        a: Host,
        b: Host,
        *,
        subnet: int | None = None,
        v4: bool = True,
        v6: bool = True,
        mtu: int = 1500,
    ) -> Link:
        """A veth pair a <-> b with 198.18.{subnet}.1|2/24 and fd18::{subnet}:1|2/112, up.

        `subnet` (0-255, unique in this lab) counts up from 1 when not given.
        IPv6 uses /112, not /64: fd18::1:1 and fd18::2:1 share their first 64
        bits, so /64 would put every link of a router on one prefix.
        """
        self._check_open()
        if a.lab is not self or b.lab is not self or a is b:
            raise LabError("link needs two different hosts of this lab")
        if subnet is None:
            subnet = next(n for n in range(1, 256) if n not in self._subnets)
        if not 0 <= subnet <= 255 or subnet in self._subnets:
            raise LabError(f"subnet {subnet} is out of range or already used in this lab")
        self._subnets.add(subnet)
        a_if = self._unique_name(f"v{subnet}a")
        b_if = self._unique_name(f"v{subnet}b")
        # Created directly inside both namespaces: nothing appears in the root one.
        veth = ["type", "veth", "peer", "name", b_if, "netns", b.netns]
        _run(["ip", "link", "add", a_if, "netns", a.netns, *veth])
        link = Link(a, b, a_if, b_if, subnet, v4, v6, mtu)
        for host, ifname, side in ((a, a_if, 1), (b, b_if, 2)):
            if v4:
                host.addr(ifname, f"198.18.{subnet}.{side}/24")
            if v6:
                host.addr(ifname, f"fd18::{subnet}:{side}/112")
            host.link_up(ifname, mtu)
        self.links.append(link)
        if v6:
            a.wait_ipv6_ready(a_if)
            b.wait_ipv6_ready(b_if)
        return link

    def _unique_name(self, base: str) -> str:
        with self._lock:
            n = self._ifcount
            self._ifcount += 1
        tail = f"{self.id}{n}"
        name = f"{base[: IFNAMSIZ - len(tail) - 1]}-{tail}"
        if not _IFNAME_RE.match(name):
            raise LabError(f"cannot make an interface name from {base!r}")
        return name

    def ifname(self, base: str = "wg") -> str:
        """A unique interface name (<= 15 chars) for a TUN device, e.g. ``wg-3fa9c12``.

        close() removes ``/var/run/wireguard/{name}.sock`` if a daemon left it.
        """
        self._check_open()
        for _ in range(100):
            name = self._unique_name(base)
            if not (UAPI_DIR / f"{name}.sock").exists():
                self._ifnames.append(name)
                return name
        raise LabError(f"no free interface name for {base!r}")

    def _track(self, proc: subprocess.Popen[bytes], *, group: bool) -> subprocess.Popen[bytes]:
        with self._lock:
            self._procs = [(p, g) for p, g in self._procs if p.poll() is None]
            self._procs.append((proc, group))
            closed = self._closed
        if closed:
            self._stop_processes([(proc, group)])
            raise LabError(f"lab {self.tag} is closed")
        return proc

    # -- teardown -----------------------------------------------------------------

    def close(self) -> None:
        """Kill tracked processes, delete every namespace, remove leftover sockets.

        Idempotent; errors are logged, never raised.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            procs, self._procs = self._procs, []
        _open_labs.discard(self)
        try:
            self._stop_processes(procs)
        except Exception:
            logger.exception("lab %s: stopping processes failed", self.tag)
        for host in reversed(list(self.hosts.values())):
            try:
                _delete_netns(host.netns)
            except Exception as exc:
                logger.warning("lab %s: cannot delete namespace %s: %s", self.tag, host.netns, exc)
        for name in self._ifnames:
            try:
                (UAPI_DIR / f"{name}.sock").unlink(missing_ok=True)
            except OSError as exc:
                logger.warning("lab %s: cannot remove socket of %s: %s", self.tag, name, exc)

    @staticmethod
    def _stop_processes(procs: list[tuple[subprocess.Popen[bytes], bool]]) -> None:
        live = [(p, g) for p, g in procs if p.poll() is None]
        for proc, group in live:
            _signal(proc, group, signal.SIGTERM)
        end = time.monotonic() + KILL_GRACE
        for proc, group in live:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, end - time.monotonic()))
            # the leader may be gone while others in its group live on
            _signal(proc, group, signal.SIGKILL)
        for proc, _ in procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                logger.warning("lab: process %d survived SIGKILL", proc.pid)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def _signal(proc: subprocess.Popen[bytes], group: bool, sig: signal.Signals) -> None:
    try:
        if group:
            os.killpg(proc.pid, sig)
        elif proc.poll() is None:
            proc.send_signal(sig)
    except OSError:
        pass
