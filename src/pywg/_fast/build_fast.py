"""cffi builder for ``pywg._fast._fast_cffi``, the native data plane.

Out-of-line API mode: cffi writes a C wrapper that ``#include``s our headers
and is compiled together with the C sources listed in ``COMPONENTS`` into one
extension module. setup.py wires it in with
``cffi_modules=["src/pywg/_fast/build_fast.py:make_ffibuilder"]``.

The cdef is read from the headers themselves, between ``/* cdef-begin */``
and ``/* cdef-end */``, so the declarations live in exactly one place.

The numbers C shares with Python (message sizes and offsets, REJECT_AFTER_*,
the replay window, the under-load default, ...) are defined once, in
``pywg/constants.py``. ``make_ffibuilder`` first writes them to
``wg_constants.h`` (generated, not in git) as ``#define PYWG_<NAME>``, and
declares them in the cdef too, so ``lib.PYWG_<NAME>`` shows the compiled
value (tests/native/test_shared_constants.py compares the two).
constants.py is loaded by its path: the build runs where ``pywg`` may not be
importable.

To add a component: put ``foo.h`` (with cdef markers) and ``foo.c`` here and
append ``"foo"`` to ``COMPONENTS``; add libraries (e.g. ``crypto``) to
``LIBRARIES``.

Run directly (``python src/pywg/_fast/build_fast.py``) to build the extension
in place next to this file, for development without pip.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

from cffi import FFI

MODULE_NAME = "pywg._fast._fast_cffi"
HERE = Path(__file__).resolve().parent
CONSTANTS = HERE.parent / "constants.py"
CONSTANTS_HEADER = HERE / "wg_constants.h"
C_PREFIX = "PYWG_"
# One .h/.c pair per concern; each .h holds a cdef-marked block.
COMPONENTS: tuple[str, ...] = (
    "replay",
    "lpm",
    "uapiparse",
    "aead",
    "blake2s",
    "xaead",
    "offload",
    "filter",
    "plane",
    "relay",
)
LIBRARIES: list[str] = ["crypto"]  # OpenSSL libcrypto, for aead.c
# Python's own CFLAGS already give -O3 -Wall; gnu11 for the Linux APIs to come.
EXTRA_COMPILE_ARGS = ["-std=gnu11", "-Wno-unused-parameter"]

_CDEF_BLOCK = re.compile(r"/\* cdef-begin \*/\n(.*?)/\* cdef-end \*/", re.DOTALL)
_INT32_MAX = (1 << 31) - 1
_UINT64_MAX = (1 << 64) - 1


def _cdef_from_header(header: Path) -> str:
    """The declarations between the cdef markers of *header*."""
    blocks = _CDEF_BLOCK.findall(header.read_text(encoding="utf-8"))
    if len(blocks) != 1:
        raise RuntimeError(f"{header}: expected exactly one cdef-begin/cdef-end block")
    return str(blocks[0])


def load_constants(path: Path = CONSTANTS) -> dict[str, int | float]:
    """Every public int and float constant of constants.py, in the order defined."""
    spec = importlib.util.spec_from_file_location("_pywg_constants_for_c", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {
        name: value
        for name, value in vars(module).items()
        if name.isupper()
        and not name.startswith("_")
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    }


def _c_literal(name: str, value: int | float) -> str:
    """*value* as a C constant expression of the same value."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{name} = {value!r}: not a finite number")
        return repr(value)  # the shortest repr reads back as the same double
    if not 0 <= value <= _UINT64_MAX:
        raise ValueError(f"{name} = {value}: not in uint64 range")
    return str(value) if value <= _INT32_MAX else f"{value}ULL"


def constants_header(constants: dict[str, int | float]) -> str:
    """The text of wg_constants.h for *constants*."""
    lines = [
        "/* Generated from pywg/constants.py by pywg/_fast/build_fast.py; do not edit.",
        " * The numbers the native plane shares with the Python core, as PYWG_<NAME>;",
        " * change them in constants.py (the next build regenerates this file). */",
        "#ifndef PYWG_FAST_WG_CONSTANTS_H",
        "#define PYWG_FAST_WG_CONSTANTS_H",
        "",
    ]
    lines += [f"#define {C_PREFIX}{n} {_c_literal(n, v)}" for n, v in constants.items()]
    lines += ["", "#endif /* PYWG_FAST_WG_CONSTANTS_H */", ""]
    return "\n".join(lines)


def constants_cdef(constants: dict[str, int | float]) -> str:
    """The cdef of the constants: cffi reads integer #defines, and floats as constants."""
    return "\n".join(
        f"static const double {C_PREFIX}{name};"
        if isinstance(value, float)
        else f"#define {C_PREFIX}{name} {value}"
        for name, value in constants.items()
    )


def write_constants_header() -> dict[str, int | float]:
    """Write wg_constants.h from constants.py (unless already the same); the constants."""
    constants = load_constants()
    text = constants_header(constants)
    current = CONSTANTS_HEADER.read_text(encoding="utf-8") if CONSTANTS_HEADER.exists() else None
    if text != current:
        scratch = CONSTANTS_HEADER.with_name(f".{CONSTANTS_HEADER.name}.{os.getpid()}")
        scratch.write_text(text, encoding="utf-8")
        scratch.replace(CONSTANTS_HEADER)  # atomic: a parallel build never sees half a header
    return constants


def make_ffibuilder(*, absolute_paths: bool = False) -> FFI:
    """The builder; source paths are relative to the working directory (as
    setuptools wants them, run from the project root) unless *absolute_paths*."""

    def path(p: Path) -> str:
        return str(p) if absolute_paths else os.path.relpath(p)

    constants = write_constants_header()
    headers = [CONSTANTS_HEADER, *(HERE / f"{c}.h" for c in COMPONENTS)]
    builder = FFI()
    builder.cdef("\n".join([constants_cdef(constants), *map(_cdef_from_header, headers[1:])]))
    builder.set_source(
        MODULE_NAME,
        "\n".join(f'#include "{h.name}"' for h in headers),
        sources=[path(HERE / f"{c}.c") for c in COMPONENTS],
        include_dirs=[path(HERE)],
        depends=[path(h) for h in headers],
        libraries=LIBRARIES,
        extra_compile_args=EXTRA_COMPILE_ARGS,
        py_limited_api=True,
    )
    return builder


if __name__ == "__main__":
    # Build in a scratch directory (cffi chdirs there), then copy the module in
    # place: <src>/pywg/_fast/_fast_cffi.<abi>.so, found by any import from src/.
    with tempfile.TemporaryDirectory() as scratch:
        built = make_ffibuilder(absolute_paths=True).compile(tmpdir=scratch, verbose=True)
        for stale in HERE.glob("_fast_cffi.*.so"):  # another ABI tag would shadow ours
            stale.unlink()
        shutil.copy2(built, HERE / Path(built).name)
        print(f"copied {Path(built).name} to {HERE}")
