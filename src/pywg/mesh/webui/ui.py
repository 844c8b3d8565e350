"""The admin UI's state: its coordinator, sessions, login limiter and templates.

`AdminUI` is what the pages (`views`) and actions (`actions`) are given;
`app` puts them on the coordinator's routes.
"""

from __future__ import annotations

from typing import Final

import jinja2
from aiohttp import web

from ..coordinator import Coordinator
from . import csrf, render
from .headers import secured
from .ratelimit import LoginLimiter
from .sessions import DEFAULT_TTL, Session, Sessions

COOKIE: Final = "__Host-pywg-admin"  # __Host-: Secure, Path=/, no Domain (RFC 6265bis §4.1.3.2)


class AdminUI:
    """The admin web UI of one coordinator (docs/webui.md)."""

    def __init__(
        self,
        coordinator: Coordinator,
        *,
        sessions: Sessions | None = None,
        limiter: LoginLimiter | None = None,
    ) -> None:
        self.coordinator = coordinator
        self.sessions = sessions if sessions is not None else Sessions(DEFAULT_TTL)
        self.limiter = limiter if limiter is not None else LoginLimiter()
        self.templates: jinja2.Environment = render.environment()

    def session_of(self, request: web.Request) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    def html(
        self, template: str, session: Session | None, status: int = 200, **context: object
    ) -> web.Response:
        """A page from `template`, with the session's CSRF token and its one-time message."""
        context.setdefault("page", "")  # the page the menu marks as current
        flash = None
        if session is not None:
            flash, session.flash = session.flash, None
        text = render.page(
            self.templates,
            template,
            csrf_field=csrf.FIELD,
            csrf=session.csrf if session is not None else "",
            flash=flash,
            logged_in=session is not None,
            **context,
        )
        return secured(web.Response(text=text, status=status, content_type="text/html"))
