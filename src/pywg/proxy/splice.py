"""Copying a connection's bytes both ways between two stream pairs until both ends are done.

An end of file is passed on as a half-close (`write_eof`) where the transport
can, so a client that shuts down its sending side still gets its answer
(RFC 9293 §3.6); both connections close when both directions have ended or
either one failed.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

CHUNK: Final = 64 * 1024


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(CHUNK):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()
    else:
        writer.close()


async def splice(
    a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    b: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    """Copy a to b and b to a; close both when done (a failure of either ends both)."""
    tasks = [asyncio.ensure_future(_copy(a[0], b[1])), asyncio.ensure_future(_copy(b[0], a[1]))]
    try:
        pending: set[asyncio.Future[None]] = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if any(task.exception() is not None for task in done):
                break
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close_quietly(a[1], b[1])


async def close_quietly(*writers: asyncio.StreamWriter) -> None:
    """Close writers, ignoring a peer that is gone already."""
    for writer in writers:
        writer.close()
    for writer in writers:
        with contextlib.suppress(OSError):
            await writer.wait_closed()
