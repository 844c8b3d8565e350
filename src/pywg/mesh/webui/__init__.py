"""The coordinator's admin web UI (docs/webui.md): served under /admin on its port.

`mount(coordinator)` adds it to a coordinator's app before it starts
(`pywg coordinator serve` does, unless ``--no-admin-ui``). One concern a
module: `passwords` (the admin's hashed secrets), `sessions`, `csrf`,
`ratelimit` (logins per source), `headers` (security headers, redirects),
`render` (Jinja2 templates and the style sheet, package data), `ui` (the
state the pages share), `views` (pages), `actions` (forms), `app` (routes,
login, guards).
"""

from __future__ import annotations

from .app import mount
from .ui import AdminUI

__all__ = ["AdminUI", "mount"]
