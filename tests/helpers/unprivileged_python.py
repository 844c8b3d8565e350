"""Run a Python script as an unprivileged user, with pywg importable.

    python -m helpers.unprivileged_python UID SCRIPT

As `helpers.unprivileged_pywg` does for the command: every module of pywg
(and what it imports) is imported and a tunnel warmed up while still root,
since the interpreter may live where UID cannot read; then the process
drops to UID with no groups and no capabilities and runs SCRIPT as
``__main__``.
"""

from __future__ import annotations

import asyncio
import runpy
import sys

from helpers.rootless_node import drop_privileges, effective_capabilities, warm_up
from helpers.unprivileged_pywg import import_all_of_pywg


def main() -> None:
    uid, script = int(sys.argv[1]), sys.argv[2]
    import_all_of_pywg()
    asyncio.run(warm_up())
    drop_privileges(uid)
    print(f"uid {uid} caps {effective_capabilities():x}", flush=True)
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
