"""The accept side shared by the proxies: a gate on clients, contained failures, clean shutdown.

Each client runs in its own task. Past `Limits.max_connections` a new client
is closed at once; a client whose handling fails (a reset, a timeout, a
malformed message that got its error reply) costs one short log line, never
a traceback or the server; `close()` ends the listener and every client.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from .limits import Gate, Limits
from .network import Listener, Network
from .splice import close_quietly

log = logging.getLogger("pywg.proxy")

# The stream reader's buffer: an HTTP head may not grow past it (LimitOverrunError).
_MIN_READER_LIMIT: Final = 4096


class ClientServer:
    """Runs `handle` for each accepted client, within `limits`."""

    name = "proxy"

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits if limits is not None else Limits()
        self.gate = Gate(self.limits.max_connections)
        self._clients: set[asyncio.Task[None]] = set()
        self._listeners: list[Listener] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def start(self, host: str | None, port: int) -> asyncio.Server:
        """Listen on the kernel's `host`:`port` (None: every address; port 0: any free
        one, see the server's `sockets`)."""
        limit = max(self.limits.max_header_bytes, _MIN_READER_LIMIT)
        server = await asyncio.start_server(self.on_client, host, port, limit=limit)
        self._listeners.append(server)
        return server

    async def start_on(self, network: Network, port: int) -> Listener:
        """Listen on `port` of `network` (a forward's mesh side)."""
        listener = await network.start_server(self.on_client, port)
        self._listeners.append(listener)
        return listener

    async def on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.gate.enter():
            log.debug("%s: %d clients already, one refused", self.name, self.gate.active)
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            await self.handle(reader, writer)
        except (OSError, EOFError, TimeoutError, ValueError) as exc:
            log.debug("%s: client ended: %s", self.name, exc or type(exc).__name__)
        except asyncio.CancelledError:
            pass  # `close()`: the task ends here (asyncio's server would log a re-raise)
        except Exception as exc:  # contained: one client never takes the server down
            log.warning("%s: client failed: %s", self.name, type(exc).__name__)
        finally:
            self.gate.leave()
            if task is not None:
                self._clients.discard(task)
            await close_quietly(writer)

    def abort(self) -> None:
        """Stop listening and end every client, without waiting for either."""
        for listener in self._listeners:
            listener.close()
        for task in list(self._clients):
            task.cancel()

    async def close(self) -> None:
        """Stop listening and end every client."""
        self.abort()
        for listener in self._listeners:
            await listener.wait_closed()
        self._listeners.clear()
