"""The admin's login sessions: in memory, each with an expiry and its own CSRF token.

A session is named by a random 256-bit id, sent only in a cookie
(``Secure; HttpOnly; SameSite=Strict``, `views`) and kept here by its
SHA-256, so nothing in this table opens a session. A session ends at its
expiry (`ttl` after login, never extended: a stolen cookie has a bounded
life) or at logout; a restart of the coordinator ends them all. At most
MAX_SESSIONS live at once (the oldest goes first).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

DEFAULT_TTL: Final = 12 * 3600.0
MAX_SESSIONS: Final = 256


@dataclass(slots=True)
class Session:
    """One admin's login: its CSRF token, its expiry, a message for the next page."""

    csrf: str = field(repr=False)
    expires: float  # on the Sessions' clock
    flash: tuple[str, str] | None = None  # (kind: "ok" or "error", text), shown once


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class Sessions:
    """The live sessions; `clock` is monotonic seconds (injectable for tests)."""

    def __init__(self, ttl: float = DEFAULT_TTL, clock: Callable[[], float] = time.monotonic):
        if not ttl > 0:
            raise ValueError("a session lasts a positive number of seconds")
        self.ttl = ttl
        self.clock = clock
        self._live: dict[str, Session] = {}

    def create(self) -> tuple[str, Session]:
        """A new session: its id (for the cookie, nowhere else) and the session."""
        self._expire()
        while len(self._live) >= MAX_SESSIONS:
            del self._live[next(iter(self._live))]
        session_id = secrets.token_urlsafe(32)
        session = Session(csrf=secrets.token_urlsafe(32), expires=self.clock() + self.ttl)
        self._live[_key(session_id)] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of `session_id`; None if there is none or it expired."""
        if not session_id:
            return None
        key = _key(session_id)
        session = self._live.get(key)
        if session is not None and session.expires <= self.clock():
            del self._live[key]
            return None
        return session

    def drop(self, session_id: str | None) -> None:
        if session_id:
            self._live.pop(_key(session_id), None)

    def __len__(self) -> int:
        self._expire()
        return len(self._live)

    def _expire(self) -> None:
        now = self.clock()
        for key in [k for k, s in self._live.items() if s.expires <= now]:
            del self._live[key]
