"""Wrapper of ``uapiparse.c``: runs of ``allowed_ip=`` lines of a UAPI set request, in bulk.

`pywg.uapi` hands each run it meets to `allowed_ip_lines` when the native
backend is selected; the lines C leaves (anything but a plain ``ADDR/LEN``
it is certain of) it parses itself, one at a time, with the same result.
"""

from __future__ import annotations

from typing import Any

from pywg import _fast
from pywg.constants import PREFIX_RECORD_SIZE

__all__ = ["allowed_ip_lines"]

_ffi: Any = _fast.ffi
_lib: Any = _fast.lib


def allowed_ip_lines(data: bytearray | bytes, start: int, end: int) -> tuple[bytes, int]:
    """The prefix records of the ``allowed_ip=`` lines from ``data[start]`` on, within
    ``data[start:end]``, and the offset just after the last line taken."""
    if not 0 <= start <= end <= len(data):
        raise ValueError(f"bad range [{start}, {end}) of {len(data)} bytes")
    cap = (end - start) // _lib.PYWG_UAPI_ALLOWED_IP_MIN_LINE
    if cap == 0:
        return b"", start
    out = _ffi.new("uint8_t[]", cap * PREFIX_RECORD_SIZE)
    consumed = _ffi.new("size_t *")
    with _ffi.from_buffer("uint8_t[]", data) as text:
        taken = _lib.pywg_uapi_allowed_ips(text + start, end - start, out, cap, consumed)
    return bytes(_ffi.buffer(out, taken * PREFIX_RECORD_SIZE)), start + int(consumed[0])
