"""The public surface: what `import pywg` and `pywg.asyncio` export, and the commands.

Each exported name is the object the README documents, defined in the module
named here, so a re-export cannot drift to a copy or a different class. The
entry points in pyproject.toml resolve to callables; `python3 -m pywg --help`
works; `pywgd --help` is refused with wireguard-go's usage line and touches
nothing. (`pywgd --version` and the other usage errors are checked against a
live daemon in tests/tunnel/test_wg_tools.py.)
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import pywg
import pywg.asyncio

# name -> the module that defines it (README, "The protocol core")
PYWG_API = {
    "DEFAULT_MTU": "pywg.constants",
    "Device": "pywg.device",
    "Peer": "pywg.peer",
    "PrivateKey": "pywg.keys",
    "PublicKey": "pywg.keys",
    "PresharedKey": "pywg.keys",
    "Event": "pywg.events",
    "HandshakeCompleted": "pywg.events",
    "EndpointChanged": "pywg.events",
    "HandshakeTimedOut": "pywg.events",
    "SessionsExpired": "pywg.events",
    "WireGuardError": "pywg.exceptions",
    "LocalProtocolError": "pywg.exceptions",
    "RemoteProtocolError": "pywg.exceptions",
    "DecryptionError": "pywg.exceptions",
    "__version__": "pywg",
}

# name -> the module that defines it (README, "The library: pywg.asyncio.Tunnel")
ASYNCIO_API = {
    "Tunnel": "pywg.asyncio.tunnel",
    "PeerStats": "pywg.asyncio.tunnel",
    "run": "pywg.asyncio",
    "UapiServer": "pywg.asyncio.uapi_server",
    "socket_path": "pywg.asyncio.uapi_server",
    "SOCKET_DIR": "pywg.asyncio.uapi_server",
    "Tun": "pywg.asyncio.tun",
    "TunError": "pywg.asyncio.tun",
}


@pytest.fixture(scope="module")
def pyproject(repo_root: Path) -> dict[str, Any]:
    with (repo_root / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def _resolve(reference: str) -> Callable[..., Any]:
    """An entry point's 'module:attribute' -> the object, imported."""
    module, _, attribute = reference.partition(":")
    obj: Callable[..., Any] = getattr(importlib.import_module(module), attribute)
    return obj


@pytest.mark.parametrize(
    ("package", "documented"), [(pywg, PYWG_API), (pywg.asyncio, ASYNCIO_API)], ids=str
)
def test_exports_are_the_documented_objects(package: Any, documented: dict[str, str]) -> None:
    assert sorted(package.__all__) == sorted(documented)
    star: dict[str, Any] = {}
    exec(f"from {package.__name__} import *", star)
    for name, home in documented.items():
        obj = getattr(package, name)
        assert star[name] is obj, name
        assert getattr(importlib.import_module(home), name) is obj, f"{name} is not {home}'s"
        if callable(obj):
            assert obj.__module__ == home, f"{name} is defined in {obj.__module__}, not {home}"


def test_version_is_the_package_version(pyproject: dict[str, Any]) -> None:
    assert pywg.__version__ == pyproject["project"]["version"]


def test_entry_points_resolve_to_callables(pyproject: dict[str, Any]) -> None:
    scripts = pyproject["project"]["scripts"]
    assert set(scripts) == {"pywg", "pywgd"}
    for name, reference in scripts.items():
        assert callable(_resolve(reference)), f"{name} = {reference!r} is not callable"


def test_python_m_pywg_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pywg", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: pywg") and done.stderr == ""


def test_pywgd_help_is_a_usage_error(
    pyproject: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As wireguard-go takes only [-f/--foreground] INTERFACE-NAME, `--help` is no interface."""
    main = _resolve(pyproject["project"]["scripts"]["pywgd"])
    monkeypatch.setattr(sys, "argv", ["pywgd", "--help"])  # as the console script calls it
    assert main() != 0
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "Usage: pywgd [-f/--foreground] INTERFACE-NAME\n"
