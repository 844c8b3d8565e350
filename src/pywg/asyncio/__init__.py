"""The asyncio I/O shell: the sans-IO core on a real TUN device and UDP socket.

`Tunnel` is the library API (see the README); `UapiServer` serves the `wg`
tool's protocol on /var/run/wireguard/IFACE.sock; `run()` runs a coroutine on
uvloop when it is installed, else on the standard loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from .tun import Tun, TunError
from .tunnel import PeerStats, Tunnel
from .uapi_server import SOCKET_DIR, UapiServer, socket_path

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on uvloop when available (it is a dependency; the fallback is for odd hosts)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


__all__ = [
    "SOCKET_DIR",
    "PeerStats",
    "Tun",
    "TunError",
    "Tunnel",
    "UapiServer",
    "run",
    "socket_path",
]
