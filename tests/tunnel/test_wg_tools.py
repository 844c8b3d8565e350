"""The standard tools (`wg`, `wg-quick`) and raw UAPI clients driving pywgd, next to wireguard-go.

Everything runs in namespaces of a throw-away lab (pywg.lab): underlay
198.18.0.0/16 + fd18::/16, tunnel 198.19.0.0/16 + fd19::/16, unique names,
nothing in the root namespace. Where Debian's wireguard-go is the reference,
the same operation is run on both daemons and the results are compared.

Covered: `wg show` (pretty, dump, every field), `wg showconf`, `wg set` (every
option), `wg setconf` / `addconf` / `syncconf` and a showconf round trip
between the implementations, UAPI errno parity for bad requests,
`wg-quick up`/`down`/`strip` with pywgd as WG_QUICK_USERSPACE_IMPLEMENTATION,
and the daemon contract of `pywgd` itself (daemonizing, foreground, signals,
exit when the interface or the socket goes away, one daemon per name, socket
permissions, LOG_LEVEL).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.time_bounds import wait_for
from helpers.wg_nodes import Node, argv_for, pywgd_path, start_node
from helpers.wg_nodes import uapi_config as parse_get_reply
from pywg import __version__
from pywg.keys import PresharedKey, PrivateKey
from pywg.lab import Host, Lab
from pywg.lab.wireguard import endpoint

PREFIX = "pwtool"
UAPI_DIR = Path("/var/run/wireguard")
TOOL_TIMEOUT = 30.0  # seconds for one wg-quick run

pytestmark = pytest.mark.needs_lab("wg", "wg-quick", "wireguard-go", "ping", "ss", "pywgd")


# -- small helpers ---------------------------------------------------------------------


def sock_path(ifname: str) -> Path:
    return UAPI_DIR / f"{ifname}.sock"


def write_secret(path: Path, text: str) -> Path:
    """A 0600 file (keys and configs never go on argv and are never world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path


def link_exists(host: Host, ifname: str) -> bool:
    return host.run("ip", "link", "show", "dev", ifname, check=False).returncode == 0


def netns_commands(host: Host) -> dict[int, str]:
    """pid -> command line of every process inside `host`'s namespace."""
    out = subprocess.run(
        ["ip", "netns", "pids", host.netns], capture_output=True, text=True, timeout=10
    ).stdout
    found = {}
    for word in out.split():
        try:
            cmdline = Path(f"/proc/{word}/cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        found[int(word)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return found


def pywgd_pids(host: Host, ifname: str | None) -> list[int]:
    """The live pywgd processes in `host` serving `ifname` (None: any), zombies excluded."""
    pids = []
    for pid, cmd in netns_commands(host).items():
        words = cmd.split()
        if (ifname is None or ifname in words) and any(Path(w).name == "pywgd" for w in words):
            try:
                if "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text():
                    continue
            except OSError:
                continue
            pids.append(pid)
    return pids


def start_bare(lab: Lab, host: Host, impl: str, env: dict[str, str] | None = None) -> str:
    """Start a daemon the way wg-quick does (it daemonizes); no key, no port, link down."""
    ifname = lab.ifname("pw" if impl == "pywgd" else "go")
    proc = host.popen(
        *argv_for(impl), ifname, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    assert proc.wait(20) == 0, f"{impl} {ifname} failed to start"
    assert sock_path(ifname).exists()
    return ifname


# -- the UAPI, spoken directly -----------------------------------------------------------

_REPLY_END = re.compile(rb"(?:^|\n)errno=(-?\d+)\n\n")


def uapi_exchange(ifname: str, *requests: str, timeout: float = 3.0) -> list[str | None]:
    """Send `requests` one after another on ONE connection; each reply, or None when closed.

    A reply is complete at its `errno=N` line and the blank line after it. Once
    the daemon closed the connection (or did not answer within `timeout`), the
    remaining replies are None.
    """
    replies: list[str | None] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(sock_path(ifname)))
        for request in requests:
            reply: str | None = None
            try:
                conn.sendall(request.encode())
                buf = b""
                while _REPLY_END.search(buf) is None:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                if _REPLY_END.search(buf) is not None:
                    reply = buf.decode()
            except OSError:  # reset, broken pipe, timeout: the connection is over
                pass
            replies.append(reply)
            if reply is None:
                replies += [None] * (len(requests) - len(replies))
                break
    return replies


def errno_of(reply: str | None) -> int | None:
    if reply is None:
        return None
    match = _REPLY_END.search(reply.encode())
    assert match is not None
    return int(match.group(1))


def uapi_config(reply: str | None) -> dict[str, Any]:
    """A `get=1` answer as comparable data (helpers.wg_nodes.uapi_config); None fails the test."""
    assert reply is not None and errno_of(reply) == 0, reply
    return parse_get_reply(reply)


def get_config(ifname: str) -> dict[str, Any]:
    return uapi_config(uapi_exchange(ifname, "get=1\n\n")[0])


# -- wg output parsers -------------------------------------------------------------------

DUMP_PEER_FIELDS = (
    "public_key",
    "preshared_key",
    "endpoint",
    "allowed_ips",
    "latest_handshake",
    "rx",
    "tx",
    "keepalive",
)


def wg_dump(host: Host, ifname: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """`wg show IF dump`: the interface fields and each peer's fields by name."""
    lines = host.run("wg", "show", ifname, "dump").stdout.splitlines()
    interface = lines[0].split("\t")
    assert len(interface) == 4, lines[0]
    peers = {}
    for line in lines[1:]:
        fields = line.split("\t")
        assert len(fields) == len(DUMP_PEER_FIELDS), line
        peers[fields[0]] = dict(zip(DUMP_PEER_FIELDS, fields, strict=True))
    return interface, peers


def dump_config(host: Host, ifname: str) -> tuple[list[str], dict[str, dict[str, object]]]:
    """The dump without what changes by itself (handshake time, counters)."""
    interface, peers = wg_dump(host, ifname)
    stable: dict[str, dict[str, object]] = {}
    for key, fields in peers.items():
        entry: dict[str, object] = {
            k: v for k, v in fields.items() if k not in ("latest_handshake", "rx", "tx")
        }
        entry["allowed_ips"] = frozenset(fields["allowed_ips"].split(","))
        stable[key] = entry
    return interface, stable


def wg_field(host: Host, ifname: str, field: str) -> dict[str, str]:
    """`wg show IF <peer field>`: peer public key -> the rest of its line."""
    out = host.run("wg", "show", ifname, field).stdout
    result = {}
    for line in out.splitlines():
        key, _, rest = line.partition("\t")
        result[key] = rest
    return result


def parse_conf(text: str) -> dict[str, Any]:
    """A wg(8) config as data: Interface keys, and peers by PublicKey; AllowedIPs as a set."""
    interface: dict[str, Any] = {}
    peers: list[dict[str, Any]] = []
    section: dict[str, Any] | None = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.lower() == "[interface]":
            section = interface
            continue
        if line.lower() == "[peer]":
            section = {}
            peers.append(section)
            continue
        assert section is not None, f"key outside a section: {line!r}"
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if key == "AllowedIPs":
            ips = {v.strip() for v in value.split(",") if v.strip()}
            section[key] = frozenset({*section.get(key, frozenset()), *ips})
        else:
            section[key] = value
    return {"Interface": interface, "Peers": {str(p["PublicKey"]): p for p in peers}}


def showconf(host: Host, ifname: str) -> dict[str, Any]:
    return parse_conf(host.run("wg", "showconf", ifname).stdout)


# -- 1. wg show / showconf ---------------------------------------------------------------


def test_wg_show_every_field_matches_configuration() -> None:
    with Lab(PREFIX) as lab:
        a, b = lab.host("a"), lab.host("b")
        link = lab.link(a, b)
        pw = start_node(lab, a, "pywgd", net=1, index=1, port=51820)
        go = start_node(lab, b, "wireguard-go", net=1, index=2, port=51821)
        psk = PresharedKey.generate()
        go_ep = endpoint(link.b_addr4, go.port)
        allowed = {f"{go.addr4}/32", f"{go.addr6}/128", "198.19.100.0/24"}
        go.add_peer(pw, preshared_key=psk)  # first: pywgd's keepalive handshakes at once
        pw.add_peer(
            go,
            endpoint=go_ep,
            allowed_ips=sorted(allowed),
            preshared_key=psk,
            persistent_keepalive=25,
        )
        idle = PrivateKey.generate().public_key  # a peer with nothing but its key
        a.run("wg", "set", pw.ifname, "fwmark", "0x1234", "peer", str(idle))
        assert a.wait_ping(go.addr4, deadline=10), "no tunnel from pywgd to wireguard-go"
        assert a.ping(go.addr6, count=1)
        now = time.time()

        interface, peers = wg_dump(a, pw.ifname)
        assert interface == [pw.key.to_base64(), str(pw.public_key), "51820", "0x1234"]
        assert set(peers) == {str(go.public_key), str(idle)}
        peer = peers[str(go.public_key)]
        assert peer["preshared_key"] == psk.to_base64()
        assert peer["endpoint"] == go_ep
        assert set(peer["allowed_ips"].split(",")) == allowed
        assert now - 60 < int(peer["latest_handshake"]) <= now + 1
        assert int(peer["rx"]) > 0 and int(peer["tx"]) > 0
        assert peer["keepalive"] == "25"
        assert peers[str(idle)] == {
            "public_key": str(idle),
            "preshared_key": "(none)",
            "endpoint": "(none)",
            "allowed_ips": "(none)",
            "latest_handshake": "0",
            "rx": "0",
            "tx": "0",
            "keepalive": "off",
        }

        def show(field: str) -> str:
            return a.run("wg", "show", pw.ifname, field).stdout.strip()

        assert show("public-key") == str(pw.public_key)
        assert show("private-key") == pw.key.to_base64()
        assert show("listen-port") == "51820"
        assert show("fwmark") == "0x1234"
        assert set(show("peers").splitlines()) == {str(go.public_key), str(idle)}
        gk, ik = str(go.public_key), str(idle)
        assert wg_field(a, pw.ifname, "endpoints") == {gk: go_ep, ik: "(none)"}
        ips = wg_field(a, pw.ifname, "allowed-ips")
        assert set(ips[gk].split(" ")) == allowed and ips[ik] == "(none)"
        assert wg_field(a, pw.ifname, "latest-handshakes") == {
            gk: peer["latest_handshake"],
            ik: "0",
        }
        transfer = wg_field(a, pw.ifname, "transfer")
        rx, tx = (int(v) for v in transfer[gk].split("\t"))
        assert rx >= int(peer["rx"]) and tx >= int(peer["tx"])  # keepalives may add
        assert transfer[ik] == "0\t0"
        assert wg_field(a, pw.ifname, "persistent-keepalive") == {gk: "25", ik: "off"}
        assert wg_field(a, pw.ifname, "preshared-keys") == {gk: psk.to_base64(), ik: "(none)"}

        pretty = a.run("wg", "show", pw.ifname).stdout
        assert f"interface: {pw.ifname}\n" in pretty
        for line in (
            f"  public key: {pw.public_key}",
            "  private key: (hidden)",
            "  listening port: 51820",
            "  fwmark: 0x1234",
            f"peer: {go.public_key}",
            "  preshared key: (hidden)",
            f"  endpoint: {go_ep}",
            "  persistent keepalive: every 25 seconds",
            f"peer: {idle}",
        ):
            assert line in pretty.splitlines(), (line, pretty)
        shown_ips = re.search(r"^  allowed ips: (.*)$", pretty, re.M)
        assert shown_ips is not None and set(shown_ips.group(1).split(", ")) == allowed
        assert re.search(r"^  latest handshake: (Now|.* ago)$", pretty, re.M), pretty
        assert re.search(r"^  transfer: .* received, .* sent$", pretty, re.M), pretty
        # the socket directory is shared by all namespaces: both daemons are listed
        assert {pw.ifname, go.ifname} <= set(a.run("wg", "show", "interfaces").stdout.split())
        everything = a.run("wg", "show", check=False).stdout + a.run("wg", check=False).stdout
        assert everything.count(f"interface: {pw.ifname}\n") == 2

        conf = showconf(a, pw.ifname)
        assert conf["Interface"] == {
            "ListenPort": "51820",
            "FwMark": "0x1234",
            "PrivateKey": pw.key.to_base64(),
        }
        assert conf["Peers"] == {
            gk: {
                "PublicKey": gk,
                "PresharedKey": psk.to_base64(),
                "AllowedIPs": frozenset(allowed),
                "Endpoint": go_ep,
                "PersistentKeepalive": "25",
            },
            ik: {"PublicKey": ik},
        }


# -- 2. wg set -----------------------------------------------------------------------------


class _Pair:
    """The same `wg` commands on a pywgd and a wireguard-go node, results compared."""

    def __init__(self, pw: Node, go: Node, tmp: Path) -> None:
        self.pw, self.go, self.tmp = pw, go, tmp

    def set(self, *args: str) -> tuple[list[str], dict[str, dict[str, object]]]:
        for node in (self.pw, self.go):
            node.host.run("wg", "set", node.ifname, *args)
        mine = dump_config(self.pw.host, self.pw.ifname)
        theirs = dump_config(self.go.host, self.go.ifname)
        assert mine == theirs, f"wg set {' '.join(args)}: pywgd and wireguard-go differ"
        return mine

    def secret(self, name: str, text: str) -> str:
        return str(write_secret(self.tmp / name, text + "\n"))


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[_Pair]:
    with Lab(PREFIX) as lab:
        a, b = lab.host("a"), lab.host("b")
        pw = start_node(lab, a, "pywgd", net=2, index=1)
        go = start_node(lab, b, "wireguard-go", net=2, index=2)
        pair = _Pair(pw, go, tmp_path)
        pair.set("private-key", pair.secret("key", PrivateKey.generate().to_base64()))
        yield pair


def test_wg_set_every_option(pair: _Pair) -> None:
    pw = pair.pw
    key = PrivateKey.generate()
    interface, _ = pair.set("private-key", pair.secret("key", key.to_base64()))
    assert interface[:2] == [key.to_base64(), str(key.public_key)]
    assert pw.wg("show", pw.ifname, "public-key").strip() == str(key.public_key)

    interface, _ = pair.set("listen-port", "40001")
    assert interface[2] == "40001"
    listening = pw.host.run("ss", "-H", "-u", "-l", "-n").stdout
    assert re.search(r":40001\s", listening), listening

    assert pair.set("fwmark", "0x2a")[0][3] == "0x2a"
    assert pair.set("fwmark", "0")[0][3] == "off"
    assert pair.set("fwmark", "1234")[0][3] == "0x4d2"
    assert pair.set("fwmark", "off")[0][3] == "off"

    p1, p2 = (PrivateKey.generate().public_key for _ in range(2))
    k1, k2 = str(p1), str(p2)
    psk = PresharedKey.generate()
    _, peers = pair.set(
        *("peer", k1, "allowed-ips", "198.19.2.0/24,fd19::2:0/112"),
        *("endpoint", "198.18.2.2:51820", "persistent-keepalive", "17"),
        *("preshared-key", pair.secret("psk", psk.to_base64())),
    )
    assert peers[k1] == {
        "public_key": k1,
        "preshared_key": psk.to_base64(),
        "endpoint": "198.18.2.2:51820",
        "allowed_ips": frozenset({"198.19.2.0/24", "fd19::2:0/112"}),
        "keepalive": "17",
    }
    assert pair.set("peer", k1, "endpoint", "[fd18::2:2]:51821")[1][k1]["endpoint"] == (
        "[fd18::2:2]:51821"
    )
    assert pair.set("peer", k1, "endpoint", "198.18.2.3:1")[1][k1]["endpoint"] == "198.18.2.3:1"
    # allowed-ips replaces the whole list; host bits are cleared
    ips = pair.set("peer", k1, "allowed-ips", "198.19.3.3/32,198.19.4.5/24")[1][k1]["allowed_ips"]
    assert ips == frozenset({"198.19.3.3/32", "198.19.4.0/24"})
    assert pair.set("peer", k1, "allowed-ips", "")[1][k1]["allowed_ips"] == frozenset({"(none)"})
    assert pair.set("peer", k1, "persistent-keepalive", "0")[1][k1]["keepalive"] == "off"
    assert pair.set("peer", k1, "persistent-keepalive", "65535")[1][k1]["keepalive"] == "65535"
    assert pair.set("peer", k1, "persistent-keepalive", "off")[1][k1]["keepalive"] == "off"
    assert pair.set("peer", k1, "preshared-key", "/dev/null")[1][k1]["preshared_key"] == "(none)"

    # two peers in one command; an allowed IP belongs to one peer only, so it moves
    _, peers = pair.set(
        *("peer", k1, "allowed-ips", "198.19.5.0/24,198.19.6.0/24"),
        *("peer", k2, "allowed-ips", "198.19.7.0/24"),
    )
    assert peers[k2]["allowed_ips"] == frozenset({"198.19.7.0/24"})
    _, peers = pair.set("peer", k2, "allowed-ips", "198.19.7.0/24,198.19.5.0/24")
    assert peers[k1]["allowed_ips"] == frozenset({"198.19.6.0/24"})
    assert peers[k2]["allowed_ips"] == frozenset({"198.19.7.0/24", "198.19.5.0/24"})

    _, peers = pair.set("peer", k1, "remove")
    assert set(peers) == {k2}
    _, peers = pair.set("peer", k1, "remove")  # removing an absent peer is fine
    assert set(peers) == {k2}

    # our own public key as a peer is ignored
    assert set(pair.set("peer", str(key.public_key), "allowed-ips", "198.19.8.0/24")[1]) == {k2}
    # /dev/null as private key removes it
    interface, _ = pair.set("private-key", "/dev/null")
    assert interface[:2] == ["(none)", "(none)"]


def test_wg_set_allowed_ips_plus_minus(pair: _Pair) -> None:
    peer = str(PrivateKey.generate().public_key)
    pair.set("peer", peer, "allowed-ips", "198.19.2.0/24,198.19.3.0/24")
    probe = pair.pw.host.run(
        "wg", "set", pair.pw.ifname, "peer", peer, "allowed-ips", "+198.19.9.0/24", check=False
    )
    if probe.returncode != 0 and "parse" in probe.stderr:
        version = pair.pw.host.run("wg", "--version").stdout.split(" - ")[0]
        pytest.skip(f"{version} has no +/- allowed-ips ({probe.stderr.strip()})")
    assert probe.returncode == 0, probe.stderr
    pair.set("peer", peer, "allowed-ips", "198.19.2.0/24,198.19.3.0/24")  # the same on both
    _, peers = pair.set("peer", peer, "allowed-ips", "+198.19.4.0/24,-198.19.2.0/24")
    assert peers[peer]["allowed_ips"] == frozenset({"198.19.3.0/24", "198.19.4.0/24"})


# -- 3. setconf / addconf / syncconf / showconf --------------------------------------------


def test_setconf_addconf_syncconf_and_showconf_round_trip(tmp_path: Path) -> None:
    keys = [PrivateKey.generate() for _ in range(6)]
    me, pubs = keys[0], [str(k.public_key) for k in keys]
    psk = PresharedKey.generate()
    first = f"""\
[Interface]
PrivateKey = {me.to_base64()}
ListenPort = 41000
FwMark = 0x99

[Peer]
PublicKey = {pubs[1]}
PresharedKey = {psk.to_base64()}
Endpoint = 198.18.3.1:51820
AllowedIPs = 198.19.3.0/24, fd19::3:0/112
PersistentKeepalive = 25

[Peer]
PublicKey = {pubs[2]}
Endpoint = [fd18::3:2]:51821
AllowedIPs = 198.19.4.2/32

[Peer]
PublicKey = {pubs[3]}
AllowedIPs = 198.19.5.0/24
"""
    added = f"""\
[Peer]
PublicKey = {pubs[4]}
AllowedIPs = 198.19.6.0/24
Endpoint = 198.18.3.4:51820

[Peer]
PublicKey = {pubs[2]}
AllowedIPs = 198.19.4.3/32
Endpoint = 198.18.3.2:1234
"""
    synced = f"""\
[Interface]
PrivateKey = {me.to_base64()}
ListenPort = 41001

[Peer]
PublicKey = {pubs[1]}
Endpoint = 198.18.3.9:51829
AllowedIPs = 198.19.3.0/25

[Peer]
PublicKey = {pubs[3]}
AllowedIPs = 198.19.5.0/24

[Peer]
PublicKey = {pubs[5]}
AllowedIPs = 198.19.8.0/24
PersistentKeepalive = 5
"""
    files = {
        name: str(write_secret(tmp_path / f"{name}.conf", text))
        for name, text in (("first", first), ("added", added), ("synced", synced))
    }
    with Lab(PREFIX) as lab:
        a, b = lab.host("a"), lab.host("b")
        pw = start_node(lab, a, "pywgd", net=3, index=1)
        go = start_node(lab, b, "wireguard-go", net=3, index=2)

        def both(command: str, name: str) -> dict[str, Any]:
            for node in (pw, go):
                node.host.run("wg", command, node.ifname, files[name])
            mine, theirs = showconf(a, pw.ifname), showconf(b, go.ifname)
            assert mine == theirs, f"after wg {command} {name}.conf the daemons differ"
            return mine

        conf = both("setconf", "first")
        assert conf == parse_conf(first)

        conf = both("addconf", "added")
        peers = conf["Peers"]
        assert set(peers) == set(pubs[1:5])
        assert peers[pubs[4]] == parse_conf(added)["Peers"][pubs[4]]
        assert peers[pubs[2]]["Endpoint"] == "198.18.3.2:1234"
        assert "198.19.4.3/32" in peers[pubs[2]]["AllowedIPs"]
        assert peers[pubs[1]] == parse_conf(first)["Peers"][pubs[1]]
        assert conf["Interface"] == parse_conf(first)["Interface"]

        conf = both("syncconf", "synced")
        peers = conf["Peers"]
        assert set(peers) == {pubs[1], pubs[3], pubs[5]}  # 2 and 4 removed, 5 added
        assert conf["Interface"] == parse_conf(synced)["Interface"]  # port changed, no fwmark
        assert peers[pubs[1]]["Endpoint"] == "198.18.3.9:51829"
        assert peers[pubs[1]]["AllowedIPs"] == frozenset({"198.19.3.0/25"})
        assert peers[pubs[3]] == parse_conf(first)["Peers"][pubs[3]]
        assert peers[pubs[5]] == parse_conf(synced)["Peers"][pubs[5]]

        # round trip through fresh daemons: pywgd -> wireguard-go and back
        c, d = lab.host("c"), lab.host("d")
        fresh_go = start_bare(lab, c, "wireguard-go")
        fresh_pw = start_bare(lab, d, "pywgd")
        text = a.run("wg", "showconf", pw.ifname).stdout
        path = str(write_secret(tmp_path / "from-pywgd.conf", text))
        c.run("wg", "setconf", fresh_go, path)
        assert showconf(c, fresh_go) == parse_conf(text)
        text = c.run("wg", "showconf", fresh_go).stdout
        path = str(write_secret(tmp_path / "from-go.conf", text))
        d.run("wg", "setconf", fresh_pw, path)
        assert showconf(d, fresh_pw) == parse_conf(text) == conf


# -- 4. UAPI errno parity --------------------------------------------------------------

PEER = "11" * 32
BASE_KEY = "a8" * 31 + "68"  # clamped, so both daemons report it unchanged
BASE = (
    f"set=1\nprivate_key={BASE_KEY}\nlisten_port=40000\nfwmark=0\nreplace_peers=true\n"
    f"public_key={PEER}\npreshared_key={'5a' * 32}\nendpoint=198.18.1.1:1000\n"
    "allowed_ip=198.19.1.0/24\n\n"
)
EINVAL, EPROTO, EADDRINUSE = -22, -71, -98


def _set(*lines: str) -> str:
    return "set=1\n" + "".join(f"{line}\n" for line in lines) + "\n"


def _peer(*lines: str) -> str:
    return _set(f"public_key={PEER}", *lines)


# (id, request, expected errno on both). Every row answers the same errno on
# pywgd and wireguard-go (v0.0.20220316). Deviations found while writing these
# (left out of the table on purpose, to be decided in pywgd, not enshrined):
# - wireguard-go applies a set request line by line, so the lines before a bad
#   one stay applied; pywgd refuses the whole request (checked below for pywgd).
# - `set=1\nfwmark=9\nfwmark\n\n`: both -EPROTO; wireguard-go keeps the
#   connection and answers the next get=1, pywgd closes it.
# - `get=1\nfoo=bar\n\n`: both -EINVAL; wireguard-go then closes, pywgd answers on.
# - an unknown operation (`frob=1`, `set=1\r`, an empty first line): wireguard-go
#   closes without a reply, pywgd answers errno=-71 and closes.
# - formatting: `endpoint=[::ffff:198.18.5.5]:5` reads back as 198.18.5.5:5 in
#   pywgd; `allowed_ip=::ffff:198.19.3.3/128` as ::ffff:c613:303/128.
# Fixed in pywgd after this table found them, and now rows below: leading zeros
# in numbers, fwmarks of 2^31 and more (were -EIO), unclamped private keys
# (now clamped on set, as wireguard-go and the kernel do).
PARITY_CASES = [
    ("private-key-not-hex", _set("private_key=" + "zz" * 32), EINVAL),
    ("private-key-short", _set("private_key=abcd"), EINVAL),
    ("private-key-long", _set("private_key=" + "ab" * 33), EINVAL),
    ("public-key-short", _set("public_key=" + "1" * 63), EINVAL),
    ("listen-port-65536", _set("listen_port=65536"), EINVAL),
    ("listen-port-negative", _set("listen_port=-1"), EINVAL),
    ("listen-port-word", _set("listen_port=port"), EINVAL),
    ("listen-port-empty", _set("listen_port="), EINVAL),
    ("fwmark-word", _set("fwmark=mark"), EINVAL),
    ("fwmark-hex", _set("fwmark=0x10"), EINVAL),
    ("fwmark-2^32", _set("fwmark=4294967296"), EINVAL),
    ("fwmark-2^31", _set("fwmark=2147483648"), 0),
    ("fwmark-max", _set("fwmark=4294967295"), 0),
    ("listen-port-leading-zeros", _set("listen_port=00000000000040012"), 0),
    ("private-key-unclamped", _set("private_key=" + "ff" * 32), 0),
    ("unknown-device-key", _set("frobnicate=1"), EINVAL),
    ("unknown-peer-key", _peer("frobnicate=1"), EINVAL),
    ("listen-port-after-public-key", _peer("listen_port=1234"), EINVAL),
    ("private-key-after-public-key", _peer(f"private_key={'22' * 32}"), EINVAL),
    ("fwmark-after-public-key", _peer("fwmark=1"), EINVAL),
    ("replace-peers-after-public-key", _peer("replace_peers=true"), EINVAL),
    ("endpoint-word", _peer("endpoint=nonsense"), EINVAL),
    ("endpoint-no-port", _peer("endpoint=198.18.1.1"), EINVAL),
    ("endpoint-port-65536", _peer("endpoint=198.18.1.1:65536"), EINVAL),
    ("endpoint-v6-no-brackets", _peer("endpoint=fd18::1:51820"), EINVAL),
    ("endpoint-hostname", _peer("endpoint=localhost:51820"), EINVAL),
    ("allowed-ip-word", _peer("allowed_ip=garbage"), EINVAL),
    ("allowed-ip-no-prefix", _peer("allowed_ip=198.19.1.1"), EINVAL),
    ("allowed-ip-v4-33", _peer("allowed_ip=198.19.0.0/33"), EINVAL),
    ("allowed-ip-v6-129", _peer("allowed_ip=fd19::/129"), EINVAL),
    ("protocol-version-2", _peer("protocol_version=2"), EINVAL),
    ("keepalive-70000", _peer("persistent_keepalive_interval=70000"), EINVAL),
    ("keepalive-negative", _peer("persistent_keepalive_interval=-1"), EINVAL),
    ("preshared-key-bad", _peer("preshared_key=xyz"), EINVAL),
    ("replace-peers-maybe", _set("replace_peers=maybe"), EINVAL),
    ("remove-maybe", _peer("remove=maybe"), EINVAL),
    ("update-only-false", _peer("update_only=false"), EINVAL),
    ("replace-allowed-ips-false", _peer("replace_allowed_ips=false"), EINVAL),
    (
        "bad-line-after-good-lines",
        _set(
            "listen_port=40011",
            "fwmark=7",
            f"public_key={'22' * 32}",
            "allowed_ip=198.19.7.0/24",
            "frobnicate=1",
        ),
        EINVAL,
    ),
    ("line-without-equals", _set("fwmark=9", "fwmark"), EPROTO),
    (
        "valid",
        _set(
            "listen_port=40002",
            "fwmark=42",
            f"public_key={PEER}",
            "replace_allowed_ips=true",
            "allowed_ip=198.19.2.5/24",
            "allowed_ip=fd19::2:0/112",
            "endpoint=[fd18::1:1]:51820",
            f"preshared_key={'00' * 32}",
            "protocol_version=1",
            f"public_key={'33' * 32}",
            "update_only=true",
            f"public_key={'44' * 32}",
            "endpoint=198.18.4.4:4",
            f"public_key={'55' * 32}",
            "remove=true",
        ),
        0,
    ),
]
# wireguard-go answers a line without '=' with -EPROTO and keeps the connection;
# pywgd closes it (reported as a deviation, not checked here).
NO_SURVIVAL_CHECK = {"line-without-equals"}


class _UapiPair:
    def __init__(self, lab: Lab, pw: str, go: str) -> None:
        self.lab, self.pw, self.go = lab, pw, go

    def reset(self) -> None:
        for ifname in (self.pw, self.go):
            assert errno_of(uapi_exchange(ifname, BASE)[0]) == 0


@pytest.fixture(scope="module")
def uapi_pair() -> Iterator[_UapiPair]:
    with Lab(PREFIX) as lab:
        # separate namespaces, so both can use the same listen ports
        a, b = lab.host("a"), lab.host("b")
        yield _UapiPair(lab, start_bare(lab, a, "pywgd"), start_bare(lab, b, "wireguard-go"))


@pytest.mark.parametrize(
    ("case", "request_text", "expected"), PARITY_CASES, ids=[c[0] for c in PARITY_CASES]
)
def test_uapi_errno_parity(
    uapi_pair: _UapiPair, case: str, request_text: str, expected: int
) -> None:
    uapi_pair.reset()
    before = get_config(uapi_pair.pw)
    mine = uapi_exchange(uapi_pair.pw, request_text, "get=1\n\n")
    theirs = uapi_exchange(uapi_pair.go, request_text, "get=1\n\n")
    assert errno_of(theirs[0]) == expected, f"wireguard-go answered {theirs[0]!r}"
    assert errno_of(mine[0]) == errno_of(theirs[0]), f"pywgd {mine[0]!r} vs go {theirs[0]!r}"
    if theirs[1] is not None and case not in NO_SURVIVAL_CHECK:
        assert mine[1] is not None, "pywgd closed the connection where wireguard-go answers on"
        assert errno_of(mine[1]) == 0
    if expected != 0:
        assert get_config(uapi_pair.pw) == before, "a refused request changed pywgd"
    else:
        assert get_config(uapi_pair.pw) == get_config(uapi_pair.go)


def test_uapi_listen_port_in_use(uapi_pair: _UapiPair) -> None:
    uapi_pair.reset()
    before = get_config(uapi_pair.pw)
    holder = (
        "import socket, sys, time\n"
        "s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
        "s.bind(('::', 40050))\n"
        "print('bound', flush=True)\n"
        "time.sleep(25)\n"
    )
    hosts = list(uapi_pair.lab.hosts.values())
    holders = [
        h.popen(sys.executable, "-c", holder, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        for h in hosts
    ]
    try:
        for proc in holders:
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"bound"
        request = _set("listen_port=40050")
        mine = uapi_exchange(uapi_pair.pw, request, "get=1\n\n")
        theirs = uapi_exchange(uapi_pair.go, request, "get=1\n\n")
        assert errno_of(theirs[0]) == EADDRINUSE
        assert errno_of(mine[0]) == EADDRINUSE
        assert errno_of(mine[1]) == 0
        assert get_config(uapi_pair.pw) == before
        failed = hosts[0].run("wg", "set", uapi_pair.pw, "listen-port", "40050", check=False)
        assert failed.returncode != 0 and "Address already in use" in failed.stderr
    finally:
        for proc in holders:
            proc.kill()
            proc.wait(5)


def test_uapi_listen_port_zero_reports_the_port_bound(uapi_pair: _UapiPair) -> None:
    uapi_pair.reset()
    for ifname in (uapi_pair.pw, uapi_pair.go):
        (reply,) = uapi_exchange(ifname, _set("listen_port=0"))
        assert errno_of(reply) == 0
        port = get_config(ifname)["device"].get("listen_port")
        assert port is not None and int(str(port)) > 0, f"{ifname}: {port!r}"


def test_uapi_several_requests_on_one_connection(uapi_pair: _UapiPair) -> None:
    uapi_pair.reset()
    requests = ("get=1\n\n", _set("fwmark=5"), "get=1\n\n", _set("fwmark=0"), "get=1\n\n")
    for ifname in (uapi_pair.pw, uapi_pair.go):
        replies = uapi_exchange(ifname, *requests)
        assert [errno_of(r) for r in replies] == [0] * 5
        assert "fwmark=5\n" in str(replies[2]) and "fwmark=" not in str(replies[4])
    assert get_config(uapi_pair.pw) == get_config(uapi_pair.go)


# -- 5. wg-quick -------------------------------------------------------------------------


def test_wg_quick_up_down_strip_with_pywgd(tmp_path: Path) -> None:
    with Lab(PREFIX) as lab:
        q, g = lab.host("q"), lab.host("g")
        link = lab.link(q, g)
        go = start_node(lab, g, "wireguard-go", net=5, index=2, port=51820)
        name = lab.ifname("wq")
        key = PrivateKey.generate()
        g.run(
            "wg",
            *("set", go.ifname, "peer", str(key.public_key)),
            *("allowed-ips", "198.19.5.1/32,fd19::5:1/128"),
        )
        markers = tmp_path / "markers"
        markers.mkdir()
        config = f"""\
[Interface]
Address = 198.19.5.1/24, fd19::5:1/112
MTU = 1380
ListenPort = 51821
PrivateKey = {key.to_base64()}
PostUp = touch {markers}/up-%i
PostDown = touch {markers}/down-%i

[Peer]
PublicKey = {go.public_key}
AllowedIPs = 198.19.5.2/32, fd19::5:2/128, 198.19.200.0/24, fd19::200:0/112
Endpoint = {endpoint(link.b_addr4, go.port)}
"""
        path = str(write_secret(tmp_path / f"{name}.conf", config))
        env = ("env", f"WG_QUICK_USERSPACE_IMPLEMENTATION={pywgd_path()}")

        def wg_quick(*args: str) -> subprocess.CompletedProcess[str]:
            return q.run(*env, "wg-quick", *args, check=False, timeout=TOOL_TIMEOUT)

        up = wg_quick("up", path)
        try:
            assert up.returncode == 0, up.stderr
            assert pywgd_path() in up.stderr  # the userspace implementation was used
            assert (markers / f"up-{name}").exists(), "PostUp did not run"
            assert sock_path(name).exists()
            assert pywgd_pids(q, name), "no pywgd serving the interface"
            shown = q.ip("addr", "show", "dev", name)
            assert "mtu 1380" in shown
            assert "inet 198.19.5.1/24" in shown and "inet6 fd19::5:1/112" in shown
            assert re.search(r"^198\.19\.200\.0/24 dev " + re.escape(name), q.ip("route"), re.M)
            assert re.search(r"^fd19::200:0/112 dev " + re.escape(name), q.ip("-6", "route"), re.M)
            shown = q.run("wg", "show", name).stdout
            assert f"peer: {go.public_key}" in shown and "listening port: 51821" in shown
            q.wait_ipv6_ready(name)
            assert q.wait_ping(go.addr4, deadline=10), "no IPv4 through the wg-quick tunnel"
            assert q.ping(go.addr6, count=2), "no IPv6 through the wg-quick tunnel"

            strip = q.run("wg-quick", "strip", path, timeout=TOOL_TIMEOUT)
            stripped = parse_conf(strip.stdout)
            assert stripped == {
                "Interface": {"ListenPort": "51821", "PrivateKey": key.to_base64()},
                "Peers": {str(go.public_key): parse_conf(config)["Peers"][str(go.public_key)]},
            }
            assert showconf(q, name) == stripped
        finally:
            down = wg_quick("down", path)
        assert down.returncode == 0, down.stderr
        assert (markers / f"down-{name}").exists(), "PostDown did not run"
        assert not link_exists(q, name)
        assert wait_for(lambda: not sock_path(name).exists(), 5), "socket left behind"
        assert wait_for(lambda: not pywgd_pids(q, None), 5), "pywgd still running after down"


# -- 6. the pywgd daemon contract ------------------------------------------------------


# `host`: tests/conftest.py, one host in a lab of its own


def test_pywgd_version_and_usage(host: Host) -> None:
    version = host.run(pywgd_path(), "--version", check=False)
    assert version.returncode == 0
    assert version.stdout.startswith(f"pywgd v{__version__}")
    for argv in ([], ["a", "b"], ["-x", "wg0"], ["-f"], ["--foreground"], ["-f", "-f", "wg0"]):
        result = host.run(pywgd_path(), *argv, check=False)
        assert result.returncode != 0, argv
        assert "Usage" in result.stderr, (argv, result.stderr)
    links = host.ip("-o", "link", "show").splitlines()
    assert [line.split(":")[1].strip() for line in links] == ["lo"]


def _foreground(host: Host, ifname: str, *argv: str, **env: str) -> subprocess.Popen[bytes]:
    proc = host.popen(pywgd_path(), *argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert wait_for(lambda: sock_path(ifname).exists() or proc.poll() is not None, 10)
    assert proc.poll() is None, "pywgd did not stay in the foreground"
    time.sleep(0.3)
    assert proc.poll() is None, "pywgd did not stay in the foreground"
    assert errno_of(uapi_exchange(ifname, "get=1\n\n")[0]) == 0
    return proc


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_pywgd_foreground_exits_cleanly_on_signal(host: Host, signum: signal.Signals) -> None:
    ifname = host.lab.ifname("pw")
    proc = _foreground(host, ifname, "-f", ifname)
    assert link_exists(host, ifname)
    assert proc.pid in pywgd_pids(host, ifname)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert not sock_path(ifname).exists()
    assert not link_exists(host, ifname)


def test_pywgd_foreground_from_environment(host: Host) -> None:
    ifname = host.lab.ifname("pw")
    proc = _foreground(host, ifname, ifname, WG_PROCESS_FOREGROUND="1")
    assert pywgd_pids(host, ifname) == [proc.pid]
    proc.terminate()
    proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert not sock_path(ifname).exists() and not link_exists(host, ifname)


def test_pywgd_daemonizes_listening_and_exits_when_link_deleted(host: Host) -> None:
    ifname = host.lab.ifname("pw")
    start = time.monotonic()
    launched = host.run(pywgd_path(), ifname, check=False, timeout=20)
    elapsed = time.monotonic() - start
    assert launched.returncode == 0, launched.stderr
    assert elapsed < 10, f"the launcher took {elapsed:.1f} s"
    # no waiting: the socket must be listening by the time the launcher returned
    assert errno_of(uapi_exchange(ifname, "get=1\n\n")[0]) == 0
    daemons = pywgd_pids(host, ifname)
    assert len(daemons) == 1, daemons
    assert link_exists(host, ifname)
    host.ip("link", "del", "dev", ifname)
    assert wait_for(lambda: not pywgd_pids(host, ifname), 5), "pywgd outlived its interface"
    assert not sock_path(ifname).exists()


def test_pywgd_exits_when_socket_deleted(host: Host) -> None:
    ifname = start_bare(host.lab, host, "pywgd")
    assert len(pywgd_pids(host, ifname)) == 1
    sock_path(ifname).unlink()
    assert wait_for(lambda: not pywgd_pids(host, ifname), 5), "pywgd outlived its socket"
    assert not link_exists(host, ifname)


def test_pywgd_second_instance_fails_and_leaves_first_alone(host: Host) -> None:
    ifname = start_bare(host.lab, host, "pywgd")
    assert errno_of(uapi_exchange(ifname, _set("listen_port=40003"))[0]) == 0
    before = get_config(ifname)
    inode = sock_path(ifname).stat().st_ino
    other = host.lab.host("other")  # same name from another namespace: the socket is shared
    for where, argv in ((host, [ifname]), (host, ["-f", ifname]), (other, [ifname])):
        second = where.run(pywgd_path(), *argv, check=False, timeout=20)
        assert second.returncode != 0, (where, argv)
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and ifname in lines[0], second.stderr
        assert get_config(ifname) == before
        assert sock_path(ifname).stat().st_ino == inode
        assert len(pywgd_pids(host, ifname)) == 1
    assert link_exists(host, ifname)
    assert not link_exists(other, ifname), "the refused daemon left its interface behind"
    assert not pywgd_pids(other, ifname)


def test_pywgd_socket_permissions(host: Host) -> None:
    ifname = start_bare(host.lab, host, "pywgd")
    assert stat.S_IMODE(UAPI_DIR.stat().st_mode) == 0o700
    mode = sock_path(ifname).stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert mode & 0o077 == 0, oct(mode)


@pytest.mark.parametrize("level", ["debug", "silent"])
def test_pywgd_log_level(host: Host, level: str) -> None:
    ifname = host.lab.ifname("pw")
    proc = _foreground(host, ifname, "-f", ifname, LOG_LEVEL=level)
    host.run("wg", "set", ifname, "listen-port", "40004")
    proc.terminate()
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    if level == "silent":
        assert out == b"" and err == b""
    else:
        lines = (out + err).decode().splitlines()
        assert len(lines) >= 2, lines
        assert all(re.match(rf"^[A-Z]+: \({re.escape(ifname)}\) ", line) for line in lines), lines
