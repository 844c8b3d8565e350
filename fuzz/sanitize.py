"""Build pywg's native extension with AddressSanitizer + UBSan into a scratch tree.

The C data plane is compiled once more, with gcc's
``-fsanitize=address,undefined -fno-sanitize-recover=undefined``, from the
same cffi builder as the real one (``make_ffibuilder`` in
src/pywg/_fast/build_fast.py), into a copy of the ``pywg`` package under a
temporary directory. The repository's own ``_fast_cffi*.so`` is never touched.

Python itself is not instrumented, so the ASan runtime has to be loaded
first: ``LD_PRELOAD`` of gcc's libasan, ``detect_leaks=0`` (CPython keeps
its interned objects to the end by design), and ``PYTHONMALLOC=malloc`` so
that every Python object, including the buffers cffi's ``ffi.new`` makes,
is a malloc block of its own with ASan redzones around it. ``PYTHONPATH``
puts the copy first, ahead of the editable install's src/.

Usage (from the repository root)::

    python3 fuzz/sanitize.py run -- python3 -m pytest -q tests/native/test_offload.py
    python3 fuzz/sanitize.py run -- python3 fuzz/fuzz_dataplane.py -atheris_runs=100000

``run`` builds into a temporary directory, runs the command with the
environment above and removes the directory; ``build DIR`` builds into DIR
and prints the environment to use.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "pywg"
BUILD_SCRIPT = PACKAGE / "_fast" / "build_fast.py"

SANITIZE_FLAGS = [
    "-fsanitize=address,undefined",
    "-fno-omit-frame-pointer",
    "-fno-sanitize-recover=undefined",
]
# -O1 -g for usable reports; -fno-wrapv so that signed overflow is UB that UBSan reports
# (Python's own CFLAGS say -fwrapv, which hides it).
COMPILE_FLAGS = [*SANITIZE_FLAGS, "-O1", "-g", "-fno-wrapv"]
LINK_FLAGS = list(SANITIZE_FLAGS)

# What a sanitizer prints when it finds something (stderr).
REPORT_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",  # UBSan
    "SUMMARY: AddressSanitizer",
    "SUMMARY: UndefinedBehaviorSanitizer",
)


class SanitizerUnavailable(RuntimeError):
    """gcc or its sanitizer runtimes are missing."""


def _gcc_runtime(name: str) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        raise SanitizerUnavailable("gcc is not on PATH")
    try:
        out = subprocess.run(
            [gcc, f"-print-file-name={name}"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SanitizerUnavailable(f"gcc -print-file-name={name} failed: {exc}") from None
    path = Path(out)
    if not path.is_absolute() or not path.exists():  # gcc echoes the bare name if it has none
        raise SanitizerUnavailable(f"gcc has no {name} (install libasan / libubsan for gcc)")
    return path.resolve()


def libasan() -> Path:
    """gcc's AddressSanitizer runtime, to LD_PRELOAD into an uninstrumented Python."""
    _gcc_runtime("libubsan.so")  # needed too, though the extension pulls it in itself
    return _gcc_runtime("libasan.so")


def _load_build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_pywg_build_fast", BUILD_SCRIPT)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {BUILD_SCRIPT}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(dest: Path, *, verbose: bool = False) -> Path:
    """Copy the pywg package to dest/pywg and build a sanitized extension into it.

    Returns the directory to put first on PYTHONPATH (dest itself).
    """
    libasan()  # fail early, with the reason, when the runtimes are missing
    dest = Path(dest)
    target = dest / "pywg"
    shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.pyc"))
    build_fast = _load_build_script()
    builder = build_fast.make_ffibuilder(absolute_paths=True)
    # set_source's keyword arguments are kept in _assigned_source; add ours to them.
    kwds = builder._assigned_source[3]
    kwds["extra_compile_args"] = [*kwds.get("extra_compile_args", []), *COMPILE_FLAGS]
    kwds["extra_link_args"] = [*kwds.get("extra_link_args", []), *LINK_FLAGS]
    scratch = dest / "build"
    scratch.mkdir()
    built = Path(builder.compile(tmpdir=str(scratch), verbose=verbose))
    shutil.copy2(built, target / "_fast" / built.name)
    shutil.rmtree(scratch)
    return dest


def environment(tree: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment that runs Python on the sanitized copy in tree."""
    env = dict(os.environ if base is None else base)
    preload = [str(libasan())]
    if env.get("LD_PRELOAD"):
        preload.append(env["LD_PRELOAD"])
    env["LD_PRELOAD"] = " ".join(preload)
    env["ASAN_OPTIONS"] = ":".join(
        [
            "detect_leaks=0",
            "abort_on_error=1",
            "halt_on_error=1",
            "allocator_may_return_null=1",
            "detect_stack_use_after_return=1",
            "strict_string_checks=1",
            "check_initialization_order=1",
        ]
    )
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    env["PYTHONMALLOC"] = "malloc"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    paths = [str(tree), str(ROOT / "tests")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def sanitizer_reports(stderr: str) -> list[str]:
    """The lines of stderr that show a sanitizer report."""
    return [line for line in stderr.splitlines() if any(m in line for m in REPORT_MARKERS)]


def main(argv: list[str] | None = None) -> int:
    import tempfile

    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["build"] and len(args) == 2:
        tree = build(Path(args[1]), verbose=True)
        for key in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "PYTHONMALLOC", "PYTHONPATH"):
            print(f"export {key}={environment(tree)[key]!r}")
        return 0
    if args[:2] == ["run", "--"] and len(args) > 2:
        with tempfile.TemporaryDirectory(prefix="pywg-asan-") as tmp:
            tree = build(Path(tmp))
            return subprocess.run(args[2:], env=environment(tree), cwd=ROOT).returncode
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
