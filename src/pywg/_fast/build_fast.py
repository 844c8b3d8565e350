"""cffi builder for ``pywg._fast._fast_cffi``, the native data plane.

Out-of-line API mode: cffi writes a C wrapper that ``#include``s our headers
and is compiled together with the C sources listed in ``SOURCES`` into one
extension module. setup.py wires it in with
``cffi_modules=["src/pywg/_fast/build_fast.py:ffibuilder"]``.

The cdef is read from the headers themselves, between ``/* cdef-begin */``
and ``/* cdef-end */``, so the declarations live in exactly one place.

To add a component: put ``foo.h`` (with cdef markers) and ``foo.c`` here and
append ``"foo"`` to ``COMPONENTS``; add libraries (e.g. ``crypto``) to
``LIBRARIES``.

Run directly (``python src/pywg/_fast/build_fast.py``) to build the extension
in place next to this file, for development without pip.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from cffi import FFI

MODULE_NAME = "pywg._fast._fast_cffi"
HERE = Path(__file__).resolve().parent
# One .h/.c pair per concern; each .h holds a cdef-marked block.
COMPONENTS: tuple[str, ...] = ("replay", "lpm", "aead", "blake2s", "xaead", "offload", "plane")
LIBRARIES: list[str] = ["crypto"]  # OpenSSL libcrypto, for aead.c
# Python's own CFLAGS already give -O3 -Wall; gnu11 for the Linux APIs to come.
EXTRA_COMPILE_ARGS = ["-std=gnu11", "-Wno-unused-parameter"]

_CDEF_BLOCK = re.compile(r"/\* cdef-begin \*/\n(.*?)/\* cdef-end \*/", re.DOTALL)


def _cdef_from_header(header: Path) -> str:
    """The declarations between the cdef markers of *header*."""
    blocks = _CDEF_BLOCK.findall(header.read_text(encoding="utf-8"))
    if len(blocks) != 1:
        raise RuntimeError(f"{header}: expected exactly one cdef-begin/cdef-end block")
    return str(blocks[0])


def make_ffibuilder(*, absolute_paths: bool = False) -> FFI:
    """The builder; source paths are relative to the working directory (as
    setuptools wants them, run from the project root) unless *absolute_paths*."""

    def path(p: Path) -> str:
        return str(p) if absolute_paths else os.path.relpath(p)

    builder = FFI()
    builder.cdef("\n".join(_cdef_from_header(HERE / f"{c}.h") for c in COMPONENTS))
    builder.set_source(
        MODULE_NAME,
        "\n".join(f'#include "{c}.h"' for c in COMPONENTS),
        sources=[path(HERE / f"{c}.c") for c in COMPONENTS],
        include_dirs=[path(HERE)],
        libraries=LIBRARIES,
        extra_compile_args=EXTRA_COMPILE_ARGS,
        py_limited_api=True,
    )
    return builder


ffibuilder = make_ffibuilder()


if __name__ == "__main__":
    # Build in a scratch directory (cffi chdirs there), then copy the module in
    # place: <src>/pywg/_fast/_fast_cffi.<abi>.so, found by any import from src/.
    with tempfile.TemporaryDirectory() as scratch:
        built = make_ffibuilder(absolute_paths=True).compile(tmpdir=scratch, verbose=True)
        for stale in HERE.glob("_fast_cffi.*.so"):  # another ABI tag would shadow ours
            stale.unlink()
        shutil.copy2(built, HERE / Path(built).name)
        print(f"copied {Path(built).name} to {HERE}")
