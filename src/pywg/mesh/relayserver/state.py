"""A relay's state directory: its relay key, made at the first start.

``DIR/relay.key`` holds the relay key (Ed25519, the base64 of its 32-byte
seed, mode 0600: `pywg.system.secretfile`); the self-signed certificate
beside it (``tls.crt``, ``tls.key``) is `pywg.mesh.tls`'s. `pywg relay serve`
keeps both in its --state directory, a coordinator's own relay in
``STATE/relay`` (`pywg.mesh.relaychild`).
"""

from __future__ import annotations

import os
from typing import Final

from nacl.signing import SigningKey

from ...system.secretfile import read_or_create_secret
from ..store import ensure_state_dir

KEY_FILE: Final = "relay.key"


def load_or_create_key(state_dir: str) -> SigningKey:
    """The relay key in `state_dir` (made there, and the directory, if there is none);
    ValueError if the file holds anything else, OSError if it cannot be made."""
    ensure_state_dir(state_dir)
    return SigningKey(read_or_create_secret(os.path.join(state_dir, KEY_FILE)))
