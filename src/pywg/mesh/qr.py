"""A device's wg-quick file as a QR code: for a terminal, a PNG or SVG file, a web page.

The WireGuard apps (Android, iOS) import a tunnel by scanning the file's
text as a QR code. The code is made by segno (pure Python, no dependencies,
PNG and SVG writers of its own), never micro QR, with the error correction
raised as far as the version the text needs allows. The text holds the
device's private key: a file is written 0600 (`pywg.system.secretfile`).
"""

from __future__ import annotations

import io
import os
from typing import Final

import segno

from ..system.secretfile import write_secret_file

SUFFIXES: Final = (".png", ".svg")
SCALE: Final = 8  # pixels a module in a file: a phone's camera reads it off a screen
BORDER: Final = 4  # modules of quiet zone (ISO/IEC 18004 §6.3.8)


def _code(text: str) -> segno.QRCode:
    return segno.make(text, micro=False)


def check_path(path: str) -> str:
    """`path` if it ends in .png or .svg (the format follows it); ValueError otherwise."""
    if os.path.splitext(path)[1].lower() not in SUFFIXES:
        raise ValueError(f"a QR code file is .png or .svg, not {path!r}")
    return path


def terminal(text: str) -> str:
    """The code as lines of text, two modules a character (half blocks: ▀ ▄ █), light
    modules drawn in the foreground colour, for a terminal with a dark background."""
    out = io.StringIO()
    _code(text).terminal(out, border=BORDER, compact=True)
    return out.getvalue()


def save(text: str, path: str) -> None:
    """Write the code to `path` (.png or .svg, by its suffix), mode 0600."""
    kind = check_path(path).lower().rsplit(".", 1)[1]
    buffer = io.BytesIO()
    _code(text).save(buffer, kind=kind, scale=SCALE, border=BORDER)
    write_secret_file(path, buffer.getvalue())


def png_data_uri(text: str) -> str:
    """The code as a PNG in a ``data:`` URI, for an <img> on a web page (the admin UI)."""
    return str(_code(text).png_data_uri(scale=SCALE, border=BORDER))
