"""The admin UI's actions (POST): each checks its form, does one change, says how it went.

Each is the coordinator's or the store's own operation, the one the CLI
uses (`pywg coordinator approve`, `remove`, `token`, `device add` ...);
a change to the rosters wakes the nodes' long-polls at once
(`Coordinator.changed`). The result is a message on the next page
(post/redirect/get), except for what is shown once: a new join token, a
new device's configuration and its QR code (the private key is in that
page only; nothing keeps it).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from aiohttp import web

from .. import devices, qr
from ..exits import EXIT_ROUTES
from ..store import StoreError
from .headers import see_other
from .policy import clear_policy, set_policy
from .sessions import Session
from .ui import COOKIE, AdminUI
from .views import EXIT

log = logging.getLogger("pywg.mesh.webui")

MAX_TOKEN_HOURS: Final = 24 * 365.0
Form = Mapping[str, object]  # a posted form


def _field(form: Form, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _done(ui: AdminUI, session: Session, page: str, kind: str, text: str) -> web.Response:
    session.flash = (kind, text)
    return see_other(page)


def _prefixes(form: Form) -> list[str]:
    prefix = _field(form, "prefix")
    return list(EXIT_ROUTES) if prefix == EXIT else [prefix]


async def approve(ui: AdminUI, request: web.Request, session: Session) -> web.Response:
    form = await request.post()
    name = _field(form, "name")
    try:
        newly = ui.coordinator.approve(name, _prefixes(form))
    except StoreError as exc:
        return _done(ui, session, "routes", "error", str(exc))
    log.info("admin: approved for %s: %s", name, ", ".join(newly) or "nothing new")
    return _done(ui, session, "routes", "ok", f"Approved for {name}: {', '.join(newly) or '-'}.")


async def refuse(ui: AdminUI, request: web.Request, session: Session) -> web.Response:
    form = await request.post()
    name = _field(form, "name")
    try:
        newly = ui.coordinator.store.refuse(name, _prefixes(form))
    except StoreError as exc:
        return _done(ui, session, "routes", "error", str(exc))
    ui.coordinator.changed()
    log.info("admin: refused for %s: %s", name, ", ".join(newly) or "nothing new")
    return _done(ui, session, "routes", "ok", f"Refused for {name}: {', '.join(newly) or '-'}.")


async def remove_node(ui: AdminUI, request: web.Request, session: Session) -> web.Response:
    name = _field(await request.post(), "name")
    try:
        node = ui.coordinator.remove(name)
    except StoreError as exc:
        return _done(ui, session, "nodes", "error", str(exc))
    log.info("admin: removed node %s", node.name)
    return _done(ui, session, "nodes", "ok", f"Removed {node.name} ({node.ipv4}, {node.ipv6}).")


async def make_token(ui: AdminUI, request: web.Request, session: Session) -> web.Response:
    form = await request.post()
    try:
        hours = float(_field(form, "hours") or "24")
    except ValueError:
        hours = math.nan
    if not (math.isfinite(hours) and 0 < hours <= MAX_TOKEN_HOURS):
        return _done(ui, session, "tokens", "error", "A token lasts 0-8760 hours.")
    reusable = _field(form, "reusable") == "on"
    token = ui.coordinator.new_token(hours * 3600, reusable=reusable)
    scheme = "https" if ui.coordinator.certificate is not None else "http"
    log.info("admin: made a %s join token", "reusable" if reusable else "single-use")
    return ui.html(
        "token_made.html",
        session,
        token=token,
        url=f"{scheme}://{request.host}",
        reusable=reusable,
        hours=hours,
        page="tokens",
    )


async def revoke_token(ui: AdminUI, request: web.Request, session: Session) -> web.Response:
    try:
        ui.coordinator.store.revoke_token(_field(await request.post(), "hash"))
    except StoreError as exc:
        return _done(ui, session, "tokens", "error", str(exc))
    log.info("admin: revoked a join token")
    return _done(ui, session, "tokens", "ok", "Token revoked: no node can join with it.")


async def add_device(ui: AdminUI, request: web.Request, session: Session) -> web.Response:
    form = await request.post()
    gateway = _field(form, "gateway") or None
    endpoint = _field(form, "endpoint") or None
    try:
        device, config = devices.add_device(
            ui.coordinator.store,
            _field(form, "name"),
            gateway=gateway,
            exit_node=gateway if _field(form, "exit") == "on" else None,
            endpoint=devices.check_endpoint(endpoint) if endpoint else None,
        )
    except StoreError as exc:  # DeviceError is one
        return _done(ui, session, "devices", "error", str(exc))
    ui.coordinator.changed()
    log.info("admin: added device %s (gateway %s)", device.name, device.gateway)
    text = config.render()
    return ui.html(
        "device_added.html",
        session,
        device=device,
        config=text,
        qr=qr.png_data_uri(text),
        page="devices",
    )


async def remove_device(ui: AdminUI, request: web.Request, session: Session) -> web.Response:
    try:
        device = ui.coordinator.store.remove_device(_field(await request.post(), "name"))
    except StoreError as exc:
        return _done(ui, session, "devices", "error", str(exc))
    ui.coordinator.changed()
    log.info("admin: removed device %s", device.name)
    return _done(ui, session, "devices", "ok", f"Removed device {device.name}.")


async def logout(ui: AdminUI, request: web.Request, session: Session) -> web.Response:
    ui.sessions.drop(request.cookies.get(COOKIE))
    response = see_other("login")
    response.del_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
    return response


Action = Callable[[AdminUI, web.Request, Session], Awaitable[web.Response]]
ACTIONS: Final[dict[str, Action]] = {
    "logout": logout,
    "routes/approve": approve,
    "routes/refuse": refuse,
    "nodes/remove": remove_node,
    "tokens/make": make_token,
    "tokens/revoke": revoke_token,
    "devices/add": add_device,
    "devices/remove": remove_device,
    "policy/set": set_policy,
    "policy/clear": clear_policy,
}
