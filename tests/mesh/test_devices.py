"""Plain WireGuard devices without a network: the store, the rosters, the config, the CLI.

`pywg coordinator device add` makes a key pair, keeps the public key and
prints the private one in a wg-quick file only; these tests read that file
back with pywg.config, check what the store, the rosters and the coordinator's
files hold, and the command's refusals (which store nothing). The whole path
through real processes is tests/mesh/test_mesh_devices.py.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from pywg.cmd import coordinator as coordinator_cli
from pywg.config import parse_config
from pywg.keys import PrivateKey, PublicKey
from pywg.mesh import qr
from pywg.mesh.coordinator import Coordinator
from pywg.mesh.devices import (
    DeviceConfig,
    DeviceError,
    allowed_ips,
    check_endpoint,
    choose_gateway,
    gateway_endpoint,
)
from pywg.mesh.gateway import masquerade_rules
from pywg.mesh.schema import Networks, Roster, decode, encode
from pywg.mesh.store import Conflict, Node, NotFound, Store, now_ms

V4, V6 = "198.19.9.0/24", "fd19:9::/64"
TOKEN = "b" * 64
NETWORKS = Networks(ipaddress.IPv4Network(V4), ipaddress.IPv6Network(V6))


def make_state(
    tmp_path: Path, nodes: tuple[str, ...] = ("gw", "other"), exits: tuple[str, ...] = ()
) -> str:
    """A coordinator state with `nodes` joined, each reporting an endpoint; the first
    routes 10.9.0.0/24, those in `exits` are exit nodes (all approved)."""
    state = str(tmp_path / "coord")
    store = Store(state)
    try:
        store.init_networks(V4, V6)
        store.add_token(TOKEN, now_ms() + 60_000, reusable=True)
        for index, name in enumerate(nodes, 1):
            routes = ["10.9.0.0/24"] if index == 1 else []
            routes += ["0.0.0.0/0", "::/0"] if name in exits else []
            node, _ = store.join(
                TOKEN, name, bytes([index]) * 32, bytes([index + 100]) * 32, routes,
                time_ms=now_ms(), auto_approve=True,
            )  # fmt: skip
            store.update(
                node.id, endpoints=[f"[2001:db8::{index}]:51820", f"192.0.2.{index}:51820"]
            )
    finally:
        store.close()
    return state


def cli(state: str, *argv: str) -> int:
    return coordinator_cli.main(["coordinator", *argv, "--state", state])


def node(name: str, endpoints: tuple[str, ...] = ()) -> Node:
    return Node(0, name, bytes(32), bytes(32), "198.19.9.1", "fd19:9::1", endpoints, (), None, 0)


# -- the config ----------------------------------------------------------------------------


def test_the_config_is_a_wg_quick_file_with_one_peer() -> None:
    private = PrivateKey.generate()
    gateway = PrivateKey.generate().public_key
    config = DeviceConfig(
        private, ("198.19.9.7", "fd19:9::7"), gateway, "192.0.2.1:51820",
        allowed_ips(NETWORKS, ["10.9.0.0/24", "10.9.0.0/24"], exit=False),
    )  # fmt: skip
    text = config.render()
    assert text == (
        "[Interface]\n"
        f"PrivateKey = {private.to_base64()}\n"
        "Address = 198.19.9.7/32, fd19:9::7/128\n"
        "\n"
        "[Peer]\n"
        f"PublicKey = {gateway.to_base64()}\n"
        "Endpoint = 192.0.2.1:51820\n"
        "AllowedIPs = 198.19.9.0/24, fd19:9::/64, 10.9.0.0/24\n"
        "PersistentKeepalive = 25\n"
    )
    parsed = parse_config(text)
    assert parsed.private_key == private and parsed.dns == ()
    (peer,) = parsed.peers
    assert peer.public_key == gateway and peer.persistent_keepalive == 25
    assert private.to_base64() not in repr(config)
    # an exit: everything; a DNS server when given
    everything = allowed_ips(NETWORKS, ["10.9.0.0/24"], exit=True)
    assert everything == ("0.0.0.0/0", "::/0")
    with_dns = DeviceConfig(
        private, ("198.19.9.7", "fd19:9::7"), gateway, "[2001:db8::1]:51820", everything,
        ("198.19.9.1",),
    ).render()  # fmt: skip
    assert "DNS = 198.19.9.1\n" in with_dns and "AllowedIPs = 0.0.0.0/0, ::/0\n" in with_dns
    assert parse_config(with_dns).dns == ("198.19.9.1",)


def test_the_gateway_and_its_endpoint() -> None:
    only, other = node("gw", ("[2001:db8::1]:51820", "192.0.2.1:51820")), node("other")
    assert choose_gateway([only], None, None) is only  # the only node
    with pytest.raises(DeviceError, match=r"--gateway \(nodes: gw, other\)"):
        choose_gateway([only, other], None, None)  # which one is not ours to guess
    assert choose_gateway([only, other], "GW", None) is only  # names ignore case
    assert choose_gateway([only, other], None, "other") is other  # the exit carries it
    with pytest.raises(DeviceError, match="no node named 'nope'"):
        choose_gateway([only, other], "nope", None)
    with pytest.raises(DeviceError, match="exit node is its gateway"):
        choose_gateway([only, other], "gw", "other")
    assert gateway_endpoint(only) == "192.0.2.1:51820"  # the first IPv4 one
    assert gateway_endpoint(node("v6", ("[2001:db8::1]:51820",))) == "[2001:db8::1]:51820"
    with pytest.raises(DeviceError, match="no endpoint"):
        gateway_endpoint(other)
    assert check_endpoint("vpn.example.org:51820") == "vpn.example.org:51820"
    for bad in ("2001:db8::1:51820", "host", "host:0", "a:1\nPostUp = x", "h:1 # c"):
        with pytest.raises(DeviceError, match="not HOST:PORT"):
            check_endpoint(bad)


# -- the store and the rosters -------------------------------------------------------------


def test_devices_share_the_address_pool_and_the_names(tmp_path: Path) -> None:
    store = Store(make_state(tmp_path))
    try:
        version = store.version()
        phone = store.add_device("phone", bytes([9]) * 32, "gw")
        assert store.version() == version + 1
        assert (phone.ipv4, phone.ipv6, phone.gateway) == ("198.19.9.3", "fd19:9::3", "gw")
        with pytest.raises(Conflict, match="taken"):
            store.add_device("PHONE", bytes([10]) * 32, "gw")  # names ignore case
        with pytest.raises(Conflict, match="taken by node"):
            store.add_device("other", bytes([10]) * 32, "gw")
        with pytest.raises(Conflict, match="taken by node"):
            store.add_device("tab", bytes([1]) * 32, "gw")  # a node's key
        with pytest.raises(NotFound, match="no node named 'nope'"):
            store.add_device("tab", bytes([10]) * 32, "nope")
        # a node joining later gets the next free address, and not a device's name or key
        with pytest.raises(Conflict, match="device 'phone'"):
            store.join(TOKEN, "phone", bytes([11]) * 32, bytes([12]) * 32, [], time_ms=now_ms())
        with pytest.raises(Conflict, match="device 'phone'"):
            store.join(TOKEN, "c", bytes([9]) * 32, bytes([12]) * 32, [], time_ms=now_ms())
        third, _ = store.join(TOKEN, "c", bytes([11]) * 32, bytes([12]) * 32, [], time_ms=now_ms())
        assert third.ipv4 == "198.19.9.4"
        # removing the gateway removes its devices (their files name it)
        store.remove("gw")
        assert store.devices() == []
        with pytest.raises(NotFound):
            store.remove_device("phone")
    finally:
        store.close()


def test_rosters_name_the_devices_and_route_them_to_the_gateway(tmp_path: Path) -> None:
    state = make_state(tmp_path)
    coordinator = Coordinator(state)
    try:
        gw = coordinator.store.node_by_name("gw")
        other = coordinator.store.node_by_name("other")
        assert gw is not None and other is not None
        coordinator.store.add_device("phone", bytes([9]) * 32, "gw", exit=True)
        seen = coordinator.roster(other.id)
        assert seen is not None
        (peer,) = seen.peers
        assert peer.name == "gw"
        assert peer.routes == ("10.9.0.0/24", "198.19.9.3/32", "fd19:9::3/128")
        (device,) = seen.devices
        assert (device.name, device.gateway, device.exit) == ("phone", "gw", True)
        assert device.addresses == ("198.19.9.3", "fd19:9::3")
        own = coordinator.roster(gw.id)
        assert own is not None
        assert own.devices == seen.devices and own.me.routes == ("10.9.0.0/24",)
        # on the wire and back; a roster without devices leaves the key out
        assert Roster.from_json(decode(encode(seen))) == seen
        coordinator.store.remove_device("phone")
        bare = coordinator.roster(other.id)
        assert bare is not None and "devices" not in bare.to_json()
        assert bare.peers[0].routes == ("10.9.0.0/24",)
    finally:
        coordinator.store.close()


# -- the command -----------------------------------------------------------------------------


def test_device_add_prints_the_key_once_and_stores_only_the_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    state = make_state(tmp_path)
    caplog.set_level(logging.DEBUG)
    assert cli(state, "device", "add", "phone", "--gateway", "gw", "--no-qr") == 0
    out, err = capsys.readouterr()
    config = parse_config(out)
    private = config.private_key
    assert private is not None
    assert "Endpoint = 192.0.2.1:51820\n" in out and "AllowedIPs = 198.19.9.0/24" in out
    secrets = [private.to_base64().encode(), bytes(private), private.to_hex().encode()]
    # in the output only: not in the state (database, its journal, keys), nor in any log
    for path in Path(state).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(secret in data for secret in secrets), path
    assert private.to_base64() not in err + caplog.text
    store = Store(state, create=False)
    try:
        (device,) = store.devices()
        assert PublicKey(device.public_key) == private.public_key
    finally:
        store.close()
    assert cli(state, "device", "list") == 0
    assert re.search(r"^phone\s+198\.19\.9\.3 fd19:9::3\s+gw\s+-", capsys.readouterr().out, re.M)
    assert cli(state, "device", "remove", "phone") == 0
    assert "removed device phone" in capsys.readouterr().out
    assert cli(state, "device", "remove", "phone") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("phone",), "--gateway (nodes: gw, other)"),
        (("phone", "--gateway", "nope"), "no node named 'nope'"),
        (("gw", "--gateway", "gw"), "taken by node 'gw'"),
        (("phone", "--gateway", "gw", "--qr", "phone.jpg"), "a QR code file is .png or .svg"),
        (("phone", "--gateway", "gw", "--endpoint", "fd00::1:5"), "not HOST:PORT"),
        (("phone", "--gateway", "gw", "--dns", "resolver"), "--dns"),
        (("phone", "--gateway", "gw", "--exit-node", "other"), "exit node is its gateway"),
    ],
)
def test_device_add_refusals_store_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    state = make_state(tmp_path)
    assert cli(state, "device", "add", *argv) == 2
    out, err = capsys.readouterr()
    assert message in err and out == ""
    store = Store(state, create=False)
    try:
        assert store.devices() == []
    finally:
        store.close()


def test_device_add_writes_the_file_and_qr_codes_0600(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = make_state(tmp_path, ("gw",), exits=("gw",))
    conf, png, svg = tmp_path / "wg7.conf", tmp_path / "phone.png", tmp_path / "phone.svg"
    argv = ("device", "add", "phone", "--exit-node", "gw", "--endpoint", "vpn.example.org:4500")
    assert cli(state, *argv, "--output", str(conf), "--qr", str(png), "--dns", "198.19.9.1") == 0
    assert capsys.readouterr().out == ""  # the file holds the config; no terminal here
    text = conf.read_text()
    assert "Endpoint = vpn.example.org:4500\n" in text and "AllowedIPs = 0.0.0.0/0, ::/0\n" in text
    assert "DNS = 198.19.9.1\n" in text
    for path in (conf, png):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    qr.save(text, str(svg))
    assert stat.S_IMODE(svg.stat().st_mode) == 0o600 and b"<svg" in svg.read_bytes()
    lines = qr.terminal(text).splitlines()
    assert len(lines) > 20 and set("".join(lines)) <= set("█▀▄ ")
    if shutil.which("zbarimg"):  # Debian's zbar-tools reads it as a phone would
        read = subprocess.run(["zbarimg", "--raw", "-q", str(png)], capture_output=True)
        assert read.stdout.decode() == text + "\n"


def test_nodes_json_lists_the_devices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    state = make_state(tmp_path)
    assert cli(state, "device", "add", "phone", "--gateway", "other", "--no-qr") == 0
    capsys.readouterr()
    assert cli(state, "nodes", "--json") == 0
    (device,) = json.loads(capsys.readouterr().out)["devices"]
    assert device["name"] == "phone" and device["gateway"] == "other"
    assert device["addresses"] == ["198.19.9.3", "fd19:9::3"] and device["exit"] is False
    assert base64.b64decode(device["public_key"]) != bytes(32)


def test_the_exit_masquerade_names_the_devices_only() -> None:
    rules = masquerade_rules("pywg_dev_m0", "m0", ["198.19.9.3", "fd19:9::3"])
    assert 'iifname "m0" oifname != "m0" ip saddr { 198.19.9.3 } masquerade' in rules
    assert 'iifname "m0" oifname != "m0" ip6 saddr { fd19:9::3 } masquerade' in rules
    assert "ip6" not in masquerade_rules("t", "m0", ["198.19.9.3"])


def test_an_exit_device_needs_an_approved_exit_and_others_get_no_default_route(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = make_state(tmp_path, ("gw", "other", "x"), exits=("x",))
    # gw offers no exit: refused, nothing stored
    assert cli(state, "device", "add", "tab", "--exit-node", "gw", "--no-qr") == 2
    assert "not an approved exit node" in capsys.readouterr().err
    assert cli(state, "device", "list", "--json") == 0
    assert json.loads(capsys.readouterr().out)["devices"] == []
    # a device of gw in a mesh with an exit: the mesh and 10.9.0.0/24, not the exit's /0
    conf = tmp_path / "phone.conf"
    assert cli(state, "device", "add", "phone", "--gateway", "gw", "--output", str(conf)) == 0
    allowed = next(x for x in conf.read_text().splitlines() if x.startswith("AllowedIPs"))
    assert allowed == f"AllowedIPs = {V4}, {V6}, 10.9.0.0/24", allowed
    assert cli(state, "device", "add", "tab", "--exit-node", "x", "--no-qr") == 0


def test_the_dns_line_names_the_gateway_and_the_domain_unless_told(tmp_path: Path) -> None:
    state = make_state(tmp_path)
    store = Store(state, create=False)
    try:
        gw = next(n for n in store.nodes() if n.name == "gw")
    finally:
        store.close()
    files = {flag: tmp_path / f"{flag or 'default'}.conf" for flag in ("", "--no-dns", "--dns")}
    for index, (flag, path) in enumerate(files.items()):
        extra = {"": [], "--no-dns": ["--no-dns"], "--dns": ["--dns", "192.0.2.53"]}[flag]
        argv = ["device", "add", f"d{index}", "--gateway", "gw", "--output", str(path)]
        assert cli(state, *argv, "--no-qr", *extra) == 0
    assert f"DNS = {gw.ipv4}, {gw.ipv6}, mesh.internal\n" in files[""].read_text()
    assert "DNS" not in files["--no-dns"].read_text()
    assert "DNS = 192.0.2.53\n" in files["--dns"].read_text()
    with pytest.raises(SystemExit) as refused:
        cli(state, "device", "add", "x", "--gateway", "gw", "--no-dns", "--dns", "1.1.1.1")
    assert refused.value.code == 2
