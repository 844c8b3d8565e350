"""The admin's secrets: a password and an admin token, stored only as salted scrypt hashes.

`pywg coordinator admin set-password` and `pywg coordinator admin token`
store them (`Store.set_admin_secret`); the web UI's login form takes
either. A hash is ``scrypt$N$r$p$SALT$KEY`` (base64 salt and key):
scrypt (RFC 7914) with a random 16-byte salt, its cost in the text so a
later pywg may raise it without breaking stored ones. Checks compare in
constant time (`hmac.compare_digest`). An admin token is told from a
password by its prefix, so a login costs one scrypt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

from ..store import Store

N: Final = 1 << 14  # RFC 7914 §2: CPU/memory cost (16 MiB with r = 8)
R: Final = 8
P: Final = 1
SALT_SIZE: Final = 16
DERIVED_SIZE: Final = 32
MAX_COST: Final = 1 << 20  # the most a stored hash may ask for (a damaged file: no DoS)
MIN_PASSWORD: Final = 10  # characters
MAX_SECRET: Final = 1024  # characters of a password or token taken at all
TOKEN_PREFIX: Final = "pywgadmin-"
PASSWORD: Final = "admin_password"  # their keys in the store
TOKEN: Final = "admin_token"


class PasswordError(ValueError):
    """A password that is not taken (too short, too long)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        secret.encode(),
        salt=salt,
        n=n,
        r=r,
        p=p,
        dklen=DERIVED_SIZE,
        maxmem=2 * 128 * r * n + 2**20,
    )


def hash_secret(secret: str) -> str:
    """The text to store for `secret`: a new salt, scrypt with today's cost."""
    salt = secrets.token_bytes(SALT_SIZE)
    key = _scrypt(secret, salt, N, R, P)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(key)}"


def verify(secret: str, stored: str) -> bool:
    """Whether `secret` is the one `stored` was made from (False for a damaged hash)."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or len(secret) > MAX_SECRET:
        return False
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5])
    except ValueError:
        return False
    if not (1 < n <= MAX_COST and n & (n - 1) == 0 and 0 < r <= 32 and 0 < p <= 16):
        return False
    return hmac.compare_digest(_scrypt(secret, salt, n, r, p), key)


def check_password(password: str) -> str:
    """`password` if it is one to set; PasswordError otherwise."""
    if len(password) < MIN_PASSWORD:
        raise PasswordError(f"a password has at least {MIN_PASSWORD} characters")
    if len(password) > MAX_SECRET:
        raise PasswordError(f"a password has at most {MAX_SECRET} characters")
    if password.startswith(TOKEN_PREFIX):
        raise PasswordError(f"a password does not start with {TOKEN_PREFIX!r}")
    return password


def set_password(store: Store, password: str) -> None:
    store.set_admin_secret(PASSWORD, hash_secret(check_password(password)))


def new_token(store: Store) -> str:
    """A new admin token (the one before stops working); only its hash is stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    store.set_admin_secret(TOKEN, hash_secret(token))
    return token


def configured(store: Store) -> bool:
    """Whether an admin may log in at all (a password or a token is set)."""
    return any(store.admin_secret(kind) is not None for kind in (PASSWORD, TOKEN))


def check_login(store: Store, secret: str) -> bool:
    """Whether `secret` is the admin password or the admin token (one scrypt)."""
    kind = TOKEN if secret.startswith(TOKEN_PREFIX) else PASSWORD
    stored = store.admin_secret(kind)
    if stored is None:
        return False
    return verify(secret, stored)
