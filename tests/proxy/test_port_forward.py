"""Port forwards (pywg.proxy.forward): the spec's syntax, and bytes both ways with half-close."""

from __future__ import annotations

import asyncio

import pytest

from pywg.proxy import ForwardSpec, KernelNetwork, PortForward, parse_forward

pytestmark = pytest.mark.time_limit(10)


def test_parse_forward() -> None:
    assert parse_forward("8080=127.0.0.1:80") == ForwardSpec(8080, "127.0.0.1", 80)
    assert parse_forward("22=[::1]:2222") == ForwardSpec(22, "::1", 2222)
    assert parse_forward("443=nas.local:8443") == ForwardSpec(443, "nas.local", 8443)
    assert str(ForwardSpec(22, "::1", 2222)) == "22=[::1]:2222"
    for bad in (
        "80",
        "80=",
        "x=h:1",
        "0=h:1",
        "70000=h:1",
        "80=h",
        "80=h:0",
        "80=::1:22",
        "80=h:x",
    ):
        with pytest.raises(ValueError, match="PORT=HOST:PORT"):
            parse_forward(bad)


def test_forward_carries_both_ways_until_half_close() -> None:
    async def body() -> None:
        async def service(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            data = await reader.read()  # to the client's end of file
            writer.write(data[::-1])
            writer.close()

        target = await asyncio.start_server(service, "127.0.0.1", 0)
        target_port = target.sockets[0].getsockname()[1]
        forward = PortForward(ForwardSpec(0, "127.0.0.1", target_port), KernelNetwork())
        listener = await forward.start_forward(KernelNetwork("127.0.0.1"))
        port = listener.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        payload = bytes(range(256)) * 1000
        writer.write(payload)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 3) == payload[::-1]
        writer.close()
        await forward.close()
        target.close()

    asyncio.run(body())
