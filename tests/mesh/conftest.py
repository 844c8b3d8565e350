"""The mesh tests' fixtures: a coordinator, a relay and its lab, a mesh through NATs.

Their pieces are in helpers.mesh_harness; the markers and the `lab` / `host`
fixtures are tests/conftest.py's.

- ``coordinator``: ``async with coordinator(("a", "b"), **options) as running``
  starts a Coordinator (state in tmp_path, a FakeRelay) on the running event
  loop, with a Member client per name; leaving the block closes the members
  and the coordinator, whatever happened.
- ``net``: the relay tests' lab (helpers.mesh_harness.Net), one for the module,
  named after its PREFIX.
- ``relay``: ``relay(members, **options)`` runs a RelayServer on the relay host
  of ``net`` (helpers.mesh_harness.Running); ``node_socket(site)`` is a node's
  UDP socket toward it. Both are stopped or closed after the test.
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

from helpers.mesh_harness import Coordinators, Net, NodeSockets, Relays
from pywg.lab import Lab
from pywg.lab.mesh import MeshLab


@pytest.fixture
def coordinator(tmp_path: Path) -> Coordinators:
    """Coordinators with their Members, in tmp_path; closed by their `async with` block."""
    return Coordinators(tmp_path)


@pytest.fixture(scope="module")
def net(request: pytest.FixtureRequest) -> Iterator[Net]:
    """The relay tests' internet, one for the module (its lab is named after PREFIX)."""
    with Lab(request.module.PREFIX) as lab:
        yield Net(lab)


@pytest.fixture
def relay(net: Net, tmp_path: Path) -> Iterator[Relays]:
    """Starts relays on the relay host of `net`; stops them after the test."""
    with ExitStack() as stack:
        yield Relays(net, tmp_path, stack)


@pytest.fixture
def node_socket(net: Net) -> Iterator[NodeSockets]:
    """Makes nodes' UDP sockets toward the relay of `net`; closes them after the test."""
    with ExitStack() as stack:
        yield NodeSockets(net, stack)


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
    """The MeshLab with its defaults (a relay announced over IPv4)."""
    return mesh_lab()
