"""Which data plane runs: native (C via cffi, :mod:`pywg._fast`) or pure Python.

Chosen once, at import, from the environment variable ``PYWG_BACKEND``:

``auto`` (default, also when unset or empty)
    native if the compiled extension imports, else pure.
``native``
    native, or :class:`BackendUnavailableError` (an ``ImportError``) saying
    why the extension cannot be loaded and how to build it.
``pure``
    pure Python even if the extension is there (the reference implementation).

Every component with two implementations (the replay window, the data
plane's batched seal/open and TUN/UDP loops) picks its class from :data:`BACKEND`,
so one process never mixes the two. Both implementations of a component
share one API and give identical results; the test suite runs on both.
"""

from __future__ import annotations

import os
from typing import Final, Literal

from pywg import _fast

__all__ = [
    "BACKEND",
    "ENV_VAR",
    "Backend",
    "BackendUnavailableError",
    "native_available",
    "native_unavailable_reason",
    "select_backend",
]

Backend = Literal["native", "pure"]

ENV_VAR: Final = "PYWG_BACKEND"
_CHOICES: Final = ("auto", "native", "pure")


class BackendUnavailableError(ImportError):
    """The native backend was requested but its extension cannot be imported."""


def native_available() -> bool:
    """True if the compiled extension ``pywg._fast._fast_cffi`` imports."""
    return _fast.AVAILABLE


def native_unavailable_reason() -> str | None:
    """Why the extension did not import, or ``None`` if it did."""
    error = _fast.IMPORT_ERROR
    return None if error is None else f"{type(error).__name__}: {error}"


def select_backend(requested: str | None) -> Backend:
    """Resolve a ``PYWG_BACKEND`` value (``None`` or empty means ``auto``).

    Raises ``ValueError`` for an unknown value and
    :class:`BackendUnavailableError` for ``native`` without the extension.
    """
    choice = (requested or "auto").strip().lower() or "auto"
    if choice not in _CHOICES:
        raise ValueError(
            f"{ENV_VAR}={requested!r} is not one of {', '.join(_CHOICES)}",
        )
    if choice == "pure":
        return "pure"
    if native_available():
        return "native"
    if choice == "auto":
        return "pure"
    raise BackendUnavailableError(
        f"{ENV_VAR}=native, but the native extension {_fast.EXTENSION} cannot be imported "
        f"({native_unavailable_reason()}). {_fast.BUILD_HINT}. "
        f"Or set {ENV_VAR}=auto to fall back to pure Python.",
        name=_fast.EXTENSION,
    )


BACKEND: Final[Backend] = select_backend(os.environ.get(ENV_VAR))
"""The backend in use in this process: ``"native"`` or ``"pure"``."""
