"""Quoting user-supplied values in error messages without leaking secrets.

A bad value is echoed so the user can find it, but a run of 42+ base64
characters may be (part of) a private or preshared key passed in the wrong
place, so it is withheld; long values are cut short.
"""

from __future__ import annotations

import re
from typing import Final

# 42+ base64 characters in a row: (part of) a key, maybe a secret; never echoed
KEYLIKE: Final = re.compile(r"[A-Za-z0-9+/]{42,}")
# 64 hex digits in a row: a key in the UAPI's spelling
HEXKEYLIKE: Final = re.compile(r"[0-9A-Fa-f]{64}")
MAX_SHOWN: Final = 40


def quote(value: object) -> str:
    """`value` for a message: repr'd, truncated, and withheld if it looks like a key."""
    text = value if isinstance(value, str) else repr(value)
    if KEYLIKE.search(text) or HEXKEYLIKE.search(text):
        return "(value not shown)"
    if len(text) > MAX_SHOWN:
        text = text[: MAX_SHOWN - 3] + "..."
    return repr(text) if isinstance(value, str) else text
