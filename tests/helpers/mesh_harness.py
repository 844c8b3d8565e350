"""What the mesh tests run their coordinator in, and play their nodes with.

tests/mesh/conftest.py builds its fixtures from these; the test files import
the types (and the constants their assertions name) from here.

The coordinator (pywg.mesh.coordinator) runs in this process, on the test's
event loop, without a relay of its own unless told otherwise (``relay=``, an
`OwnRelay`: a child process); :func:`serve_coordinator` starts it with
:class:`Member` clients and closes all of them on the way out. The mesh
networks are :data:`V4` and :data:`V6`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from pywg.endpoint import parse_endpoint
from pywg.keys import PrivateKey
from pywg.mesh import auth
from pywg.mesh.client import CoordinatorClient
from pywg.mesh.coordinator import Coordinator

# -- the coordinator -----------------------------------------------------------------------

V4 = "198.19.5.0/24"  # the mesh networks of the coordinator tests
V6 = "fd19:5::/64"


def make_coordinator(state: str, **options: Any) -> Coordinator:
    """A Coordinator on `state`: networks V4 and V6 unless `options` say else."""
    options.setdefault("ipv4", V4)
    options.setdefault("ipv6", V6)
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
    `options` go to the Coordinator (over make_coordinator's defaults). With
    `new_database` (a PostgreSQL URL maker) each state directory, a mesh, has
    its own database (`databases`), unless the options name one.
    """

    tmp_path: Path
    new_database: Callable[[], str] | None = None
    databases: dict[str, str] = field(default_factory=dict)

    def database(self, state: str | Path | None = None) -> str | None:
        """The database of the mesh in `state` (default tmp_path): None on SQLite."""
        if self.new_database is None:
            return None
        key = str(state or self.tmp_path)
        if key not in self.databases:
            self.databases[key] = self.new_database()
        return self.databases[key]

    def __call__(
        self, members: Iterable[str] = (), *, state: str | Path | None = None, **options: Any
    ) -> AbstractAsyncContextManager[RunningCoordinator]:
        options.setdefault("database", self.database(state))
        return serve_coordinator(str(state or self.tmp_path), members, **options)
