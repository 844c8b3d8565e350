"""Project-wide checks that run with the suite: typing, lint, and the pure backend.

mypy --strict and ruff are part of the test command, so CI cannot go green
with a type error or a lint failure. The core's behavioural tests run a
second time with PYWG_BACKEND=pure, so both backends are exercised.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env, check=False
    )


@pytest.mark.skipif(shutil.which("mypy") is None, reason="mypy not installed")
def test_mypy_strict() -> None:
    result = _run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed")
def test_ruff_lint_and_format() -> None:
    lint = _run("ruff", "check", ".")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = _run("ruff", "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


@pytest.mark.skipif(
    os.environ.get("PYWG_BACKEND") == "pure", reason="already running on the pure backend"
)
def test_core_suite_on_pure_backend() -> None:
    env = dict(os.environ, PYWG_BACKEND="pure")
    chosen = _run(sys.executable, "-c", "from pywg.backend import BACKEND; print(BACKEND)", env=env)
    assert chosen.stdout.strip() == "pure", chosen.stderr
    result = _run(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/core/test_device.py",
        "tests/core/test_timers.py",
        "tests/core/test_wireguard_capture.py",
        "tests/core/test_fuzz_device.py",
        "tests/core/test_flood.py",
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
