"""What `Stack.start_server` returns: an object with the manners of `asyncio.Server`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType

from pywg.netstack.listener import Listener


class Server:
    """A listening port of a stack: close it to stop accepting (connections stay open)."""

    def __init__(self, listener: Listener, unlisten: Callable[[Listener], None]) -> None:
        self._listener = listener
        self._unlisten = unlisten
        self._closed = asyncio.Event()

    @property
    def port(self) -> int:
        """The port listened on."""
        return self._listener.port

    def is_serving(self) -> bool:
        return not self._closed.is_set()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._unlisten(self._listener)
        self._listener.close()
        self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def serve_forever(self) -> None:
        try:
            await self._closed.wait()
        finally:
            self.close()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()
