"""The UAPI socket server, on a Tunnel that was never started (no TUN, no root needed)."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import time
from pathlib import Path

import pytest

from pywg.asyncio import Tunnel, UapiServer, uapi_server
from pywg.keys import PrivateKey


async def _ask(path: str, request: bytes) -> bytes:
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(request)
    await writer.drain()
    reply = b""
    while not reply.endswith(b"\n\n"):
        chunk = await asyncio.wait_for(reader.read(65536), 5)
        if not chunk:
            break
        reply += chunk
    writer.close()
    return reply


def _serve(tmp_path: Path) -> UapiServer:
    return UapiServer(Tunnel("pwtest0"), directory=str(tmp_path / "wireguard"))


def test_get_set_and_private_socket(tmp_path: Path) -> None:
    async def main() -> None:
        server = _serve(tmp_path)
        await server.start()
        try:
            mode = os.stat(server.directory).st_mode
            assert stat.S_IMODE(mode) == 0o700
            assert stat.S_IMODE(os.stat(server.path).st_mode) & 0o077 == 0
            assert await _ask(server.path, b"get=1\n\n") == b"errno=0\n\n"
            key = PrivateKey.generate()
            peer = PrivateKey.generate().public_key
            request = (
                f"set=1\nprivate_key={key.to_hex()}\npublic_key={peer.to_hex()}\n"
                "allowed_ip=198.19.0.2/32\n\n"
            )
            assert await _ask(server.path, request.encode()) == b"errno=0\n\n"
            reply = await _ask(server.path, b"get=1\n\n")
            assert reply.startswith(f"private_key={key.to_hex()}\n".encode())
            assert f"public_key={peer.to_hex()}\n".encode() in reply
            assert server.tunnel.device.allowed_ips(peer) == ["198.19.0.2/32"]
        finally:
            server.close()
        assert not os.path.exists(server.path)

    asyncio.run(main())


def test_garbage_gets_errno_and_never_a_partial_change(tmp_path: Path) -> None:
    async def main() -> None:
        server = _serve(tmp_path)
        await server.start()
        try:
            before = await _ask(server.path, b"get=1\n\n")
            peer = PrivateKey.generate().public_key.to_hex()
            bad = f"set=1\npublic_key={peer}\nallowed_ip=198.19.0.0/33\n\n".encode()
            assert await _ask(server.path, bad) == b"errno=-22\n\n"
            assert (await _ask(server.path, b"\xff\xfe garbage\n\n")).startswith(b"errno=-")
            assert (await _ask(server.path, b"bogus=1\n\n")).startswith(b"errno=-")
            assert await _ask(server.path, b"get=1\n\n") == before
            # many connections at once are served (or refused), never fatal
            asks = (_ask(server.path, b"get=1\n\n") for _ in range(100))
            replies = await asyncio.gather(*asks, return_exceptions=True)
            assert all(r == before or isinstance(r, OSError) for r in replies)
            assert sum(r == before for r in replies) >= 16
            assert await _ask(server.path, b"get=1\n\n") == before
        finally:
            server.close()

    asyncio.run(main())


def test_stale_socket_is_replaced_live_one_refused_and_removal_noticed(tmp_path: Path) -> None:
    async def main() -> None:
        server = _serve(tmp_path)
        os.makedirs(server.directory, mode=0o700)
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(server.path)  # bound, never listening: connect is refused
        stale.close()
        await server.start()
        try:
            assert not server.gone()
            second = UapiServer(Tunnel("pwtest0"), directory=server.directory)
            with pytest.raises(OSError, match="in use"):
                await second.start()
            assert await _ask(server.path, b"get=1\n\n") == b"errno=0\n\n"
            os.unlink(server.path)
            assert server.gone()
        finally:
            server.close()

    asyncio.run(main())


def _huge_set(peer: str, count: int) -> bytes:
    """One peer with `count` IPv6 host routes (about 50 bytes each in the get reply)."""
    lines = [f"public_key={peer}"]
    lines += [f"allowed_ip=fd19::{n >> 16:x}:{n & 0xFFFF:x}/128" for n in range(count)]
    return ("set=1\n" + "\n".join(lines) + "\n\n").encode()


def test_slow_reader_gets_a_reply_of_many_write_timeouts_in_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write timeout is for a client that stops reading, not for a big reply read slowly."""
    monkeypatch.setattr(uapi_server, "WRITE_TIMEOUT", 0.3)
    count = 20_000

    async def main() -> None:
        server = _serve(tmp_path)
        await server.start()
        try:
            peer = PrivateKey.generate().public_key.to_hex()
            assert await _ask(server.path, _huge_set(peer, count)) == b"errno=0\n\n"
            reader, writer = await asyncio.open_unix_connection(server.path, limit=1 << 16)
            writer.write(b"get=1\n\n")
            started, reply = time.monotonic(), b""
            while not reply.endswith(b"errno=0\n\n"):
                chunk = await asyncio.wait_for(reader.read(16384), 5)
                assert chunk, f"cut after {len(reply)} bytes"
                reply += chunk
                await asyncio.sleep(0.02)  # a slow reader: under 1 MB/s
            writer.close()
            assert time.monotonic() - started > 2 * uapi_server.WRITE_TIMEOUT
            assert reply.count(b"\nallowed_ip=") == count
        finally:
            server.close()

    asyncio.run(main())
