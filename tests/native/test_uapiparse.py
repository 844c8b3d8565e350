"""The UAPI's bulk path for allowed IPs (uapiparse.c), against the line-by-line parser.

C takes a run of `allowed_ip=` lines only where it is certain of their meaning
and leaves every other line to Python; it writes the get answer's lines with
the same text as `Prefix.__str__`. So: every line C takes, Python parses to
the same prefix; canonical texts are all taken; a set request gives the same
reply and the same device whichever path parses it, however it is cut into
reads; the request size limit holds to the byte on both paths.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pywg import _fast, uapi
from pywg.allowedips import Prefix, PrefixList
from pywg.device import Device
from pywg.exceptions import WireGuardError
from pywg.keys import PrivateKey

pytestmark = pytest.mark.skipif(not _fast.AVAILABLE, reason="native extension not built")

if _fast.AVAILABLE:
    from pywg._fast.uapiparse import allowed_ip_lines, allowed_ip_text

KEY = "ab" * 32


def python_parse(value: str) -> Prefix | None:
    try:
        return uapi.parse_allowed_ip(value)
    except WireGuardError:
        return None


def c_parse(value: str) -> Prefix | None:
    """What C makes of one line `allowed_ip=VALUE`: its prefix, or None if it leaves it."""
    line = f"allowed_ip={value}\n".encode("utf-8", "surrogatepass")
    records, end = allowed_ip_lines(line, 0, len(line))
    if end == 0:
        return None
    assert end == len(line) and len(records) == 18
    return Prefix.from_record(records)


def random_prefix(rnd: random.Random) -> Prefix:
    width = rnd.choice([32, 128])
    cidr = rnd.randrange(width + 1)
    bits = rnd.getrandbits(width)
    if width == 128:
        bits >>= rnd.choice([0, 0, 64, 100, 118])  # some in ::/80 as well
    host = width - cidr
    return Prefix(width, bits >> host << host, cidr)


def test_canonical_texts_are_all_taken_and_read_alike() -> None:
    rnd = random.Random(7)
    for _ in range(3000):
        prefix = random_prefix(rnd)
        text = str(prefix)
        assert python_parse(text) == prefix
        if "." in text and prefix.width == 128:
            continue  # an IPv6 text with a dotted quad is Python's to read
        assert c_parse(text) == prefix, text


_PIECES = st.sampled_from(
    [
        "1",
        "0",
        "00",
        "01",
        "255",
        "256",
        "10",
        ".",
        ":",
        "::",
        "/",
        "-",
        "f",
        "F",
        "g",
        "%",
        " ",
        "\r",
        "\t",
        "fd19",
        "ffff",
        "1.2.3.4",
        "+",
        "٣",
        "0x1",
        "32",
        "128",
        "129",
        "33",
    ]
)
_VALUES = st.one_of(st.lists(_PIECES, max_size=12).map("".join), st.text(max_size=40))


@settings(max_examples=3000, deadline=None)
@given(_VALUES)
def test_a_line_c_takes_is_the_prefix_python_reads(value: str) -> None:
    if "\n" in value:
        return
    taken = c_parse(value)
    if taken is not None:
        assert python_parse(value) == taken


TRICKY = [
    "010.0.0.0/8",
    "10.00.0.0/8",
    "1.2.3.04/32",
    "256.0.0.0/8",
    "1.2.3/8",
    "1.2.3.4.5/8",
    "1.2.3.4/33",
    "1.2.3.4/032",
    "1.2.3.4/00000000000032",
    "1.2.3.4/12345678901",
    "1.2.3.4/",
    "/8",
    "1.2.3.4",
    " 1.2.3.4/8",
    "1.2.3.4/ 8",
    "1.2.3.4/8\r",
    "1.2.3.4/+8",
    "1.2.3.4/٣",
    "::/0",
    "::/129",
    "::/0128",
    "FD19::1/64",
    "fd19::1%eth0/64",
    "::ffff:1.2.3.4/128",
    "1:2:3:4:5:6:7:8:9/128",
    "1::2::3/64",
    ":::/64",
    "1:2:3:4:5:6:7:8/128",
    "fd19:::/64",
    "0000:0000:0000:0000:0000:0000:0000:0001/128",
    "00000:0::/64",
    "g::/64",
    "-1.2.3.4/8",
]


@pytest.mark.parametrize("value", TRICKY)
def test_tricky_lines_read_alike(value: str) -> None:
    taken = c_parse(value)
    assert taken is None or taken == python_parse(value)
    line = "allowed_ip=" + value
    assert run_session(["public_key=" + KEY, line], [], bulk=True) == run_session(
        ["public_key=" + KEY, line], [], bulk=False
    )


def test_a_run_stops_before_the_first_line_c_leaves() -> None:
    text = b"".join(
        b"allowed_ip=" + value + b"\n"
        for value in (b"10.0.0.1/8", b"fd00::1/64", b"::ffff:1.2.3.4/128", b"1.2.3.4/32")
    )
    records, end = allowed_ip_lines(text, 0, len(text))
    assert end == text.index(b"allowed_ip=::ffff")
    assert [str(p) for p in _records(records)] == ["10.0.0.0/8", "fd00::/64"]
    records, end = allowed_ip_lines(text, 0, len(text) - 1)  # the last line without its newline
    assert end == text.index(b"allowed_ip=::ffff")
    tail = text.index(b"allowed_ip=1.2.3.4")
    assert allowed_ip_lines(text, tail, len(text) - 1) == (b"", tail)  # not whole: left
    assert allowed_ip_lines(text, tail, len(text))[1] == len(text)


def _records(records: bytes) -> Iterator[Prefix]:
    for offset in range(0, len(records), 18):
        yield Prefix.from_record(records, offset)


def test_get_lines_are_written_as_python_writes_them() -> None:
    rnd = random.Random(3)
    prefixes = PrefixList(random_prefix(rnd) for _ in range(5000))
    expected = "\n".join(f"allowed_ip={prefix}" for prefix in prefixes)
    assert uapi._allowed_ip_lines(prefixes) == expected  # C, with Python for ::/80
    text, end = allowed_ip_text(prefixes.records)
    assert end < len(prefixes.records)  # some are in ::/80: C left them
    assert expected.startswith(text)


_LINES = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "public_key=" + KEY,
                "public_key=" + "cd" * 32,
                "replace_allowed_ips=true",
                "endpoint=198.18.0.1:5",
                "allowed_ip=198.19.0.0/16",
                "allowed_ip=198.19.0.7/24",
                "allowed_ip=-198.19.0.0/16",
                "allowed_ip=fd19::/16",
                "allowed_ip=-fd19::1/16",
                "allowed_ip=FD19:0::1/128",
                "allowed_ip=::ffff:1.2.3.4/128",
                "allowed_ip=10.0.0.0/0032",
                "allowed_ip=10.0.0.0/33",
                "allowed_ip=010.0.0.0/8",
                "allowed_ip=10.0.0.0/8 ",
            ]
        ),
        _VALUES.map(lambda v: "allowed_ip=" + v.replace("\n", "")),
    ),
    max_size=30,
)


def run_session(lines: list[str], cuts: list[int], bulk: bool) -> tuple[bytes, str]:
    device = Device(PrivateKey(bytes(range(32))), wall_clock=lambda: 1_700_000_000.0)
    uapi.apply_set(device, ["public_key=" + KEY, "allowed_ip=198.19.1.0/24"])
    saved = uapi._bulk_allowed_ips
    if not bulk:
        uapi._bulk_allowed_ips = None
    try:
        session = uapi.UapiSession(device)
        data = ("set=1\n" + "".join(line + "\n" for line in lines) + "\n").encode(
            "utf-8", "surrogatepass"
        )
        reply, start = b"", 0
        for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
            reply += session.feed(data[start:cut])
            start = max(start, cut)
    finally:
        uapi._bulk_allowed_ips = saved
    return reply, uapi.get(device)


@settings(max_examples=500, deadline=None)
@given(_LINES, st.lists(st.integers(min_value=0, max_value=10_000), max_size=6))
def test_a_set_request_comes_out_the_same_on_both_paths(lines: list[str], cuts: list[int]) -> None:
    assert run_session(lines, cuts, bulk=True) == run_session(lines, cuts, bulk=False)


@pytest.mark.parametrize("bulk", [True, False])
def test_the_request_size_limit_holds_to_the_byte(
    bulk: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(uapi, "MAX_REQUEST", 4000)
    if not bulk:
        monkeypatch.setattr(uapi, "_bulk_allowed_ips", None)
    head = f"public_key={KEY}\n"
    line = "allowed_ip=10.0.0.0/8\n"
    budget = 4000 - len("set=1\n") - len(head) - 1  # the empty line at the end counts too
    filler = budget // len(line) - 1
    zeros = budget - (filler + 1) * len(line)  # the last line fills the rest: /0008
    body = head + line * filler + "allowed_ip=10.0.0.0/" + "0" * zeros + "8\n"
    assert len("set=1\n" + body + "\n") == 4000
    fits = uapi.UapiSession(Device())
    assert fits.feed(("set=1\n" + body + "\n").encode()) == b"errno=0\n\n"
    over = uapi.UapiSession(Device())
    body = body.replace("/0", "/00", 1)
    assert over.feed(("set=1\n" + body + "\n").encode()) == b"errno=-71\n\n" and over.closed
