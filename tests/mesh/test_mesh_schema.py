"""pywg.mesh.schema: the coordinator API's messages, byte for byte as they travel, and refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pywg.mesh.schema import (
    ErrorAnswer,
    Health,
    HomeRelay,
    JoinAnswer,
    JoinRequest,
    Roster,
    SchemaError,
    UpdateAnswer,
    UpdateRequest,
    decode,
    encode,
)

KEY_A = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
KEY_B = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
CONTROL_B = "MzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzM="
NETWORK = '{"ipv4":"198.19.5.0/24","ipv6":"fd19:5::/64"}'
SELF_A = (
    f'{{"name":"nas","public_key":"{KEY_A}","addresses":["198.19.5.1","fd19:5::1"],'
    '"routes":["198.18.50.0/24"],"pending_routes":["198.18.51.0/24"]}'
)
PEER_B = (
    f'{{"name":"pi","public_key":"{KEY_B}","control_key":"{CONTROL_B}",'
    '"addresses":["198.19.5.2","fd19:5::2"],"routes":[],'
    '"endpoints":["203.0.113.7:51820","[fd18::2]:51820"]}'
)
ROSTER = f'{{"version":5,"network":{NETWORK},"self":{SELF_A},"peers":[{PEER_B}]}}'
RELAY_1 = (
    f'{{"number":1,"name":"fra","key":"{KEY_B}","host":"relay.example.org",'
    '"udp_port":3478,"tcp_port":443}'
)
RELAY_2 = (
    f'{{"number":2,"name":"nyc","key":"{KEY_A}","host":"2001:db8::7",'
    f'"udp_port":3479,"tcp_port":8443,"pin":"{"ab" * 32}"}}'
)
HOME_ROSTER = (
    ROSTER.replace('51.0/24"]}', '51.0/24"],"node_id":1,"home_relay":2}')
    .replace('51820"]}', '51820"],"node_id":7,"home_relay":1}')
    .removesuffix("}")
    + f',"relays":[{RELAY_1},{RELAY_2}]}}'
)
JOIN_ANSWER = f'{{"self":{SELF_A[:-1]},"network":{NETWORK}}},"coordinator_key":"{KEY_B}"}}'
JOIN_REQUEST = (
    f'{{"token":"secret.fingerprint","name":"nas","public_key":"{KEY_A}",'
    f'"control_key":"{CONTROL_B}","routes":["198.18.50.0/24"]}}'
)


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        (Roster, ROSTER),
        (Roster, ROSTER.replace('51820"]}', '51820"],"node_id":16777215}')),
        (Roster, ROSTER.replace('51.0/24"]}', '51.0/24"],"node_id":1}')),
        (Roster, HOME_ROSTER),
        (JoinAnswer, JOIN_ANSWER),
        (JoinRequest, JOIN_REQUEST),
        (UpdateRequest, '{"endpoints":["203.0.113.7:51820"],"routes":[]}'),
        (UpdateRequest, '{"routes":["198.18.50.0/24"]}'),
        (UpdateRequest, '{"endpoints":[],"routes":[],"home_relay":3}'),
        (UpdateRequest, '{"home_relay":0}'),
        (UpdateAnswer, '{"version":7}'),
        (Health, '{"ok":true,"nodes":3}'),
        (Health, '{"ok":true}'),
        (ErrorAnswer, '{"error":"bad signature"}'),
    ],
)
def test_messages_travel_byte_for_byte(kind: Any, text: str) -> None:
    message = kind.from_json(decode(text.encode()))
    assert encode(message) == text.encode()
    assert kind.from_json(json.loads(json.dumps(message.to_json()))) == message


def test_parsed_fields_are_typed() -> None:
    roster = Roster.from_json(decode(ROSTER.encode()))
    assert roster.version == 5 and roster.me.name == "nas"
    assert roster.me.public_key == bytes([1]) * 32
    assert str(roster.network.ipv6) == "fd19:5::/64"
    (peer,) = roster.peers
    assert peer.endpoints == (("203.0.113.7", 51820), ("fd18::2", 51820))
    assert peer.control_key == bytes([0x33]) * 32
    assert roster.me.node_id is None and peer.node_id is None  # a coordinator may give none
    assert "secret" not in repr(JoinRequest.from_json(decode(JOIN_REQUEST.encode())))
    assert roster.relays == () and roster.me.home_relay is None and peer.home_relay is None


def test_the_relay_map_is_typed() -> None:
    assert '"relays"' in HOME_ROSTER and '"home_relay":2' in HOME_ROSTER
    roster = Roster.from_json(decode(HOME_ROSTER.encode()))
    assert roster.relays == (
        HomeRelay(1, "fra", bytes([2]) * 32, "relay.example.org", 3478, 443),
        HomeRelay(2, "nyc", bytes([1]) * 32, "2001:db8::7", 3479, 8443, bytes([0xAB]) * 32),
    )
    assert roster.me.home_relay == 2 and roster.peers[0].home_relay == 1
    assert roster.peers[0].node_id == 7
    with pytest.raises(ValueError, match="relay number"):
        HomeRelay(16, "x", bytes(32), "h")
    with pytest.raises(ValueError, match="pin"):
        HomeRelay(1, "x", bytes(32), "h", pin=bytes(31))


def _roster_with(base: str = ROSTER, **change: object) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(base)
    for path, value in change.items():
        *parents, last = path.split("__")
        target: Any = data
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return data


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"version": "5"}, "version"),
        ({"version": True}, "version"),
        ({"version": None}, "version is missing"),
        ({"network__ipv4": "198.19.5.1/24"}, "network.ipv4"),
        ({"self__public_key": "AAAA"}, "self.public_key"),
        ({"self__addresses": ["x"]}, "self.addresses[0]"),
        ({"self__routes": ["198.18.50.1/24"]}, "self.routes[0]"),
        ({"peers": {}}, "peers must be a list"),
        ({"peers__0__endpoints": ["203.0.113.7"]}, "peers[0].endpoints[0]"),
        ({"peers__0__endpoints": ["[fe80::1%eth0]:1"]}, "zone index"),
        ({"peers__0__control_key": None}, "peers[0].control_key is missing"),
        ({"peers__0__node_id": 0}, "peers[0].node_id"),
        ({"peers__0__node_id": 1 << 24}, "peers[0].node_id"),
        ({"self__node_id": "1"}, "self.node_id"),
    ],
)
def test_bad_rosters_name_the_field(change: dict[str, object], names: str) -> None:
    with pytest.raises(SchemaError, match=r"^roster: ") as refused:
        Roster.from_json(_roster_with(**change))
    assert names in str(refused.value)


def _home_roster_with(**change: object) -> dict[str, Any]:
    return _roster_with(**change, base=HOME_ROSTER)


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"relays": {}}, "relays must be a list"),
        ({"relays__0__number": 0}, "relays[0].number must be an integer from 1 to 15"),
        ({"relays__0__number": 16}, "relays[0].number"),
        ({"relays__1__number": 1}, "relays[1].number 1 is taken"),
        ({"relays__1__name": "fra"}, "relays[1].name 'fra' is taken"),
        ({"relays__0__name": ""}, "relays[0].name"),
        ({"relays__0__name": "a\nb"}, "relays[0].name"),
        ({"relays__0__key": "AAAA"}, "relays[0].key is not a key"),
        ({"relays__0__host": ""}, "relays[0].host"),
        ({"relays__0__host": None}, "relays[0].host is missing"),
        ({"relays__0__udp_port": 0}, "relays[0].udp_port"),
        ({"relays__1__tcp_port": 65536}, "relays[1].tcp_port"),
        ({"relays__1__pin": "ab"}, "relays[1].pin must be a SHA-256"),
        ({"relays__1__pin": "zz" * 32}, "relays[1].pin"),
        ({"self__home_relay": 0}, "self.home_relay must be an integer from 1 to 15"),
        ({"peers__0__home_relay": "1"}, "peers[0].home_relay"),
    ],
)
def test_bad_relay_maps_name_the_field(change: dict[str, object], names: str) -> None:
    with pytest.raises(SchemaError, match=r"^roster: ") as refused:
        Roster.from_json(_home_roster_with(**change))
    assert names in str(refused.value)


@pytest.mark.parametrize(("value", "names"), [(16, "home_relay"), (-1, "home_relay"), ("1", "")])
def test_bad_home_relay_updates(value: object, names: str) -> None:
    with pytest.raises(SchemaError, match=r"^update: home_relay must be an integer from 0 to 15"):
        UpdateRequest.from_json({"home_relay": value})


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"\xff\xfe", b"[" * 50_000 + b"]" * 50_000, b"[1, 2]", b"null"],
)
def test_not_a_message(body: bytes) -> None:
    with pytest.raises(SchemaError):
        UpdateRequest.from_json(decode(body))


def test_requests_are_checked_for_shape_only() -> None:
    """Content rules (which prefixes, which addresses) are the store's."""
    update = UpdateRequest.from_json({"endpoints": None, "routes": ["not a prefix"]})
    assert update == UpdateRequest(None, ("not a prefix",))
    with pytest.raises(SchemaError, match=r"update: routes\[0\]: not a string"):
        UpdateRequest.from_json({"routes": [1]})
    join = json.loads(JOIN_REQUEST)
    for field, value in (("name", 7), ("token", ["x"]), ("public_key", "AAAA"), ("routes", "x")):
        with pytest.raises(SchemaError, match=f"join request: {field}"):
            JoinRequest.from_json({**join, field: value})
    assert JoinRequest.from_json({k: v for k, v in join.items() if k != "routes"}).routes == ()
