"""The mesh tests' fixtures: a coordinator, a mesh through NATs.

Their pieces are in helpers.mesh_harness; the markers and the `lab` / `host`
fixtures are tests/conftest.py's.

- ``coordinator``: ``async with coordinator(("a", "b"), **options) as running``
  starts a Coordinator (state in tmp_path) on the running event loop, with a
  Member client per name; leaving the block closes the members and the
  coordinator, whatever happened.
- ``postgres``: a PostgreSQL server for the session (helpers.postgres; the tests
  that ask for it skip, saying why, where there is none); ``postgres_url`` a
  fresh database on it for one test; ``database``: None (SQLite) and then a
  ``postgres_url``, for the tests that run on both stores.
- ``mesh_lab``: ``mesh_lab(**options)`` builds pywg.lab.mesh.MeshLab (`pywg
  coordinator` and `pywg join` processes) in the test's ``lab``; ``mesh`` is
  ``mesh_lab()``. Closed after the test.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from helpers import postgres as pg
from helpers.mesh_harness import Coordinators
from pywg.lab import Lab
from pywg.lab.mesh import MeshLab


@pytest.fixture
def coordinator(tmp_path: Path) -> Coordinators:
    """Coordinators with their Members, in tmp_path; closed by their `async with` block."""
    return Coordinators(tmp_path)


@pytest.fixture(scope="session")
def postgres() -> Iterator[pg.PostgresServer]:
    """A PostgreSQL server in a temporary directory, for the whole session."""
    why = pg.unavailable()
    if why is not None:
        pytest.skip(f"no PostgreSQL: {why}")
    directory = tempfile.mkdtemp(prefix="pywg-pg-")  # not under pytest's root-only 0700 tree
    server = pg.PostgresServer.start(Path(directory))
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres: pg.PostgresServer) -> str:
    """A new, empty database on the session's server."""
    return postgres.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str | None:
    """The store's database: None (SQLite in the state directory), then a PostgreSQL URL."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def mesh_lab(lab: Lab, tmp_path: Path) -> Iterator[Callable[..., MeshLab]]:
    """Builds the MeshLab of this test (one a test) in `lab`; closes it after the test."""
    with ExitStack() as stack:

        def build(**options: Any) -> MeshLab:
            assert not built, "one MeshLab a test: its hosts take the lab's names"
            mesh = MeshLab(lab, tmp_path, **options)
            built.append(mesh)
            stack.callback(mesh.close)
            return mesh

        built: list[MeshLab] = []
        yield build


@pytest.fixture
def mesh(mesh_lab: Callable[..., MeshLab]) -> MeshLab:
    """The MeshLab with its defaults (the coordinator's own relay, announced over IPv4)."""
    return mesh_lab()
