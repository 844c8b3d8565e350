"""The native data plane: C compiled with cffi into ``pywg._fast._fast_cffi``.

This package imports cleanly whether or not the extension was built. Use
:mod:`pywg.backend` to decide between native and pure-Python code; the names
here are for the wrappers in this package:

- ``AVAILABLE``: the extension imported.
- ``IMPORT_ERROR``: why it did not (``None`` if it did).
- ``ffi``, ``lib``: the cffi objects, ``None`` when unavailable.

Sources: ``*.h`` (declarations, with the block fed to cffi's cdef), ``*.c``
(implementations), ``build_fast.py`` (``make_ffibuilder``, which setup.py uses;
it generates ``wg_constants.h``, the numbers shared with Python, from
``pywg/constants.py``).
"""

from __future__ import annotations

import importlib
from typing import Any, Final

EXTENSION: Final = "pywg._fast._fast_cffi"


def _load() -> tuple[Any, Any, ImportError | None]:
    try:
        module = importlib.import_module(EXTENSION)
    except ImportError as exc:
        return None, None, exc
    return module.ffi, module.lib, None


ffi, lib, IMPORT_ERROR = _load()
AVAILABLE: Final[bool] = IMPORT_ERROR is None

BUILD_HINT: Final = (
    "Build it by installing pywg from source with a C compiler and the Python headers "
    "present (Debian/Ubuntu: apt install gcc python3-dev; then pip install .), or in a "
    "source checkout run: python src/pywg/_fast/build_fast.py"
)


def require() -> tuple[Any, Any]:
    """``(ffi, lib)``, or an ``ImportError`` saying why and how to build."""
    if IMPORT_ERROR is not None:
        raise ImportError(
            f"the native extension {EXTENSION} is not available "
            f"({type(IMPORT_ERROR).__name__}: {IMPORT_ERROR}). {BUILD_HINT}.",
            name=EXTENSION,
        ) from IMPORT_ERROR
    return ffi, lib


__all__ = ["AVAILABLE", "BUILD_HINT", "EXTENSION", "IMPORT_ERROR", "ffi", "lib", "require"]
