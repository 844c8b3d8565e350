"""The UAPI text protocol (pywg.uapi): get/set against a Device and the session framing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pywg import Device, PresharedKey, PrivateKey, uapi
from pywg.uapi import (
    EINVAL,
    EPROTO,
    MAX_LINE,
    MAX_REQUEST,
    SetPlan,
    UapiError,
    UapiSession,
    apply_set,
    get,
    parse_set,
    set_,
)

ZEROS = "0" * 64


def make_device(port: int = 51820) -> Device:
    return Device(PrivateKey.generate(), listen_port=port, wall_clock=lambda: 1_700_000_000.0)


def pub_hex() -> str:
    return PrivateKey.generate().public_key.to_hex()


def parse_get(text: str) -> list[tuple[str, str]]:
    assert text.endswith("errno=0\n\n")
    pairs = []
    for line in text[:-2].split("\n"):
        key, _, value = line.partition("=")
        pairs.append((key, value))
    return pairs


def peers_of(text: str) -> dict[str, dict[str, list[str]]]:
    peers: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for key, value in parse_get(text):
        if key == "public_key":
            current = peers.setdefault(value, {})
        elif current is not None:
            current.setdefault(key, []).append(value)
    return peers


# --------------------------------------------------------------------- get/set


def test_round_trip_two_devices() -> None:
    a_key, b_key = PrivateKey.generate(), PrivateKey.generate()
    a = Device(a_key, listen_port=51820)
    psk = PresharedKey.generate()
    b_pub = b_key.public_key.to_hex()
    apply_set(
        a,
        [
            "fwmark=51",
            f"public_key={b_pub}",
            f"preshared_key={psk.to_hex()}",
            "protocol_version=1",
            "endpoint=198.18.0.2:51821",
            "persistent_keepalive_interval=25",
            "allowed_ip=198.19.2.0/24",
            "allowed_ip=fd19::2/128",
        ],
    )
    text = get(a)
    pairs = parse_get(text)
    assert pairs[0] == ("private_key", a_key.to_hex())
    assert pairs[1] == ("listen_port", "51820")
    assert pairs[2] == ("fwmark", "51")
    assert [k for k, _ in pairs[3:]] == [
        "public_key",
        "preshared_key",
        "protocol_version",
        "endpoint",
        "last_handshake_time_sec",
        "last_handshake_time_nsec",
        "tx_bytes",
        "rx_bytes",
        "persistent_keepalive_interval",
        "allowed_ip",
        "allowed_ip",
        "errno",
    ]
    peer = peers_of(text)[b_pub]
    assert peer["preshared_key"] == [psk.to_hex()]
    assert peer["endpoint"] == ["198.18.0.2:51821"]
    assert peer["last_handshake_time_sec"] == ["0"]
    assert peer["last_handshake_time_nsec"] == ["0"]
    assert peer["persistent_keepalive_interval"] == ["25"]
    assert sorted(peer["allowed_ip"]) == ["198.19.2.0/24", "fd19::2/128"]

    # the get output of one device, fed as a set to a fresh device, reproduces it
    body = [
        line
        for line in text[:-2].split("\n")
        if not line.startswith(("errno", "last_", "tx_", "rx_"))
    ]
    c = Device(PrivateKey.generate())
    apply_set(c, body)
    assert get(c) == text


def test_defaults_omitted_and_zero_psk() -> None:
    d = Device(PrivateKey.generate())
    p = pub_hex()
    set_(d, [f"public_key={p}"])
    text = get(d)
    keys = [k for k, _ in parse_get(text)]
    assert "listen_port" not in keys and "fwmark" not in keys and "endpoint" not in keys
    assert peers_of(text)[p]["preshared_key"] == [ZEROS]
    set_(d, [f"public_key={p}", f"preshared_key={PresharedKey.generate().to_hex()}"])
    set_(d, [f"public_key={p}", f"preshared_key={ZEROS}"])
    assert peers_of(get(d))[p]["preshared_key"] == [ZEROS]


def test_stats_and_handshake_time() -> None:
    d = make_device()
    p = pub_hex()
    set_(d, [f"public_key={p}"])
    peer = next(iter(d.peers.values()))
    peer.rx_bytes, peer.tx_bytes = 1234, 5678
    peer.last_handshake_time = 1_700_000_000.25
    info = peers_of(get(d))[p]
    assert info["rx_bytes"] == ["1234"] and info["tx_bytes"] == ["5678"]
    assert info["last_handshake_time_sec"] == ["1700000000"]
    assert info["last_handshake_time_nsec"] == ["250000000"]


def test_ipv6_endpoint_formatting() -> None:
    d = make_device()
    p = pub_hex()
    set_(d, [f"public_key={p}", "endpoint=[fd18::2]:51821"])
    assert peers_of(get(d))[p]["endpoint"] == ["[fd18::2]:51821"]
    set_(d, [f"public_key={p}", "endpoint=[::ffff:198.18.0.9]:7"])
    assert peers_of(get(d))[p]["endpoint"] == ["198.18.0.9:7"]


@pytest.mark.parametrize(
    "endpoint",
    [
        "fd18::2:51821",
        "198.18.0.2",
        "198.18.0.2:65536",
        "example.com:1",
        "[198.18.0.2]:1",
        ":1",
        "198.18.0.2:+1",
    ],
)
def test_bad_endpoints(endpoint: str) -> None:
    d = make_device()
    with pytest.raises(UapiError) as info:
        set_(d, [f"public_key={pub_hex()}", f"endpoint={endpoint}"])
    assert info.value.errno == EINVAL
    assert d.peers == {}


def test_listen_port_fwmark_and_private_key_change() -> None:
    d = make_device()
    new = PrivateKey.generate()
    set_(d, [f"private_key={new.to_hex()}", "listen_port=0", "fwmark=4294967295"])
    assert d.private_key == new
    assert d.listen_port == 0 and d.fwmark == 4294967295
    set_(d, ["fwmark=0"])
    assert "fwmark" not in dict(parse_get(get(d)))


def test_new_private_key_removes_peer_with_that_public_key() -> None:
    d = make_device()
    new = PrivateKey.generate()
    other = pub_hex()
    set_(d, [f"public_key={new.public_key.to_hex()}", f"public_key={other}"])
    set_(d, [f"private_key={new.to_hex()}"])
    assert list(peers_of(get(d))) == [other]


def test_replace_peers() -> None:
    d = make_device()
    p1, p2, p3 = pub_hex(), pub_hex(), pub_hex()
    set_(d, [f"public_key={p1}", f"public_key={p2}"])
    set_(d, ["replace_peers=true", f"public_key={p3}", "allowed_ip=198.19.3.0/24"])
    assert list(peers_of(get(d))) == [p3]


def test_remove_and_update_only() -> None:
    d = make_device()
    p1, p2 = pub_hex(), pub_hex()
    set_(d, [f"public_key={p1}", "allowed_ip=198.19.1.0/24"])
    set_(d, [f"public_key={p1}", "remove=true", f"public_key={p2}", "remove=true"])
    assert d.peers == {}
    # update_only on a missing peer: its section is skipped silently
    set_(d, [f"public_key={p1}", "update_only=true", "allowed_ip=198.19.1.0/24"])
    assert d.peers == {}
    set_(d, [f"public_key={p1}"])
    set_(d, [f"public_key={p1}", "update_only=true", "endpoint=198.18.0.1:1"])
    assert peers_of(get(d))[p1]["endpoint"] == ["198.18.0.1:1"]


def test_replace_and_remove_allowed_ips() -> None:
    d = make_device()
    p = pub_hex()
    set_(d, [f"public_key={p}", "allowed_ip=198.19.1.0/24", "allowed_ip=fd19::/64"])
    set_(d, [f"public_key={p}", "allowed_ip=198.19.2.0/24"])
    assert sorted(peers_of(get(d))[p]["allowed_ip"]) == [
        "198.19.1.0/24",
        "198.19.2.0/24",
        "fd19::/64",
    ]
    set_(d, [f"public_key={p}", "allowed_ip=-198.19.1.0/24", "allowed_ip=-fd19::/64"])
    assert peers_of(get(d))[p]["allowed_ip"] == ["198.19.2.0/24"]
    set_(
        d,
        [
            f"public_key={p}",
            "allowed_ip=198.19.9.0/24",  # replaced by the line after it
            "replace_allowed_ips=true",
            "allowed_ip=198.19.4.5/24",  # host bits cleared
        ],
    )
    assert peers_of(get(d))[p]["allowed_ip"] == ["198.19.4.0/24"]
    set_(d, [f"public_key={p}", "replace_allowed_ips=true"])
    assert "allowed_ip" not in peers_of(get(d))[p]


def test_allowed_ip_moves_between_peers() -> None:
    d = make_device()
    p1, p2 = pub_hex(), pub_hex()
    set_(d, [f"public_key={p1}", "allowed_ip=198.19.1.0/24"])
    set_(d, [f"public_key={p2}", "allowed_ip=198.19.1.0/24"])
    peers = peers_of(get(d))
    assert "allowed_ip" not in peers[p1]
    assert peers[p2]["allowed_ip"] == ["198.19.1.0/24"]


def test_allowed_ip_lines_of_a_section_act_in_order() -> None:
    """As upstream wireguard-go (0.0.20250522) applies them: `allowed_ip=X` takes X from
    the peer that has it, a later `allowed_ip=-X` then drops it, so nobody has X."""
    d = make_device()
    p1, p2 = pub_hex(), pub_hex()
    set_(d, [f"public_key={p2}", "allowed_ip=198.19.2.0/24", "allowed_ip=198.19.3.0/24"])
    set_(
        d,
        [
            f"public_key={p1}",
            "allowed_ip=198.19.2.0/24",
            "allowed_ip=-198.19.2.0/24",
            "allowed_ip=198.19.3.0/24",
            "allowed_ip=-198.19.3.0/24",
            "allowed_ip=198.19.3.0/24",  # and back again: the last line wins
        ],
    )
    peers = peers_of(get(d))
    assert "allowed_ip" not in peers[p2]
    assert peers[p1]["allowed_ip"] == ["198.19.3.0/24"]


def test_peer_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A set that would make more than MAX_PEERS peers, at any line, is refused whole
    (wireguard-go: MaxPeers, 1 << 16, "too many peers"); other sets are counted right."""
    assert uapi.MAX_PEERS == 1 << 16
    monkeypatch.setattr(uapi, "MAX_PEERS", 3)
    d = make_device()
    a, b, c, e = pub_hex(), pub_hex(), pub_hex(), pub_hex()
    set_(d, [f"public_key={a}", f"public_key={b}"])
    with pytest.raises(UapiError) as refused:
        set_(d, [f"public_key={c}", f"public_key={e}"])
    assert refused.value.errno == EINVAL
    with pytest.raises(UapiError):  # the fourth exists for a moment: refused as in wireguard-go
        set_(d, [f"public_key={c}", f"public_key={e}", f"public_key={e}", "remove=true"])
    assert set(peers_of(get(d))) == {a, b}
    own = d.public_key.to_hex()
    fine = [
        [f"public_key={c}", f"public_key={a}", f"public_key={own}"],  # a exists; own is ignored
        [f"public_key={a}", "remove=true", f"public_key={e}"],  # one out, one in
        [f"public_key={a}", "update_only=true"],  # not created
        ["replace_peers=true", f"public_key={a}", f"public_key={b}", f"public_key={c}"],
    ]
    for lines in fine:
        set_(d, lines)
        assert len(peers_of(get(d))) <= 3
    assert set(peers_of(get(d))) == {a, b, c}
    # a new private key whose public key is a peer's removes that peer: room for one
    key_of_c = PrivateKey.generate()
    set_(d, ["replace_peers=true", f"public_key={a}", f"public_key={b}"])
    set_(d, [f"public_key={key_of_c.public_key.to_hex()}"])
    set_(d, [f"private_key={key_of_c.to_hex()}", f"public_key={e}"])
    assert set(peers_of(get(d))) == {a, b, e}


def test_own_public_key_is_ignored() -> None:
    d = make_device()
    own = d.public_key.to_hex()
    other = pub_hex()
    set_(d, [f"public_key={own}", "allowed_ip=198.19.0.0/16", f"public_key={other}"])
    assert list(peers_of(get(d))) == [other]
    # the key set in the same request counts as ours
    new = PrivateKey.generate()
    set_(d, [f"private_key={new.to_hex()}", f"public_key={new.public_key.to_hex()}"])
    assert list(peers_of(get(d))) == [other]


def test_keepalive_turned_on_sends_one() -> None:
    d = make_device()
    p = pub_hex()
    set_(d, [f"public_key={p}", "endpoint=198.18.0.2:51821"], now=10.0)
    d.datagrams_to_send()
    set_(d, [f"public_key={p}", "persistent_keepalive_interval=25"], now=11.0)
    sent = d.datagrams_to_send()
    assert sent and all(addr == ("198.18.0.2", 51821) for _, addr in sent)
    # a new peer with keepalive in its first section also gets one at once
    q = pub_hex()
    set_(d, [f"public_key={q}", "endpoint=198.18.0.3:1", "persistent_keepalive_interval=5"], 12.0)
    assert any(addr == ("198.18.0.3", 1) for _, addr in d.datagrams_to_send())


BAD_REQUESTS = [
    (["listen_port=65536"], EINVAL),
    (["listen_port=-1"], EINVAL),
    (["listen_port= 1"], EINVAL),
    (["fwmark=4294967296"], EINVAL),
    (["replace_peers=false"], EINVAL),
    (["private_key=" + "0" * 63], EINVAL),
    (["private_key=" + "g" * 64], EINVAL),
    (["bogus=1"], EINVAL),
    (["allowed_ip=198.19.0.0/16"], EINVAL),  # peer key before any public_key
    (["public_key=xyz"], EINVAL),
    (["public_key={p}", "listen_port=1"], EINVAL),  # device key in peer section
    (["public_key={p}", "private_key={k}"], EINVAL),
    (["public_key={p}", "replace_peers=true"], EINVAL),
    (["public_key={p}", "protocol_version=2"], EINVAL),
    (["public_key={p}", "protocol_version=0"], EINVAL),
    (["public_key={p}", "allowed_ip=198.19.0.0"], EINVAL),
    (["public_key={p}", "allowed_ip=198.19.0.0/33"], EINVAL),
    (["public_key={p}", "allowed_ip=198.19.0.0/255.255.0.0"], EINVAL),
    (["public_key={p}", "allowed_ip=fd19::/129"], EINVAL),
    (["public_key={p}", "persistent_keepalive_interval=65536"], EINVAL),
    (["public_key={p}", "remove=yes"], EINVAL),
    (["public_key={p}", "update_only=1"], EINVAL),
    (["public_key={p}", "replace_allowed_ips=false"], EINVAL),
    (["public_key={p}", "preshared_key=12"], EINVAL),
    (["public_key={p}", "frobnicate=true"], EINVAL),
    (["public_key={p}", "no equals sign"], EPROTO),
]


@pytest.mark.parametrize(("template", "errno"), BAD_REQUESTS)
def test_errors_leave_device_unchanged(template: list[str], errno: int) -> None:
    d = make_device()
    existing = pub_hex()
    set_(d, [f"public_key={existing}", "allowed_ip=198.19.1.0/24", "endpoint=198.18.0.1:1"])
    before = get(d)
    secret = PrivateKey.generate().to_hex()
    # valid changes first, then the bad line: none of them may take effect
    lines = [
        "listen_port=1234",
        "replace_peers=true",
        f"public_key={pub_hex()}",
        "allowed_ip=198.19.1.0/24",
        f"public_key={existing}",
        "remove=true",
    ]
    if not template[0].startswith("public_key"):  # a device-section line
        lines = lines[:2] + template + lines[2:]
        template = []
    lines += [t.format(p=pub_hex(), k=secret) for t in template]
    with pytest.raises(UapiError) as info:
        set_(d, lines)
    assert info.value.errno == errno
    assert get(d) == before
    assert secret not in str(info.value) and secret not in repr(info.value)


def test_secrets_not_in_messages_or_reprs() -> None:
    key = PrivateKey.generate()
    psk = PresharedKey.generate()
    d = Device(key)
    bad = "g" + key.to_hex()[1:]
    for lines in (
        [f"private_key={key.to_hex()}x"],
        [f"private_key={bad}"],
        [f"public_key={pub_hex()}", f"preshared_key={psk.to_hex()}0"],
        [f"public_key={pub_hex()}", f"private_key={key.to_hex()}"],
        [f"{key.to_hex()}={psk.to_hex()}"],
    ):
        with pytest.raises(UapiError) as info:
            set_(d, lines)
        for text in (str(info.value), repr(info.value)):
            assert key.to_hex() not in text and psk.to_hex() not in text and bad not in text
    plan = parse_set(
        d,
        [f"private_key={key.to_hex()}", f"public_key={pub_hex()}", f"preshared_key={psk.to_hex()}"],
    )
    assert isinstance(plan, SetPlan)
    for text in (repr(plan), repr(plan.peers[0]), str(plan)):
        assert key.to_hex() not in text and psk.to_hex() not in text
    session = UapiSession(d)
    session.feed(f"set=1\nprivate_key={key.to_hex()}".encode())
    assert key.to_hex() not in repr(session)
    assert key.to_hex() in get(d)


# --------------------------------------------------------------------- session


def test_session_get_and_set() -> None:
    d = make_device()
    s = UapiSession(d)
    p = pub_hex()
    assert s.feed(f"set=1\npublic_key={p}\nallowed_ip=198.19.5.0/24\n\n".encode()) == b"errno=0\n\n"
    reply = s.feed(b"get=1\n\n")
    assert reply.decode() == get(d)
    assert f"public_key={p}\n".encode() in reply
    assert not s.closed


def test_session_multiple_requests_in_one_chunk_and_split() -> None:
    d = make_device()
    s = UapiSession(d)
    p = pub_hex()
    stream = f"set=1\npublic_key={p}\n\nget=1\n\nset=1\nfwmark=7\n\nget=1\n\n".encode()
    out = b""
    for i in range(len(stream)):  # one byte at a time
        out += s.feed(stream[i : i + 1])
    replies = out.split(b"\n\n")
    assert replies[0] == b"errno=0"
    assert replies[2] == b"errno=0"
    assert b"fwmark=7" in replies[3] and b"fwmark" not in replies[1]
    assert out.count(b"errno=0\n\n") == 4
    # and all in one go, to a fresh device with the same key
    d2 = Device(d.private_key, listen_port=51820)
    assert UapiSession(d2).feed(stream) == out


def test_session_next_reply_makes_one_reply_per_call() -> None:
    """push + next_reply: pipelined requests are answered one at a time, in order."""
    d = make_device()
    s = UapiSession(d)
    s.push(b"get=1\n\nset=1\nfwmark=7\n\nget=1\n\nset=1\nfwm")
    first = s.next_reply()
    assert first is not None and b"fwmark" not in first
    assert d.fwmark == 0  # the set after it is not parsed yet
    assert s.next_reply() == b"errno=0\n\n" and d.fwmark == 7
    third = s.next_reply()
    assert third is not None and b"fwmark=7\n" in third
    assert s.next_reply() is None  # half a request: wait for more
    s.push(b"ark=9\n\n")
    assert s.next_reply() == b"errno=0\n\n" and d.fwmark == 9
    assert s.next_reply() is None and not s.closed


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_session_push_next_reply_equals_feed(chunks: list[bytes]) -> None:
    """Both ways of driving a session give the same bytes, for any input."""
    fed, pulled = UapiSession(make_device()), UapiSession(make_device())
    out_fed, out_pulled = b"", b""
    for chunk in chunks:
        out_fed += fed.feed(chunk)
        pulled.push(chunk)
        while (reply := pulled.next_reply()) is not None:
            out_pulled += reply
    assert out_fed == out_pulled and fed.closed == pulled.closed


def test_session_invalid_set_keeps_connection() -> None:
    d = make_device()
    s = UapiSession(d)
    before = get(d)
    assert s.feed(b"set=1\nlisten_port=99999\n\n") == f"errno={EINVAL}\n\n".encode()
    assert get(d) == before
    assert not s.closed
    assert (
        s.feed(b"set=1\npublic_key=" + pub_hex().encode() + b"\nprotocol_version=2\n\n")
        == b"errno=-22\n\n"
    )
    assert s.feed(b"get=1\n\n").endswith(b"errno=0\n\n")


@pytest.mark.parametrize(
    "data",
    [
        b"hello\n",
        b"get=2\n\n",
        b"put=1\n\n",
        b"\n",
        b"set=1\nlisten_port\n",
        b"set=1\n\xff\xfe=1\n",
        b"\xff\n",
        b"set=1\n" + b"a" * (MAX_LINE + 10),
        b"set=1\nfwmark=" + b"1" * MAX_LINE + b"\n\n",
    ],
)
def test_session_garbage_closes(data: bytes) -> None:
    d = make_device()
    before = get(d)
    s = UapiSession(d)
    reply = s.feed(data)
    assert reply in (f"errno={EPROTO}\n\n".encode(), f"errno={EINVAL}\n\n".encode())
    assert s.closed
    assert s.feed(b"get=1\n\n") == b""
    assert get(d) == before


def test_session_truncated_request_waits() -> None:
    d = make_device()
    s = UapiSession(d)
    assert s.feed(b"set=1\nlisten_port=1") == b""
    assert s.feed(b"2\n") == b""
    assert d.listen_port == 51820  # not applied before the empty line
    assert s.feed(b"\n") == b"errno=0\n\n"
    assert d.listen_port == 12


def test_session_oversized_request() -> None:
    d = make_device()
    before = get(d)
    s = UapiSession(d)
    s.feed(b"set=1\n")
    reply = b""
    chunk = b"".join(f"public_key={pub_hex()}\n".encode() for _ in range(200))
    for _ in range(MAX_REQUEST // len(chunk) + 2):  # over MAX_REQUEST without an empty line
        reply += s.feed(chunk)
        if s.closed:
            break
    assert s.closed and reply == f"errno={EPROTO}\n\n".encode()
    assert get(d) == before


def test_session_get_with_trailing_lines() -> None:
    s = UapiSession(make_device())
    assert s.feed(b"get=1\nfoo=bar\n\n") == b"errno=-22\n\n"


def test_session_before_apply_can_refuse() -> None:
    d = make_device()
    seen: list[SetPlan] = []

    def bind(plan: SetPlan) -> None:
        seen.append(plan)
        if plan.listen_port == 1:
            raise UapiError(-98, "address in use")

    s = UapiSession(d, clock=lambda: 5.0, before_apply=bind)
    before = get(d)
    assert s.feed(b"set=1\nlisten_port=1\nfwmark=3\n\n") == b"errno=-98\n\n"
    assert get(d) == before
    assert s.feed(b"set=1\nlisten_port=2\n\n") == b"errno=0\n\n"
    assert d.listen_port == 2 and len(seen) == 2


def test_zero_private_key_removes_identity() -> None:
    d = make_device()
    p = pub_hex()
    set_(d, [f"public_key={p}", "allowed_ip=198.19.0.2/32"])
    set_(d, [f"private_key={ZEROS}"])
    assert d.private_key is None and d.public_key is None
    text = get(d)
    assert not text.startswith("private_key=") and "private_key=" not in text
    assert p in peers_of(text)  # peers stay
    key = PrivateKey.generate()
    set_(d, [f"private_key={key.to_hex()}"])
    assert d.private_key == key
    assert get(d).startswith(f"private_key={key.to_hex()}\n")


def test_fresh_keyless_device_get_and_own_key_as_peer() -> None:
    d = Device(listen_port=0)
    assert get(d) == "errno=0\n\n"
    key = PrivateKey.generate()
    # our own public key as a peer, in the same request that sets the key: ignored
    set_(d, [f"private_key={key.to_hex()}", f"public_key={key.public_key.to_hex()}"])
    assert d.peers == {}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_session_random_bytes_never_raise(chunks: list[bytes]) -> None:
    d = make_device()
    s = UapiSession(d)
    for chunk in chunks:
        reply = s.feed(chunk)
        assert isinstance(reply, bytes)
        assert reply == b"" or reply.endswith(b"\n\n")


_LINE = st.one_of(
    st.sampled_from(
        [
            "listen_port=1",
            "fwmark=9",
            "replace_peers=true",
            "public_key=" + "ab" * 32,
            "public_key=" + "cd" * 32,
            "remove=true",
            "update_only=true",
            "endpoint=198.18.0.1:5",
            "endpoint=[fd18::1]:5",
            "allowed_ip=198.19.0.0/16",
            "allowed_ip=-198.19.0.0/16",
            "allowed_ip=fd19::/16",
            "replace_allowed_ips=true",
            "persistent_keepalive_interval=3",
            "protocol_version=1",
            "protocol_version=2",
            "preshared_key=" + ZEROS,
        ]
    ),
    st.text(max_size=30),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINE, max_size=12))
def test_set_is_atomic_for_random_line_mixes(lines: list[str]) -> None:
    d = make_device()
    set_(d, ["public_key=" + "ab" * 32, "allowed_ip=198.19.1.0/24"])
    before = get(d)
    s = UapiSession(d, clock=lambda: 1.0)
    body = "".join(line.replace("\n", "") + "\n" for line in lines if line.strip("\n"))
    reply = s.feed(("set=1\n" + body + "\n").encode())
    assert reply.endswith(b"\n\n")
    if reply != b"errno=0\n\n":
        assert get(d) == before
    # the session's answer matches a direct apply on an identical device
    d2 = Device(d.private_key, listen_port=51820)
    ok = True
    try:
        parse_set(d2, [line for line in body.split("\n") if line])
    except UapiError:
        ok = False
    if not s.closed:
        assert ok == (reply == b"errno=0\n\n")


def test_private_key_is_clamped_on_set_and_numbers_may_have_leading_zeros() -> None:
    d = make_device()
    set_(d, ["private_key=" + "ff" * 32, "listen_port=000000000000051821"])
    text = get(d)
    assert text.startswith("private_key=f8" + "ff" * 30 + "7f\n")
    assert "listen_port=51821\n" in text
