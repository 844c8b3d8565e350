"""Relayed endpoints (pywg.relayed): [100::ID]:R, and the tag in the reserved bytes."""

from __future__ import annotations

import pytest

from pywg import relayed
from pywg.constants import MAX_RELAY_INDEX, MAX_RELAY_NODE_ID
from pywg.stun import MAGIC_COOKIE, binding_request, binding_success, is_stun, new_transaction_id

INITIATION = bytes([1, 0, 0, 0]) + bytes(range(144))
TRANSPORT = bytes([4, 0, 0, 0]) + bytes(range(60))


def test_endpoints_round_trip_and_nothing_else_parses() -> None:
    for relay, node in ((1, 1), (3, 0x12345), (MAX_RELAY_INDEX, MAX_RELAY_NODE_ID)):
        where = relayed.endpoint(relay, node)
        assert where[0].startswith("100::") and relayed.parse(where) == (relay, node)
    for other in (
        ("100::", 1),  # node 0
        ("100::1:0:0:5", 1),  # beyond 24 bits
        ("100::1:1:2", 1),  # outside 100::/64's id field
        ("100::5", 0),
        ("100::5", MAX_RELAY_INDEX + 1),
        ("101::5", 1),
        ("198.18.0.1", 1),
        ("::1", 51820),
    ):
        assert relayed.parse(other) is None, other
    for bad in ((0, 1), (MAX_RELAY_INDEX + 1, 1), (1, 0), (1, MAX_RELAY_NODE_ID + 1)):
        with pytest.raises(ValueError):
            relayed.endpoint(*bad)


def test_tag_and_untag() -> None:
    tagged = relayed.tag(TRANSPORT, 0xABCDEF)
    assert tagged[:4] == bytes([4, 0xAB, 0xCD, 0xEF]) and tagged[4:] == TRANSPORT[4:]
    assert relayed.untag(tagged) == (0xABCDEF, TRANSPORT)
    assert relayed.untag(TRANSPORT) is None  # untagged
    assert relayed.untag(bytes([5, 0, 0, 1]) + bytes(40)) is None  # no WireGuard type
    assert relayed.untag(b"\x01\x02") is None


def test_relays_translate_both_ways_and_only_for_their_relay() -> None:
    relays = relayed.Relays()
    relay = ("198.18.0.9", 3478)
    where = relayed.endpoint(2, 77)
    assert not relays and relays.outbound(TRANSPORT, where) is None  # relay 2 not set
    assert relays.outbound(TRANSPORT, ("198.18.0.5", 51820)) == (TRANSPORT, ("198.18.0.5", 51820))
    relays.set(2, relay)
    assert relays.outbound(INITIATION, where) == (relayed.tag(INITIATION, 77), relay)
    assert relays.carrier(where) == relay and relays.carrier(relay) == relay
    assert relays.inbound(relayed.tag(INITIATION, 77), relay) == (INITIATION, where)
    # from anyone but the relay, a tagged datagram stays as it is (the core drops it)
    other = ("198.18.0.10", 3478)
    assert relays.inbound(relayed.tag(INITIATION, 77), other) == (
        relayed.tag(INITIATION, 77),
        other,
    )
    txid = new_transaction_id()
    for stun_message in (binding_request(txid), binding_success(txid, ("198.18.0.1", 4000))):
        # the relay's own STUN (a success response starts 0x01 0x01, like a tagged type 1)
        assert relays.inbound(stun_message, relay) == (stun_message, relay)
    # a tagged initiation that happens to pass as STUN (node 0x??0080, sender index equal
    # to the magic cookie) is still WireGuard: the relay sends no STUN of 148 bytes
    lookalike = bytes([1, 0, 0, 0x80]) + MAGIC_COOKIE.to_bytes(4, "big") + bytes(140)
    assert is_stun(lookalike) and relays.inbound(lookalike, relay)[1] == relayed.endpoint(2, 0x80)
    with pytest.raises(ValueError):
        relays.set(3, relay)  # one relay, one number
    relays.set(2, None)
    assert not relays and relays.outbound(INITIATION, where) is None
