"""wireguard-go's hand-over variables: WG_TUN_FD and WG_UAPI_FD.

A supervisor opens the TUN (TUNSETIFF) and binds and listens on the UAPI
socket itself, then starts the daemon with the two fd numbers in the
environment, the fds inherited (here: `pass_fds`). The daemon serves the
interface the fd is attached to, under that interface's own name, and
answers `wg` on the socket it was given. pywgd and wireguard-go run the same
launch; a wireguard-go peer on the other end checks the tunnel carries
traffic.

The TUN's flags are part of the contract: upstream wireguard-go (since
0.0.20230223) reads plain IP packets (IFF_NO_PI), with or without virtio
headers (IFF_VNET_HDR); Debian's wireguard-go 0.0.20220316 reads a
packet-information header before each packet (IFF_TUN alone) from a
handed-over TUN. pywgd takes all three.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.time_bounds import wait_for
from helpers.wg_nodes import PORT, Node, argv_for, start_node
from pywg.asyncio.tun import (
    IFF_NO_PI,
    IFF_TAP,
    IFF_TUN,
    IFF_VNET_HDR,
    IFNAMSIZ,
    TUN_PATH,
    TUNSETIFF,
)
from pywg.keys import PrivateKey
from pywg.lab import Host, Lab, wireguard
from pywg.system.secretfile import write_secret_file

PREFIX = "pwho"
UAPI_DIR = Path("/var/run/wireguard")
START_TIMEOUT = 15.0
PLAIN = IFF_TUN | IFF_NO_PI
WITH_PI = IFF_TUN  # a struct tun_pi before each packet

pytestmark = pytest.mark.needs_lab("wg", "wireguard-go", "ping", "pywgd", "setpriv")


def open_tun(host: Host, name: str, mtu: int, flags: int = IFF_TUN | IFF_NO_PI) -> int:
    """A TUN `name` in `host`'s namespace, as a supervisor opens it (blocking, MTU `mtu`)."""

    def make() -> int:
        fd = os.open(TUN_PATH, os.O_RDWR)
        ifr = struct.pack(f"{IFNAMSIZ}sH", name.encode(), flags)
        fcntl.ioctl(fd, TUNSETIFF, ifr.ljust(40, b"\0"))
        return fd

    fd = host.call(make)
    host.ip("link", "set", name, "mtu", str(mtu))
    return fd


def listen_uapi(name: str) -> socket.socket:
    """A listening UAPI socket where `wg` looks for interface `name`."""
    UAPI_DIR.mkdir(mode=0o700, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(UAPI_DIR / f"{name}.sock"))
    sock.listen(16)
    return sock


def hand_over(
    host: Host,
    impl: str,
    name: str,
    *,
    prefix: tuple[str, ...] = (),
    mtu: int = 1500,
    flags: int = PLAIN,
) -> tuple[int, str]:
    """Open the TUN (with `flags`) and the socket, start `impl` on them (run by
    `prefix`), drop our copies.

    The daemon daemonizes as wg-quick runs it; (its parent's exit status, its output).
    """
    tun_fd = open_tun(host, name, mtu, flags)
    uapi = listen_uapi(name)
    env = {"WG_TUN_FD": str(tun_fd), "WG_UAPI_FD": str(uapi.fileno())}
    argv = [*prefix, *argv_for(impl), name]
    try:
        with tempfile.TemporaryFile() as errors:
            fds = (tun_fd, uapi.fileno())
            proc = host.popen(*argv, env=env, pass_fds=fds, stdout=errors, stderr=errors)
            code = proc.wait(START_TIMEOUT)
            errors.seek(0)
            return code, errors.read().decode(errors="replace")
    finally:
        os.close(tun_fd)
        uapi.close()


def key_node(host: Host, impl: str, name: str) -> Node:
    """Give the handed-over daemon a key and port with `wg`, tunnel addresses, up."""
    key = PrivateKey.generate()
    with tempfile.TemporaryDirectory(prefix="pywg-key-") as directory:
        path = os.path.join(directory, "key")
        write_secret_file(path, key.to_base64() + "\n")
        host.run("wg", "set", name, "private-key", path, "listen-port", str(PORT))
    node = Node(host, impl, name, key, PORT, "198.19.1.1", "fd19::1:1")
    host.addr(name, f"{node.addr4}/24")
    host.link_up(name)
    return node


@pytest.fixture
def peer_lab(lab: Lab) -> Iterator[tuple[Lab, Host, Node]]:
    """Host `a` (for the handed-over daemon) linked to a wireguard-go node on host `b`."""
    a, b = lab.host("a"), lab.host("b")
    lab.link(a, b)
    yield lab, a, start_node(lab, b, "wireguard-go", net=1, index=2)


def connect(node: Node, go: Node, lab: Lab) -> None:
    wireguard.connect(node, go, lab.links[0])


@pytest.mark.parametrize(
    ("impl", "flags"),
    [("pywgd", PLAIN), ("pywgd", WITH_PI), ("wireguard-go", WITH_PI)],
    ids=["pywgd", "pywgd-pi", "wireguard-go-pi"],
)
@pytest.mark.time_limit(90)
def test_handed_over_tun_and_socket_serve_wg_and_traffic(
    peer_lab: tuple[Lab, Host, Node], impl: str, flags: int
) -> None:
    lab, a, go = peer_lab
    name = lab.ifname()
    code, errors = hand_over(a, impl, name, flags=flags)
    assert code == 0, errors
    node = key_node(a, impl, name)
    connect(node, go, lab)
    assert a.wait_ping(go.addr4)
    assert int(node.peer_dump(go)["latest_handshake"]) > 0
    # the MTU is the daemon's default, set on the handed-over interface as on a created one
    assert "mtu 1420 " in a.ip("link", "show", name)


@pytest.mark.parametrize("backend", ["native", "pure"])
@pytest.mark.time_limit(60)
def test_upstream_flags_with_virtio_headers(
    peer_lab: tuple[Lab, Host, Node], backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IFF_VNET_HDR, as upstream wireguard-go opens its TUN: the native plane reads the
    headers (and asks for TSO); the pure-Python plane cannot, and says so."""
    lab, a, go = peer_lab
    name = lab.ifname()
    monkeypatch.setenv("PYWG_BACKEND", backend)
    code, errors = hand_over(a, "pywgd", name, flags=IFF_TUN | IFF_NO_PI | IFF_VNET_HDR)
    if backend == "pure":
        assert code == 1 and "IFF_VNET_HDR" in errors, errors
        return
    assert code == 0, errors
    node = key_node(a, "pywgd", name)
    connect(node, go, lab)
    assert a.wait_ping(go.addr4)


@pytest.mark.time_limit(60)
def test_named_after_the_handed_over_tun(peer_lab: tuple[Lab, Host, Node]) -> None:
    """The command line's interface name gives way to the TUN's own (as in wireguard-go)."""
    lab, a, _ = peer_lab
    name = lab.ifname()
    tun_fd = open_tun(a, name, 1500)
    uapi = listen_uapi(name)
    env = {"WG_TUN_FD": str(tun_fd), "WG_UAPI_FD": str(uapi.fileno()), "LOG_LEVEL": "verbose"}
    with tempfile.TemporaryFile() as out:
        fds = (tun_fd, uapi.fileno())
        proc = a.popen(*argv_for("pywgd"), "-f", "othername", env=env, pass_fds=fds, stdout=out)
        os.close(tun_fd)
        uapi.close()
        assert wait_for(lambda: "wg" in a.run("wg", "show", name, check=False).stdout, 10)
        proc.terminate()
        proc.wait(10)
        out.seek(0)
        log = out.read().decode()
    assert f"({name})" in log and "othername" not in log, log


@pytest.mark.time_limit(60)
def test_without_capabilities_after_the_hand_over(peer_lab: tuple[Lab, Host, Node]) -> None:
    """The supervisor's case: pywgd runs with no capability at all (bounding set emptied).

    It cannot set the MTU, so the interface keeps the one the supervisor gave it;
    wireguard-go, which insists on setting it, refuses to start there. Nor can it
    set an fwmark (SO_MARK needs CAP_NET_ADMIN or CAP_NET_RAW): `wg` says why.
    """
    lab, a, go = peer_lab
    no_caps = ("setpriv", "--inh-caps=-all", "--bounding-set=-all")
    code, errors = hand_over(a, "wireguard-go", lab.ifname(), prefix=no_caps, flags=WITH_PI)
    assert code == 1 and "failed to set MTU" in errors, errors
    name = lab.ifname()
    code, errors = hand_over(a, "pywgd", name, prefix=no_caps, mtu=1380)
    assert code == 0, errors
    node = key_node(a, "pywgd", name)
    connect(node, go, lab)
    assert a.wait_ping(go.addr4)
    assert "mtu 1380 " in a.ip("link", "show", name)
    refused = a.run("wg", "set", name, "fwmark", "7", check=False)
    assert refused.returncode != 0 and "Operation not permitted" in refused.stderr, refused


@pytest.mark.time_limit(60)
def test_daemon_exits_when_the_handed_over_socket_file_is_removed(
    peer_lab: tuple[Lab, Host, Node],
) -> None:
    lab, a, _ = peer_lab
    name = lab.ifname()
    code, errors = hand_over(a, "pywgd", name)
    assert code == 0, errors
    assert a.run("wg", "show", name).returncode == 0
    (UAPI_DIR / f"{name}.sock").unlink()
    assert wait_for(lambda: a.run("ip", "link", "show", name, check=False).returncode != 0, 5)


@pytest.mark.parametrize(
    ("tun_fd", "uapi_fd", "message"),
    [
        ("x1", None, "Failed to create TUN device"),
        ("devnull", None, "Failed to create TUN device"),
        ("tap", None, "is not an IFF_TUN"),
        ("pi-vnet", None, "IFF_VNET_HDR without IFF_NO_PI"),
        (None, "x", "Failed to listen on uapi socket"),
        (None, "unbound", "Failed to listen on uapi socket"),
    ],
)
@pytest.mark.time_limit(60)
def test_bad_hand_over_is_refused(
    lab: Lab, tun_fd: str | None, uapi_fd: str | None, message: str
) -> None:
    a = lab.host("a")
    name = lab.ifname()
    keep: list[int] = []
    env: dict[str, str] = {}
    for variable, value in (("WG_TUN_FD", tun_fd), ("WG_UAPI_FD", uapi_fd)):
        if value in ("tap", "pi-vnet"):
            flags = IFF_TAP | IFF_NO_PI if value == "tap" else IFF_TUN | IFF_VNET_HDR
            keep.append(open_tun(a, name, 1500, flags))
            value = str(keep[-1])
        elif value == "devnull":
            keep.append(os.open(os.devnull, os.O_RDWR))
            value = str(keep[-1])
        elif value == "unbound":
            keep.append(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).detach())
            value = str(keep[-1])
        if value is not None:
            env[variable] = value
    try:
        with tempfile.TemporaryFile() as errors:
            proc = a.popen(*argv_for("pywgd"), name, env=env, pass_fds=keep, stderr=errors)
            assert proc.wait(START_TIMEOUT) == 1
            errors.seek(0)
            text = errors.read().decode()
    finally:
        for fd in keep:
            os.close(fd)
    assert message in text and len(text.strip().splitlines()) == 1, text
    assert a.run("ip", "link", "show", name, check=False).returncode != 0
