"""pywg: a pure-userspace WireGuard.

The sans-IO protocol core (`Device`) is the public heart of the library; see
DESIGN.md and the README for the contract.
"""

from __future__ import annotations

from .constants import DEFAULT_MTU
from .device import Device
from .events import (
    EndpointChanged,
    Event,
    HandshakeCompleted,
    HandshakeTimedOut,
    SessionsExpired,
)
from .exceptions import (
    DecryptionError,
    LocalProtocolError,
    RemoteProtocolError,
    WireGuardError,
)
from .keys import PresharedKey, PrivateKey, PublicKey
from .peer import Peer

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MTU",
    "DecryptionError",
    "Device",
    "EndpointChanged",
    "Event",
    "HandshakeCompleted",
    "HandshakeTimedOut",
    "LocalProtocolError",
    "Peer",
    "PresharedKey",
    "PrivateKey",
    "PublicKey",
    "RemoteProtocolError",
    "SessionsExpired",
    "WireGuardError",
    "__version__",
]
