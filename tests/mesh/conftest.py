"""The mesh tests' fixtures: a coordinator, a mesh through NATs.

Their pieces are in helpers.mesh_harness; the markers and the `lab` / `host`
fixtures are tests/conftest.py's.

- ``coordinator``: ``async with coordinator(("a", "b"), **options) as running``
  starts a Coordinator (state in tmp_path) on the running event loop, with a
  Member client per name; leaving the block closes the members and the
  coordinator, whatever happened.
- ``mesh_lab``: ``mesh_lab(**options)`` builds pywg.lab.mesh.MeshLab (`pywg
  coordinator` and `pywg join` processes) in the test's ``lab``; ``mesh`` is
  ``mesh_lab()``. Closed after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from helpers.mesh_harness import Coordinators
from pywg.lab import Lab
from pywg.lab.mesh import MeshLab


@pytest.fixture
def coordinator(tmp_path: Path) -> Coordinators:
    """Coordinators with their Members, in tmp_path; closed by their `async with` block."""
    return Coordinators(tmp_path)


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
