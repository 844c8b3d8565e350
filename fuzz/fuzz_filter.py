"""Fuzz the packet filter: the native plane's filter.c against its Python model.

Oracle: for any rule table and any sequence of packets in both directions
(raw bytes, or IPv4/IPv6 headers built from fuzzed fields over a small pool
of addresses and ports, with fragment fields and extension headers, then
fuzzed bytes), with the clock moving on and the rules replaced midway,
`pywg._fast.filter.NativeFilter` and `pywg.policy.model.PacketFilter` give
every inbound packet the same verdict and end with the same counters. Any
exception is a bug; under fuzz/sanitize.py, so is any out-of-bounds read.

    python3 fuzz/fuzz_filter.py -atheris_runs=1000000
"""

from __future__ import annotations

import ipaddress
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Reader, add_source_path, run

add_source_path()

from pywg._fast.filter import NativeFilter  # noqa: E402
from pywg.policy.model import PacketFilter  # noqa: E402
from pywg.policy.rules import RuleRow  # noqa: E402

HOSTS = {
    4: [ipaddress.ip_address(a).packed for a in ("10.0.0.1", "10.0.0.2", "10.1.0.3")],
    6: [ipaddress.ip_address(a).packed for a in ("fd00::1", "fd00::2", "fd01::3")],
}
PROTOS = (6, 17, 1, 58, 47, 0, 43, 44, 60)
PORTS = (22, 80, 1000, 5000)
STEPS = (0.0, 0.5, 31.0, 200.0, 8000.0)


def _row(r: Reader) -> RuleRow:
    family = 4 if r.flag() else 6
    bits = 32 if family == 4 else 128

    def prefix() -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        host = HOSTS[family][r.below(3)]
        return ipaddress.ip_network((host, r.below(bits + 1)), strict=False)

    lo = r.below(3) * 500 if r.flag() else PORTS[r.below(4)]
    hi = 65535 if r.flag() else max(lo, PORTS[r.below(4)])
    proto = (0, 1, 6, 17)[r.below(4)]
    if proto == 1:
        lo, hi = 0, 65535
    return RuleRow(family, prefix(), prefix(), proto, lo, hi)


def _packet(r: Reader) -> bytes:
    if r.below(8) == 0:
        return r.take_upto(r.below(80))
    family = 4 if r.flag() else 6
    src, dst = HOSTS[family][r.below(3)], HOSTS[family][r.below(3)]
    proto = PROTOS[r.below(len(PROTOS))]
    body = struct.pack("!HH", PORTS[r.below(4)], PORTS[r.below(4)]) + r.take_upto(r.below(40))
    if family == 4:
        frag = r.u16() if r.below(4) == 0 else 0
        head = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(body), r.below(3), frag, 64, proto, 0)
        packet = head + src + dst + body
    else:
        head = struct.pack("!IHBB", 6 << 28, len(body), proto, 64)
        packet = head + src + dst + body
    if r.below(6) == 0:  # a length field, or one byte anywhere, damaged
        at = r.below(len(packet))
        packet = packet[:at] + bytes([r.u8()]) + packet[at + 1 :]
    return packet


def TestOneInput(data: bytes) -> None:
    r = Reader(data)
    native, model = NativeFilter(capacity=1024), PacketFilter(capacity=1024)
    rows = [_row(r) for _ in range(r.below(6))]
    native.set_rules(rows)
    model.set_rules(rows)
    now = 100.0
    sent: list[bytes] = []
    for _ in range(r.below(24)):
        now += STEPS[r.below(len(STEPS))]
        kind = r.below(8)
        if kind == 0:
            rows = [_row(r) for _ in range(r.below(4))]
            native.set_rules(rows)
            model.set_rules(rows)
            continue
        packet = sent[r.below(len(sent))] if kind == 1 and sent else _packet(r)
        sent.append(packet)
        if kind == 2:
            native.outbound(packet, now)
            model.outbound(packet, now)
        else:
            got, want = native.inbound(packet, now), model.inbound(packet, now)
            assert got == want, f"verdict {got} != model's {want} for {packet.hex()}"
    got_stats, want_stats = native.stats, model.stats
    got_stats.flows = want_stats.flows = got_stats.flows_evicted = want_stats.flows_evicted = 0
    assert got_stats == want_stats, f"{got_stats} != {want_stats}"


if __name__ == "__main__":
    run(TestOneInput)
