"""Fuzz the four message parsers of pywg.messages (whitepaper §5.4.2-§5.4.7).

Oracle, for every input and each of bytes, bytearray and memoryview of it:

- ``message_type`` is 1-4 exactly when the first little-endian word is 1-4
  (the three reserved bytes zero), else 0;
- ``parse_initiation`` / ``parse_response`` / ``parse_cookie_reply`` succeed
  exactly on 148 / 92 / 64 bytes of their type, and serializing the result
  gives the input back byte for byte; otherwise RemoteProtocolError;
- ``parse_transport_header`` succeeds exactly on >= 32 bytes starting with
  the word 4, with the receiver and counter at offsets 4 and 8; otherwise
  RemoteProtocolError.

Any other exception is a bug. Input layout: one byte picks raw bytes or a
message of a forced type and (near-)exact size, so the fuzzer reaches the
accepting paths at once.

    python3 fuzz/fuzz_messages.py -atheris_runs=1000000
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Reader, add_source_path, run

add_source_path()

from pywg import messages  # noqa: E402
from pywg.exceptions import RemoteProtocolError  # noqa: E402

_FIXED: dict[int, tuple[int, Callable[..., object], Callable[..., bytes]]] = {
    1: (148, messages.parse_initiation, messages.serialize_initiation),
    2: (92, messages.parse_response, messages.serialize_response),
    3: (64, messages.parse_cookie_reply, messages.serialize_cookie_reply),
}
_SIZES = {1: 148, 2: 92, 3: 64, 4: 32}


def _expected_type(data: bytes) -> int:
    if len(data) < 4:
        return 0
    (word,) = struct.unpack_from("<I", data)
    return word if 1 <= word <= 4 else 0


def _shape(r: Reader) -> bytes:
    mode = r.u8() % 6
    if mode in (0, 5):
        return r.rest()
    size = _SIZES[mode] + (r.u8() % 9 - 4 if r.flag() else 0)  # exact, or off by up to 4
    if mode == 4 and r.flag():
        size += r.u16()  # transport: any payload length
    body = r.take_upto(max(0, size - 4))
    data = bytes([mode, 0, 0, 0]) + body
    return data.ljust(max(size, 0), b"\0")[: max(size, 0)]


def _check(data: bytes, view: bytes | bytearray | memoryview) -> None:
    mtype = _expected_type(data)
    assert messages.message_type(view) == mtype, (messages.message_type(view), mtype)
    for t, (size, parse, serialize) in _FIXED.items():
        should_parse = len(data) == size and mtype == t
        try:
            msg = parse(view)
        except RemoteProtocolError:
            assert not should_parse, f"type {t}: valid message refused"
            continue
        assert should_parse, f"type {t}: {len(data)} bytes of type {mtype} accepted"
        assert serialize(msg) == data, f"type {t}: serialization differs from the input"
    try:
        header = messages.parse_transport_header(view)
    except RemoteProtocolError:
        assert not (len(data) >= 32 and mtype == 4), "transport header refused"
        return
    assert len(data) >= 32 and mtype == 4, "transport header accepted"
    _, receiver, counter = struct.unpack_from("<IIQ", data)
    assert (header.receiver, header.counter) == (receiver, counter)
    assert messages.serialize_transport_header(receiver, counter) == data[:16]


def TestOneInput(data: bytes) -> None:
    packet = _shape(Reader(data))
    for view in (packet, bytearray(packet), memoryview(packet)):
        _check(packet, view)


if __name__ == "__main__":
    run(TestOneInput)
