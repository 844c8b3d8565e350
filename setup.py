"""Build script for pywg's native extension; the package metadata is in pyproject.toml.

setuptools reads both: pyproject.toml for the project table, this file for the
cffi extension ``pywg._fast._fast_cffi`` (built from src/pywg/_fast/ by its
``make_ffibuilder``, which also generates the C header of pywg/constants.py).
Before compiling, check that a C compiler and the Python headers are there,
and say exactly what to install if not.

``PYWG_NO_NATIVE=1`` installs without the extension (pure-Python backend only).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

INSTALL_HINT = (
    "Install what is missing and retry. Debian/Ubuntu: apt install gcc python3-dev libssl-dev; "
    "Fedora: dnf install gcc python3-devel openssl-devel; "
    "Alpine: apk add gcc musl-dev python3-dev openssl-dev. "
    "Or set PYWG_NO_NATIVE=1 to install pywg without its native extension "
    "(pure-Python backend only)."
)


def _compiler_command() -> str:
    """The compiler setuptools will run: $CC if set, else Python's configured CC."""
    return os.environ.get("CC") or str(sysconfig.get_config_var("CC") or "cc")


def toolchain_problems() -> list[str]:
    """What is missing to compile a C extension for this Python (empty if nothing)."""
    problems = []
    cc = _compiler_command()
    argv = shlex.split(cc)
    if not argv or shutil.which(argv[0]) is None:
        problems.append(f"no C compiler: {cc!r} was not found on PATH")
    include_dir = Path(sysconfig.get_paths()["include"])
    if not (include_dir / "Python.h").is_file():
        problems.append(
            f"no Python headers for {sys.executable} "
            f"(Python {sys.version_info.major}.{sys.version_info.minor}): "
            f"{include_dir / 'Python.h'} does not exist"
        )
    if not _has_openssl_headers(include_dir):
        problems.append(
            "no OpenSSL headers (openssl/evp.h): the data plane's ChaCha20-Poly1305 uses libcrypto"
        )
    return problems


def _has_openssl_headers(python_include: Path) -> bool:
    """openssl/evp.h in the usual places (or under $CPATH / $C_INCLUDE_PATH)."""
    dirs = [python_include, Path("/usr/include"), Path("/usr/local/include")]
    multiarch = sysconfig.get_config_var("MULTIARCH")
    if multiarch:
        dirs.append(Path("/usr/include") / str(multiarch))
    for var in ("CPATH", "C_INCLUDE_PATH"):
        dirs += [Path(d) for d in os.environ.get(var, "").split(os.pathsep) if d]
    return any((d / "openssl" / "evp.h").is_file() for d in dirs)


class CheckedBuildExt(build_ext):
    """build_ext that first checks the toolchain, so a missing one fails clearly."""

    def run(self) -> None:
        problems = toolchain_problems()
        if problems:
            sys.exit(
                "error: pywg cannot build its native extension (pywg._fast._fast_cffi):\n  - "
                + "\n  - ".join(problems)
                + "\n"
                + INSTALL_HINT
            )
        super().run()


if os.environ.get("PYWG_NO_NATIVE", "") not in ("", "0"):
    setup()
else:
    setup(
        cffi_modules=["src/pywg/_fast/build_fast.py:make_ffibuilder"],
        cmdclass={"build_ext": CheckedBuildExt},
    )
