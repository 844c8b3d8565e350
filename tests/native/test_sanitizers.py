"""The native data plane built with AddressSanitizer + UBSan, once, for the C-facing tests.

fuzz/sanitize.py compiles pywg._fast._fast_cffi with gcc's
``-fsanitize=address,undefined -fno-sanitize-recover=undefined`` (from the
same ``make_ffibuilder``) into a copy of the package in a temporary
directory; the repository's own extension is left alone. Each check runs in
a subprocess with gcc's libasan preloaded (Python itself is not
instrumented), ``detect_leaks=0`` (CPython keeps objects to the end on
purpose), ``PYTHONMALLOC=malloc`` (every object its own malloc block, so
ASan sees past cffi buffers) and PYTHONPATH putting the copy first:

- the data-plane tests (test_plane, test_offload, test_lpm, test_replay,
  test_native_relay, test_uapiparse, test_routes_mirror;
  the replay tests' pure-Python-only variants are left out: they never
  call C);
- the C-facing fuzz harnesses (fuzz_dataplane: LPM packet lookup, TSO
  split, checksum completion, GRO, kp_open; fuzz_device, whose sessions use
  the C replay window): a corpus grown by atheris in a normal process (when
  atheris is installed), then replayed with seeded random inputs under the
  sanitizers. libFuzzer cannot guide a run under gcc's libasan: its no-op
  __sanitizer_cov_* hooks take precedence over libFuzzer's.

Each must pass with no sanitizer report on stderr. The whole file takes
about two minutes on a 2-vCPU machine and is skipped when gcc, its
sanitizer runtimes, the Python headers or the OpenSSL headers are missing.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "fuzz"
sys.path.insert(0, str(FUZZ))
import sanitize  # noqa: E402

DATA_PLANE_TESTS = [
    "native/test_plane.py",
    "native/test_offload.py",
    "native/test_lpm.py",
    "core/test_replay.py",
    "native/test_blake2s.py",
    "native/test_xaead.py",
    "native/test_native_relay.py",
    "native/test_uapiparse.py",
    "native/test_routes_mirror.py",
]
# test_replay's [pure] variants and test_pure_matches_model exercise PureReplayWindow only.
NOT_PURE_ONLY = "not pure or native"
C_FACING_HARNESSES = {"dataplane": (5000, 2000), "device": (4000, 2000)}  # (grow, random) runs
HAVE_ATHERIS = importlib.util.find_spec("atheris") is not None
BUDGET = 175.0  # seconds for the whole file, build included: every subprocess gets what is left
_deadline = [float("inf")]


def _left(wanted: float) -> float:
    left = _deadline[0] - time.monotonic()
    if left <= 1:
        pytest.fail(f"test_sanitizers.py is over its {BUDGET:.0f} s budget")
    return min(wanted, left)


def _missing_toolchain() -> str | None:
    try:
        sanitize.libasan()
    except sanitize.SanitizerUnavailable as exc:
        return str(exc)
    include = Path(sysconfig.get_paths()["include"])
    if not (include / "Python.h").is_file():
        return f"no Python headers ({include / 'Python.h'})"
    dirs = [include, Path("/usr/include"), Path("/usr/local/include")]
    multiarch = sysconfig.get_config_var("MULTIARCH")
    if multiarch:
        dirs.append(Path("/usr/include") / str(multiarch))
    if not any((d / "openssl" / "evp.h").is_file() for d in dirs):
        return "no OpenSSL headers (openssl/evp.h)"
    return None


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The package copy with the sanitized extension (built once for the module)."""
    reason = _missing_toolchain()
    if reason is not None:
        pytest.skip(f"cannot build with AddressSanitizer: {reason}")
    _deadline[0] = time.monotonic() + BUDGET
    yield sanitize.build(tmp_path_factory.mktemp("asan"))


def _run(tree: Path, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv,
            env=sanitize.environment(tree),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=_left(timeout),
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{argv[1:3]} under the sanitizers did not finish in {timeout} s: {exc}")


def _assert_clean(proc: subprocess.CompletedProcess[str], what: str) -> None:
    reports = sanitize.sanitizer_reports(proc.stderr)
    detail = f"{what}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-8000:]}"
    assert not reports, f"sanitizer report: {reports}\n{detail}"
    assert proc.returncode == 0, detail


def test_the_sanitized_extension_is_the_one_imported(tree: Path) -> None:
    code = (
        "import pywg._fast._fast_cffi as m, pywg.backend as b; print(m.__file__); print(b.BACKEND)"
    )
    proc = _run(tree, [sys.executable, "-c", code], timeout=60)
    _assert_clean(proc, "import")
    path, backend = proc.stdout.split()
    assert Path(path).is_relative_to(tree), path
    assert backend == "native"


def test_data_plane_tests_pass(tree: Path) -> None:
    args = [
        "-q",
        "-p",
        "no:cacheprovider",
        "--capture=sys",  # leave fd 2 alone: a report must reach our stderr before the abort
        "-k",
        NOT_PURE_ONLY,
        *(str(ROOT / "tests" / name) for name in DATA_PLANE_TESTS),
    ]
    # pytest in-process, after checking that the extension it will use is the sanitized one
    code = (
        "import sys, pytest, pywg._fast._fast_cffi as m; "
        "assert m.__file__.startswith(sys.argv[1]), m.__file__; "
        "sys.exit(pytest.main(sys.argv[2:]))"
    )
    proc = _run(tree, [sys.executable, "-c", code, str(tree), *args], timeout=170)
    _assert_clean(proc, "data-plane tests")
    assert " passed" in proc.stdout and " failed" not in proc.stdout, proc.stdout[-2000:]


@pytest.mark.parametrize("name", list(C_FACING_HARNESSES))
def test_c_facing_fuzz_harness(tree: Path, name: str, tmp_path: Path) -> None:
    harness = str(FUZZ / f"fuzz_{name}.py")
    grow, random_runs = C_FACING_HARNESSES[name]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    if HAVE_ATHERIS:  # coverage-guided inputs, grown in a normal process
        proc = subprocess.run(
            [
                sys.executable,
                harness,
                f"-atheris_runs={grow}",
                "-seed=1",
                "-timeout=10",
                f"-artifact_prefix={tmp_path}/",
                str(corpus),
            ],
            capture_output=True,
            text=True,
            timeout=_left(90),
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr[-6000:]
    proc = _run(
        tree,
        [sys.executable, harness, "--replay", f"--random={random_runs}", "--seed=1", str(corpus)],
        timeout=120,
    )
    _assert_clean(proc, f"fuzz_{name}.py --replay")
    assert "no failure" in proc.stderr


def test_gro_takes_an_oversized_ipv6_packet_safely(tree: Path) -> None:
    proc = _run(tree, [sys.executable, str(FUZZ / "repro" / "gro_oversized_ipv6.py")], 60)
    _assert_clean(proc, "gro_oversized_ipv6.py")


def test_a_planted_overflow_is_reported(tree: Path) -> None:
    """The set-up does catch a bad access (a cffi buffer read one byte too far)."""
    code = (
        "from pywg import _fast; ffi, lib = _fast.ffi, _fast.lib; "
        "buf = ffi.new('uint8_t[]', 20); "
        "print(lib.pywg_ip_checksum(buf, 21))"
    )
    proc = _run(tree, [sys.executable, "-c", code], timeout=60)
    assert proc.returncode != 0
    assert any("AddressSanitizer" in line for line in sanitize.sanitizer_reports(proc.stderr))
