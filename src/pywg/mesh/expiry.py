"""Node key expiry and rotation: the lifetime rules and the rotation proof.

A node's keys (its WireGuard key and its Ed25519 control key, `pywg.mesh.auth`)
are issued when it joins and expire after the mesh's *key expiry* period
(`pywg coordinator serve --key-expiry DAYS`, DEFAULT_EXPIRY_DAYS, 0 = never).
Before that, once less than ROTATE_FRACTION of their lifetime is left, the
node makes new keys and asks the coordinator to take them (POST /v1/rotate,
`schema.RotateRequest`): the request is signed with the old control key as
every member request is, and carries a *proof* (`sign_proof`): the new
control key's signature over the old and new public keys and the request's
time, so that the coordinator knows the node holds the new control key too
and the proof belongs to this request alone. The coordinator records the new
keys, a new expiry and the old keys as retired (never usable again) in one
transaction (`store.Store.rotate`).

An expired node is left out of every roster and its requests are refused; a
new join token renews it. A revoked node is refused for good, its keys
retired.
"""

from __future__ import annotations

from typing import Final

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

DAY_MS: Final = 86_400_000
DEFAULT_EXPIRY_DAYS: Final = 180
MAX_EXPIRY_DAYS: Final = 3650
ROTATE_FRACTION: Final = 1 / 3  # rotate once less than this share of the lifetime is left
PROOF_CONTEXT: Final = b"pywg key rotation v1\0"


def period_ms(days: float) -> int:
    """The key expiry period in ms for `days` (0: never); ValueError if out of range."""
    if not 0 <= days <= MAX_EXPIRY_DAYS or days != days:
        raise ValueError(f"the key expiry is 0 (never) to {MAX_EXPIRY_DAYS} days, not {days}")
    return int(days * DAY_MS)


def rotation_due(issued_ms: int | None, expires_ms: int | None) -> int | None:
    """When keys issued at `issued_ms` and expiring at `expires_ms` should be rotated
    (ms since the epoch), or None: they never expire."""
    if expires_ms is None:
        return None
    if issued_ms is None or issued_ms >= expires_ms:
        return expires_ms  # as soon as possible
    return expires_ms - int((expires_ms - issued_ms) * ROTATE_FRACTION)


def _proof_digest(old_key: bytes, new_key: bytes, new_control: bytes, time_ms: int) -> bytes:
    return PROOF_CONTEXT + old_key + new_key + new_control + time_ms.to_bytes(8, "big")


def sign_proof(new_control: SigningKey, old_key: bytes, new_key: bytes, time_ms: int) -> bytes:
    """The new control key's signature binding it and `new_key` (WireGuard) to the node
    `old_key` and the request signed at `time_ms`."""
    digest = _proof_digest(old_key, new_key, bytes(new_control.verify_key), time_ms)
    return new_control.sign(digest).signature


def check_proof(
    proof: bytes, old_key: bytes, new_key: bytes, new_control: bytes, time_ms: int
) -> bool:
    """Whether `proof` is `sign_proof`'s by `new_control` for these keys and time."""
    try:
        VerifyKey(new_control).verify(_proof_digest(old_key, new_key, new_control, time_ms), proof)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True
