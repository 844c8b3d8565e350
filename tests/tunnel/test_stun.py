"""STUN endpoint discovery (pywg.stun, Tunnel.discover_endpoint) against coturn.

The codec is checked against RFC 5769's sample values; then a Tunnel behind
an endpoint-independent NAT (pywg.lab) asks Debian's coturn, a real STUN
server, for its mapping from the WireGuard socket itself, while WireGuard
traffic runs on the same socket to a pywgd on the public side. The mapping
STUN reported must be exactly the endpoint the public pywgd learned from
the tunnel's handshake.
"""

from __future__ import annotations

import binascii
import json
import struct
import subprocess
import sys
import time

import pytest

from pywg import stun
from pywg.keys import PrivateKey
from pywg.lab import Internet, Lab
from pywg.lab.wireguard import PYWGD, start_node

PREFIX = "pwstun"  # of the lab fixture's namespaces

# RFC 5769 §2.2/§2.3: the transaction ID of the sample responses, and the
# XOR-MAPPED-ADDRESS values carrying 192.0.2.1:32853 and
# [2001:db8:1234:5678:11:2233:4455:6677]:32853.
RFC5769_TXID = bytes.fromhex("b7e7a701bc34d686fa87dfae")
RFC5769_XOR4 = bytes.fromhex("0001a147e112a643")
RFC5769_XOR6 = bytes.fromhex("0002a1470113a9faa5d3f179bc25f4b5bed2b9d9")


def _response(txid: bytes, attributes: bytes, *, fingerprint: bool = True) -> bytes:
    length = len(attributes) + (8 if fingerprint else 0)
    head = struct.pack("!HHI", stun.BINDING_SUCCESS, length, stun.MAGIC_COOKIE) + txid
    if not fingerprint:
        return head + attributes
    crc = (binascii.crc32(head + attributes) & 0xFFFFFFFF) ^ stun.FINGERPRINT_XOR
    return head + attributes + struct.pack("!HHI", stun.ATTR_FINGERPRINT, 4, crc)


def test_xor_mapped_address_matches_rfc5769() -> None:
    assert stun.encode_xor_address(("192.0.2.1", 32853), RFC5769_TXID) == RFC5769_XOR4
    six = ("2001:db8:1234:5678:11:2233:4455:6677", 32853)
    assert stun.encode_xor_address(six, RFC5769_TXID) == RFC5769_XOR6
    for value, want in ((RFC5769_XOR4, ("192.0.2.1", 32853)), (RFC5769_XOR6, six)):
        attribute = struct.pack("!HH", stun.ATTR_XOR_MAPPED_ADDRESS, len(value)) + value
        got = stun.parse_binding_response(_response(RFC5769_TXID, attribute))
        assert got.mapped == want and got.transaction_id == RFC5769_TXID


def test_request_shape_and_fingerprint() -> None:
    txid = stun.new_transaction_id()
    request = stun.binding_request(txid)
    assert stun.is_stun(request)
    assert request[:2] == b"\x00\x01" and request[8:20] == txid
    # FINGERPRINT: CRC-32 of everything before it, xor "STUN" (RFC 8489 §14.7)
    crc = (binascii.crc32(request[:-8]) & 0xFFFFFFFF) ^ 0x5354554E
    assert request[-8:] == struct.pack("!HHI", stun.ATTR_FINGERPRINT, 4, crc)


def test_bad_responses_are_refused() -> None:
    txid = stun.new_transaction_id()
    good = struct.pack("!HH", stun.ATTR_XOR_MAPPED_ADDRESS, 8) + RFC5769_XOR4
    tampered = bytearray(_response(txid, good))
    tampered[-1] ^= 1  # the fingerprint no longer matches
    for data in (
        bytes(tampered),
        _response(txid, b"", fingerprint=False),  # no address at all
        stun.binding_request(txid),  # a request, not a response
        b"\x01\x00\x00\x00" + bytes(144),  # a WireGuard initiation
    ):
        with pytest.raises(stun.StunError):
            stun.parse_binding_response(data)


def test_wireguard_messages_are_never_stun() -> None:
    for kind, size in ((1, 148), (2, 92), (3, 64), (4, 32), (4, 1452)):
        message = bytes([kind, 0, 0, 0]) + bytes(4) + stun.MAGIC_COOKIE.to_bytes(4, "big")
        assert not stun.is_stun(message + bytes(size - len(message)))


# -- against coturn, behind a NAT --------------------------------------------------------------

_TUNNEL = r"""
import asyncio, json, sys
from pywg.asyncio.tunnel import Tunnel
from pywg.events import HandshakeCompleted
from pywg.keys import PrivateKey

ifname, key, peer, peer_host, stun_host = sys.argv[1:6]

async def main():
    async with Tunnel(ifname, private_key=PrivateKey.from_base64(key), listen_port=51820) as t:
        t.add_peer(peer, ["198.19.1.2/32"], (peer_host, 51820), persistent_keepalive=1)
        mapped = await t.discover_endpoint((stun_host, 3478), timeout=10)
        while not isinstance(await asyncio.wait_for(t.next_event(), 15), HandshakeCompleted):
            pass
        again = await t.discover_endpoint((stun_host, 3478), timeout=10)
        print(json.dumps({"mapped": mapped, "again": again, "port": 51820}), flush=True)
        await asyncio.sleep(2)  # keepalives on the same mapping while the test looks

asyncio.run(main())
"""


@pytest.mark.needs_lab("turnserver", "nft")  # coturn, behind an nftables NAT
def test_discovered_mapping_is_the_one_wireguard_uses(lab: Lab) -> None:
    net = Internet(lab)
    home = net.behind_nat("home", "endpoint-independent")
    server = net.public("srv")
    server.host.popen(
        "turnserver", "--stun-only", "-n", "--no-cli", "--listening-ip", server.addr4,
        "--listening-port", "3478", "--log-file", "stdout", "--no-stdout-log",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    gateway = start_node(lab, server.host, PYWGD, net=1, index=2)
    key = PrivateKey.generate()
    gateway.set(f"public_key={key.public_key.to_hex()}\nallowed_ip=198.19.1.1/32\n")
    time.sleep(0.5)  # coturn binds
    out = home.host.run(
        sys.executable, "-c", _TUNNEL, lab.ifname("st"), str(key), str(gateway.public_key),
        server.addr4, server.addr4, timeout=60,
    )  # fmt: skip
    got = json.loads(out.stdout.strip().splitlines()[-1])
    mapped = tuple(got["mapped"])
    # the NAT's outside address, and the same mapping before and after the handshake
    assert mapped[0] == home.public_addr4, got
    assert tuple(got["again"]) == mapped, got
    # what the public peer learned from the handshake on that socket is the mapping
    learned = gateway.status().peers[0].endpoint
    assert learned == f"{mapped[0]}:{mapped[1]}", (learned, got)
    assert home.addr4 != home.public_addr4  # really behind a NAT
