"""Shared test setup: tests/ on sys.path, what the markers mean, and the lab fixtures.

tests/ goes on sys.path, so the shared helpers import as ``helpers.x`` in any
import mode.

The markers are declared in pyproject.toml (pytest runs with
--strict-markers); what they do is here:

- ``needs_root(*programs)``: skipped unless this process is root and the
  programs named are installed.
- ``needs_lab(*programs)``: skipped unless the namespace lab (pywg.lab) can be
  built here (root, ``ip netns``, /dev/net/tun) and the programs named are
  installed; ``"pywgd"`` is the pywgd of this interpreter's environment.
  Markers on the module and on the test add up.
- ``time_limit(seconds)``: the test, with its function-scoped fixtures, fails
  with TimeoutError once that much time has passed (helpers.time_bounds).
- ``slow``: too long for the default run; runs with PYWG_SLOW_TESTS=1.

Fixtures: ``lab``, a namespace lab for one test (named after the module's
PREFIX), and ``host``, one host in it. Tests using them carry ``needs_lab``.
The mesh tests' own fixtures are in tests/mesh/conftest.py.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from helpers.time_bounds import time_limit  # noqa: E402  (needs tests/ on sys.path)
from pywg.lab import Host, Lab, unavailable_reason  # noqa: E402

DEFAULT_LAB_PREFIX = "pwl"  # for a module without a PREFIX of its own


# -- what the markers check ----------------------------------------------------------------


@functools.cache
def lab_unavailable_reason() -> str | None:
    """Why the namespace lab cannot be built here, or None if it can (checked once)."""
    reason = unavailable_reason()  # root, iproute2
    if reason is not None:
        return reason
    if not os.path.exists("/dev/net/tun"):
        return "the namespace lab needs /dev/net/tun (modprobe tun)"
    probe = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=False
    )
    if probe.returncode != 0:
        return f"`ip netns` does not work here: {probe.stderr.strip()}"
    return None


@functools.cache
def missing_program(name: str) -> str | None:
    """A skip reason if program `name` is not installed, or None."""
    from helpers.wg_nodes import missing_tools, pywgd_path

    if name != "pywgd":
        return missing_tools(name)
    try:
        pywgd_path()
    except RuntimeError as exc:
        return str(exc)
    return None


def skip_reason(item: pytest.Item) -> str | None:
    """Why `item` cannot run here according to its markers, or None."""
    if item.get_closest_marker("slow") is not None and not os.environ.get("PYWG_SLOW_TESTS"):
        return "slow: set PYWG_SLOW_TESTS=1 to run it"
    lab = list(item.iter_markers("needs_lab"))
    root = list(item.iter_markers("needs_root"))
    if lab:
        reason = lab_unavailable_reason()
    elif root:
        reason = None if os.geteuid() == 0 else "this test needs root"
    else:
        return None
    if reason is not None:
        return reason
    for name in dict.fromkeys(str(arg) for marker in lab + root for arg in marker.args):
        missing = missing_program(name)
        if missing is not None:
            return missing
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        reason = skip_reason(item)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def _time_limit(request: pytest.FixtureRequest) -> Iterator[None]:
    marker = request.node.get_closest_marker("time_limit")
    if marker is None:
        yield
        return
    with time_limit(float(marker.args[0])):
        yield


# -- the lab -------------------------------------------------------------------------------


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A namespace lab for this test, removed after it; its prefix is the module's PREFIX."""
    if request.node.get_closest_marker("needs_lab") is None:
        pytest.fail("a test using the lab fixture must be marked needs_lab")
    with Lab(getattr(request.module, "PREFIX", DEFAULT_LAB_PREFIX)) as made:
        yield made


@pytest.fixture
def host(lab: Lab) -> Host:
    """One host (a network namespace with only loopback) in this test's lab."""
    return lab.host("h")
