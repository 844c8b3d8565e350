"""Configuration files (pywg.config): wg(8) / wg-quick(8) syntax, errors, uapi set requests."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pywg import Device, LocalProtocolError, PresharedKey, PrivateKey, PublicKey
from pywg.config import (
    Config,
    ConfigError,
    PeerConfig,
    load_config,
    parse_config,
    resolve_endpoint,
    to_uapi_set,
)
from pywg.constants import UAPI_MAX_REQUEST
from pywg.uapi import apply_set, get

# Fixed keys (the pairs are real: each public key belongs to its private key).
PRIV = PrivateKey.from_base64("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=")
PUB = PRIV.public_key
PEER_PRIVS = [PrivateKey(bytes([i]) * 32) for i in (1, 2, 3)]
PEERS = [k.public_key for k in PEER_PRIVS]
PSK = PresharedKey(bytes(range(32)))

# how this Python spells an IPv4-mapped address (3.13 changed it to ::ffff:1.2.3.4)
MAPPED = str(ipaddress.ip_address("::ffff:1.2.3.4"))

SECRETS = [
    str(PRIV),
    PRIV.to_hex(),
    str(PSK),
    PSK.to_hex(),
    str(PRIV)[:-1],  # the secret part without the padding
    str(PSK)[:-1],
]

FULL = f"""\
# wg0 on host A: the lab's tunnel 198.19.0.0/24 and fd19::/64
[Interface]
PrivateKey = {PRIV}
listenport = 51820
FwMark = 0x1234
Address = 198.19.0.1/24, fd19::1/64   # both families
address = 198.19.1.1
MTU = 1420
DNS = 198.19.0.53, fd19::53
DNS = lab.example
Table = off
PreUp = echo pre-up
PostUp = iptables -A FORWARD -i %i -j ACCEPT
PostUp = ip6tables -A FORWARD -i %i -j ACCEPT
PreDown = echo pre-down
PostDown = iptables -D FORWARD -i %i -j ACCEPT
SaveConfig = false

[peer]
# B, on v4
PublicKey = {PEERS[0]}
PresharedKey = {PSK}
AllowedIPs = 198.19.0.2/32, 198.19.2.0/24
Endpoint = 198.18.0.2:51820
PersistentKeepalive = 25

[PEER]
  publickey={PEERS[1]}
  ALLOWEDIPS = fd19::2/128
  AllowedIPs = fd19:2::/64
  endpoint = [fd18::2]:51821

[Peer]
PublicKey = {PEERS[2]}
AllowedIPs = 0.0.0.0/0, ::/0
Endpoint = vpn.example.test:4500
PersistentKeepalive = off
"""


def fake_resolver(table: dict[str, list[tuple[int, str]]]) -> Any:
    """A getaddrinfo stand-in answering from `table` (name -> [(family, address)])."""
    calls: list[tuple[Any, ...]] = []

    def resolve(host: str, port: int, **kwargs: Any) -> list[tuple[Any, ...]]:
        calls.append((host, port, kwargs))
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        out: list[tuple[Any, ...]] = []
        for family, address in table[host]:
            sockaddr = (address, port) if family == socket.AF_INET else (address, port, 0, 0)
            out.append((family, socket.SOCK_DGRAM, socket.IPPROTO_UDP, "", sockaddr))
        return out

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


def error_of(text: str, source: str = "wg0.conf") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source=source)
    return info.value


def interface(*lines: str) -> str:
    return "\n".join(["[Interface]", f"PrivateKey = {PRIV}", *lines]) + "\n"


def peer(*lines: str, key: PublicKey = PEERS[0]) -> str:
    return "\n".join(["[Peer]", f"PublicKey = {key}", *lines]) + "\n"


# --------------------------------------------------------------------- a whole file


def test_full_file() -> None:
    config = parse_config(FULL, source="wg0.conf")
    assert config.private_key == PRIV
    assert config.listen_port == 51820
    assert config.fwmark == 0x1234
    assert config.addresses == ("198.19.0.1/24", "fd19::1/64", "198.19.1.1/32")
    assert config.mtu == 1420
    assert config.dns == ("198.19.0.53", "fd19::53", "lab.example")
    assert config.table == "off"
    assert config.pre_up == ("echo pre-up",)
    assert config.post_up == (
        "iptables -A FORWARD -i %i -j ACCEPT",
        "ip6tables -A FORWARD -i %i -j ACCEPT",
    )
    assert config.pre_down == ("echo pre-down",)
    assert config.post_down == ("iptables -D FORWARD -i %i -j ACCEPT",)
    assert config.save_config is False
    assert config.peers == (
        PeerConfig(
            public_key=PEERS[0],
            preshared_key=PSK,
            allowed_ips=("198.19.0.2/32", "198.19.2.0/24"),
            endpoint=("198.18.0.2", 51820),
            persistent_keepalive=25,
        ),
        PeerConfig(
            public_key=PEERS[1],
            allowed_ips=("fd19::2/128", "fd19:2::/64"),
            endpoint=("fd18::2", 51821),
        ),
        PeerConfig(
            public_key=PEERS[2],
            allowed_ips=("0.0.0.0/0", "::/0"),
            endpoint=("vpn.example.test", 4500),
            persistent_keepalive=0,
        ),
    )


def test_minimal_and_defaults() -> None:
    assert parse_config("[Interface]\n") == Config()
    config = parse_config(interface() + peer())
    assert config.private_key == PRIV
    assert config.listen_port is None
    assert config.fwmark == 0
    assert config.mtu is None and config.table is None and config.save_config is False
    assert config.peers == (PeerConfig(PEERS[0]),)
    assert config.peers[0].preshared_key is None
    assert config.peers[0].allowed_ips == ()
    assert config.peers[0].endpoint is None
    assert config.peers[0].persistent_keepalive == 0


def test_interface_may_follow_the_peers() -> None:
    # [Interface] may come after the peers; what matters is that it exists
    config = parse_config(peer() + interface("ListenPort = 1"))
    assert config.listen_port == 1
    assert config.peers[0].public_key == PEERS[0]


def test_syntax_details() -> None:
    text = (
        "\ufeff  # leading byte order mark and comment\r\n"
        "[ Interface ]   # spaces inside the brackets\r\n"
        f"PrivateKey={PRIV}#no space before the comment\r\n"
        "\t ListenPort\t=\t7  \r\n"
        "SaveConfig = TRUE\r\n"
        "PostUp = a=b c=d\r\n"  # only the first '=' separates
        "Address =\r\n"  # an empty list adds nothing
    )
    config = parse_config(text)
    assert config.private_key == PRIV
    assert config.listen_port == 7
    assert config.save_config is True
    assert config.post_up == ("a=b c=d",)
    assert config.addresses == ()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0), ("off", 0), ("OFF", 0), ("51", 51), ("0x1234", 0x1234), ("0XfF", 255)],
)
def test_fwmark_forms(value: str, expected: int) -> None:
    assert parse_config(interface(f"FwMark = {value}")).fwmark == expected


def test_bounds() -> None:
    assert parse_config(interface("ListenPort = 0")).listen_port == 0
    assert parse_config(interface("ListenPort = 65535")).listen_port == 65535
    assert parse_config(interface("MTU = 576")).mtu == 576
    assert parse_config(interface("MTU = 65535")).mtu == 65535
    assert parse_config(interface("FwMark = 4294967295")).fwmark == 0xFFFFFFFF
    assert parse_config(interface("FwMark = 0xffffffff")).fwmark == 0xFFFFFFFF
    text = interface() + peer("PersistentKeepalive = 65535")
    assert parse_config(text).peers[0].persistent_keepalive == 65535


def test_zero_preshared_key_means_none() -> None:
    text = interface() + peer(f"PresharedKey = {PresharedKey(bytes(32))}")
    assert parse_config(text).peers[0].preshared_key is None


# --------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.0.1/24", ("10.0.0.0/24",)),
        ("10.0.0.1", ("10.0.0.1/32",)),
        ("10.1.2.3/0", ("0.0.0.0/0",)),
        ("fd19::1", ("fd19::1/128",)),
        ("FD19:0:0::1:2/64", ("fd19::/64",)),
        ("fd19::1/0", ("::/0",)),
        ("10.0.0.0/8,10.0.0.0/8, 10.0.0.1/8", ("10.0.0.0/8",)),  # duplicates collapse
        ("::ffff:1.2.3.4/128", (f"{MAPPED}/128",)),
    ],
)
def test_allowed_ips_normalised(value: str, expected: tuple[str, ...]) -> None:
    assert parse_config(interface() + peer(f"AllowedIPs = {value}")).peers[0].allowed_ips == (
        expected
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("198.19.0.1/24", "198.19.0.1/24"),
        ("198.19.0.1", "198.19.0.1/32"),
        ("FD19::0:1/64", "fd19::1/64"),
        ("fd19::1", "fd19::1/128"),
    ],
)
def test_address_keeps_host_part(value: str, expected: str) -> None:
    assert parse_config(interface(f"Address = {value}")).addresses == (expected,)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.2.3.4:51820", ("1.2.3.4", 51820)),
        ("[fd18::1]:51820", ("fd18::1", 51820)),
        ("[FD18:0::1]:1", ("fd18::1", 1)),
        ("[::ffff:1.2.3.4]:9", (MAPPED, 9)),
        ("example.com:51820", ("example.com", 51820)),
        ("vpn-1.Example.COM.:65535", ("vpn-1.Example.COM.", 65535)),
        ("localhost:5", ("localhost", 5)),
    ],
)
def test_endpoint_forms(value: str, expected: tuple[str, int]) -> None:
    assert parse_config(interface() + peer(f"Endpoint = {value}")).peers[0].endpoint == expected


# --------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "line", "substring"),
    [
        # structure
        ("[Interface]\nFoo = 1\n", 2, "unknown key 'Foo'"),
        ("[Interface]\n[Bogus]\n", 2, "unknown section [Bogus]"),
        ("[Interface]\n[Peer\n", 2, "malformed section header"),
        ("[Interface]\n[Peer] x\n", 2, "malformed section header"),
        ("ListenPort = 1\n[Interface]\n", 1, "ListenPort outside of a section"),
        ("\n# c\n[Interface]\nListenPort 1\n", 4, "expected 'Key = Value'"),
        ("[Interface]\n = 1\n", 2, "missing key name"),
        ("[Interface]\n[Interface]\n", 2, "second [Interface] section (the first is on line 1)"),
        # wrong section
        (interface(f"PublicKey = {PEERS[0]}"), 3, "PublicKey does not belong in [Interface]"),
        (interface(f"PresharedKey = {PSK}"), 3, "PresharedKey does not belong in [Interface]"),
        (interface("AllowedIPs = 10.0.0.0/8"), 3, "AllowedIPs does not belong in [Interface]"),
        (interface() + peer("ListenPort = 1"), 5, "ListenPort does not belong in [Peer]"),
        (interface() + peer(f"PrivateKey = {PRIV}"), 5, "PrivateKey does not belong in [Peer]"),
        (interface() + peer("DNS = 1.1.1.1"), 5, "DNS does not belong in [Peer]"),
        # duplicates
        (interface(f"PrivateKey = {PRIV}"), 3, "PrivateKey: given twice in one section (first "),
        (interface("ListenPort = 1", "listenport = 1"), 4, "ListenPort: given twice"),
        (interface("MTU = 1420", "MTU = 1420"), 4, "MTU: given twice"),
        (interface("Table = off", "Table = auto"), 4, "Table: given twice"),
        (interface("SaveConfig = true", "SaveConfig = true"), 4, "SaveConfig: given twice"),
        (interface("FwMark = 1", "FwMark = 1"), 4, "FwMark: given twice"),
        (interface() + peer(f"PublicKey = {PEERS[0]}"), 5, "PublicKey: given twice"),
        (interface() + peer(f"PresharedKey = {PSK}", f"PresharedKey = {PSK}"), 6, "given twice"),
        (interface() + peer("Endpoint = 1.2.3.4:1", "Endpoint = 1.2.3.4:1"), 6, "given twice"),
        (interface() + peer("PersistentKeepalive = 1", "PersistentKeepalive=2"), 6, "twice"),
        # peers
        (interface() + "[Peer]\nAllowedIPs = 10.0.0.0/8\n", 3, "[Peer] section without a Public"),
        (interface() + "[Peer]\n", 3, "[Peer] section without a PublicKey"),
        (interface() + peer() + peer(), 6, "PublicKey: this peer is already configured (line 4)"),
        # missing values
        (interface("ListenPort ="), 3, "ListenPort: missing value"),
        (interface("PostUp = "), 3, "PostUp: missing value"),
        ("[Interface]\nPrivateKey =\n", 2, "PrivateKey: missing value"),
        # bad values
        ("[Interface]\nPrivateKey = abc\n", 2, "PrivateKey: not a valid base64 key (expected 32"),
        (
            interface() + "[Peer]\nPublicKey = " + "A" * 44 + "\n",
            4,
            "PublicKey: not a valid base64",
        ),
        (interface() + "[Peer]\nPublicKey = " + "A" * 43 + "=\n", None, None),  # valid: zeros
        (interface() + peer("PresharedKey = short="), 5, "PresharedKey: not a valid base64 key"),
        (interface("ListenPort = 65536"), 3, "ListenPort: expected an integer from 0 to 65535"),
        (interface("ListenPort = -1"), 3, "ListenPort: expected an integer"),
        (interface("ListenPort = 0x10"), 3, "ListenPort: expected an integer"),
        (interface("ListenPort = http"), 3, "got 'http'"),
        (interface("FwMark = 0x100000000"), 3, "FwMark: expected an integer from 0 to 4294967295"),
        (interface("FwMark = on"), 3, "FwMark: expected an integer"),
        (interface("MTU = 575"), 3, "MTU: expected an integer from 576 to 65535"),
        (interface("MTU = 65536"), 3, "MTU: expected an integer"),
        (interface("MTU = off"), 3, "MTU: expected an integer"),
        (interface("SaveConfig = yes"), 3, "SaveConfig: expected 'true' or 'false', got 'yes'"),
        (interface("Table = two words"), 3, "Table: expected 'off', 'auto' or a routing table"),
        (interface("Address = 10.0.0.1/33"), 3, "Address: not an IP address or CIDR: '10.0.0.1/"),
        (interface("Address = 10.0.0.1/255.0.0.0"), 3, "Address: not an IP address or CIDR"),
        (interface("Address = 10.0.0.256"), 3, "Address: not an IP address or CIDR"),
        (interface("Address = fe80::1%eth0/64"), 3, "Address: not an IP address or CIDR"),
        (interface("Address = 10.0.0.1/24,,10.0.0.2"), 3, "Address: empty item"),
        (interface("DNS = 1.1.1.1, bad name"), 3, "DNS: not an IP address or a search domain"),
        (interface("DNS = 1.2.3.999"), 3, "DNS: not an IP address or a search domain"),
        (interface() + peer("AllowedIPs = 10.0.0.0/8,"), 5, "AllowedIPs: empty item"),
        (interface() + peer("AllowedIPs = 10.0.0.0/-1"), 5, "AllowedIPs: not an IP address"),
        (interface() + peer("AllowedIPs = fd19::/129"), 5, "AllowedIPs: not an IP address"),
        (interface() + peer("AllowedIPs = example.com/32"), 5, "AllowedIPs: not an IP address"),
        (interface() + peer("AllowedIPs = 10.0.0.0/ 8"), 5, "AllowedIPs: not an IP address"),
        (interface() + peer("Endpoint = 1.2.3.4"), 5, "Endpoint: expected host:port"),
        (interface() + peer("Endpoint = :51820"), 5, "Endpoint: expected host:port"),
        (interface() + peer("Endpoint = 1.2.3.4:0"), 5, "Endpoint: port must be an integer from 1"),
        (interface() + peer("Endpoint = 1.2.3.4:65536"), 5, "port must be an integer from 1"),
        (interface() + peer("Endpoint = 1.2.3.4:"), 5, "port must be an integer from 1"),
        (interface() + peer("Endpoint = 1.2.3.4:x"), 5, "port must be an integer from 1"),
        (interface() + peer("Endpoint = fd18::1:51820"), 5, "Endpoint: an IPv6 endpoint needs br"),
        (interface() + peer("Endpoint = [fd18::1]51820"), 5, "Endpoint: expected [IPv6]:port"),
        (interface() + peer("Endpoint = [fd18::1:51820"), 5, "Endpoint: expected [IPv6]:port"),
        (interface() + peer("Endpoint = [1.2.3.4]:1"), 5, "Endpoint: not an IPv6 address: '1.2"),
        (interface() + peer("Endpoint = bad_host!:1"), 5, "not an IP address or a host name"),
        (interface() + peer("Endpoint = 1.2.3.999:1"), 5, "not an IP address or a host name"),
        (interface() + peer("Endpoint = a..b:1"), 5, "not an IP address or a host name"),
        (interface() + peer("PersistentKeepalive = 65536"), 5, "PersistentKeepalive: expected an"),
        (interface() + peer("PersistentKeepalive = on"), 5, "from 0 to 65535 or 'off'"),
        # nothing
        ("", None, "wg0.conf: missing [Interface] section"),
        ("# only a comment\n\n", None, "missing [Interface] section"),
        (peer(), None, "missing [Interface] section"),
    ],
)
def test_errors(text: str, line: int | None, substring: str | None) -> None:
    if substring is None:  # a near miss that is valid after all
        parse_config(text)
        return
    exc = error_of(text)
    assert isinstance(exc, LocalProtocolError)
    assert exc.source == "wg0.conf"
    assert exc.line == line
    assert substring in str(exc)
    prefix = "wg0.conf: " if line is None else f"wg0.conf:{line}: "
    assert str(exc).startswith(prefix)
    assert str(exc) == prefix + exc.message
    assert "\n" not in str(exc)


def test_error_format_exactly() -> None:
    exc = error_of(interface() + peer() + "[Peer]\nPublicKey = nope\n")
    assert str(exc) == "wg0.conf:6: PublicKey: not a valid base64 key (expected 32 bytes)"
    assert str(error_of("")) == "wg0.conf: missing [Interface] section"
    assert str(error_of("[Interface]\nMTU=1\n", source="<config>")) == (
        "<config>:2: MTU: expected an integer from 576 to 65535, got '1'"
    )


def test_long_values_are_truncated() -> None:
    exc = error_of(interface("Table = " + "x." * 30 + " y"))
    assert str(exc).endswith("got '" + ("x." * 30)[:37] + "...'")
    # a long run of base64 characters may be a key: withheld, not truncated
    exc = error_of(interface("Table = " + "x" * 60 + " y"))
    assert str(exc).endswith("got (value not shown)")


def test_unicode_key_names_are_not_folded() -> None:
    # "K" KELVIN SIGN lower-cases to an ASCII "k"; key names must be ASCII anyway
    exc = error_of("[Interface]\nPrivate\u212aey = x\n")
    assert exc.line == 2 and "unknown key" in str(exc)


# --------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    "text",
    [
        f"[Interface]\n{PRIV}\n",  # a pasted key, no '=' besides the padding
        f"[Interface]\nPrivateKey {PRIV}\n",
        f"[Interface]\nPrivateKey: {PRIV}\n",
        f"[Interface]\n{PRIV} = x\n",
        f"[Interface]\n{PRIV.to_hex()}\n",
        f"[{PRIV}]\n",
        f"[Interface]\n[{str(PRIV).replace('+', 'a').replace('/', 'b')}]\n",
        f"PrivateKey = {PRIV}\n[Interface]\n",
        f"[Interface]\nPrivateKey = {PRIV}\nPrivateKey = {PRIV}\n",
        f"[Interface]\nPrivateKey = {PRIV}x\n",
        f"[Interface]\nPrivateKey = {PRIV.to_hex()}\n",
        f"[Interface]\nPrivateKey = {str(PRIV)[:-1]}\n",
        f"[Interface]\nAddress = {PRIV}\n",
        f"[Interface]\nDNS = {PRIV}\n",
        f"[Interface]\nTable = {PRIV}\n",
        f"[Interface]\nListenPort = {PRIV}\n",
        f"[Interface]\nMTU = {PRIV.to_hex()}\n",
        f"[Interface]\nSaveConfig = {PRIV}\n",
        f"[Interface]\nFwMark = {PSK}\n",
        f"[Interface]\nPresharedKey = {PSK}\n",
        interface() + peer(f"PrivateKey = {PRIV}"),
        interface() + peer(f"PresharedKey = {PSK}", f"PresharedKey = {PSK}"),
        interface() + peer(f"PresharedKey = {PSK}x"),
        interface() + peer(f"PresharedKey = {PSK.to_hex()}"),
        interface() + peer(f"AllowedIPs = {PSK}"),
        interface() + peer(f"Endpoint = {PSK}:51820"),
        interface() + peer(f"Endpoint = [{PSK}]:51820"),
        interface() + peer(f"PersistentKeepalive = {PSK}"),
        interface() + f"[Peer]\nPresharedKey = {PSK}\n",
        interface() + f"[Peer]\nPublicKey = {PRIV}\nPublicKey = {PRIV}\n",
        interface() + f"[Peer]\nPublicKey = {PRIV}\n[Peer]\nPublicKey = {PRIV}\n",
    ],
)
def test_no_secret_in_errors(text: str) -> None:
    exc = error_of(text)
    message = str(exc) + repr(exc) + exc.message + repr(exc.args)
    cause = exc.__cause__ or exc.__context__
    if cause is not None:
        message += str(cause) + repr(cause)
    for secret in SECRETS:
        assert secret not in message
    assert exc.line is not None or "missing [Interface]" in str(exc)


def test_no_secret_in_reprs() -> None:
    config = parse_config(FULL)
    for text in (repr(config), str(config), repr(config.peers), str(config.peers[0])):
        for secret in SECRETS:
            assert secret not in text
    assert "PrivateKey (secret)" in repr(config)
    assert "PresharedKey (secret)" in repr(config.peers[0])
    assert str(PEERS[0]) in repr(config.peers[0])  # the public key is shown


def test_dataclasses_are_frozen() -> None:
    config = parse_config(FULL)
    with pytest.raises(AttributeError):
        config.mtu = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        config.peers[0].endpoint = None  # type: ignore[misc]
    assert not hasattr(config, "__dict__")


# --------------------------------------------------------------------- load_config


def test_load_config(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "wg0.conf"
    path.write_text(FULL)
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="pywg.config"):
        assert load_config(path) == parse_config(FULL)
        assert load_config(str(path)).peers[0].public_key == PEERS[0]
    assert caplog.records == []


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o620])
def test_load_config_warns_when_others_can_access(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    path = tmp_path / "wg0.conf"
    path.write_text(FULL)
    path.chmod(mode)
    with caplog.at_level(logging.WARNING, logger="pywg.config"):
        load_config(path)
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert str(path) in message and f"{mode:04o}" in message
    for secret in SECRETS:
        assert secret not in message


def test_load_config_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.conf"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert info.value.line is None and info.value.source == str(missing)
    assert str(info.value).startswith(f"{missing}: cannot read: ")

    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)  # a directory

    binary = tmp_path / "bin.conf"
    binary.write_bytes(b"[Interface]\n\xff\xfe\n")
    binary.chmod(0o600)
    with pytest.raises(
        ConfigError, match=r"bin.conf: not UTF-8 text \(invalid byte at offset 12\)"
    ):
        load_config(binary)

    bad = tmp_path / "bad.conf"
    bad.write_text("[Interface]\nMTU = 9\n")
    bad.chmod(0o600)
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(info.value) == f"{bad}:2: MTU: expected an integer from 576 to 65535, got '9'"

    big = tmp_path / "big.conf"
    big.write_text("[Interface]\n" + "#" * UAPI_MAX_REQUEST + "\n")
    big.chmod(0o600)
    with pytest.raises(ConfigError, match=f"larger than {UAPI_MAX_REQUEST} bytes"):
        load_config(big)


def test_load_config_takes_a_file_as_large_as_a_uapi_request(tmp_path: Path) -> None:
    """A configuration of 100,000 allowed IPs (1.5 MiB) loads; one byte past the UAPI's
    request limit does not (the file becomes one request)."""
    nets = [f"10.{n >> 8 & 255}.{n & 255}.0/24" for n in range(50_000)]
    nets += [f"fd19::{n:x}/128" for n in range(50_000)]
    head = f"[Interface]\nPrivateKey = {PrivateKey.generate().to_base64()}\n\n[Peer]\n"
    text = head + f"PublicKey = {PrivateKey.generate().public_key}\n"
    text += "".join(
        f"AllowedIPs = {', '.join(nets[i : i + 100])}\n" for i in range(0, len(nets), 100)
    )
    assert len(text) > 1 << 20
    path = tmp_path / "huge.conf"
    path.write_text(text)
    path.chmod(0o600)
    config = load_config(path)
    assert list(config.peers[0].allowed_ips) == [str(ipaddress.ip_network(n)) for n in nets]
    path.write_text(text + "#" * (UAPI_MAX_REQUEST - len(text)))
    assert len(load_config(path).peers[0].allowed_ips) == len(nets)  # exactly at the limit
    path.write_text(text + "#" * (UAPI_MAX_REQUEST - len(text) + 1))
    with pytest.raises(ConfigError, match="larger than"):
        load_config(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads anything")
def test_load_config_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "secret.conf"
    path.write_text(FULL)
    path.chmod(0)
    with pytest.raises(ConfigError, match="Permission denied"):
        load_config(path)


# --------------------------------------------------------------------- resolve_endpoint


def test_resolve_literal_needs_no_resolver() -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a literal must not be resolved")

    assert resolve_endpoint("198.18.0.2", 51820, resolver=refuse) == ("198.18.0.2", 51820)
    assert resolve_endpoint("FD18:0::0:2", 1, resolver=refuse) == ("fd18::2", 1)


def test_resolve_name_takes_first_answer() -> None:
    resolver = fake_resolver({"vpn.example.test": [(socket.AF_INET6, "fd18::9"), (2, "1.2.3.4")]})
    assert resolve_endpoint("vpn.example.test", 4500, resolver=resolver) == ("fd18::9", 4500)
    (host, port, kwargs) = resolver.calls[0]
    assert (host, port) == ("vpn.example.test", 4500)
    assert kwargs["type"] == socket.SOCK_DGRAM
    assert kwargs["proto"] == socket.IPPROTO_UDP
    assert kwargs["family"] == socket.AF_UNSPEC

    resolver = fake_resolver({"v4.test": [(socket.AF_INET, "198.18.0.7")]})
    assert resolve_endpoint("v4.test", 9, resolver=resolver) == ("198.18.0.7", 9)


def test_resolve_skips_other_families() -> None:
    def resolver(host: str, port: int, **kwargs: Any) -> list[tuple[Any, ...]]:
        return [
            (socket.AF_UNIX, socket.SOCK_DGRAM, 0, "", "/x"),
            (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("not-an-ip", port)),
            (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("198.18.0.3", port)),
        ]

    assert resolve_endpoint("x.test", 1, resolver=resolver) == ("198.18.0.3", 1)


def test_resolve_failures() -> None:
    resolver = fake_resolver({"empty.test": []})
    with pytest.raises(ConfigError) as info:
        resolve_endpoint("missing.test", 1, resolver=resolver)
    assert "cannot resolve endpoint host 'missing.test': Name or service not known" in str(
        info.value
    )
    with pytest.raises(ConfigError, match=r"'empty\.test': no IPv4 or IPv6 address"):
        resolve_endpoint("empty.test", 1, resolver=resolver)

    def unicode_error(*args: Any, **kwargs: Any) -> Any:
        raise UnicodeError("label too long")

    with pytest.raises(ConfigError, match="label too long"):
        resolve_endpoint("a" * 70 + ".test", 1, resolver=unicode_error)


def test_resolve_with_the_real_resolver() -> None:
    # "localhost" resolves without any network (RFC 6761 §6.3)
    host, port = resolve_endpoint("localhost", 51820)
    assert host in ("127.0.0.1", "::1") and port == 51820


# --------------------------------------------------------------------- to_uapi_set


def test_to_uapi_set_exact() -> None:
    resolver = fake_resolver({"vpn.example.test": [(socket.AF_INET, "198.18.0.4")]})
    text = to_uapi_set(parse_config(FULL), resolver=resolver)
    assert text == (
        "set=1\n"
        f"private_key={PRIV.to_hex()}\n"
        "listen_port=51820\n"
        "fwmark=4660\n"
        "replace_peers=true\n"
        f"public_key={PEERS[0].to_hex()}\n"
        f"preshared_key={PSK.to_hex()}\n"
        "endpoint=198.18.0.2:51820\n"
        "persistent_keepalive_interval=25\n"
        "replace_allowed_ips=true\n"
        "allowed_ip=198.19.0.2/32\n"
        "allowed_ip=198.19.2.0/24\n"
        f"public_key={PEERS[1].to_hex()}\n"
        "endpoint=[fd18::2]:51821\n"
        "persistent_keepalive_interval=0\n"
        "replace_allowed_ips=true\n"
        "allowed_ip=fd19::2/128\n"
        "allowed_ip=fd19:2::/64\n"
        f"public_key={PEERS[2].to_hex()}\n"
        "endpoint=198.18.0.4:4500\n"
        "persistent_keepalive_interval=0\n"
        "replace_allowed_ips=true\n"
        "allowed_ip=0.0.0.0/0\n"
        "allowed_ip=::/0\n"
        "\n"
    )


def test_to_uapi_set_minimal() -> None:
    assert to_uapi_set(Config()) == "set=1\nfwmark=0\nreplace_peers=true\n\n"
    config = parse_config("[Interface]\nListenPort = 0\n" + peer())
    assert to_uapi_set(config) == (
        "set=1\nlisten_port=0\nfwmark=0\nreplace_peers=true\n"
        f"public_key={PEERS[0].to_hex()}\npersistent_keepalive_interval=0\n"
        "replace_allowed_ips=true\n\n"
    )


def test_to_uapi_set_resolution_failure_names_host() -> None:
    config = parse_config(interface() + peer("Endpoint = gone.example.test:1"))
    with pytest.raises(ConfigError, match=r"gone\.example\.test"):
        to_uapi_set(config, resolver=fake_resolver({}))


def test_to_uapi_set_configures_a_device() -> None:
    resolver = fake_resolver({"vpn.example.test": [(socket.AF_INET6, "fd18::4")]})
    text = to_uapi_set(parse_config(FULL), resolver=resolver)
    device = Device(PrivateKey.generate(), listen_port=1)
    old_peer = PrivateKey.generate().public_key
    device.add_peer(old_peer, allowed_ips=["198.19.9.0/24"])
    lines = text.split("\n")
    assert lines[0] == "set=1" and lines[-2:] == ["", ""]
    apply_set(device, lines[1:-2])
    assert device.private_key == PRIV
    assert device.listen_port == 51820
    assert device.fwmark == 0x1234
    assert list(device.peers) == PEERS  # the old peer is gone
    first = device.peer(PEERS[0])
    assert first.preshared_key == PSK
    assert first.endpoint == ("198.18.0.2", 51820)
    assert first.persistent_keepalive == 25
    assert device.allowed_ips(PEERS[0]) == ["198.19.0.2/32", "198.19.2.0/24"]
    assert device.peer(PEERS[1]).endpoint == ("fd18::2", 51821)
    assert device.peer(PEERS[2]).endpoint == ("fd18::4", 4500)
    assert device.allowed_ips(PEERS[2]) == ["0.0.0.0/0", "::/0"]
    # and the device reports back what the file says
    assert f"private_key={PRIV.to_hex()}" in get(device)


# --------------------------------------------------------------------- fuzz

_LINES = [
    "[Interface]",
    "[Peer]",
    "[peer",
    f"PrivateKey = {PRIV}",
    f"PublicKey = {PEERS[0]}",
    f"PublicKey = {PEERS[1]}",
    f"PresharedKey = {PSK}",
    "ListenPort = 51820",
    "FwMark = 0x10",
    "Address = 10.0.0.1/24, fd19::1",
    "AllowedIPs = 10.0.0.0/8, ::/0",
    "Endpoint = [fd18::1]:51820",
    "Endpoint = host.test:1",
    "PersistentKeepalive = 25",
    "DNS = 1.1.1.1",
    "MTU = 1420",
    "PostUp = true",
    "# comment",
    "",
]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_random_text_raises_only_config_error(text: str) -> None:
    with contextlib.suppress(ConfigError):
        parse_config(text)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(_LINES),
            st.builds(lambda k, v: f"{k} = {v}", st.sampled_from(_LINES), st.text(max_size=30)),
            st.builds(lambda line, cut: line[:cut], st.sampled_from(_LINES), st.integers(0, 60)),
            st.text(max_size=40),
        ),
        max_size=25,
    )
)
def test_random_lines_raise_only_config_error(lines: list[str]) -> None:
    try:
        config = parse_config("\n".join(lines))
    except ConfigError as exc:
        assert "\n" not in str(exc)
        for secret in SECRETS:
            assert secret not in str(exc)
    else:
        with contextlib.suppress(ConfigError):  # a name the fake resolver does not know
            to_uapi_set(config, resolver=fake_resolver({"host.test": [(2, "198.18.0.1")]}))
