"""pywg: a pure-userspace WireGuard.

The modules at this level are the sans-IO protocol core: `Device` turns
datagrams and IP packets into datagrams and IP packets, given the time, and
never does I/O. Around it, each package has one job (docs/architecture.md):

- `pywg._fast`: the native data plane (C via cffi): batched seal/open,
  replay windows, the TUN<->UDP loops off the GIL;
- `pywg.asyncio`: the I/O shell: the core on a real TUN device and UDP
  socket (`Tunnel`), and the UAPI socket;
- `pywg.system`: OS glue for the commands (iproute2/nft, a UAPI client,
  secret files);
- `pywg.cmd`: the commands (`pywg`, `pywgd`);
- `pywg.mesh`: coordinator, relay and node agent;
- `pywg.interop`, `pywg.lab`: the conformance suite and its namespace lab.

The names exported here are the library's public API.
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
