"""The admin UI's pages: Jinja2 templates shipped in the package, escaped HTML out.

Templates live in ``templates/`` (package data) and the style sheet in
``static/admin.css``; nothing is fetched from elsewhere and there is no
script. Autoescaping is on for every template: a node's name, a route or
an error text is shown as text, never as markup.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any, Final

import jinja2

PACKAGE: Final = "pywg.mesh.webui"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(PACKAGE, "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ago"] = ago
    env.filters["when"] = when
    return env


def stylesheet() -> bytes:
    return resources.files(PACKAGE).joinpath("static/admin.css").read_bytes()


def ago(ms: int | None, now_ms: int | None = None) -> str:
    """How long ago a time (ms since the epoch) was, roughly: "12 s ago", "never"."""
    if ms is None:
        return "never"
    now = int(time.time() * 1000) if now_ms is None else now_ms
    seconds = max(0, (now - ms) // 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def when(ms: int) -> str:
    """A time (ms since the epoch) as the coordinator's local date and time."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000))


def page(env: jinja2.Environment, template: str, **context: Any) -> str:
    return env.get_template(template).render(**context)
