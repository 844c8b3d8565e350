"""Coverage-guided fuzzing in CI: each atheris harness in fuzz/ for a bounded run.

Each harness runs in a subprocess (libFuzzer owns the process and exits on a
finding) for a fixed number of executions from a fixed seed, so CI is
reproducible; the whole file takes well under a minute. Exit status 0 and
libFuzzer's "Done N" line mean no crash, no failed oracle and, per input, no
hang (``-timeout``); the subprocess timeout bounds the whole run. Longer
campaigns: see fuzz/README.md.

Environment: PYWG_FUZZ_SEED (default 1) picks another seed, PYWG_FUZZ_SCALE
(default 1) multiplies every run count.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "fuzz"
SEED = int(os.environ.get("PYWG_FUZZ_SEED", "1"))
SCALE = float(os.environ.get("PYWG_FUZZ_SCALE", "1"))

# Executions per harness: about 3-8 s each on a 2-vCPU machine, start-up included.
HARNESSES = {
    "messages": 20_000,
    "device": 20_000,
    "uapi": 4_000,
    "config": 20_000,
    "dataplane": 10_000,
    "filter": 10_000,
}
PER_INPUT_TIMEOUT = 10  # seconds: libFuzzer reports a hang past this
WHOLE_RUN_TIMEOUT = 90  # seconds per harness, start-up included
NO_ATHERIS = importlib.util.find_spec("atheris") is None


def _native_available() -> bool:
    from pywg import _fast

    return bool(_fast.AVAILABLE)


@pytest.mark.skipif(NO_ATHERIS, reason="atheris is not installed (pip install atheris)")
@pytest.mark.parametrize("name", list(HARNESSES))
def test_harness_runs_clean(name: str, tmp_path: Path) -> None:
    if name == "dataplane" and not _native_available():
        pytest.skip("the native extension is not built")
    runs = max(1, int(HARNESSES[name] * SCALE))
    argv = [
        sys.executable,
        str(FUZZ / f"fuzz_{name}.py"),
        f"-atheris_runs={runs}",
        f"-seed={SEED}",
        f"-timeout={PER_INPUT_TIMEOUT}",
        "-rss_limit_mb=2048",
        f"-artifact_prefix={tmp_path}/",
    ]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=WHOLE_RUN_TIMEOUT, cwd=tmp_path, env=env
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"fuzz_{name}.py did not finish {runs} runs in {WHOLE_RUN_TIMEOUT} s: {exc}")
    tail = proc.stderr[-6000:]
    artifacts = sorted(
        p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-"))
    )
    assert proc.returncode == 0, f"fuzz_{name}.py exited {proc.returncode}; {artifacts}\n{tail}"
    assert not artifacts, f"fuzz_{name}.py left {artifacts}\n{tail}"
    done = re.search(r"^Done (\d+) ", proc.stderr, re.MULTILINE)
    assert done is not None and int(done.group(1)) >= runs, tail


@pytest.mark.parametrize("name", list(HARNESSES))
def test_harness_imports_and_runs_without_atheris(name: str) -> None:
    """TestOneInput is a plain function: importable, and quiet on a few fixed inputs."""
    if name == "dataplane" and not _native_available():
        pytest.skip("the native extension is not built")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import importlib, harness; "
        "m = importlib.import_module('fuzz_' + sys.argv[2]); "
        "n = harness.replay(m.TestOneInput, random_runs=300, seed=7); "
        "assert 'atheris' not in sys.modules, 'imported atheris'; print(n)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(FUZZ), name],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.strip() == "300"
