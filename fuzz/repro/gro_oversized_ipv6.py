"""GRO must not copy an IPv6 packet of up to 65,575 bytes into a 65,545-byte bin.

An IPv6 TCP segment whose payload-length field says 65535 is a 65,575-byte
packet, and a gro_bin.buf holds PYWG_VNET_HDR_LEN + GRO_MAX_LEN = 65,545
bytes. mergeable() (offload.c) refuses any packet longer than GRO_MAX_LEN
(it is emitted plain); without that check pywg_gro_add would memcpy it whole
into the bin, up to 40 bytes past it: in bins 0-6 over the next bin's
bookkeeping (invisible to ASan: same allocation), in bin 7 off the struct
pywg_gro allocation, which AddressSanitizer reports as a
heap-buffer-overflow. The plane's RX path hands GRO at most RX_SLOT - 32 =
65,504 bytes, so only a direct caller of pywg_gro_add / pywg_gro_run can
pass such a packet, as this script does (small flows in bins 0-6, the
oversized packet last, for bin 7).

Run under ASan: python3 fuzz/sanitize.py run -- python3 fuzz/repro/gro_oversized_ipv6.py
(exits 0: "no overflow detected"; ASan aborts with a heap-buffer-overflow if
the length check is missing). tests/native/test_sanitizers.py runs it.
"""

from __future__ import annotations

import os
import struct
import sys

from pywg import _fast

if "asan" not in os.environ.get("LD_PRELOAD", ""):
    sys.exit("run under fuzz/sanitize.py: without AddressSanitizer the overflow goes unseen")

ffi, lib = _fast.ffi, _fast.lib
VNET = 10


def tcp6(sport: int, payload_len: int) -> bytes:
    src, dst = bytes(15) + b"\1", bytes(15) + b"\2"
    tcp = struct.pack("!HHIIBBHHH", sport, 443, 1, 777, 5 << 4, 0x10, 502, 0, 0)
    tcp += bytes(payload_len)
    return struct.pack("!IHBB", 6 << 28, len(tcp), 6, 64) + src + dst + tcp


# Seven small flows take bins 0-6; the eighth packet, 65,575 bytes, lands in bin 7.
packets = [tcp6(1000 + i, 100) for i in range(7)] + [tcp6(9, 65535 - 20)]
stride = VNET + max(map(len, packets))
pkts = ffi.new("uint8_t[]", stride * len(packets))
lens = ffi.new("size_t[]", len(packets))
for i, p in enumerate(packets):
    ffi.memmove(pkts + i * stride + VNET, p, len(p))
    lens[i] = len(p)
out = ffi.new("uint8_t[]", stride * len(packets))
out_lens = ffi.new("size_t[]", len(packets))
n = lib.pywg_gro_run(pkts, stride, lens, len(packets), out, stride, out_lens, len(packets))
print(
    f"pywg_gro_run returned {n} for a last packet of {len(packets[-1])} bytes: no overflow detected"
)
