"""What the mesh tests run their coordinator and relay in, and play their nodes with.

tests/mesh/conftest.py builds its fixtures from these; the test files import
the types (and the constants their assertions name) from here.

- The coordinator (pywg.mesh.coordinator) runs in this process, on the test's
  event loop, with a :class:`FakeRelay` unless told otherwise;
  :func:`serve_coordinator` starts it with :class:`Member` clients and closes
  all of them on the way out. The mesh networks are :data:`V4` and :data:`V6`.
- The relay (pywg.mesh.relay) runs in :class:`Running`: its own event loop on a
  thread, inside a lab host's namespace, in the lab of :class:`Net` (a relay
  host, a public host, a node behind an endpoint-independent NAT and one
  behind a symmetric NAT). :class:`NodeSocket` plays a node's WireGuard socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from contextlib import AbstractAsyncContextManager, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from nacl.signing import SigningKey

from pywg import stun
from pywg.endpoint import parse_endpoint
from pywg.keys import PrivateKey
from pywg.lab import Host, Internet, Lab, Site
from pywg.mesh import auth, wire
from pywg.mesh.client import CoordinatorClient
from pywg.mesh.coordinator import Coordinator, RelayConfig
from pywg.mesh.relay import RelayServer

T = TypeVar("T")

# -- the coordinator -----------------------------------------------------------------------

V4 = "198.19.5.0/24"  # the mesh networks of the coordinator tests
V6 = "fd19:5::/64"
RELAY_HOST = "198.18.9.2"  # where the coordinator tells nodes its relay is


class FakeRelay:
    """RelayServer's interface, in memory: pair ports counted up from 40000."""

    def __init__(
        self,
        db_path: str,
        host: str,
        port: int,
        *,
        members: Callable[[bytes], bytes | None],
        port_range: tuple[int, int] | None = None,
    ) -> None:
        self.db_path = db_path
        self.members = members
        self.pairs: dict[tuple[bytes, bytes], tuple[int, int]] = {}
        self.removed: list[bytes] = []
        self.started = self.closed = False
        self._next = 40000

    @property
    def port(self) -> int:
        return 3478

    async def start(self) -> None:
        self.started = True

    def close(self) -> None:
        self.closed = True

    def ensure_pair(self, a: bytes, b: bytes) -> tuple[int, int]:
        if (b, a) in self.pairs:
            back, forth = self.pairs[(b, a)]
            return forth, back
        if (a, b) not in self.pairs:
            self.pairs[(a, b)] = (self._next, self._next + 1)
            self._next += 2
        return self.pairs[(a, b)]

    def remove_node(self, key: bytes) -> None:
        self.removed.append(key)

    def stats(self) -> dict[str, int]:
        return {"pairs": len(self.pairs)}


def make_coordinator(state: str, **options: Any) -> Coordinator:
    """A Coordinator on `state`: networks V4 and V6 and a FakeRelay unless `options` say else."""
    options.setdefault("ipv4", V4)
    options.setdefault("ipv6", V6)
    options.setdefault("relay", RelayConfig(RELAY_HOST, "127.0.0.1", 0, factory=FakeRelay))
    return Coordinator(state, **options)


@dataclass
class Member:
    """A node as the coordinator sees it: its keys and a CoordinatorClient (closed with it)."""

    name: str
    url: str
    wg: PrivateKey = field(default_factory=PrivateKey.generate)
    control: SigningKey = field(default_factory=SigningKey.generate)
    client: CoordinatorClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = CoordinatorClient(self.url, self.public_b64, self.control)

    async def __aenter__(self) -> Member:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()

    @property
    def public_b64(self) -> str:
        return self.wg.public_key.to_base64()

    @property
    def public_raw(self) -> bytes:
        return auth.unb64(self.public_b64, 32)

    @property
    def control_b64(self) -> str:
        return auth.b64(bytes(self.control.verify_key.encode()))

    async def join(self, token: str, routes: list[str] | None = None) -> dict[str, Any]:
        """Join; the answer as it came on the wire (JSON)."""
        return (await self.client.join(token, self.name, routes or [])).to_json()

    async def roster(self, since: int, wait: float) -> dict[str, Any]:
        """The roster as it came on the wire (JSON)."""
        return (await self.client.roster(since, wait)).to_json()

    async def update(self, endpoints: list[str], routes: list[str]) -> int:
        return await self.client.update([parse_endpoint(e) for e in endpoints], routes)


class RunningCoordinator:
    """A Coordinator serving on 127.0.0.1, its URL, and Members of it (not joined yet)."""

    def __init__(self, state: str, options: dict[str, Any]) -> None:
        self.state = state
        self.options = options
        self.coordinator = make_coordinator(state, **options)
        self.url = ""
        self.members: tuple[Member, ...] = ()

    @property
    def fake_relay(self) -> FakeRelay:
        """The coordinator's relay, when it is the FakeRelay."""
        relay = self.coordinator.relay
        assert isinstance(relay, FakeRelay), relay
        return relay

    async def start(self, port: int = 0) -> int:
        """Start the coordinator on 127.0.0.1:`port` (0: any); the port it listens on."""
        port = await self.coordinator.start("127.0.0.1", port)
        scheme = "https" if self.coordinator.certificate is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{port}"
        return port

    async def restart(self, port: int = 0) -> int:
        """Close the coordinator and start another on the same state and options."""
        await self.coordinator.close()
        self.coordinator = make_coordinator(self.state, **self.options)
        return await self.start(port)

    async def join(self, *members: Member) -> str:
        """A reusable token (600 s), and `members` joined with it (no routes); the token."""
        token = self.coordinator.new_token(600, reusable=True)
        for member in members:
            await member.join(token)
        return token

    async def close(self) -> None:
        await self.coordinator.close()


@contextlib.asynccontextmanager
async def serve_coordinator(
    state: str, members: Iterable[str] = (), **options: Any
) -> AsyncIterator[RunningCoordinator]:
    """A RunningCoordinator with a Member for each name; all closed on the way out."""
    async with contextlib.AsyncExitStack() as stack:
        running = RunningCoordinator(state, options)
        stack.push_async_callback(running.close)  # whichever coordinator runs by then
        await running.start()
        made = []
        for name in members:
            member = Member(name, running.url)
            stack.push_async_callback(member.client.close)
            made.append(member)
        running.members = tuple(made)
        yield running


@dataclass(frozen=True)
class Coordinators:
    """The `coordinator` fixture: ``async with coordinator(("a", "b"), **options) as running``.

    The state directory is the test's tmp_path unless `state` names another;
    `options` go to the Coordinator (over make_coordinator's defaults).
    """

    tmp_path: Path

    def __call__(
        self, members: Iterable[str] = (), *, state: str | Path | None = None, **options: Any
    ) -> AbstractAsyncContextManager[RunningCoordinator]:
        return serve_coordinator(str(state or self.tmp_path), members, **options)


# -- the relay -----------------------------------------------------------------------------

T0 = 1_700_000_000_000  # the relay's (fake) clock at start, ms since the epoch
SILENCE = 0.25  # seconds to wait for an answer that must not come


class Net:
    """The relay tests' internet: the relay and `pub` public, `na` and `nb` behind NATs."""

    def __init__(self, lab: Lab) -> None:
        internet = Internet(lab)
        self.lab = lab
        self.relay = internet.public("rly")
        self.pub = internet.public("pub")
        self.na = internet.behind_nat("na", "endpoint-independent")
        self.nb = internet.behind_nat("nb", "symmetric")


class Clock:
    """The relay's wall clock (ms), set by the test; it starts at T0."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


class Running:
    """A RelayServer on its own event loop thread (in `host`'s namespace unless `factory`)."""

    def __init__(
        self,
        host: Host,
        db: Path,
        members: Callable[[bytes], bytes | None],
        *,
        port: int = 0,
        port_range: tuple[int, int] | None = None,
        clock: Callable[[], int] | None = None,
        factory: bool = False,
        address: str = "::",
    ) -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(ready.set)
            self.loop.run_forever()

        if factory:  # the loop here, only the sockets in the namespace
            self.thread = threading.Thread(target=serve, daemon=True)
        else:  # the loop's thread in the namespace: plain socket.socket() lands there
            self.thread = threading.Thread(target=lambda: host.call(serve), daemon=True)
        self.thread.start()
        assert ready.wait(10)
        kwargs: dict[str, Any] = {"port_range": port_range}
        if clock is not None:
            kwargs["clock_ms"] = clock
        if factory:
            kwargs["socket_factory"] = host.socket
        self.relay = RelayServer(str(db), address, port, members=members, **kwargs)
        try:
            self.run(self.relay.start())
        except BaseException:
            self.stop()
            raise

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def call(self, function: Callable[[], T]) -> T:
        async def wrapper() -> T:
            return function()

        return self.run(wrapper())

    def stats(self) -> dict[str, int]:
        return self.call(self.relay.stats)

    def wait_stats(self, **want: int) -> dict[str, int]:
        deadline = time.monotonic() + 5
        while True:
            stats = self.stats()
            if all(stats[k] == v for k, v in want.items()) or time.monotonic() > deadline:
                assert {k: stats[k] for k in want} == want, stats
                return stats
            time.sleep(0.01)

    def stop(self) -> None:
        """Close the relay and end its loop; once more does nothing."""
        if self.loop.is_running():
            self.call(self.relay.close)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Relays:
    """The `relay` fixture: ``relay(members, **options)`` starts a Running on the relay host.

    The database is r.db in the test's tmp_path unless `db` names another;
    `options` are Running's. Whatever it started is stopped after the test.
    """

    def __init__(self, net: Net, tmp_path: Path, stack: ExitStack) -> None:
        self.net = net
        self.tmp_path = tmp_path
        self.stack = stack

    def __call__(
        self, members: Callable[[bytes], bytes | None], *, db: Path | None = None, **options: Any
    ) -> Running:
        running = Running(self.net.relay.host, db or self.tmp_path / "r.db", members, **options)
        self.stack.callback(running.stop)
        return running


class NodeSocket:
    """A mesh node's WireGuard socket, on its lab host, talking to the relay at `relay4`."""

    def __init__(self, site: Site, relay4: str, key: bytes | None = None) -> None:
        self.site = site
        self.relay4 = relay4
        self.key = key if key is not None else os.urandom(32)
        self.control = SigningKey.generate()
        self.sock = site.host.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((site.addr4, 0))
        self.sock.settimeout(3)

    def bind(
        self,
        port: int,
        time_ms: int,
        *,
        sign_for: int | None = None,
        control: SigningKey | None = None,
        key: bytes | None = None,
    ) -> bytes:
        """Send a bind for `port` (signed as told); the request sent."""
        request = wire.bind_request(
            stun.new_transaction_id(),
            key if key is not None else self.key,
            control if control is not None else self.control,
            sign_for if sign_for is not None else port,
            time_ms,
        )
        self.send(request, port)
        return request

    def bound(self, port: int, time_ms: int) -> tuple[str, int]:
        """Bind `port` and wait for its answer: the mapping the relay saw."""
        request = self.bind(port, time_ms)
        data, source = self.sock.recvfrom(2048)
        assert source == (self.relay4, port)
        answer = stun.parse_binding_response(data)
        assert answer.transaction_id == request[8:20]
        return answer.mapped

    def send(self, data: bytes, port: int) -> None:
        self.sock.sendto(data, (self.relay4, port))

    def recv(self) -> tuple[bytes, tuple[str, int]]:
        data, source = self.sock.recvfrom(70000)
        return data, source

    def silent(self) -> None:
        """Nothing arrives within SILENCE seconds."""
        self.sock.settimeout(SILENCE)
        try:
            with pytest.raises(TimeoutError):
                data, source = self.sock.recvfrom(70000)
                print("unexpected datagram of", len(data), "bytes from", source)
        finally:
            self.sock.settimeout(3)

    def close(self) -> None:
        self.sock.close()


class NodeSockets:
    """The `node_socket` fixture: ``node_socket(site, key=None)``, closed after the test."""

    def __init__(self, net: Net, stack: ExitStack) -> None:
        self.net = net
        self.stack = stack

    def __call__(self, site: Site, key: bytes | None = None) -> NodeSocket:
        node = NodeSocket(site, self.net.relay.addr4, key)
        self.stack.callback(node.close)
        return node


def members_of(*nodes: NodeSocket) -> Callable[[bytes], bytes | None]:
    """The relay's member lookup for these nodes: WireGuard key -> control key."""
    table = {n.key: n.control.verify_key.encode() for n in nodes}
    return table.get
