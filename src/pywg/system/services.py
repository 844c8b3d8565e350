"""The systemd units shipped with pywg (``pywg/system/units/``) and their installation.

The unit files are templates: ``@PYWG@`` stands for the absolute path of the
`pywg` executable, filled in at installation so that systemd runs the same
installation (and virtual environment) that installed the units. systemd is
asked to read them again (``systemctl daemon-reload``) only where it is the
service manager (sd_booted(3): /run/systemd/system exists).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from importlib import resources
from typing import Final

UNITS: Final = (
    "pywgd@.service",
    "pywg-join@.service",
    "pywg-coordinator.service",
    "pywg-relay.service",
)
DEFAULT_PREFIX: Final = "/etc/systemd/system"
PLACEHOLDER: Final = "@PYWG@"
SYSTEMD_RUNTIME: Final = "/run/systemd/system"  # sd_booted(3)


class ServiceError(Exception):
    """A one-line reason the units cannot be installed or removed."""


def template(name: str) -> str:
    """The text of shipped unit `name` with its placeholder."""
    if name not in UNITS:
        raise ServiceError(f"no unit {name!r}; the units are {', '.join(UNITS)}")
    return (resources.files("pywg.system") / "units" / name).read_text(encoding="utf-8")


def render(name: str, pywg: str) -> str:
    """Unit `name` running the `pywg` executable at absolute path `pywg`."""
    if not os.path.isabs(pywg):
        raise ServiceError(f"the pywg executable must be an absolute path, not {pywg!r}")
    return template(name).replace(PLACEHOLDER, pywg)


def find_executable(name: str = "pywg") -> str:
    """The absolute path of console script `name`: beside this interpreter's scripts
    (a virtual environment's bin/), else the first on PATH."""
    beside = os.path.join(sysconfig.get_path("scripts"), name)
    if os.access(beside, os.X_OK):
        return os.path.abspath(beside)
    found = shutil.which(name)
    if found is None:
        raise ServiceError(f"cannot find the {name} executable; give its path")
    return os.path.abspath(found)


def install(prefix: str, names: list[str], pywg: str, dry_run: bool = False) -> dict[str, str]:
    """Write units `names` into directory `prefix` (mode 0644); {path: text}.

    With `dry_run` nothing is written: the answer says what would be.
    """
    planned = {os.path.join(prefix, name): render(name, pywg) for name in names}
    if not dry_run:
        os.makedirs(prefix, exist_ok=True)
        for path, text in planned.items():
            temp = path + ".tmp"
            with open(temp, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.chmod(temp, 0o644)
            os.replace(temp, path)  # a reader sees the old unit or the new one
    return planned


def uninstall(prefix: str, names: list[str], dry_run: bool = False) -> list[str]:
    """Remove units `names` from `prefix`; the paths that were (or would be) removed."""
    for name in names:
        template(name)  # only pywg's own units
    present = [os.path.join(prefix, n) for n in names if os.path.exists(os.path.join(prefix, n))]
    if not dry_run:
        for path in present:
            os.unlink(path)
    return present


def systemd_running() -> bool:
    """Whether systemd is this machine's service manager (sd_booted(3))."""
    return os.path.isdir(SYSTEMD_RUNTIME)


def daemon_reload() -> None:
    """``systemctl daemon-reload``: systemd reads the unit files again."""
    try:
        subprocess.run(
            ["systemctl", "daemon-reload"], check=True, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServiceError(f"systemctl daemon-reload failed: {exc}") from None
