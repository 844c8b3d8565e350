"""Wrapper of ``uapiparse.c``: runs of ``allowed_ip=`` lines of the UAPI, in bulk.

When the native backend is selected, `pywg.uapi` hands each run of a set
request to `allowed_ip_lines`; the lines C leaves (anything but a plain
``ADDR/LEN`` it is certain of) it parses itself, one at a time, with the same
result. A get answer's lines come from `allowed_ip_text` the same way.
"""

from __future__ import annotations

from typing import Any

from pywg import _fast
from pywg.constants import PREFIX_RECORD_SIZE

__all__ = ["allowed_ip_lines", "allowed_ip_text"]

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


_TEXT_CHUNK = 4096  # records per C call: a 220 KiB buffer, whatever the table's size


def allowed_ip_text(records: bytes | bytearray, offset: int = 0) -> tuple[str, int]:
    """``allowed_ip=ADDR/LEN\\n`` lines for the prefix records from ``records[offset]`` on,
    up to the first one C leaves to Python (IPv6 in ::/80), and the offset after the
    last one written."""
    size = _lib.PYWG_UAPI_ALLOWED_IP_MAX_LINE * _TEXT_CHUNK
    out, written, parts = _ffi.new("uint8_t[]", size), _ffi.new("size_t *"), []
    with _ffi.from_buffer("uint8_t[]", records) as data:
        while (count := min(_TEXT_CHUNK, (len(records) - offset) // PREFIX_RECORD_SIZE)) > 0:
            done = _lib.pywg_uapi_format_allowed_ips(data + offset, count, out, size, written)
            parts.append(_ffi.buffer(out, written[0])[:].decode("ascii"))
            offset += done * PREFIX_RECORD_SIZE
            if done < count:
                break
    return "".join(parts), offset
