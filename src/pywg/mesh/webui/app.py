"""The admin UI on the coordinator's app: its routes, the login, the guards of each page.

`mount` adds ``/admin/...`` to a `Coordinator`'s aiohttp app, so the UI is
served on the coordinator's port with its TLS. Every page but the login
form needs a live session (`sessions`; else a redirect to the login form);
every POST needs the session's CSRF token (`csrf`; else 403 and nothing
changes). Logins are rate-limited per source address (`ratelimit`) and
checked off the event loop (scrypt takes a while). Secrets (passwords,
tokens, device keys, session ids) are never logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from ..coordinator import Coordinator
from . import actions, csrf, passwords, render, views
from .headers import PREFIX, secured, see_other
from .sessions import DEFAULT_TTL, Session, Sessions
from .ui import COOKIE, AdminUI

log = logging.getLogger("pywg.mesh.webui")

Handler = Callable[[web.Request], Awaitable[web.Response]]
Page = Callable[[AdminUI, web.Request, Session], Awaitable[web.Response]]

WRONG: Final = "Wrong password or admin token."
EXPIRED: Final = "Your session has expired: log in again."
LOGGED_OUT: Final = "You are not logged in (or your session has expired): nothing was changed."
NO_CSRF: Final = "The form did not carry this session's CSRF token: nothing was changed."


def mount(coordinator: Coordinator, session_ttl: float = DEFAULT_TTL) -> AdminUI:
    """The admin UI on `coordinator`'s app (call before it starts)."""
    ui = AdminUI(coordinator, sessions=Sessions(session_ttl))
    add_routes(ui)
    return ui


def add_routes(ui: AdminUI) -> None:
    router = ui.coordinator.app.router
    css = render.stylesheet()

    async def home(request: web.Request) -> web.Response:
        return see_other("nodes" if ui.session_of(request) else "login")

    async def stylesheet(request: web.Request) -> web.Response:
        return secured(web.Response(body=css, content_type="text/css"))

    async def form(request: web.Request) -> web.Response:
        return await login_form(ui, request)

    async def submitted(request: web.Request) -> web.Response:
        return await login(ui, request)

    router.add_get(PREFIX, home)
    router.add_get(f"{PREFIX}/", home)
    router.add_get(f"{PREFIX}/admin.css", stylesheet)
    router.add_get(f"{PREFIX}/login", form)
    router.add_post(f"{PREFIX}/login", submitted)
    for path, page in views.PAGES.items():
        router.add_get(f"{PREFIX}/{path}", guard(ui, page))
    for path, action in actions.ACTIONS.items():
        router.add_post(f"{PREFIX}/{path}", guard_post(ui, action))


def guard(ui: AdminUI, page: Page) -> Handler:
    """A page for a logged-in admin; others are sent to the login form."""

    async def guarded(request: web.Request) -> web.Response:
        session = ui.session_of(request)
        if session is None:
            return see_other("login?expired=1" if COOKIE in request.cookies else "login")
        return await page(ui, request, session)

    return guarded


def guard_post(ui: AdminUI, action: Page) -> Handler:
    """An action for a logged-in admin whose form carries the session's CSRF token."""

    async def guarded(request: web.Request) -> web.Response:
        session = ui.session_of(request)
        if session is None:
            return ui.html("login.html", None, 401, message=LOGGED_OUT, configured=True)
        form = await request.post()
        if not csrf.valid(session, form.get(csrf.FIELD)):
            log.warning("admin: a POST to %s without this session's CSRF token", request.path)
            return ui.html("refused.html", session, 403, reason=NO_CSRF)
        return await action(ui, request, session)

    return guarded


async def login_form(ui: AdminUI, request: web.Request) -> web.Response:
    expired = request.rel_url.query.get("expired") == "1"
    return ui.html(
        "login.html",
        None,
        message=EXPIRED if expired else None,
        configured=passwords.configured(ui.coordinator.store),
    )


async def login(ui: AdminUI, request: web.Request) -> web.Response:
    source = request.remote or "unknown"
    wait = ui.limiter.retry_after(source)
    if wait > 0:
        message = f"Too many failed logins from your address: try again in {wait:.0f} s."
        return ui.html("login.html", None, 429, message=message, configured=True)
    secret = (await request.post()).get("secret")
    store = ui.coordinator.store
    loop = asyncio.get_running_loop()
    ok = isinstance(secret, str) and await loop.run_in_executor(
        None, passwords.check_login, store, secret
    )
    if not ok:
        ui.limiter.failed(source)
        log.warning("admin: failed login from %s", source)
        return ui.html("login.html", None, 401, message=WRONG, configured=True)
    ui.limiter.succeeded(source)
    session_id, _ = ui.sessions.create()
    log.info("admin: login from %s", source)
    response = see_other("nodes")
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=int(ui.sessions.ttl),
        path="/",
        secure=True,
        httponly=True,
        samesite="Strict",
    )
    return response
