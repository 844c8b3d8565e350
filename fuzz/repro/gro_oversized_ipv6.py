"""pywg_gro_add copies an IPv6 packet of up to 65,575 bytes into a 65,545-byte bin.

mergeable() (offload.c) accepts an IPv6 TCP segment whose payload-length
field says 65535, i.e. a 65,575-byte packet, and pywg_gro_add memcpy's it
whole into gro_bin.buf (PYWG_VNET_HDR_LEN + GRO_MAX_LEN = 65,545 bytes): up
to 40 bytes past the bin. In bins 0-6 that overwrites the next bin's
bookkeeping (invisible to ASan: same allocation); in bin 7 it runs off the
struct pywg_gro allocation, which AddressSanitizer reports as a
heap-buffer-overflow. The plane's RX path cannot get there today (it hands
GRO at most RX_SLOT - 32 = 65,504 bytes), but pywg_gro_add / pywg_gro_run
promise nothing about lengths. Only the IPv4 branch checks the length
against 65,535 (through the total-length field).

Run under ASan: python3 fuzz/sanitize.py run -- python3 fuzz/repro/gro_oversized_ipv6.py
(ASan aborts with a heap-buffer-overflow; once fixed, exits 0: "no overflow detected").
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
