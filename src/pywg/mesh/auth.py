"""Who is talking: signed requests to the coordinator, its signed answers, join tokens.

Every node has two key pairs, both made on the node and never sent anywhere:
its WireGuard key (X25519) and a *control key* (Ed25519, RFC 8032) that signs
what it tells the coordinator and the relay. The coordinator learns the
public halves when the node joins.

A request (`sign_request`) carries ``Authorization: PYWG-Ed25519 node="<WG
public key, base64>", time="<ms since epoch>", sig="<base64>"``, a signature
over the method, the path with its query, the time and the SHA-256 of the
body. The coordinator takes it only from a member, with a valid signature,
a time within MAX_SKEW_MS of its own clock, never seen before, and not more
than REORDER_MS older than the newest request of that node (`ReplayGuard`:
a node's long poll and its updates may overtake each other on the way, a
replay may not).

The coordinator signs every answer (``X-Pywg-Signature``) over the request's
own signature and the answer's body, with its own Ed25519 key, so a node
knows an answer is fresh, for its request, and from the coordinator it
joined, even over plain HTTP. It learns that key from the first answer and
checks it against the fingerprint in the join token.

A join token is ``<secret>.<fingerprint>[.<pin>]``: 32 random characters
the coordinator stores only as a SHA-256 hash, the first 16 bytes of the
SHA-256 of the coordinator's public key (base64url), and, for a coordinator
serving HTTPS with a certificate it made itself, that certificate's pin
(`pywg.mesh.tls`), so that the node accepts that certificate and no other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Final

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from . import tls

SCHEME: Final = "PYWG-Ed25519"
SIGNATURE_HEADER: Final = "X-Pywg-Signature"
COORDINATOR_KEY_HEADER: Final = "X-Pywg-Coordinator-Key"  # on every answer
MAX_SKEW_MS: Final = 300_000
REORDER_MS: Final = 60_000
MAX_SEEN: Final = 4096  # signatures remembered per node (within REORDER_MS)
REQUEST_CONTEXT: Final = b"pywg coordinator request v1\0"
RESPONSE_CONTEXT: Final = b"pywg coordinator response v1\0"
_AUTH_RE = re.compile(
    r'^PYWG-Ed25519 node="([A-Za-z0-9+/=]{44})", time="(\d{1,16})", sig="([A-Za-z0-9+/=]{88})"$'
)


class AuthError(ValueError):
    """A request or answer that is not signed as it must be; str() says how."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str, size: int) -> bytes:
    """Standard base64 of exactly `size` bytes; AuthError otherwise."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise AuthError("not base64") from None
    if len(raw) != size:
        raise AuthError(f"expected {size} bytes, got {len(raw)}")
    return raw


def _request_digest(method: str, path: str, time_ms: int, body: bytes) -> bytes:
    text = f"{method.upper()}\n{path}\n{time_ms}\n{hashlib.sha256(body).hexdigest()}"
    return REQUEST_CONTEXT + text.encode("utf-8")


@dataclass(frozen=True, slots=True)
class RequestAuth:
    node: str  # the node's WireGuard public key, base64
    time_ms: int
    signature: bytes

    def verify(self, control_key: bytes, method: str, path: str, body: bytes) -> bool:
        """Whether the signature is by `control_key` (Ed25519 public) over this request."""
        try:
            VerifyKey(control_key).verify(
                _request_digest(method, path, self.time_ms, body), self.signature
            )
        except (BadSignatureError, ValueError, TypeError):
            return False
        return True

    def fresh(self, now_ms: int, last_ms: int | None) -> bool:
        """Within MAX_SKEW_MS of `now_ms` and after the node's last request."""
        if abs(self.time_ms - now_ms) > MAX_SKEW_MS:
            return False
        return last_ms is None or self.time_ms > last_ms


def sign_request(
    control: SigningKey, node: str, method: str, path: str, body: bytes, time_ms: int
) -> tuple[str, bytes]:
    """The Authorization header for a request, and its signature (to check the answer)."""
    signature = control.sign(_request_digest(method, path, time_ms, body)).signature
    return f'{SCHEME} node="{node}", time="{time_ms}", sig="{b64(signature)}"', signature


def parse_authorization(header: str | None) -> RequestAuth:
    if not header:
        raise AuthError("no Authorization header")
    match = _AUTH_RE.match(header.strip())
    if match is None:
        raise AuthError(f"Authorization is not {SCHEME}")
    node, when, sig = match.groups()
    unb64(node, 32)
    return RequestAuth(node, int(when), unb64(sig, 64))


def sign_response(coordinator: SigningKey, request_signature: bytes, body: bytes) -> str:
    digest = RESPONSE_CONTEXT + request_signature + hashlib.sha256(body).digest()
    return b64(coordinator.sign(digest).signature)


def verify_response(
    coordinator_key: bytes, request_signature: bytes, body: bytes, header: str | None
) -> None:
    """AuthError unless `header` is the coordinator's signature of this answer to this request."""
    if not header:
        raise AuthError(f"the answer has no {SIGNATURE_HEADER}")
    signature = unb64(header.strip(), 64)
    digest = RESPONSE_CONTEXT + request_signature + hashlib.sha256(body).digest()
    try:
        VerifyKey(coordinator_key).verify(digest, signature)
    except (BadSignatureError, ValueError, TypeError):
        raise AuthError("the answer is not signed by the coordinator") from None


def fingerprint(public_key: bytes) -> str:
    """The first 16 bytes of SHA-256 of an Ed25519 public key, base64url without padding."""
    digest = hashlib.sha256(public_key).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def new_token(coordinator_key: bytes, tls_pin: bytes | None = None) -> tuple[str, str]:
    """A fresh join token (with the pin of the coordinator's own certificate, if it
    serves one) and the hash to store for it."""
    secret = "-"
    while secret.startswith("-"):  # `--token -x...` would read as an option
        secret = secrets.token_urlsafe(24)  # 32 characters, 192 bits
    token = f"{secret}.{fingerprint(coordinator_key)}"
    if tls_pin is not None:
        token += "." + tls.format_pin(tls_pin)
    return token, token_hash(secret)


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Token:
    """A join token's parts."""

    secret: str
    fingerprint: str  # of the coordinator's key
    tls_pin: bytes | None  # of its own certificate (None: plain HTTP, or a CA's certificate)


def parse_token(token: str) -> Token:
    """The parts of a join token; AuthError if it is not one."""
    parts = token.strip().split(".")
    if (
        len(parts) not in (2, 3)
        or not re.fullmatch(r"[A-Za-z0-9_-]{16,64}", parts[0])
        or not re.fullmatch(r"[A-Za-z0-9_-]{22}", parts[1])
    ):
        raise AuthError("not a pywg join token (expected SECRET.FINGERPRINT[.PIN])")
    try:
        pin = tls.parse_pin(parts[2]) if len(parts) == 3 else None
    except tls.TlsError as exc:
        raise AuthError(f"not a pywg join token: {exc}") from None
    return Token(parts[0], parts[1], pin)


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class ReplayGuard:
    """Refuses replayed requests, while letting a node's concurrent requests arrive in any order.

    Per node: a request must be within MAX_SKEW_MS of now, newer than the node's
    *floor*, and its signature not seen before. The floor is the newest time
    accepted before this guard started (`persisted`, the store's record: so
    nothing signed before a restart is taken after it), and otherwise
    REORDER_MS before the newest request seen. Signatures are remembered for as
    long as they are above the floor (at most MAX_SEEN per node).
    """

    def __init__(self) -> None:
        self._floor: dict[int, int] = {}
        self._newest: dict[int, int] = {}
        self._seen: dict[int, dict[bytes, int]] = {}

    def accept(self, node: int, request: RequestAuth, now_ms: int, persisted: int | None) -> bool:
        if abs(request.time_ms - now_ms) > MAX_SKEW_MS:
            return False
        if node not in self._floor:
            start = persisted if persisted is not None else -1
            self._floor[node] = self._newest[node] = start
        seen = self._seen.setdefault(node, {})
        if request.time_ms <= self._floor[node] or request.signature in seen:
            return False
        if len(seen) >= MAX_SEEN:
            return False  # a member sending thousands a minute: refused until it slows down
        seen[request.signature] = request.time_ms
        newest = self._newest[node] = max(self._newest[node], request.time_ms)
        floor = self._floor[node] = max(self._floor[node], newest - REORDER_MS)
        for signature in [s for s, t in seen.items() if t <= floor]:
            del seen[signature]
        return True

    def forget(self, node: int) -> None:
        """A node left: its record goes (a node that joins again starts from the store)."""
        for table in (self._floor, self._newest, self._seen):
            table.pop(node, None)
