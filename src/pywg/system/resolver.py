"""The machine's resolver: where names go now, and telling it about the mesh's domain.

Three things a mesh node needs from the OS resolver:

- `nameservers`: the servers /etc/resolv.conf names (resolv.conf(5):
  ``nameserver ADDRESS`` lines), read before anything else is done, so that
  names outside the mesh are passed on as the machine always resolved them.
  127.0.0.53 there is systemd-resolved's stub, and is passed on to like any.
- `ResolvedLink`: where systemd-resolved runs, the mesh interface is given
  its DNS server (this node's server on its tunnel address) and the routing
  domain ``~DOMAIN`` (``resolvectl dns`` / ``resolvectl domain``,
  resolvectl(1)), so only names under DOMAIN go there; ``resolvectl revert``
  undoes it (the link's going away does too).
- `HostsBlock`: elsewhere, a block of lines in /etc/hosts (hosts(5)),
  between ``# BEGIN pywg IF`` and ``# END pywg IF``, holding every name of
  the mesh, rewritten whenever they change and taken out on exit. A block
  left by a run that crashed is replaced by the first write. The file is
  replaced by a rename (readers see the old or the new file, never half of
  one); where /etc/hosts is a mount point of its own (a container, or
  ``ip netns exec`` binding /etc/netns/NS/hosts over it) a rename cannot
  replace it, and it is rewritten in place with one write.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from typing import Final

RESOLV_CONF: Final = "/etc/resolv.conf"
HOSTS: Final = "/etc/hosts"
RESOLVED_SOCKET: Final = "/run/systemd/resolve/io.systemd.Resolve"  # its varlink socket
COMMAND_TIMEOUT: Final = 10.0


class ResolverError(RuntimeError):
    """The resolver could not be told; str() says why in one line."""


def nameservers(path: str = RESOLV_CONF) -> list[str]:
    """The nameserver addresses of a resolv.conf, in order (none if it cannot be read)."""
    found = []
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            address = words[1].partition("%")[0]  # a zone index: this host's, kept out
            with contextlib.suppress(ValueError):
                found.append(str(ipaddress.ip_address(address)))
    return found


def resolved_running() -> bool:
    """Whether systemd-resolved runs here (its socket exists) and resolvectl is installed."""
    return os.path.exists(RESOLVED_SOCKET) and shutil.which("resolvectl") is not None


def _resolvectl(*args: str) -> None:
    try:
        subprocess.run(
            ["resolvectl", *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
    except subprocess.CalledProcessError as exc:
        raise ResolverError(f"resolvectl {' '.join(args)}: {exc.stderr.strip()}") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ResolverError(f"resolvectl {' '.join(args)}: {exc}") from None


class ResolvedLink:
    """systemd-resolved's per-link DNS for interface `ifname` (see the module docstring)."""

    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        self.set = False

    def register(self, servers: Sequence[str], domain: str) -> None:
        _resolvectl("dns", self.ifname, *servers)
        _resolvectl("domain", self.ifname, f"~{domain}")
        self.set = True

    def remove(self) -> None:
        if self.set:
            with contextlib.suppress(ResolverError):
                _resolvectl("revert", self.ifname)
            self.set = False


class HostsBlock:
    """The block of interface `ifname` in the hosts file `path` (see the module docstring)."""

    def __init__(self, ifname: str, path: str = HOSTS) -> None:
        self.path = path
        self.begin = f"# BEGIN pywg {ifname}"
        self.end = f"# END pywg {ifname}"
        self.written: list[str] | None = None

    def write(self, lines: Sequence[str]) -> bool:
        """The block holds `lines`; False if it already did (the file is not touched)."""
        if self.written == list(lines):
            return False
        block = [self.begin, *lines, self.end]
        self._replace(self._without_block(self._read()) + block)
        self.written = list(lines)
        return True

    def remove(self) -> None:
        """The file without the block, as it was before the first write."""
        text = self._read()
        kept = self._without_block(text)
        if kept != text.splitlines():
            self._replace(kept)
        self.written = None

    def _read(self) -> str:
        try:
            with open(self.path, encoding="utf-8", errors="surrogateescape") as handle:
                return handle.read()
        except FileNotFoundError:
            return ""
        except OSError as exc:
            raise ResolverError(f"{self.path}: {exc.strerror or exc}") from None

    def _without_block(self, text: str) -> list[str]:
        kept: list[str] = []
        inside = False
        for line in text.splitlines():
            if line.strip() == self.begin:
                inside = True
            elif inside and line.strip() == self.end:
                inside = False
            elif not inside:
                kept.append(line)
        return kept

    def _replace(self, lines: list[str]) -> None:
        data = "".join(f"{line}\n" for line in lines).encode("utf-8", "surrogateescape")
        if is_mount_point(self.path):  # nothing can be renamed over it
            self._write_in_place(data)
            return
        try:
            self._rename_over(data)
        except OSError as exc:
            if exc.errno not in (errno.EBUSY, errno.EXDEV, errno.EPERM, errno.EACCES):
                raise ResolverError(f"{self.path}: {exc.strerror or exc}") from None
            self._write_in_place(data)

    def _rename_over(self, data: bytes) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        mode = os.stat(self.path).st_mode & 0o7777 if os.path.exists(self.path) else 0o644
        fd, temp = tempfile.mkstemp(prefix=".pywg-hosts-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, mode)
            os.rename(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    def _write_in_place(self, data: bytes) -> None:
        try:
            with open(self.path, "r+b") as handle:
                handle.write(data)
                handle.truncate()
        except OSError as exc:
            raise ResolverError(f"{self.path}: {exc.strerror or exc}") from None


def is_mount_point(path: str, mountinfo: str = "/proc/self/mountinfo") -> bool:
    """Whether `path` is a mount point of this process's mount namespace (a file bound
    over another counts: os.path.ismount does not see those), by proc(5) mountinfo."""
    target = os.path.realpath(path)
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split(" ")
        if len(fields) > 4 and _unescape(fields[4]) == target:
            return True
    return False


def _unescape(field: str) -> str:
    """A mountinfo path: space, tab, newline and backslash are written as octal escapes."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field
