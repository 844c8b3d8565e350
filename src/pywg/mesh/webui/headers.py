"""What every answer of the admin UI carries, and its redirects.

SECURITY_HEADERS: a Content Security Policy that allows this origin's style
sheet and ``data:`` images (the QR code) and nothing else (no script at
all; forms post only here), no framing (``frame-ancestors`` and, for older
browsers, X-Frame-Options), no MIME sniffing, no Referer, no caching (a
page may hold a token or a device's private key).
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

PREFIX: Final = "/admin"
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def secured(response: web.Response) -> web.Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def see_other(page: str) -> web.Response:
    """A redirect to the UI's `page` (303: the browser GETs it, after a POST too)."""
    return secured(web.Response(status=303, headers={"Location": f"{PREFIX}/{page}"}))
