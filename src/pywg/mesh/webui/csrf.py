"""Cross-site request forgery: every POST form of the admin UI carries its session's token.

The session cookie is ``SameSite=Strict`` already (no cross-site request
carries it); the token is the second, independent check (OWASP CSRF
Prevention Cheat Sheet, "Synchronizer Token Pattern"): a form holds the
session's token in the hidden field FIELD, and `valid` compares it in
constant time. A request without it, or with another, changes nothing.
"""

from __future__ import annotations

import hmac
from typing import Final

from .sessions import Session

FIELD: Final = "csrf"


def valid(session: Session, submitted: object) -> bool:
    """Whether `submitted` (the form's FIELD) is the session's token."""
    if not isinstance(submitted, str) or not submitted:
        return False
    return hmac.compare_digest(submitted.encode(), session.csrf.encode())
