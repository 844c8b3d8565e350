"""Secrets stay secret: never in logs, exceptions, reprs or status output; zeroed when done.

A secret is a private key, a preshared key, a session
(transport) key, a handshake's ephemeral private key or chaining key. Each is
looked for in every form it could be printed in: hex (either case), base64
(standard and URL-safe), a 16-character prefix or suffix of those, and the
bytes repr.

- in memory: repr() and str() of every object of a pywg module alive after a
  handshake with a preshared key and traffic (a gc sweep), and of each core
  type by name. str() of a PrivateKey/PresharedKey is its base64 form by
  contract (the public API, as `wg genkey` prints keys), so those two are the only exception;
- exceptions from bad input (config files, the UAPI, the key and Device
  APIs): str, repr and the whole formatted traceback with its causes;
- a live pywgd at LOG_LEVEL=debug through a handshake with wireguard-go and
  traffic (its session keys recorded by a wrapper so they can be looked for),
  `wg show` of it (except the forms that ask for secrets: `private-key`,
  `preshared-keys`, `dump`, `showconf`) and `pywg show`;
- key files from `pywg genkey/genpsk --output` are 0600 whatever the umask;
- Session.zero() drops the key bytes and AEAD objects; with the native plane
  the C twin is freed (its handle becomes None) on zero, on rekey, on expiry
  and on peer removal.
"""

from __future__ import annotations

import base64
import gc
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.device_pair import make_pair, zero_jitter_rng
from helpers.ip_packets import ip4
from helpers.virtual_network import Host as SimHost
from helpers.virtual_network import Network
from pywg import _fast
from pywg.asyncio import Tunnel
from pywg.cmd.main import main as cli_main
from pywg.cmd.show import format_status
from pywg.config import ConfigError, parse_config
from pywg.device import Device
from pywg.exceptions import LocalProtocolError, WireGuardError
from pywg.handshake import consume_initiation, create_initiation, create_response
from pywg.keys import PresharedKey, PrivateKey
from pywg.messages import parse_initiation
from pywg.noise import CipherState, DhKeyPair, SymmetricState
from pywg.session import Session
from pywg.status import parse_get
from pywg.uapi import UapiError, UapiSession, get, parse_set

A_TO_B = ip4("198.19.0.1", "198.19.0.2", b"ping")
B_TO_A = ip4("198.19.0.2", "198.19.0.1", b"pong")


# -- finding secrets in text ---------------------------------------------------------------


def forms(secret: bytes) -> list[str]:
    """Every way `secret` could show up in text."""
    hexa = secret.hex()
    b64 = base64.b64encode(secret).decode()
    url = base64.urlsafe_b64encode(secret).decode()
    return [
        hexa,
        hexa.upper(),
        hexa[:16],
        hexa[-16:],
        hexa.upper()[:16],
        b64,
        b64[:16],
        b64.rstrip("=")[-16:],
        url[:16],
        url.rstrip("=")[-16:],
        repr(secret)[2:-1],
    ]


class Secrets:
    """Named secrets and a finder for them."""

    def __init__(self) -> None:
        self.named: dict[str, bytes] = {}

    def add(self, name: str, secret: bytes | PrivateKey | PresharedKey | None) -> None:
        if secret is None:
            return
        raw = bytes(secret)
        assert len(raw) == 32 and raw != bytes(32), name
        self.named.setdefault(name, raw)

    def found(self, text: str) -> list[str]:
        """The names of the secrets `text` contains (in any form)."""
        return [
            name for name, raw in self.named.items() if any(form in text for form in forms(raw))
        ]

    def assert_absent(self, text: str, where: str) -> None:
        leaked = self.found(text)
        assert not leaked, f"{where} shows {leaked}: {text[:500]!r}"

    def __len__(self) -> int:
        return len(self.named)


def device_secrets(secrets: Secrets, *devices: Device) -> Secrets:
    """Every secret the devices hold now: keys, PSKs, session keys, handshake state."""
    for n, device in enumerate(devices):
        secrets.add(f"private key {n}", device.private_key)
        for peer in device.peers.values():
            tag = f"device {n} peer {str(peer.public_key)[:6]}"
            secrets.add(f"{tag} psk", peer.preshared_key)
            for kp in peer.sessions():
                secrets.add(f"{tag} send key {kp.local_index:#x}", kp.send_key)
                secrets.add(f"{tag} receive key {kp.local_index:#x}", kp.receive_key)
            if peer.handshake is not None:
                state = peer.handshake.state
                if state.e is not None:
                    secrets.add(f"{tag} ephemeral", state.e.private)
                secrets.add(f"{tag} chaining key", state.symmetric.ck)
    return secrets


# -- an in-memory tunnel with everything in it -------------------------------------------------


def established() -> tuple[Network, SimHost, SimHost]:
    """Two devices with a PSK after a handshake both ways and some traffic."""
    net = Network(latency=0.001)
    a, b = make_pair(net, psk=True, rng=zero_jitter_rng)
    net.send(a, A_TO_B)
    net.run_until(1.0)
    net.send(b, B_TO_A)
    net.run_until(2.0)
    assert b.received and a.received
    return net, a, b


def with_pending_handshake(net: Network, a: SimHost, b: SimHost) -> None:
    """A rekey on its way (a pending handshake with ephemeral key and chaining key)."""
    net.run_until(130.0)  # the key is older than REKEY_AFTER_TIME: sending starts a handshake
    net.drop = lambda data, src, dst: data[0] == 2  # its response is lost
    net.send(a, A_TO_B)
    net.run_until(130.5)
    assert a.device.peer(b.device.public_key).handshake is not None


@pytest.fixture
def world() -> tuple[Network, SimHost, SimHost, Secrets]:
    net, a, b = established()
    with_pending_handshake(net, a, b)
    secrets = device_secrets(Secrets(), a.device, b.device)
    assert any("send key" in n for n in secrets.named) and any(
        "chaining" in n for n in secrets.named
    )
    return net, a, b, secrets


def _text_of(obj: object, fn: Callable[[object], str]) -> str:
    try:
        return fn(obj)
    except Exception as exc:  # an object whose str fails is not a leak
        return f"<{fn.__name__} failed: {type(exc).__name__}>"


# -- 1. reprs and str ------------------------------------------------------------------------------

STR_IS_BASE64 = (PrivateKey, PresharedKey)  # by contract: str(key) is what `wg genkey` prints


def _sweep(secrets: Secrets) -> list[tuple[str, str, list[str]]]:
    gc.collect()
    leaks = []
    checked = 0
    for obj in gc.get_objects():
        cls = type(obj)
        module = getattr(cls, "__module__", None)  # not always a str (some C types)
        if not isinstance(module, str) or not module.startswith("pywg"):
            continue
        checked += 1
        fns: tuple[Callable[[object], str], ...] = (repr,)
        if not isinstance(obj, STR_IS_BASE64):
            fns = (repr, str)
        for fn in fns:
            found = secrets.found(_text_of(obj, fn))
            if found:
                leaks.append((f"{cls.__module__}.{cls.__qualname__}", fn.__name__, found))
    assert checked > 50, f"the sweep saw only {checked} pywg objects"
    return leaks


def test_no_live_pywg_object_shows_a_secret_in_repr_or_str(
    world: tuple[Network, SimHost, SimHost, Secrets],
) -> None:
    _, a, b, secrets = world
    # more kinds of objects alive for the sweep to look at
    keep: list[object] = [
        Tunnel("pwsecrets0", device=a.device),
        UapiSession(a.device),
        parse_set(a.device, [f"private_key={PrivateKey.generate().to_hex()}"]),
        parse_get("pwsecrets0", get(a.device)),
        parse_config(_config_text(a.device)),
        a.events,
        b.events,
    ]
    session = keep[1]
    assert isinstance(session, UapiSession)
    session.feed(f"set=1\nprivate_key={a.device.private_key.to_hex()}".encode())  # type: ignore[union-attr]
    assert _sweep(secrets) == []


@pytest.mark.skipif(not _fast.AVAILABLE, reason="native extension not built")
def test_native_plane_objects_show_no_secret(
    world: tuple[Network, SimHost, SimHost, Secrets],
) -> None:
    _, a, _, secrets = world
    with native_plane() as plane:
        plane.sync(a.device)
        twins = [kp.native for p in a.device.peers.values() for kp in p.sessions()]
        assert twins and all(t is not None for t in twins)
        for obj in (plane, *twins, *plane._peers.values()):
            for fn in (repr, str):
                secrets.assert_absent(_text_of(obj, fn), f"{fn.__name__}({type(obj).__name__})")
        assert _sweep(secrets) == []


def _config_text(device: Device) -> str:
    assert device.private_key is not None
    lines = ["[Interface]", f"PrivateKey = {device.private_key}", "ListenPort = 51820"]
    for peer in device.peers.values():
        lines += ["[Peer]", f"PublicKey = {peer.public_key}", "AllowedIPs = 198.19.0.0/24"]
        if peer.preshared_key is not None:
            lines.append(f"PresharedKey = {peer.preshared_key}")
    return "\n".join(lines) + "\n"


def _core_objects(a: SimHost, b: SimHost) -> dict[str, object]:
    dev = a.device
    peer = dev.peer(b.device.public_key)
    assert peer.current is not None and peer.handshake is not None
    assert dev.private_key is not None and peer.preshared_key is not None
    plan = parse_set(
        dev,
        [
            f"private_key={dev.private_key.to_hex()}",
            f"public_key={peer.public_key.to_hex()}",
            f"preshared_key={peer.preshared_key.to_hex()}",
        ],
    )
    config = parse_config(_config_text(dev))
    tunnel = Tunnel("pwsecrets1", device=dev)
    return {
        "Device": dev,
        "Peer": peer,
        "Session": peer.current,
        "PrivateKey": dev.private_key,
        "PresharedKey": peer.preshared_key,
        "PublicKey": peer.public_key,
        "noise.DhKeyPair": dev._static,
        "PendingHandshake": peer.handshake,
        "HandshakeState": peer.handshake.state,
        "CookieGenerator": peer.cookies,
        "CookieChecker": dev._cookie_checker,
        "PeerTimers": peer.timers,
        "ReplayWindow": peer.current.replay,
        "SetPlan": plan,
        "PeerPlan": plan.peers[0],
        "Config": config,
        "PeerConfig": config.peers[0],
        "Tunnel": tunnel,
        "PeerStats": tunnel.stats(),
        "UapiSession": UapiSession(dev),
        "InterfaceStatus": parse_get("pwsecrets1", get(dev)),
        "events": a.events,
        "peers dict": dev.peers,
    }


@pytest.mark.parametrize(
    "name",
    [
        "Device", "Peer", "Session", "PrivateKey", "PresharedKey", "PublicKey", "noise.DhKeyPair",
        "PendingHandshake", "HandshakeState", "CookieGenerator", "CookieChecker", "PeerTimers",
        "ReplayWindow", "SetPlan", "PeerPlan", "Config", "PeerConfig", "Tunnel", "PeerStats",
        "UapiSession", "InterfaceStatus", "events", "peers dict",
    ],
)  # fmt: skip
def test_core_object_repr_and_str_show_no_secret(
    world: tuple[Network, SimHost, SimHost, Secrets], name: str
) -> None:
    _, a, b, secrets = world
    obj = _core_objects(a, b)[name]
    secrets.assert_absent(repr(obj), f"repr({name})")
    secrets.assert_absent(f"{[obj]!r} { ({'k': obj})!r}", f"containers of {name}")
    if not isinstance(obj, STR_IS_BASE64):
        secrets.assert_absent(str(obj), f"str({name})")
    else:
        assert str(obj) == obj.to_base64()  # the contract; and only that one key
        others = Secrets()
        others.named = {k: v for k, v in secrets.named.items() if v != bytes(obj)}
        others.assert_absent(str(obj), f"str({name})")


def _handshake_states() -> tuple[SymmetricState, CipherState, CipherState, Secrets]:
    """A handshake run by hand: its symmetric state and the two transport CipherStates."""
    i_static, r_static = PrivateKey.generate(), PrivateKey.generate()
    ik = DhKeyPair(bytes(i_static), bytes(i_static.public_key))
    rk = DhKeyPair(bytes(r_static), bytes(r_static.public_key))
    created = create_initiation(ik, rk.public, 1, bytes(12))
    consumed = consume_initiation(rk, parse_initiation(created.message))
    psk = PresharedKey.generate()
    _, send, receive = create_response(consumed, 2, bytes(psk))
    assert send.k is not None and receive.k is not None
    secrets = Secrets()
    secrets.add("psk", psk)
    secrets.add("send key", send.k)
    secrets.add("receive key", receive.k)
    secrets.add("chaining key", created.state.symmetric.ck)
    return created.state.symmetric, send, receive, secrets


def test_cipher_state_repr_hides_its_key() -> None:
    _, send, receive, secrets = _handshake_states()
    secrets.assert_absent(repr(send) + repr(receive), "repr(CipherState)")


def test_symmetric_state_repr_hides_its_chaining_key() -> None:
    symmetric, _, _, secrets = _handshake_states()
    secrets.assert_absent(repr(symmetric), "repr(SymmetricState)")


# -- 2. exceptions ---------------------------------------------------------------------------------


def _all_text(exc: BaseException) -> str:
    """str, repr and the whole traceback (causes and contexts included) of an exception."""
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


def _raises(call: Callable[[], object]) -> BaseException:
    try:
        call()
    except WireGuardError as exc:
        return exc
    raise AssertionError("no exception")


PRIV = PrivateKey.generate()
PSK = PresharedKey.generate()
PEER = PrivateKey.generate().public_key
B64, PSK64, HEX, PSKHEX = PRIV.to_base64(), PSK.to_base64(), PRIV.to_hex(), PSK.to_hex()
NEAR = B64[:20] + "!" + B64[21:]  # one character off, and so invalid


def _secrets() -> Secrets:
    s = Secrets()
    s.add("private key", PRIV)
    s.add("psk", PSK)
    return s


def _conf(interface: str = "", peer: str = "") -> str:
    return (
        f"[Interface]\nPrivateKey = {B64}\n{interface}\n"
        f"[Peer]\nPublicKey = {PEER}\nPresharedKey = {PSK64}\nAllowedIPs = 198.19.0.2/32\n{peer}\n"
    )


BAD_CONFIGS = {
    "private-key-twice": _conf(f"PrivateKey = {B64}"),
    "private-key-one-char-off": _conf().replace(B64, NEAR),
    "private-key-as-hex": _conf().replace(B64, HEX),
    "private-key-truncated": _conf().replace(B64, B64[:30]),
    "private-key-in-peer": _conf(peer=f"PrivateKey = {B64}"),
    "psk-twice": _conf(peer=f"PresharedKey = {PSK64}"),
    "psk-in-interface": _conf(f"PresharedKey = {PSK64}"),
    "psk-bad": _conf().replace(PSK64, PSK64[:-2] + "!="),
    "psk-as-endpoint": _conf(peer=f"Endpoint = {PSK64}"),
    "psk-as-endpoint-with-port": _conf(peer=f"Endpoint = {PSK64}:51820"),
    "key-as-allowed-ips": _conf(peer=f"AllowedIPs = {B64}"),
    "key-as-address": _conf(f"Address = {B64}"),
    "key-as-dns": _conf(f"DNS = {B64}"),
    "key-as-mtu": _conf(f"MTU = {B64}"),
    "key-as-table": _conf(f"Table = {B64}"),
    "key-as-listen-port": _conf(f"ListenPort = {HEX}"),
    "key-as-fwmark": _conf(f"FwMark = 0x{HEX}"),
    "key-as-keepalive": _conf(peer=f"PersistentKeepalive = {PSKHEX}"),
    "key-as-key-name": _conf(f"{B64} = 1"),
    "key-as-section": _conf() + f"[{B64}]\n",
    "key-line-without-equals": _conf(B64),
    "hex-key-line-without-equals": _conf(HEX),
    "key-as-public-key": _conf().replace(str(PEER), PSK64[:-2] + "=="),
    "no-interface": f"[Peer]\nPublicKey = {PEER}\nPresharedKey = {PSK64}\n",
    "before-section": f"PrivateKey = {B64}\n" + _conf(),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_config_errors_never_contain_secrets(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = BAD_CONFIGS[case]
    exc = _raises(lambda: parse_config(text, source="wg0.conf"))
    assert isinstance(exc, ConfigError), exc
    _secrets().assert_absent(_all_text(exc), f"ConfigError for {case}")
    # the same file through `pywg up`, which prints the error; it must stop at the file
    import pywg.cmd.up

    def no_tunnel(*args: object) -> int:
        raise AssertionError("pywg up went past the configuration file")

    monkeypatch.setattr(pywg.cmd.up, "run", no_tunnel)
    monkeypatch.setattr(pywg.cmd.up.os, "geteuid", lambda: 0)
    path = tmp_path / "pwsec.conf"
    path.write_text(text)
    path.chmod(0o600)
    assert pywg.cmd.up.main(str(path)) == 1
    printed = capsys.readouterr()
    assert "pywg up:" in printed.err
    _secrets().assert_absent(printed.out + printed.err, f"pywg up {case}")


BAD_UAPI = {
    "private-key-extra-char": [f"private_key={HEX}0"],
    "private-key-non-hex": [f"private_key={HEX[:-1]}g"],
    "private-key-base64": [f"private_key={B64}"],
    "psk-short": [f"public_key={PEER.to_hex()}", f"preshared_key={PSKHEX[:-2]}"],
    "psk-as-endpoint": [f"public_key={PEER.to_hex()}", f"endpoint={PSKHEX}:1"],
    "psk-as-allowed-ip": [f"public_key={PEER.to_hex()}", f"allowed_ip={PSKHEX}/32"],
    "psk-as-keepalive": [f"public_key={PEER.to_hex()}", f"persistent_keepalive_interval={PSKHEX}"],
    "key-as-key-name": [f"{HEX}=1"],
    "key-as-peer-key-name": [f"public_key={PEER.to_hex()}", f"{PSKHEX}=1"],
    "private-key-in-peer": [f"public_key={PEER.to_hex()}", f"private_key={HEX}"],
    "key-as-listen-port": [f"listen_port={HEX}"],
    "key-as-replace-peers": [f"replace_peers={HEX}"],
    "no-equals": [HEX],
}


@pytest.mark.parametrize("case", sorted(BAD_UAPI))
def test_uapi_errors_never_contain_secrets(case: str) -> None:
    lines = BAD_UAPI[case]
    device = Device(PrivateKey.generate())
    exc = _raises(lambda: parse_set(device, lines))
    assert isinstance(exc, UapiError), exc
    _secrets().assert_absent(_all_text(exc), f"UapiError for {case}")
    session = UapiSession(device)
    reply = session.feed(("set=1\n" + "\n".join(lines) + "\n\n").encode())
    assert reply.startswith(b"errno=-") and reply.endswith(b"\n\n"), reply
    _secrets().assert_absent(reply.decode() + repr(session), f"UapiSession for {case}")
    tunnel = Tunnel("pwsecrets2", device=device)
    exc = _raises(lambda: tunnel.configure("set=1\n" + "\n".join(lines) + "\n"))
    _secrets().assert_absent(_all_text(exc), f"Tunnel.configure for {case}")


KEY_API_CALLS: dict[str, Callable[[], object]] = {
    "from-base64-near": lambda: PrivateKey.from_base64(NEAR),
    "from-base64-extra": lambda: PrivateKey.from_base64(B64 + "A"),
    "from-base64-noncanonical": lambda: PresharedKey.from_base64(PSK64[:-2] + "B="),
    "from-base64-hex": lambda: PrivateKey.from_base64(HEX),
    "from-hex-extra": lambda: PresharedKey.from_hex(PSKHEX + "0"),
    "from-hex-nonhex": lambda: PrivateKey.from_hex(HEX[:-1] + "z"),
    "from-hex-base64": lambda: PrivateKey.from_hex(B64),
    "raw-too-long": lambda: PrivateKey(bytes(PRIV) + b"\0"),
    "raw-str": lambda: PrivateKey(B64),  # type: ignore[arg-type]
    "device-bad-private-key": lambda: Device(B64[:-2] + "x="),
    "device-private-key-as-hex": lambda: Device(HEX),
    "add-peer-private-key-as-peer": lambda: Device(PRIV).add_peer(PRIV.public_key),
    "add-peer-bad-psk": lambda: Device().add_peer(PEER, preshared_key=PSK64[:-3] + "x="),
    "add-peer-psk-hex": lambda: Device().add_peer(PEER, preshared_key=PSKHEX),
    "add-peer-twice": lambda: _twice(),
    "update-unknown-peer": lambda: Device().update_peer(PEER, preshared_key=PSK),
    "update-bad-psk": lambda: _with_peer().update_peer(PEER, preshared_key=PSK64 + "x"),
    "keepalive-bad": lambda: _with_peer().update_peer(PEER, persistent_keepalive=-1),
}


def _twice() -> None:
    device = _with_peer()
    device.add_peer(PEER, preshared_key=PSK)


def _with_peer() -> Device:
    device = Device(PRIV)
    device.add_peer(PEER, preshared_key=PSK)
    return device


@pytest.mark.parametrize("case", sorted(KEY_API_CALLS))
def test_key_and_device_api_errors_never_contain_secrets(case: str) -> None:
    exc = _raises(KEY_API_CALLS[case])
    assert isinstance(exc, LocalProtocolError), exc
    _secrets().assert_absent(_all_text(exc), f"LocalProtocolError for {case}")


@pytest.mark.parametrize("where", ["allowed_ips", "endpoint"])
def test_device_api_withholds_key_like_bad_values(where: str) -> None:
    device = Device(PRIV)
    if where == "allowed_ips":
        exc = _raises(lambda: device.add_peer(PEER, allowed_ips=[PSK64]))
    else:
        exc = _raises(lambda: device.add_peer(PEER, endpoint=(PSK64, 51820)))
    _secrets().assert_absent(_all_text(exc), f"LocalProtocolError for {where}")


def test_bad_datagrams_never_raise_or_log_secrets(
    world: tuple[Network, SimHost, SimHost, Secrets], caplog: pytest.LogCaptureFixture
) -> None:
    """Garbage and forged packets built from the secrets themselves: dropped, never echoed."""
    _, _, b, secrets = world
    caplog.set_level("DEBUG", logger="pywg")
    dev = b.device
    for name, raw in secrets.named.items():
        for mtype in (1, 2, 3, 4, 9):
            for body in (raw, raw * 5, raw[:7]):
                datagram = bytes([mtype, 0, 0, 0]) + body
                dev.receive_datagram(datagram, ("198.18.0.1", 51820), 131.0)
                dev.send_packet(ip4("198.19.0.2", "198.19.0.1", raw), 131.0)
        assert name
    dev.datagrams_to_send()
    secrets.assert_absent(caplog.text, "pywg log records")
    secrets.assert_absent(repr(dict(dev.dropped)), "drop counters")


# -- 3. key files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["genkey", "genpsk"])
@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077, 0o777])
def test_key_file_is_0600_whatever_the_umask(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, umask: int
) -> None:
    target = tmp_path / "key"
    old = os.umask(umask)
    try:
        assert cli_main([command, "--output", str(target)]) == 0
    finally:
        os.umask(old)
    out = capsys.readouterr()
    info = target.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600, oct(info.st_mode)
    assert info.st_uid == os.geteuid()
    text = target.read_text()
    assert text.endswith("\n") and text.count("\n") == 1
    key = (PrivateKey if command == "genkey" else PresharedKey).from_base64(text)
    assert out.out == "" and out.err == "", "with --output, nothing on stdout"
    assert key.to_base64() not in out.out + out.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key"], "temporary files left"


def test_key_file_replaces_atomically_and_never_follows_a_symlink(tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.write_text("not a key\n")
    old.chmod(0o644)
    assert cli_main(["genkey", "-o", str(old)]) == 0
    assert stat.S_IMODE(old.stat().st_mode) == 0o600  # the old file's mode is not kept
    PrivateKey.from_base64(old.read_text())
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    link = tmp_path / "link"
    link.symlink_to(victim)
    assert cli_main(["genpsk", "-o", str(link)]) == 0
    assert victim.read_text() == "precious\n" and stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert not link.is_symlink() and stat.S_IMODE(link.stat().st_mode) == 0o600
    PresharedKey.from_base64(link.read_text())
    # a key from the file works with `pywg pubkey`, as `wg genkey | wg pubkey` does
    pub = subprocess.run(
        [sys.executable, "-m", "pywg", "pubkey"],
        input=old.read_text(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert pub.stdout.strip() == str(PrivateKey.from_base64(old.read_text()).public_key)


def test_key_file_failure_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["genkey", "-o", str(tmp_path / "missing" / "key")]) == 1
    assert "cannot write" in capsys.readouterr().err
    directory = tmp_path / "dir"
    directory.mkdir()
    assert cli_main(["genkey", "-o", str(directory)]) == 1  # a directory is not replaced
    assert directory.is_dir() and list(directory.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir"]


# -- 4. zeroing ------------------------------------------------------------------------------------


def test_session_zero_drops_every_python_reference() -> None:
    send, receive = os.urandom(32), os.urandom(32)
    kp = Session(send, receive, 1, 2, is_initiator=True, created=0.0)
    message = kp.seal(bytes(16))
    held = [sys.getrefcount(send), sys.getrefcount(receive)]
    aeads = [kp._sealer, kp._opener]
    assert all(a is not None for a in aeads)
    kp.zero()
    # the session held one reference to each key; now none
    assert [sys.getrefcount(send), sys.getrefcount(receive)] == [held[0] - 1, held[1] - 1]
    assert kp.send_key is None and kp.receive_key is None
    referents = gc.get_referents(kp)
    assert not any(r is send or r is receive for r in referents)
    assert not any(any(r is aead for aead in aeads) for r in referents)
    assert kp.expired(0.0) and not kp.can_send(0.0)
    with pytest.raises(ValueError):
        kp.seal(bytes(16))
    assert kp.open(0, message[16:]) is None
    kp.zero()  # idempotent


def _every_session(*hosts: SimHost) -> list[Session]:
    return [kp for h in hosts for p in h.device.peers.values() for kp in p.sessions()]


def test_sessions_are_zeroed_on_rekey_expiry_removal_and_new_identity() -> None:
    net = Network(latency=0.001)
    a, b = make_pair(net, psk=True, rng=zero_jitter_rng)
    seen: dict[int, Session] = {}
    for second in range(0, 400, 5):  # traffic for 400 s: rekeys at ~120, 240, 360
        net.run_until(float(second))
        net.send(a, A_TO_B)
        net.run_until(second + 1.0)
        net.send(b, B_TO_A)
        for kp in _every_session(a, b):
            seen[id(kp)] = kp
    live = {id(kp) for kp in _every_session(a, b)}
    dropped = [kp for key, kp in seen.items() if key not in live]
    assert len(dropped) >= 4, "expected rekeys to retire sessions"
    assert all(kp.send_key is None and kp._sealer is None for kp in dropped)
    # expiry: 540 s after the last session (whitepaper §6.3) everything is zeroed
    last = _every_session(a, b)
    net.run_until(net.now + 3 * 180 + 5)
    assert _every_session(a, b) == []
    assert all(kp.send_key is None and kp.receive_key is None for kp in last)
    assert a.device.index_table_size == 0 and b.device.index_table_size == 0
    # removal and a new identity zero what they drop
    net.send(a, A_TO_B)
    net.run_until(net.now + 1.0)
    on_a, on_b = _every_session(a), _every_session(b)
    assert on_a and on_b
    a.device.remove_peer(b.device.public_key)
    b.device.set_private_key(PrivateKey.generate())
    assert all(kp.send_key is None for kp in on_a + on_b)
    assert _every_session(a, b) == []


@pytest.fixture
def native_plane_fixture() -> Iterator[Any]:
    with native_plane() as plane:
        yield plane


class native_plane:
    """A NativePlane on a pipe and a UDP socket, its loops never started (as test_plane)."""

    def __enter__(self) -> Any:
        if not _fast.AVAILABLE:
            pytest.skip("native extension not built")
        from pywg._fast.plane import NativePlane

        self.udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.r, w = os.pipe()
        os.close(w)
        self.plane = NativePlane(self.r, self.udp, 1420, lambda reason: None)
        return self.plane

    def __exit__(self, *exc: object) -> None:
        self.plane.stop()
        self.udp.close()
        os.close(self.r)


@pytest.mark.skipif(not _fast.AVAILABLE, reason="native extension not built")
def test_native_twin_freed_on_zero(native_plane_fixture: Any) -> None:
    plane = native_plane_fixture
    device = Device(PrivateKey.generate())
    peer = device.add_peer(PEER, ["198.19.0.2/32"], endpoint=("198.18.0.2", 51820))
    kp = Session(os.urandom(32), os.urandom(32), 7, 8, is_initiator=True, created=0.0)
    peer.current = kp
    plane.sync(device)
    twin = kp.native
    assert twin is not None and twin.handle is not None
    assert len(plane._sessions) == 1
    kp.zero()
    assert twin.handle is None and plane._sessions == {}
    assert twin.seal(bytes(16)) is None and twin.open(0, bytes(32)) is None  # no use after free
    assert twin.send_counter == 0


@pytest.mark.skipif(not _fast.AVAILABLE, reason="native extension not built")
def test_native_twins_freed_on_rekey_expiry_and_removal(native_plane_fixture: Any) -> None:
    """The core on virtual time with its keypairs linked to C twins, synced after every step."""
    plane = native_plane_fixture
    net = Network(latency=0.001)
    a, b = make_pair(net, psk=True, rng=zero_jitter_rng)
    twins: dict[int, Any] = {}

    def step(until: float) -> None:
        net.run_until(until)
        plane.sync(a.device)
        for kp in _every_session(a):
            if kp.native is not None:
                twins[id(kp.native)] = kp.native

    for second in range(0, 400, 5):
        step(float(second))
        net.send(a, A_TO_B)  # sealed in C once linked
        step(second + 1.0)
        net.send(b, B_TO_A)
    assert len(b.received) >= 79, "traffic through the C twins was lost"
    live = {id(kp.native) for kp in _every_session(a) if kp.native is not None}
    retired = [t for key, t in twins.items() if key not in live]
    assert len(retired) >= 2 and all(t.handle is None for t in retired)
    assert len(plane._sessions) == len(live) <= 3
    step(net.now + 3 * 180 + 5)  # expiry
    assert _every_session(a) == [] and plane._sessions == {}
    assert all(t.handle is None for t in twins.values())
    # a new session, then the peer removed: its twin goes with it
    net.send(a, A_TO_B)
    step(net.now + 1.0)
    assert plane._sessions, "the new session was not linked"
    current = [kp.native for kp in _every_session(a)]
    a.device.remove_peer(b.device.public_key)
    plane.sync(a.device)
    assert all(t is not None and t.handle is None for t in current)
    assert plane._sessions == {}


# -- 5. a live pywgd -------------------------------------------------------------------------------

# pywgd itself, with Session.__init__ wrapped to note each session's keys in a side file
# (0600, in a private directory) so the test knows what to look for.
_RECORDING_PYWGD = r"""
import os, sys
from pywg import session
from pywg.cmd import daemon
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
original = session.Session.__init__
def recording_init(self, send_key, receive_key, *args, **kwargs):
    os.write(fd, (send_key.hex() + " " + receive_key.hex() + "\n").encode())
    original(self, send_key, receive_key, *args, **kwargs)
session.Session.__init__ = recording_init
sys.exit(daemon.main(sys.argv[2:]))
"""


@pytest.mark.needs_lab("wg", "wireguard-go", "ping")
@pytest.mark.parametrize("backend", ["native", "pure"])
def test_live_pywgd_logs_and_status_never_show_secrets(backend: str) -> None:
    from pywg.lab import Lab
    from pywg.lab.transfer import tcp_transfer
    from pywg.lab.wireguard import PYWGD, WIREGUARD_GO, WgNode, connect, start_node

    if backend == "native" and not _fast.AVAILABLE:
        pytest.skip("native extension not built")
    with Lab("pwsec") as lab, tempfile.TemporaryDirectory(prefix="pywg-secrets-") as tmp:
        a, b = lab.host("a"), lab.host("b")
        link = lab.link(a, b)
        ifname = lab.ifname("pw")
        log_path, keys_path = Path(tmp) / "pywgd.log", Path(tmp) / "session-keys"
        with log_path.open("wb") as log:
            env = {"LOG_LEVEL": "debug", "PYWG_BACKEND": backend}
            proc = a.popen(
                sys.executable, "-c", _RECORDING_PYWGD, str(keys_path), "-f", ifname,
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        sock = Path(f"/var/run/wireguard/{ifname}.sock")
        end = time.monotonic() + 15
        while not sock.exists() and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.02)
        assert sock.exists(), log_path.read_text()
        key = PrivateKey.generate()
        pw = WgNode(lab, a, PYWGD, ifname, key, 51820, "198.19.1.1", "fd19::1:1")
        pw.set(f"private_key={key.to_hex()}\nlisten_port=51820\n")
        a.addr(ifname, "198.19.1.1/24")
        a.addr(ifname, "fd19::1:1/112")
        a.link_up(ifname, mtu=1420)
        go = start_node(lab, b, WIREGUARD_GO, net=1, index=2)
        psk = PresharedKey.generate()
        # no persistent keepalive on both ends: at 5 s (= REKEY_TIMEOUT) on both, initiations
        # that crossed once keep crossing in lockstep (wireguard-go pairs do it too)
        connect(pw, go, link, preshared_key=psk)
        assert a.wait_ping(go.addr4, deadline=15), log_path.read_text()[-2000:]
        assert b.wait_ping(pw.addr4, deadline=15)
        assert a.ping(go.addr6, count=2)
        assert tcp_transfer(a, b, go.addr4, 2 << 20, port=5301, timeout=60).ok
        assert tcp_transfer(b, a, pw.addr4, 2 << 20, port=5302, timeout=60).ok
        # bad requests made of the secrets themselves
        for body in (
            f"private_key={key.to_hex()}0\n",
            f"public_key={go.public_key.to_hex()}\npreshared_key={psk.to_hex()[:-1]}\n",
            f"public_key={go.public_key.to_hex()}\nendpoint={psk.to_hex()}:1\n",
            f"{key.to_hex()}=1\n",
        ):
            with pytest.raises(Exception, match="errno"):
                pw.set(body)
        proc.send_signal(signal.SIGUSR1)  # health counters into the log
        time.sleep(0.5)

        secrets = Secrets()
        secrets.add("pywgd private key", key)
        secrets.add("wireguard-go private key", go.key)
        secrets.add("psk", psk)
        for n, line in enumerate(keys_path.read_text().split("\n")):
            if line:
                send, receive = line.split()
                secrets.add(f"session {n} send", bytes.fromhex(send))
                secrets.add(f"session {n} receive", bytes.fromhex(receive))
        assert len(secrets) >= 5, "no session was recorded"

        def wg(*args: str) -> str:
            # the socket directory is shared: "all" forms also list other labs' daemons,
            # which may come and go meanwhile, so only the output is judged for those
            result = a.run("wg", *args, check=False)
            assert result.returncode == 0 or ifname not in args, result
            return result.stdout + result.stderr

        for args in (
            ("show",),
            ("show", "all"),
            ("show", ifname),
            ("show", "interfaces"),
            *(("show", ifname, field) for field in (
                "public-key", "listen-port", "fwmark", "peers", "endpoints", "allowed-ips",
                "latest-handshakes", "persistent-keepalive", "transfer",
            )),
        ):  # fmt: skip
            secrets.assert_absent(wg(*args), f"wg {' '.join(args)}")
        # the forms that ask for secrets show them (so the search above can see them)
        assert secrets.found(wg("show", ifname, "private-key")) == ["pywgd private key"]
        assert secrets.found(wg("show", ifname, "preshared-keys")) == ["psk"]
        assert set(secrets.found(wg("show", ifname, "dump"))) == {"pywgd private key", "psk"}
        assert set(secrets.found(wg("showconf", ifname))) == {"pywgd private key", "psk"}
        for argv in (["show"], ["show", ifname]):
            shown = subprocess.run(
                [sys.executable, "-m", "pywg", *argv], capture_output=True, text=True, timeout=30
            )
            if ifname in argv:
                assert shown.returncode == 0 and str(pw.public_key) in shown.stdout, shown
            secrets.assert_absent(shown.stdout + shown.stderr, f"pywg {' '.join(argv)}")
        status = format_status(parse_get(ifname, get_text(ifname)), now=time.time())
        secrets.assert_absent(status, "format_status")

        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        log = log_path.read_text(errors="replace")
        assert "handshake completed" in log and "counters" in log, log[-2000:]
        assert len(log.splitlines()) >= 5
        secrets.assert_absent(log, "pywgd's debug log")


def get_text(ifname: str) -> str:
    from pywg.system import uapi_client

    return uapi_client.get(ifname)
