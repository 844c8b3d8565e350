"""The coordinator probed as an attacker would, honest members polling meanwhile.

Each test is one finding of docs/mesh.md, "Facing the internet": what a
client can make the coordinator log, what it tells before authentication,
how many wrong tokens, connections and idle or slow seconds it grants one
source address. Everything runs on the loopback of a lab host (in this
process); the attacker speaks from 127.0.0.2, the honest members from
127.0.0.1, so that the per-source limits of one do not fall on the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from nacl.signing import SigningKey

from helpers.mesh_harness import V4, V6, Coordinators, Member
from pywg.lab import Host
from pywg.mesh import auth
from pywg.mesh.client import CoordinatorError
from pywg.mesh.coordinator import NOT_AUTHENTICATED
from pywg.mesh.limits import Limits
from pywg.metrics.coordinator import CoordinatorCollector

pytestmark = [pytest.mark.needs_lab, pytest.mark.time_limit(40)]

PREFIX = "pwh"  # of the `host` fixture's lab
ATTACKER = "127.0.0.2"


def run_in(host: Host, scenario: Callable[[], Awaitable[None]]) -> None:
    """Run `scenario` on an event loop inside the host's namespace, bounded in time."""
    host.ip("link", "set", "lo", "up")
    host.call(lambda: asyncio.run(asyncio.wait_for(scenario(), 35)))


def now_ms() -> int:
    return int(time.time() * 1000)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw connection to the coordinator from the attacker's address."""
    return await asyncio.open_connection("127.0.0.1", port_of(url), local_addr=(ATTACKER, 0))


def stranger_authorization(path: str, body: bytes, method: str = "POST") -> str:
    """A well-formed Authorization by a key that is no member."""
    key = SigningKey.generate()
    node = auth.b64(bytes(SigningKey.generate().verify_key.encode()))
    return auth.sign_request(key, node, method, path, body, now_ms())[0]


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Whether the server closes the connection (reading to its end) within `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def request(
    session: aiohttp.ClientSession, url: str, path: str, body: bytes, authorization: str
) -> tuple[int, dict[str, Any], Any]:
    headers = {"Authorization": authorization, "Content-Type": "application/json"}
    method = "POST" if body else "GET"
    async with session.request(method, url + path, data=body, headers=headers) as response:
        return response.status, json.loads(await response.read()), response.headers


def join_body(token: str, member: Member, routes: list[str] | None = None) -> bytes:
    return json.dumps(
        {
            "token": token,
            "name": member.name,
            "public_key": member.public_b64,
            "control_key": member.control_b64,
            "routes": routes or [],
        }
    ).encode()


def signed(member: Member, method: str, path: str, body: bytes = b"") -> str:
    return auth.sign_request(member.control, member.public_b64, method, path, body, now_ms())[0]


# -- log amplification -------------------------------------------------------------------------


def test_client_faults_are_logged_briefly_and_rarely(
    host: Host, coordinator: Coordinators, caplog: pytest.LogCaptureFixture
) -> None:
    """Resets mid-body, a chunked body that is not one, a request line of junk: no
    traceback, no long line, and few lines for many faults (aiohttp's loggers included)."""
    caplog.set_level(logging.INFO)

    async def reset_mid_body(url: str) -> None:
        body = b"{" * 100
        head = (
            "POST /v1/join HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
            f"Authorization: {stranger_authorization('/v1/join', body)}\r\n\r\n"
        ).encode()
        _, writer = await connect(url)
        writer.write(head + body)
        await writer.drain()
        await asyncio.sleep(0.02)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST

    async def junk(url: str, data: bytes) -> None:
        reader, writer = await connect(url)
        writer.write(data)
        await writer.drain()
        await closed_within(reader, 5)
        writer.close()

    async def scenario() -> None:
        async with coordinator(("m",)) as running:
            (member,) = running.members
            await running.join(member)
            for _ in range(100):
                await reset_mid_body(running.url)
            chunked = b"POST /v1/join HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            for data in (
                chunked + b"\xff" * 60_000 + b"\r\n",
                b"GET /" + b"\xff" * 7000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX: " + b"\x01" * 8000 + b"\r\n\r\n",
            ):
                for _ in range(20):
                    await junk(running.url, data)
            await asyncio.sleep(0.5)  # the resets reach the handlers
            assert (await member.roster(0, 0))["self"]["name"] == "m"  # unharmed

    run_in(host, scenario)
    records = [r for r in caplog.records if r.levelno >= logging.INFO]
    text = "\n".join(caplog.text.splitlines())
    assert "Traceback" not in text
    assert all(r.exc_info is None for r in records)
    assert max((len(r.getMessage()) for r in records), default=0) <= 400
    # 160 faults, one line each at most, of which the first 20 and then one a second
    assert len(records) <= 40, [r.getMessage() for r in records]
    assert len(text) <= 40 * 400


# -- information before authentication -----------------------------------------------------------


def test_nothing_is_told_before_authentication(host: Host, coordinator: Coordinators) -> None:
    async def scenario() -> None:
        async with coordinator(("m", "new")) as running, aiohttp.ClientSession() as session:
            coord, url = running.coordinator, running.url
            member, newcomer = running.members
            token = await running.join(member)
            wrong = "A" * 32 + "." + token.split(".")[1]  # this coordinator's, unknown secret
            # a wrong token with routes in the mesh's own network: refused for the token
            body = join_body(wrong, newcomer, routes=["198.19.5.0/25"])
            status, data, headers = await request(
                session, url, "/v1/join", body, signed(newcomer, "POST", "/v1/join", body)
            )
            assert status == 401 and "token" in data["error"]
            assert V4.split("/")[0] not in data["error"] and "overlap" not in data["error"]
            # the token first: also before the signature
            status, data, _ = await request(
                session, url, "/v1/join", body, stranger_authorization("/v1/join", body)
            )
            assert status == 401 and "token" in data["error"]
            # the health check tells no node count
            async with session.get(url + "/v1/health") as response:
                assert await response.json() == {"ok": True}
            # an unknown key and a member's key with a bad signature: one answer, unsigned
            stranger = stranger_authorization("/v1/roster", b"", "GET")
            forged = auth.sign_request(
                SigningKey.generate(), member.public_b64, "GET", "/v1/roster", b"", now_ms()
            )[0]
            answers = []
            for authorization in (stranger, forged):
                status, data, headers = await request(
                    session, url, "/v1/roster", b"", authorization
                )
                assert status == 401 and auth.SIGNATURE_HEADER not in headers
                assert headers[auth.COORDINATOR_KEY_HEADER] == auth.b64(coord.public_key)
                answers.append(data)
            assert answers[0] == answers[1] == {"error": NOT_AUTHENTICATED}
            # a member's own requests are answered signed, as ever
            roster = await member.roster(0, 0)
            assert roster["network"] == {"ipv4": V4, "ipv6": V6}

    run_in(host, scenario)


# -- limits ---------------------------------------------------------------------------------------


def test_wrong_tokens_meet_the_limit(host: Host, coordinator: Coordinators) -> None:
    """10,000 wrong join tokens from one address: after the burst every one is 429, at once;
    a member at another address polls on unhindered."""
    limits = Limits(refusal_burst=20, refusals_per_second=2.0)

    async def guess(
        session: aiohttp.ClientSession, url: str, body: bytes, count: int
    ) -> Counter[int]:
        statuses: Counter[int] = Counter()
        headers = {"Authorization": stranger_authorization("/v1/join", body)}
        for _ in range(count):
            async with session.post(url + "/v1/join", data=body, headers=headers) as response:
                await response.read()
                statuses[response.status] += 1
                if response.status == 429:
                    assert int(response.headers["Retry-After"]) >= 1
        return statuses

    async def poll(member: Member, stop: asyncio.Event) -> int:
        polls = 0
        while not stop.is_set():
            await member.roster(0, 0)
            polls += 1
            await asyncio.sleep(0.05)
        return polls

    async def scenario() -> None:
        async with coordinator(("m", "x"), limits=limits) as running:
            member, guesser = running.members
            token = await running.join(member)
            body = join_body("B" * 32 + "." + token.split(".")[1], guesser)
            stop = asyncio.Event()
            polling = asyncio.create_task(poll(member, stop))
            connector = aiohttp.TCPConnector(local_addr=(ATTACKER, 0), limit=16)
            started = time.monotonic()
            async with aiohttp.ClientSession(connector=connector) as session:
                parts = await asyncio.gather(
                    *(guess(session, running.url, body, 625) for _ in range(16))
                )
            elapsed = time.monotonic() - started
            stop.set()
            assert await polling > 0
            statuses = sum(parts, Counter())
            assert sum(statuses.values()) == 10_000
            assert set(statuses) == {401, 429}
            # the burst, what came in with it on the other connections, and the refill
            assert statuses[401] <= 20 + 16 + 2 * elapsed + 2, (statuses, elapsed)
            assert elapsed < 25
            assert [n.name for n in running.coordinator.store.nodes()] == ["m"]
            # the member was never limited
            with pytest.raises(CoordinatorError) as refused:
                await guesser.join("C" * 32 + "." + token.split(".")[1])
            assert refused.value.status == 401  # a refusal from 127.0.0.1: not limited

    run_in(host, scenario)


def test_connections_idle_and_slow_clients_are_bounded(
    host: Host, coordinator: Coordinators
) -> None:
    limits = Limits(connections_per_source=8, idle_timeout=1.0, body_timeout=0.5)

    async def trickle(
        writer: asyncio.StreamWriter, data: bytes, reader: asyncio.StreamReader
    ) -> float:
        """Send `data` a byte every 0.1 s; the seconds until the server closed on it."""

        async def send() -> None:
            for byte in data:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.1)

        started = time.monotonic()
        sending = asyncio.create_task(send())
        closed = await closed_within(reader, 4)
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sending
        assert closed
        return time.monotonic() - started

    async def scenario() -> None:
        async with coordinator(("m",), limits=limits) as running:
            (member,) = running.members
            await running.join(member)
            version = (await member.roster(0, 0))["version"]
            # a member's long poll outlasts the idle timeout (it is an answer being made)
            started = time.monotonic()
            long_poll = asyncio.create_task(member.roster(version, 2))
            idle = [await connect(running.url) for _ in range(8)]
            extra_reader, extra_writer = await connect(running.url)
            assert await closed_within(extra_reader, 0.3)  # the ninth: reset at once
            collected = CoordinatorCollector(lambda: running.coordinator).collect()
            (reset,) = [m for m in collected if m.name == "pywg_coordinator_connections_reset"]
            assert reset.samples[0].value == 1  # in the metrics, too
            for reader, writer in idle:  # idle: closed after the idle timeout
                assert await closed_within(reader, 2.5)
                writer.close()
            extra_writer.close()
            # headers that never end, a body that never ends
            reader, writer = await connect(running.url)
            header_seconds = await trickle(
                writer, b"GET /v1/health HTTP/1.1\r\nX: " + b"y" * 60, reader
            )
            writer.close()
            body = b"{" * 60
            head = (
                "POST /v1/update HTTP/1.1\r\nHost: x\r\nContent-Length: 60\r\n"
                f"Authorization: {signed(member, 'POST', '/v1/update', body)}\r\n\r\n"
            ).encode()
            reader, writer = await connect(running.url)
            writer.write(head)
            body_seconds = await trickle(writer, body, reader)
            writer.close()
            assert header_seconds < 2 and body_seconds < 2.5
            roster = await long_poll
            assert roster["version"] == version and time.monotonic() - started >= 2

    run_in(host, scenario)
