"""Locate and load the known-answer files in the repository's vectors/ folder.

Tests use it as `from helpers.known_answers import load` and then `load("rfc7748_x25519.json")`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS_DIR = Path(__file__).resolve().parents[2] / "vectors"


def path(name: str) -> Path:
    """The path of a file under vectors/ (e.g. "pcap/wireguard-psk.pcap")."""
    p = VECTORS_DIR / name
    if not p.is_file():
        raise FileNotFoundError(f"no vector file {name!r} in {VECTORS_DIR}")
    return p


def load(name: str) -> Any:
    """The parsed JSON of vectors/<name> (a fresh object on every call)."""
    with path(name).open(encoding="utf-8") as f:
        return json.load(f)


def unhex(text: str) -> bytes:
    """bytes.fromhex, for the hex strings the vector files use."""
    return bytes.fromhex(text)
