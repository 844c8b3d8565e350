"""Run the `pywg` command as an unprivileged user.

    python -m helpers.unprivileged_pywg UID ARGS...


As in `helpers.rootless_node`, what the command will import is imported
first (the interpreter may live where UID cannot read), then the process
drops to UID with no groups and no capabilities and runs ``pywg ARGS...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import encodings.ascii  # (files opened with encoding="ascii": the node's state)
import encodings.idna  # noqa: F401  (getaddrinfo encodes host names with it, lazily)
import importlib
import pkgutil
import sys

import pywg.asyncio
import pywg.cmd.rootless
import pywg.cmd.up
import pywg.config
from helpers.rootless_node import drop_privileges, effective_capabilities, warm_up
from pywg.cmd import main as pywg_main

with contextlib.suppress(ImportError):  # the user-space stack, once it is part of pywg
    import pywg.netstack  # type: ignore[import-not-found]


def import_all_of_pywg() -> None:
    """Import every module of pywg, and with them what they import at their top: the
    commands import some of their modules only when they build their parsers."""
    for module in pkgutil.walk_packages(pywg.__path__, "pywg."):
        if not module.name.endswith(("__main__", "build_fast")):
            importlib.import_module(module.name)


def main() -> None:
    uid = int(sys.argv[1])
    import_all_of_pywg()
    asyncio.run(warm_up())
    drop_privileges(uid)
    print(f"uid {uid} caps {effective_capabilities():x}", flush=True)
    assert pywg.asyncio and pywg.cmd.rootless and pywg.cmd.up
    sys.exit(pywg_main.main(sys.argv[2:]))


if __name__ == "__main__":
    main()
