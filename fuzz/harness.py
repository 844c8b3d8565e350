"""What the harnesses in fuzz/ share: import paths, an input reader, the atheris driver.

Every harness defines ``TestOneInput(data: bytes) -> None``, which raises
(an ``AssertionError`` or any unexpected exception) exactly when it finds a
bug, and ends with ``if __name__ == "__main__": run(TestOneInput)``. So a
harness is

- a program: ``python3 fuzz/fuzz_messages.py -atheris_runs=100000`` (any
  libFuzzer flag works: ``-max_total_time=60``, ``-seed=1``, a corpus
  directory, a crash file to replay),
- a module: ``TestOneInput`` can be imported and called without atheris
  (the tests and the AddressSanitizer run do that), and
- a replayer without atheris: ``python3 fuzz/fuzz_dataplane.py --replay
  [--random N] [--seed S] [FILE_OR_DIR...]`` runs saved inputs (a corpus,
  a crash file) and N seeded random ones.

Atheris instruments Python bytecode only: coverage feedback comes from the
Python code of pywg and of the harness itself. C reached through cffi runs
uninstrumented (no clang here to build it with -fsanitize=fuzzer); it is
checked by the harnesses' own oracles and, in tests/native/test_sanitizers.py,
under AddressSanitizer and UBSan.
"""

from __future__ import annotations

import gc
import importlib
import sys
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

FUZZ_DIR = Path(__file__).resolve().parent
ROOT = FUZZ_DIR.parent


def add_source_path() -> None:
    """Make ``pywg`` importable from a checkout that was not pip-installed."""
    try:
        import pywg  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(ROOT / "src"))


class Reader:
    """Takes typed values off the front of a fuzz input; past its end, zeros.

    A pure-Python stand-in for atheris.FuzzedDataProvider, so that the
    harnesses import and run without atheris. Running out of input is not an
    error: it reads as zero bytes, which keeps short inputs meaningful.
    """

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def remaining(self) -> int:
        return max(0, len(self._data) - self._pos)

    def take(self, n: int) -> bytes:
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk + bytes(n - len(chunk))

    def take_upto(self, n: int) -> bytes:
        """At most n bytes, fewer when the input ends."""
        chunk = self._data[self._pos : self._pos + n]
        self._pos += len(chunk)
        return chunk

    def rest(self) -> bytes:
        chunk = self._data[self._pos :]
        self._pos = len(self._data)
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "little")

    def u8(self) -> int:
        return self.uint(1)

    def u16(self) -> int:
        return self.uint(2)

    def u32(self) -> int:
        return self.uint(4)

    def u64(self) -> int:
        return self.uint(8)

    def below(self, n: int) -> int:
        """An int in [0, n), n <= 2**16."""
        return self.u16() % n if n > 256 else self.u8() % n

    def choice(self, options: list[str] | tuple[str, ...] | list[bytes]) -> str | bytes:
        return options[self.below(len(options))]

    def flag(self) -> bool:
        return bool(self.u8() & 1)


def instrument(module_prefixes: Iterable[str]) -> int:
    """Add atheris coverage instrumentation to every loaded function of these modules.

    Works after the modules were imported (unlike atheris.instrument_imports),
    so a harness can import pywg at the top as any module does. Returns how
    many functions were instrumented.
    """
    atheris: Any = importlib.import_module("atheris")
    prefixes = tuple(module_prefixes)
    count = 0
    for obj in gc.get_objects():
        if not isinstance(obj, types.FunctionType):
            continue
        module = getattr(obj, "__module__", None) or ""
        if not any(module == p or module.startswith(p + ".") for p in prefixes):
            continue
        try:
            atheris.instrument_func(obj)
        except Exception:  # a function atheris cannot rewrite stays uninstrumented
            continue
        count += 1
    return count


def replay(
    test_one_input: Callable[[bytes], None],
    paths: Iterable[str | Path] = (),
    *,
    random_runs: int = 0,
    seed: int = 0,
    max_len: int = 4096,
) -> int:
    """Run test_one_input on every file under paths, then on random inputs; no atheris.

    For a process where libFuzzer cannot give coverage, such as Python with
    gcc's libasan preloaded (its no-op __sanitizer_cov_* hooks win over
    libFuzzer's). Returns how many inputs ran; an input that fails is printed
    (base64) before the exception propagates.
    """
    import base64
    import random

    def one(data: bytes, origin: str) -> None:
        try:
            test_one_input(data)
        except BaseException:
            print(f"FAILED on {origin}: base64 {base64.b64encode(data).decode()}", file=sys.stderr)
            raise

    count = 0
    for path in map(Path, paths):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            one(file.read_bytes(), str(file))
            count += 1
    rnd = random.Random(seed)
    for i in range(random_runs):
        limit = (16, 64, 512, max_len)[rnd.randrange(4)]
        one(rnd.randbytes(rnd.randrange(limit + 1)), f"random input {i} (seed {seed})")
        count += 1
    return count


def _replay_main(test_one_input: Callable[[bytes], None], args: list[str]) -> int:
    import argparse
    import time

    parser = argparse.ArgumentParser(
        prog=args[0], description="Run the harness on files and random inputs, without atheris."
    )
    parser.add_argument("--replay", action="store_true", required=True)
    parser.add_argument("--random", type=int, default=0, help="random inputs to run as well")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-len", type=int, default=4096)
    parser.add_argument("paths", nargs="*", help="inputs: files, or directories of them")
    ns = parser.parse_args(args[1:])
    start = time.monotonic()
    n = replay(test_one_input, ns.paths, random_runs=ns.random, seed=ns.seed, max_len=ns.max_len)
    print(f"replayed {n} inputs in {time.monotonic() - start:.1f} s: no failure", file=sys.stderr)
    return 0


def run(
    test_one_input: Callable[[bytes], None],
    argv: list[str] | None = None,
    *,
    dictionary: str | None = None,
    modules: Iterable[str] = ("pywg",),
) -> None:
    """The harness's main: fuzz with atheris (libFuzzer flags in argv, default sys.argv),
    or with ``--replay [--random N] [--seed S] [PATH...]`` run inputs without atheris."""
    args = list(sys.argv if argv is None else argv)
    if "--replay" in args[1:]:
        sys.exit(_replay_main(test_one_input, args))
    try:
        atheris: Any = importlib.import_module("atheris")
    except ImportError:
        sys.exit("atheris is not installed: pip install atheris (or pip install -e '.[test]')")
    if dictionary is not None and not any(a.startswith("-dict=") for a in args[1:]):
        args.append(f"-dict={FUZZ_DIR / dictionary}")
    n = instrument([*modules, test_one_input.__module__])
    print(f"INFO: atheris instrumented {n} Python functions", file=sys.stderr)
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()
