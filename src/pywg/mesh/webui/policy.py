"""The admin UI's access policy page (docs/policy.md): the policy in force, set or clear it.

The page shows the policy's text in a form to edit; setting it is
`Coordinator.set_policy`, the same check and store as `pywg coordinator
policy set`: a refused policy comes back in the form, with its line and the
reason (and that line quoted), and the one in force stays. Clearing it
lets every node reach every node again.
"""

from __future__ import annotations

import logging

from aiohttp import web

from ...policy import PolicyError
from ..store import StoreError
from .headers import see_other
from .sessions import Session
from .ui import AdminUI

log = logging.getLogger("pywg.mesh.webui")


def _page(
    ui: AdminUI,
    session: Session,
    *,
    text: str | None = None,
    error: PolicyError | None = None,
    status: int = 200,
) -> web.Response:
    current = ui.coordinator.policy()
    shown = text if text is not None else (current or "")
    lines = shown.splitlines()
    quoted = lines[error.line - 1] if error is not None and 0 < error.line <= len(lines) else None
    return ui.html(
        "policy.html",
        session,
        status,
        current=current,
        text=shown,
        error=error,
        quoted=quoted,
        page="policy",
    )


async def policy_page(ui: AdminUI, request: web.Request, session: Session) -> web.Response:
    return _page(ui, session)


async def set_policy(ui: AdminUI, request: web.Request, session: Session) -> web.Response:
    text = (await request.post()).get("policy")
    if not isinstance(text, str) or not text.strip():
        session.flash = ("error", "An empty policy: to let everyone reach everyone, clear it.")
        return see_other("policy")
    text = text.replace("\r\n", "\n")  # a form's lines end in CRLF (HTML §4.10.21.8)
    try:
        ui.coordinator.set_policy(text)
    except PolicyError as exc:
        return _page(ui, session, text=text, error=exc, status=400)
    except StoreError as exc:
        session.flash = ("error", str(exc))
        return see_other("policy")
    log.info("admin: set the access policy")
    session.flash = ("ok", "Policy set: every node has it within seconds.")
    return see_other("policy")


async def clear_policy(ui: AdminUI, request: web.Request, session: Session) -> web.Response:
    ui.coordinator.set_policy(None)
    log.info("admin: cleared the access policy")
    session.flash = ("ok", "Policy cleared: every node reaches every node.")
    return see_other("policy")
