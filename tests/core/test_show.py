"""`wg show` status: parsing `get=1` (pywg.status) and formatting it (pywg.cmd.show)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pywg import Device, PresharedKey, PrivateKey
from pywg.cmd.show import format_bytes, format_duration, format_status
from pywg.status import InterfaceStatus, PeerStatus, parse_get
from pywg.uapi import get

NOW = 1_700_000_000.0
PRIV = PrivateKey(bytes([7]) * 32)
PEER_KEYS = [PrivateKey(bytes([i]) * 32).public_key for i in (1, 2, 3, 4)]
PSK = PresharedKey(bytes(range(32)))
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def lab_device() -> Device:
    """wg0 with four peers: handshakes 65 s ago, 3 s ago, never, and now."""
    device = Device(PRIV, listen_port=51820, wall_clock=lambda: NOW)
    device.fwmark = 0x1234
    a = device.add_peer(
        PEER_KEYS[0],
        allowed_ips=["198.19.0.2/32", "fd19::2/128"],
        endpoint=("198.18.0.2", 51820),
        preshared_key=PSK,
        persistent_keepalive=25,
    )
    a.rx_bytes, a.tx_bytes = 1560, 3_221_225  # 1.52 KiB, 3.07 MiB
    a.last_handshake_time = NOW - 65.25
    b = device.add_peer(PEER_KEYS[1], allowed_ips=["198.19.0.3/32"], endpoint=("fd18::3", 51821))
    b.rx_bytes, b.tx_bytes = 0, 92
    b.last_handshake_time = NOW - 3.5
    device.add_peer(PEER_KEYS[2])  # never seen
    d = device.add_peer(PEER_KEYS[3], allowed_ips=["0.0.0.0/0"], persistent_keepalive=60)
    d.last_handshake_time = NOW - 0.4
    d.rx_bytes = 5 * 1024**4
    return device


EXPECTED = f"""\
interface: wg0
  public key: {PRIV.public_key}
  private key: (hidden)
  listening port: 51820
  fwmark: 0x1234

peer: {PEER_KEYS[3]}
  allowed ips: 0.0.0.0/0
  latest handshake: Now
  transfer: 5.00 TiB received, 0 B sent
  persistent keepalive: every 1 minute

peer: {PEER_KEYS[1]}
  endpoint: [fd18::3]:51821
  allowed ips: 198.19.0.3/32
  latest handshake: 3 seconds ago
  transfer: 0 B received, 92 B sent

peer: {PEER_KEYS[0]}
  preshared key: (hidden)
  endpoint: 198.18.0.2:51820
  allowed ips: 198.19.0.2/32, fd19::2/128
  latest handshake: 1 minute, 5 seconds ago
  transfer: 1.52 KiB received, 3.07 MiB sent
  persistent keepalive: every 25 seconds

peer: {PEER_KEYS[2]}
  allowed ips: (none)
"""


# --------------------------------------------------------------------- parse_get


def test_parse_get_from_a_real_device() -> None:
    status = parse_get("wg0", get(lab_device()))
    assert status.name == "wg0"
    assert status.public_key == str(PRIV.public_key)
    assert status.has_private_key is True
    assert status.listen_port == 51820
    assert status.fwmark == 0x1234
    assert [p.public_key for p in status.peers] == [str(k) for k in PEER_KEYS]  # as listed
    a = status.peers[0]
    assert a == PeerStatus(
        public_key=str(PEER_KEYS[0]),
        preshared_key=True,
        endpoint="198.18.0.2:51820",
        allowed_ips=("198.19.0.2/32", "fd19::2/128"),
        last_handshake=pytest.approx(NOW - 65.25),  # type: ignore[arg-type]
        rx_bytes=1560,
        tx_bytes=3_221_225,
        persistent_keepalive=25,
    )
    never = status.peers[2]
    assert never == PeerStatus(public_key=str(PEER_KEYS[2]))
    assert never.last_handshake is None and never.endpoint is None
    assert never.preshared_key is False and never.allowed_ips == ()


def test_parse_get_no_private_key_nor_port() -> None:
    text = f"private_key={'0' * 64}\npublic_key={PEER_KEYS[0].to_hex()}\nerrno=0\n\n"
    status = parse_get("wg1", text)
    assert status == InterfaceStatus(name="wg1", peers=(PeerStatus(public_key=str(PEER_KEYS[0])),))
    assert parse_get("wg2", "errno=0\n\n") == InterfaceStatus(name="wg2")
    assert parse_get("wg2", "errno=0") == InterfaceStatus(name="wg2")  # no trailing newline


def test_parse_get_skips_unknown_keys() -> None:
    text = (
        f"private_key={PRIV.to_hex()}\nfuture_device_key=1\n"
        f"public_key={PEER_KEYS[0].to_hex()}\nprotocol_version=1\nfuture_peer_key=x\n"
        "last_handshake_time_sec=100\nlast_handshake_time_nsec=500000000\nerrno=0\n\n"
    )
    status = parse_get("wg0", text)
    assert status.peers[0].last_handshake == 100.5
    assert status.public_key == str(PRIV.public_key)


@pytest.mark.parametrize(
    ("errno", "reason"), [(-22, "Invalid argument"), (-98, "Address already in use"), (5, "")]
)
def test_parse_get_errno(errno: int, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_get("wg0", f"errno={errno}\n\n")
    message = str(info.value)
    assert message.startswith(f"the device 'wg0' answered errno={errno} (")
    assert reason in message
    # a failed get carries no configuration, but even if it did, it is not shown
    with pytest.raises(ValueError) as info:
        parse_get("wg0", f"private_key={PRIV.to_hex()}\nerrno={errno}\n\n")
    assert PRIV.to_hex() not in str(info.value)


PUB0 = PEER_KEYS[0].to_hex()


@pytest.mark.parametrize(
    ("text", "substring"),
    [
        ("", "no errno= line at the end"),
        ("\n\n", "no errno= line at the end"),
        (f"private_key={PRIV.to_hex()}\n\n", "no errno= line at the end"),
        ("errno=0\nlisten_port=1\n", "no errno= line at the end"),
        ("errno=x\n", "errno is not an integer"),
        ("errno=\n", "errno is not an integer"),
        ("errno=--1\n", "errno is not an integer"),
        ("errno=99999999999999999999\n", "errno is not an integer"),
        ("listen_port\nerrno=0\n", "line 1 is not key=value"),
        ("=1\nerrno=0\n", "line 1 is not key=value"),
        ("listen_port=65536\nerrno=0\n", "line 1: listen_port is not an unsigned 16-bit integer"),
        ("fwmark=-1\nerrno=0\n", "line 1: fwmark is not an unsigned 32-bit integer"),
        ("private_key=abc\nerrno=0\n", "line 1: private_key is not 64 hexadecimal digits"),
        ("private_key=" + "g" * 64 + "\nerrno=0\n", "private_key is not 64 hexadecimal digits"),
        ("public_key=\nerrno=0\n", "line 1: public_key is not 64 hexadecimal digits"),
        ("endpoint=1.2.3.4:5\nerrno=0\n", "line 1: endpoint before any public_key"),
        ("rx_bytes=1\nerrno=0\n", "line 1: rx_bytes before any public_key"),
        (f"public_key={PUB0}\nlisten_port=1\nerrno=0\n", "line 2: device key listen_port after"),
        (f"public_key={PUB0}\npublic_key={PUB0}\nerrno=0\n", "line 2: peer "),
        (f"public_key={PUB0}\nrx_bytes=1.5\nerrno=0\n", "line 2: rx_bytes is not an unsigned"),
        (f"public_key={PUB0}\ntx_bytes=\nerrno=0\n", "line 2: tx_bytes is not an unsigned 64"),
        (f"public_key={PUB0}\ntx_bytes=" + "9" * 21 + "\nerrno=0\n", "tx_bytes is not"),
        (f"public_key={PUB0}\nrx_bytes=١\nerrno=0\n", "rx_bytes is not"),  # a non-ASCII digit
        (f"public_key={PUB0}\nlast_handshake_time_nsec=1000000000\nerrno=0\n", "not below 10^9"),
        (f"public_key={PUB0}\npreshared_key=00\nerrno=0\n", "preshared_key is not 64 hex"),
        (f"public_key={PUB0}\nendpoint=\nerrno=0\n", "line 2: endpoint is empty or unprintable"),
        (f"public_key={PUB0}\nallowed_ip=\x1b[2J\nerrno=0\n", "allowed_ip is empty or unprint"),
        (f"public_key={PUB0}\npersistent_keepalive_interval=65536\nerrno=0\n", "16-bit"),
    ],
)
def test_parse_get_malformed(text: str, substring: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_get("wg0", text)
    message = str(info.value)
    assert message.startswith("malformed UAPI reply for 'wg0': ")
    assert substring in message
    assert "\n" not in message


def test_parse_get_never_quotes_the_private_key() -> None:
    secret = PRIV.to_hex()
    for text in (
        f"private_key={secret}x\nerrno=0\n",
        f"private_key={secret[:-1]}\nerrno=0\n",
        f"listen_port={secret}\nerrno=0\n",
        f"private_key={secret}\nprivate_key{secret}\nerrno=0\n",
        f"public_key={PUB0}\nprivate_key={secret}\nerrno=0\n",
        f"public_key={PUB0}\nendpoint={secret}\nrx_bytes={secret}\nerrno=0\n",
    ):
        with pytest.raises(ValueError) as info:
            parse_get("wg0", text)
        assert secret[:32] not in str(info.value) and secret[32:] not in str(info.value)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(get(lab_device()).split("\n")),
            st.text(max_size=30),
            st.builds(
                "{}={}".format,
                st.sampled_from(["public_key", "rx_bytes", "endpoint", "listen_port", "errno"]),
                st.text(max_size=20),
            ),
        ),
        max_size=30,
    )
)
def test_parse_get_raises_only_value_error(lines: list[str]) -> None:
    try:
        status = parse_get("wg0", "\n".join(lines))
    except ValueError:
        return
    format_status(status, now=NOW)


# --------------------------------------------------------------------- format_status


def test_format_status_exact() -> None:
    status = parse_get("wg0", get(lab_device()))
    assert format_status(status, now=NOW) == EXPECTED


def test_private_key_never_shown() -> None:
    device = lab_device()
    status = parse_get("wg0", get(device))
    text = format_status(status, now=NOW) + format_status(status, now=NOW, color=True)
    text += repr(status) + str(status)
    for secret in (PRIV.to_hex(), str(PRIV), PSK.to_hex(), str(PSK)):
        assert secret not in text
        assert secret.upper() not in text


def test_color_is_plain_text_plus_escapes() -> None:
    status = parse_get("wg0", get(lab_device()))
    colored = format_status(status, now=NOW, color=True)
    assert "\x1b[" in colored
    assert ANSI.sub("", colored) == EXPECTED
    first = colored.split("\n")[0]
    assert first == "\x1b[1m\x1b[32minterface:\x1b[0m \x1b[32mwg0\x1b[0m"


def test_format_minimal_interface() -> None:
    assert format_status(InterfaceStatus(name="wg9"), now=NOW) == "interface: wg9\n"
    status = InterfaceStatus(
        name="wg9",
        public_key=str(PEER_KEYS[0]),
        has_private_key=True,
        listen_port=0,
        fwmark=0,
        peers=(PeerStatus(public_key=str(PEER_KEYS[1]), last_handshake=NOW + 30),),
    )
    assert format_status(status, now=NOW) == (
        "interface: wg9\n"
        f"  public key: {PEER_KEYS[0]}\n"
        "  private key: (hidden)\n"
        "\n"
        f"peer: {PEER_KEYS[1]}\n"
        "  allowed ips: (none)\n"
        "  latest handshake: Now\n"  # a handshake "in the future" after a clock step
    )


def test_peer_order() -> None:
    def peer(i: int, handshake: float | None) -> PeerStatus:
        return PeerStatus(public_key=f"k{i}", last_handshake=handshake)

    peers = (peer(0, None), peer(1, 100.0), peer(2, None), peer(3, 300.0), peer(4, 100.0))
    text = format_status(InterfaceStatus(name="x", peers=peers), now=1000.0)
    order = [line.removeprefix("peer: ") for line in text.split("\n") if line.startswith("peer")]
    assert order == ["k3", "k1", "k4", "k0", "k2"]  # newest first, ties and nevers in order


@pytest.mark.parametrize(
    ("rx", "tx", "line"),
    [
        (0, 0, None),
        (1, 0, "  transfer: 1 B received, 0 B sent"),
        (0, 1023, "  transfer: 0 B received, 1023 B sent"),
        (1024, 1536, "  transfer: 1.00 KiB received, 1.50 KiB sent"),
    ],
)
def test_transfer_line(rx: int, tx: int, line: str | None) -> None:
    status = InterfaceStatus(
        name="x", peers=(PeerStatus(public_key="k", rx_bytes=rx, tx_bytes=tx),)
    )
    lines = format_status(status, now=0).split("\n")
    transfer = [x for x in lines if x.startswith("  transfer")]
    assert transfer == ([] if line is None else [line])


# --------------------------------------------------------------------- phrases


@pytest.mark.parametrize(
    ("seconds", "phrase"),
    [
        (0, "0 seconds"),
        (1, "1 second"),
        (2, "2 seconds"),
        (59, "59 seconds"),
        (60, "1 minute"),
        (61, "1 minute, 1 second"),
        (65, "1 minute, 5 seconds"),
        (120, "2 minutes"),
        (3600, "1 hour"),
        (3661, "1 hour, 1 minute, 1 second"),
        (7322, "2 hours, 2 minutes, 2 seconds"),
        (86400, "1 day"),
        (86400 + 5, "1 day, 5 seconds"),
        (2 * 86400 + 3 * 3600, "2 days, 3 hours"),
        (365 * 86400, "1 year"),
        (365 * 86400 + 86400 + 1, "1 year, 1 day, 1 second"),
        (
            3 * 365 * 86400 + 364 * 86400 + 23 * 3600 + 59 * 60 + 59,
            "3 years, 364 days, 23 hours, 59 minutes, 59 seconds",
        ),
    ],
)
def test_format_duration(seconds: int, phrase: str) -> None:
    assert format_duration(seconds) == phrase


@pytest.mark.parametrize(
    ("elapsed", "phrase"),
    [
        (0.0, "Now"),
        (0.999, "Now"),
        (1.0, "1 second ago"),
        (1.999, "1 second ago"),
        (65.5, "1 minute, 5 seconds ago"),
        (-5.0, "Now"),
        (400 * 86400, "1 year, 35 days ago"),
    ],
)
def test_latest_handshake_phrase(elapsed: float, phrase: str) -> None:
    status = InterfaceStatus(
        name="x", peers=(PeerStatus(public_key="k", last_handshake=NOW - elapsed),)
    )
    assert f"  latest handshake: {phrase}\n" in format_status(status, now=NOW)


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.00 KiB"),
        (1560, "1.52 KiB"),
        (1024**2 - 1, "1024.00 KiB"),
        (1024**2, "1.00 MiB"),
        (3_221_225, "3.07 MiB"),
        (1024**3, "1.00 GiB"),
        (int(2.5 * 1024**3), "2.50 GiB"),
        (1024**4, "1.00 TiB"),
        (1024**5, "1024.00 TiB"),
        (2**64 - 1, "16777216.00 TiB"),
    ],
)
def test_format_bytes(count: int, text: str) -> None:
    assert format_bytes(count) == text


def test_persistent_keepalive_phrase() -> None:
    status = InterfaceStatus(
        name="x",
        peers=(
            PeerStatus(public_key="a", persistent_keepalive=1),
            PeerStatus(public_key="b", persistent_keepalive=90),
            PeerStatus(public_key="c", persistent_keepalive=0),
        ),
    )
    text = format_status(status, now=0)
    assert "  persistent keepalive: every 1 second\n" in text
    assert "  persistent keepalive: every 1 minute, 30 seconds\n" in text
    assert text.count("persistent keepalive") == 2
